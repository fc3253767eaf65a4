"""/blocks: the documents list, the catalogue, create from a type's schema, view, edit, delete.
Secrets never appear in a page: shown as ******** in the view, empty inputs in the edit form
(an empty one keeps the stored value); nested blocks are chosen among saved documents."""

from __future__ import annotations

import uuid

from tests.ui.admin_helpers import (
    api_json,
    assert_redirect,
    block_document,
    install_catalogue,
    main_html,
    post_form,
)

SECRET = "s3cr3t-" + uuid.uuid4().hex


def _stored(client, doc_id):
    return api_json(client.simulate_get(f"/api/block_documents/{doc_id}?include_secrets=true"))


def _doc_id(location: str) -> str:
    return location.split("?")[0].rsplit("/", 1)[1]


def test_catalogue_and_create_form(client):
    install_catalogue(client)
    catalog = main_html(client.simulate_get("/blocks/catalog"))
    assert "Slack Webhook" in catalog and "/blocks/catalog/slack-webhook/create" in catalog
    assert "cdn.sanity.io" not in catalog  # no asset from outside the appliance
    form = client.simulate_get("/blocks/catalog/slack-webhook/create")
    assert form.status_code == 200
    text = main_html(form)
    assert 'type="password" id="f_url" name="f.url" value=""' in text and 'name="f.notify_type"' in text
    assert client.simulate_get("/blocks/catalog/no-such-type/create").status_code == 404


def test_secret_block_create_view_edit(client):
    install_catalogue(client)
    made = post_form(client, "/blocks/catalog/secret/create", {"block_name": "db-password", "f.value": SECRET})
    doc_id = _doc_id(assert_redirect(made, "/blocks/block/"))
    assert _stored(client, doc_id)["data"] == {"value": SECRET}

    view = client.simulate_get(f"/blocks/block/{doc_id}?msg=created")
    assert view.status_code == 200 and "Block created." in view.text
    assert SECRET not in view.text and "********" in main_html(view)
    edit = client.simulate_get(f"/blocks/block/{doc_id}/edit")
    assert SECRET not in edit.text and "leave this empty to keep it" in edit.text

    assert_redirect(post_form(client, f"/blocks/block/{doc_id}/edit", {"f.value": ""}), f"/blocks/block/{doc_id}")
    assert _stored(client, doc_id)["data"] == {"value": SECRET}
    assert_redirect(post_form(client, f"/blocks/block/{doc_id}/edit", {"f.value": "rotated"}), "/blocks/block/")
    assert _stored(client, doc_id)["data"] == {"value": "rotated"}


def test_editing_another_field_keeps_the_secret(client):
    install_catalogue(client)
    url = f"https://hooks.slack.com/services/T0/B0/{SECRET}"
    made = post_form(client, "/blocks/catalog/slack-webhook/create",
                     [("block_name", "alerts"), ("f.url", url), ("f.notify_type", "info"),
                      ("f.allow_private_urls", "false"), ("f.allow_private_urls", "true")])
    doc_id = _doc_id(assert_redirect(made, "/blocks/block/"))
    saved = post_form(client, f"/blocks/block/{doc_id}/edit",
                      [("f.url", ""), ("f.notify_type", "failure"), ("f.allow_private_urls", "false")])
    assert_redirect(saved, f"/blocks/block/{doc_id}?msg=saved")
    assert _stored(client, doc_id)["data"] == {"url": url, "notify_type": "failure", "allow_private_urls": False}
    for page in (f"/blocks/block/{doc_id}", f"/blocks/block/{doc_id}/edit", "/blocks", "/notifications"):
        assert SECRET not in client.simulate_get(page).text, page


def test_masked_secret_keys_round_trip(client):
    doc = block_document(client, "custom-webhook", "hook",
                         {"name": "hook", "url": "http://127.0.0.1:9/x", "secrets": {"token": SECRET}})
    edit = client.simulate_get(f"/blocks/block/{doc['id']}/edit")
    assert SECRET not in edit.text and "********" in edit.text
    view = client.simulate_get(f"/blocks/block/{doc['id']}")
    assert SECRET not in view.text
    saved = post_form(client, f"/blocks/block/{doc['id']}/edit", {
        "f.name": "hook", "f.url": "http://127.0.0.1:9/y", "f.method": "PUT", "f.timeout": "5",
        "f.secrets": '{"token": "********", "other": "x"}', "f.allow_private_urls": "true"})
    assert_redirect(saved, "/blocks/block/")
    data = _stored(client, doc["id"])["data"]
    assert data["secrets"] == {"token": SECRET, "other": "x"} and data["url"] == "http://127.0.0.1:9/y"
    assert data["method"] == "PUT" and data["timeout"] == 5


