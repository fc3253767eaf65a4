"""/notifications: policies (create, edit, toggle, delete) with a saved notification block,
automations (enable / disable), the delivery log (status filter, pages, Retry)."""

from __future__ import annotations

from db import database as dbmod
from db import notifications as notes
from tests.ui.admin_helpers import api_json, assert_redirect, block_document, failed_run, main_html, post_form

P = "/api/flow_run_notification_policies"


def _hook(client, name="ops"):
    return block_document(client, "custom-webhook", name,
                          {"name": name, "url": "http://127.0.0.1:9/hook", "secrets": {"token": "s3cr3t-token"}})


def _policy_form(block_id, **extra):
    fields = [("state_names", "Failed"), ("state_names", "Crashed"), ("tags", "prod, nightly"),
              ("block_document_id", block_id), ("message_template", "{flow_name} is {flow_run_state_name}"),
              ("is_active", "false"), ("is_active", "true")]
    return fields + list(extra.items())


def test_policy_lifecycle(client):
    hook = _hook(client)
    page = client.simulate_get("/notifications")
    assert page.status_code == 200 and "Custom Webhook / ops" in page.text and "s3cr3t-token" not in page.text

    assert_redirect(post_form(client, "/notifications/policies", _policy_form(hook["id"])),
                    "/notifications?msg=created")
    (policy,) = api_json(client.simulate_post(f"{P}/filter", json={}))
    assert policy["state_names"] == ["Failed", "Crashed"] and policy["tags"] == ["prod", "nightly"]
    assert policy["block_document_id"] == hook["id"] and policy["is_active"] is True
    assert policy["message_template"] == "{flow_name} is {flow_run_state_name}"

    listed = main_html(client.simulate_get("/notifications"))
    assert "Failed, Crashed" in listed and f"/blocks/block/{hook['id']}" in listed

    edit = client.simulate_get(f"/notifications/policy/{policy['id']}/edit")
    assert edit.status_code == 200 and 'value="Failed" checked' in edit.text
    saved = post_form(client, f"/notifications/policy/{policy['id']}/edit",
                      [("state_names", "Completed"), ("tags", ""), ("block_document_id", hook["id"]),
                       ("message_template", ""), ("is_active", "false")])
    assert_redirect(saved, "/notifications?msg=saved")
    policy = api_json(client.simulate_get(f"{P}/{policy['id']}"))
    assert policy["state_names"] == ["Completed"] and policy["tags"] == [] and policy["is_active"] is False
    assert policy["message_template"] is None

    assert_redirect(post_form(client, f"/notifications/policy/{policy['id']}/toggle"),
                    "/notifications?msg=activated")
    assert api_json(client.simulate_get(f"{P}/{policy['id']}"))["is_active"] is True
    assert_redirect(post_form(client, f"/notifications/policy/{policy['id']}/delete"), "/notifications?msg=deleted")
    assert client.simulate_get(f"{P}/{policy['id']}").status_code == 404


def test_bad_policy_rerenders_and_stores_nothing(client):
    hook = _hook(client)
    secret = block_document(client, "secret", "not-a-notifier", {"value": "x"})
    bad = post_form(client, "/notifications/policies",
                    [("state_names", "Failed"), ("block_document_id", secret["id"]),
                     ("message_template", "{nope}"), ("tags", "a, b")])
    assert bad.status_code == 422
    text = main_html(bad)
    assert "saved notification blocks" in text and 'value="a, b"' in text and 'value="Failed" checked' in text
    bad = post_form(client, "/notifications/policies",
                    [("block_document_id", hook["id"]), ("message_template", "{nope}")])
    assert bad.status_code == 422 and "unknown placeholder" in bad.text
    missing = post_form(client, "/notifications/policies", [("block_document_id", "")])
    assert missing.status_code == 422 and "Choose the notification block" in missing.text
    assert api_json(client.simulate_post(f"{P}/filter", json={})) == []


def test_automation_toggle(client):
    hook = _hook(client)
    automation = api_json(client.simulate_post("/api/automations/", json={
        "name": "prod failures",
        "trigger": {"type": "event", "match": {"prefect.resource.id": "prefect.flow-run.*"},
                    "match_related": {"prefect.resource.role": "tag", "prefect.resource.id": "prefect.tag.prod"},
                    "expect": ["prefect.flow-run.Failed"], "posture": "Reactive", "threshold": 1},
        "actions": [{"type": "send-notification", "block_document_id": hook["id"], "subject": "s", "body": "b"}],
    }), 201)
    page = main_html(client.simulate_get("/notifications"))
    assert "prod failures" in page and "states Failed; tag prod" in page
    assert_redirect(post_form(client, f"/notifications/automation/{automation['id']}/toggle"),
                    "/notifications?msg=automation-disabled")
    assert api_json(client.simulate_get(f"/api/automations/{automation['id']}"))["enabled"] is False
    assert_redirect(post_form(client, f"/notifications/automation/{automation['id']}/toggle"), "/notifications")
    assert api_json(client.simulate_get(f"/api/automations/{automation['id']}"))["enabled"] is True


def _settle_all(outcome: str, error: str | None = None, code: int | None = None) -> None:
    with dbmod.write_tx():
        for row in notes.claim("test", 100, 60):
            notes.settle(row, outcome, status_code=code, error=error, channel="custom-webhook")


def test_delivery_log_filter_and_retry(client):
    hook = _hook(client)
    client.simulate_post(P, json={"state_names": ["Failed"], "block_document_id": hook["id"]})
    run = failed_run(client)
    log = main_html(client.simulate_get("/notifications?status=pending"))
    assert f'href="/runs/flow-run/{run["id"]}"' in log and run["name"] in log

    _settle_all("failed", error="HTTP 400 from the receiver (token [REDACTED])", code=400)
    failed = main_html(client.simulate_get("/notifications?status=failed"))
    assert "HTTP 400 from the receiver" in failed and "custom-webhook" in failed and ">400<" in failed
    assert "Retry" in failed
    pending = main_html(client.simulate_get("/notifications?status=pending"))
    assert run["name"] not in pending.split('id="log"')[1]

    (row,) = api_json(client.simulate_get("/api/appliance/notifications?status=failed"))
    retried = post_form(client, f"/notifications/notification/{row['id']}/retry", {"status": "failed"})
    assert_redirect(retried, "/notifications?msg=retried&status=failed")
    again = api_json(client.simulate_get(f"/api/appliance/notifications?flow_run_id={run['id']}"))
    assert again[0]["status"] == "pending" and again[0]["attempts"] == 0
    # Retrying what is not failed or dead is refused (and changes nothing).
    assert post_form(client, f"/notifications/notification/{row['id']}/retry").status_code == 409
    assert client.simulate_get("/notifications?status=bogus").status_code == 400
    assert client.simulate_get("/notifications?after=not-an-id").status_code == 404


def test_delivery_log_pages(client):
    hook = _hook(client)
    client.simulate_post(P, json={"state_names": ["Failed"], "block_document_id": hook["id"]})
    names = [failed_run(client)["name"] for _ in range(52)]
    first = main_html(client.simulate_get("/notifications"))
    assert names[-1] in first and names[0] not in first  # newest first, 50 a page
    next_link = first.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
    second = main_html(client.simulate_get(next_link.split("#")[0]))
    assert names[0] in second and names[1] in second and names[-1] not in second.split('id="log"')[1]
