"""/concurrency-limits: global limits (create, edit, toggle, reset, delete) and tag limits
(create, active slots, reset, delete); bad input re-renders with the messages."""

from __future__ import annotations

import uuid

from tests.ui.admin_helpers import api_json, assert_redirect, main_html, post_form


def _limit(client, name):
    return api_json(client.simulate_get(f"/api/v2/concurrency_limits/{name}"))


def test_global_limit_lifecycle(client):
    created = post_form(client, "/concurrency-limits",
                        {"name": "db-pool", "limit": "5", "slot_decay_per_second": "", "active": ["false", "true"]})
    assert_redirect(created, "/concurrency-limits?msg=created")
    limit = _limit(client, "db-pool")
    assert limit["limit"] == 5 and limit["active"] is True and limit["slot_decay_per_second"] == 0.0

    page = main_html(client.simulate_get("/concurrency-limits"))
    assert "db-pool" in page and f"/concurrency-limits/concurrency-limit/{limit['id']}/edit" in page

    edit = client.simulate_get(f"/concurrency-limits/concurrency-limit/{limit['id']}/edit")
    assert edit.status_code == 200 and 'value="db-pool"' in edit.text
    saved = post_form(client, f"/concurrency-limits/concurrency-limit/{limit['id']}/edit",
                      {"name": "db-pool", "limit": "7", "slot_decay_per_second": "0.5", "active": "false"})
    assert_redirect(saved, "/concurrency-limits?msg=saved")
    limit = _limit(client, "db-pool")
    assert limit["limit"] == 7 and limit["slot_decay_per_second"] == 0.5 and limit["active"] is False

    assert_redirect(post_form(client, f"/concurrency-limits/concurrency-limit/{limit['id']}/toggle"),
                    "/concurrency-limits?msg=activated")
    assert _limit(client, "db-pool")["active"] is True

    taken = client.simulate_post("/api/v2/concurrency_limits/increment", json={"names": ["db-pool"], "slots": 3})
    assert taken.status_code == 200
    assert _limit(client, "db-pool")["active_slots"] == 3
    assert_redirect(post_form(client, f"/concurrency-limits/concurrency-limit/{limit['id']}/reset"),
                    "/concurrency-limits?msg=reset")
    assert _limit(client, "db-pool")["active_slots"] == 0

    assert_redirect(post_form(client, f"/concurrency-limits/concurrency-limit/{limit['id']}/delete"),
                    "/concurrency-limits?msg=deleted")
    assert client.simulate_get("/api/v2/concurrency_limits/db-pool").status_code == 404


def test_bad_limits_rerender_and_write_nothing(client):
    bad = post_form(client, "/concurrency-limits", {"name": "a/b", "limit": "-1", "slot_decay_per_second": "x"})
    assert bad.status_code == 422
    text = main_html(bad)
    assert "Must not contain" in text and "at least 0" in text and "Must be" in text and 'value="a/b"' in text
    assert api_json(client.simulate_post("/api/v2/concurrency_limits/filter", json={})) == []

    assert_redirect(post_form(client, "/concurrency-limits", {"name": "one", "limit": "1"}), "/concurrency-limits")
    dup = post_form(client, "/concurrency-limits", {"name": "one", "limit": "2"})
    assert dup.status_code == 422 and "already exists" in dup.text
    missing = post_form(client, "/concurrency-limits", {"name": "", "limit": ""})
    assert missing.status_code == 422 and main_html(missing).count("Required.") == 2
    assert client.simulate_get("/concurrency-limits/concurrency-limit/nope/edit").status_code == 404


def test_tag_limits_with_active_slots(client):
    assert_redirect(post_form(client, "/concurrency-limits/tag-limits", {"tag": "warehouse", "concurrency_limit": "2"}),
                    "/concurrency-limits?msg=tag-saved")
    task_run = str(uuid.uuid4())
    held = client.simulate_post("/api/concurrency_limits/increment", json={"names": ["warehouse"], "task_run_id": task_run})
    assert held.status_code == 200
    page = main_html(client.simulate_get("/concurrency-limits"))
    assert "warehouse" in page and task_run in page
    view = api_json(client.simulate_get("/api/concurrency_limits/tag/warehouse"))
    assert view["active_slots"] == [task_run]

    # Saving the same tag again changes its limit.
    assert_redirect(post_form(client, "/concurrency-limits/tag-limits", {"tag": "warehouse", "concurrency_limit": "4"}),
                    "/concurrency-limits")
    assert api_json(client.simulate_get("/api/concurrency_limits/tag/warehouse"))["concurrency_limit"] == 4

    assert_redirect(post_form(client, f"/concurrency-limits/tag-limit/{view['id']}/reset"),
                    "/concurrency-limits?msg=tag-reset")
    assert api_json(client.simulate_get("/api/concurrency_limits/tag/warehouse"))["active_slots"] == []
    assert_redirect(post_form(client, f"/concurrency-limits/tag-limit/{view['id']}/delete"),
                    "/concurrency-limits?msg=tag-deleted")
    assert client.simulate_get("/api/concurrency_limits/tag/warehouse").status_code == 404

    bad = post_form(client, "/concurrency-limits/tag-limits", {"tag": "", "concurrency_limit": "two"})
    assert bad.status_code == 422 and "Required." in bad.text and "whole number" in bad.text


def test_global_list_leaves_tag_limits_to_their_section(client):
    client.simulate_post("/api/concurrency_limits/", json={"tag": "etl", "concurrency_limit": 1})
    client.simulate_post("/api/v2/concurrency_limits/", json={"name": "api-calls", "limit": 3})
    page = main_html(client.simulate_get("/concurrency-limits"))
    global_part = page[page.index('id="global"'):page.index('id="tags"')]
    assert "api-calls" in global_part and "tag:etl" not in global_part
    assert "etl" in page[page.index('id="tags"'):]
