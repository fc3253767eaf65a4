"""/variables: list with search and keyset pages, create, edit, delete; bad input re-renders."""

from __future__ import annotations

from tests.ui.admin_helpers import api_json, assert_redirect, main_html, post_form


def _create(client, name, value, tags=""):
    return post_form(client, "/variables", {"name": name, "value": value, "tags": tags})


def test_create_list_search_edit_delete(client):
    assert_redirect(_create(client, "region", "eu-west-1", "infra, prod"), "/variables?msg=created")
    assert_redirect(_create(client, "limits", '{"cpu": 2}'), "/variables")
    assert api_json(client.simulate_get("/api/variables/name/region"))["value"] == "eu-west-1"
    assert api_json(client.simulate_get("/api/variables/name/region"))["tags"] == ["infra", "prod"]
    assert api_json(client.simulate_get("/api/variables/name/limits"))["value"] == {"cpu": 2}

    page = client.simulate_get("/variables?msg=created")
    assert page.status_code == 200 and "Variable created." in page.text
    assert "region" in page.text and "limits" in page.text
    found = main_html(client.simulate_get("/variables?q=REG"))
    assert "region" in found and "limits" not in found

    var = api_json(client.simulate_get("/api/variables/name/region"))
    edit = client.simulate_get(f"/variables/variable/{var['id']}/edit")
    assert edit.status_code == 200 and "eu-west-1" in edit.text
    saved = post_form(client, f"/variables/variable/{var['id']}/edit",
                      {"name": "region2", "value": "42", "tags": ""})
    assert_redirect(saved, "/variables?msg=saved")
    changed = api_json(client.simulate_get(f"/api/variables/{var['id']}"))
    assert changed["name"] == "region2" and changed["value"] == 42 and changed["tags"] == []

    assert_redirect(post_form(client, f"/variables/variable/{var['id']}/delete"), "/variables?msg=deleted")
    assert client.simulate_get(f"/api/variables/{var['id']}").status_code == 404


def test_bad_input_rerenders_with_messages_and_values(client):
    bad = _create(client, "Not Valid", "x")
    assert bad.status_code == 422
    assert "lowercase letters" in bad.text and 'value="Not Valid"' in bad.text
    assert api_json(client.simulate_post("/api/variables/count", json={})) == 0

    assert_redirect(_create(client, "taken", "1"), "/variables")
    dup = _create(client, "taken", "2")
    assert dup.status_code == 422 and "already exists" in dup.text

    too_long = _create(client, "big", "x" * 6000)
    assert too_long.status_code == 422 and "5000" in too_long.text

    nul = _create(client, "nul", "a\x00b")
    assert nul.status_code == 422 and "NUL" in nul.text

    other = api_json(client.simulate_get("/api/variables/name/taken"))
    assert_redirect(_create(client, "second", "1"), "/variables")
    second = api_json(client.simulate_get("/api/variables/name/second"))
    clash = post_form(client, f"/variables/variable/{second['id']}/edit", {"name": "taken", "value": "1"})
    assert clash.status_code == 422 and "already exists" in clash.text
    assert api_json(client.simulate_get(f"/api/variables/{other['id']}"))["value"] == 1


def test_csrf_and_unknown_ids(client):
    refused = post_form(client, "/variables", {"name": "x", "value": "1"}, token=None)
    assert refused.status_code == 403
    assert client.simulate_get("/variables/variable/not-a-uuid/edit").status_code == 404
    missing = client.simulate_get("/variables/variable/00000000-0000-0000-0000-000000000000/edit")
    assert missing.status_code == 404 and "Variable not found" in missing.text


def test_keyset_pages(client):
    for i in range(55):
        client.simulate_post("/api/variables/", json={"name": f"v{i:03d}", "value": i})
    first = client.simulate_get("/variables")
    assert "v000" in first.text and "v049" in first.text and "v050" not in first.text
    assert "/variables?after=v049" in first.text
    second = client.simulate_get("/variables?after=v049")
    assert "v050" in second.text and "v054" in second.text and "v049" not in second.text
    assert "/variables?before=v050" in second.text
    back = client.simulate_get("/variables?before=v050")
    assert "v000" in back.text and "v049" in back.text and "v050" not in back.text