def test_a_password_field_the_api_would_not_mask_stays_hidden(client):
    """A schema whose password field is missing from ``secret_fields``: the page still hides it."""
    block_type = api_json(client.simulate_post("/api/block_types/", json={"name": "Legacy Creds", "slug": "legacy-creds"}),
                          201)
    fields = {"title": "LegacyCreds", "type": "object", "block_type_slug": "legacy-creds", "secret_fields": [],
              "properties": {"user": {"title": "User", "type": "string"},
                             "password": {"title": "Password", "type": "string", "format": "password",
                                          "writeOnly": True}},
              "required": ["user", "password"], "block_schema_references": {}}
    schema = api_json(client.simulate_post("/api/block_schemas/", json={"fields": fields,
                                                                       "block_type_id": block_type["id"]}), 201)
    doc = api_json(client.simulate_post("/api/block_documents/", json={
        "name": "old", "block_type_id": block_type["id"], "block_schema_id": schema["id"],
        "data": {"user": "u", "password": SECRET}}), 201)
    for page in (f"/blocks/block/{doc['id']}", f"/blocks/block/{doc['id']}/edit"):
        assert SECRET not in client.simulate_get(page).text
    assert_redirect(post_form(client, f"/blocks/block/{doc['id']}/edit", {"f.user": "u2", "f.password": ""}),
                    "/blocks/block/")
    assert _stored(client, doc["id"])["data"] == {"user": "u2", "password": SECRET}


def test_nested_block_is_a_reference(client):
    creds = block_document(client, "aws-credentials", "prod-aws",
                           {"aws_access_key_id": "AKIA", "aws_secret_access_key": SECRET, "region_name": "eu-west-1"})
    form = main_html(client.simulate_get("/blocks/catalog/aws-secret/create"))
    assert f'<option value="{creds["id"]}">prod-aws</option>' in form
    made = post_form(client, "/blocks/catalog/aws-secret/create",
                     {"block_name": "db-secret", "f.aws_credentials": creds["id"], "f.secret_name": "prod/db"})
    doc_id = _doc_id(assert_redirect(made, "/blocks/block/"))
    doc = api_json(client.simulate_get(f"/api/block_documents/{doc_id}"))
    assert doc["block_document_references"]["aws_credentials"]["block_document"]["id"] == creds["id"]
    view = client.simulate_get(f"/blocks/block/{doc_id}")
    assert f'href="/blocks/block/{creds["id"]}"' in view.text and SECRET not in view.text
    edit = client.simulate_get(f"/blocks/block/{doc_id}/edit")
    assert f'<option value="{creds["id"]}" selected>' in edit.text and SECRET not in edit.text
    assert_redirect(post_form(client, f"/blocks/block/{doc_id}/edit",
                              {"f.aws_credentials": creds["id"], "f.secret_name": "prod/db2"}), "/blocks/block/")
    full = _stored(client, doc_id)
    assert full["data"]["secret_name"] == "prod/db2"
    assert full["data"]["aws_credentials"]["aws_secret_access_key"] == SECRET  # the reference is kept


def test_bad_forms_rerender_and_write_nothing(client):
    install_catalogue(client)
    bad = post_form(client, "/blocks/catalog/custom-webhook/create",
                    {"block_name": "Bad Name", "f.name": "", "f.url": "http://x", "f.timeout": "soon", "f.headers": "[1]"})
    assert bad.status_code == 422
    text = main_html(bad)
    assert "Lowercase letters, numbers and dashes only." in text and "Must be a number." in text
    assert "Must be a JSON object" in text and 'value="http://x"' in text and main_html(bad).count("Required.") == 1
    assert api_json(client.simulate_post("/api/block_documents/count", json={})) == 0

    assert_redirect(post_form(client, "/blocks/catalog/secret/create", {"block_name": "one", "f.value": "x"}), "/blocks/")
    dup = post_form(client, "/blocks/catalog/secret/create", {"block_name": "one", "f.value": "y"})
    assert dup.status_code == 422 and "already exists" in dup.text and "y" not in dup.text.split('id="f_value"')[1][:40]
    secret_again = post_form(client, "/blocks/catalog/secret/create", {"block_name": "two", "f.value": ""})
    assert secret_again.status_code == 422 and "Required." in secret_again.text


def test_list_filter_and_delete(client):
    first = block_document(client, "secret", "alpha", {"value": "a"})
    block_document(client, "slack-webhook", "beta", {"url": "https://hooks.slack.com/x"})
    listed = main_html(client.simulate_get("/blocks"))
    assert "alpha" in listed and "beta" in listed
    only = main_html(client.simulate_get("/blocks?type=secret"))
    assert "alpha" in only and ">beta<" not in only
    assert "alpha" not in main_html(client.simulate_get("/blocks?q=BET")).split("</form>")[1]
    assert client.simulate_get("/blocks?type=nope").status_code == 404

    assert_redirect(post_form(client, f"/blocks/block/{first['id']}/delete"), "/blocks?msg=deleted")
    assert client.simulate_get(f"/api/block_documents/{first['id']}").status_code == 404
    assert client.simulate_get(f"/blocks/block/{first['id']}").status_code == 404
    assert client.simulate_get("/blocks/block/not-an-id").status_code == 404
