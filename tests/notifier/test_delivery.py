"""Outbox and delivery: custom webhook and Slack end to end through the real queue, on both
databases, with real HTTP receivers; retries, 429 hints, permanent failures, dead rows."""

from __future__ import annotations

import time

import pytest

from db import database as dbmod
from db import notifications as notes
from db.models_notifications import Notification
from notifier.main import Notifier
from tests.notifier.helpers import failing_run, new_block, policy


def drain(settings, until=lambda: False, timeout=10.0):
    n = Notifier(settings, "test")
    deadline = time.time() + timeout
    while time.time() < deadline:
        n.run_once()
        if until():
            break
        time.sleep(0.02)
    n.pool.shutdown(wait=True)


def rows():
    return list(Notification.select().dicts())


def test_policy_matching_is_transactional(migrated, blocks, fast_settings, receiver):
    block = new_block(blocks, "custom-webhook", {"name": "ops", "url": receiver.url})
    policy(block, states=["Failed"], tags=["prod"])
    failing_run(tags=["prod"])  # matches
    failing_run(tags=["dev"])  # wrong tag
    failing_run(tags=["prod"], state="COMPLETED", message=None)  # wrong state
    assert [r["state_name"] for r in rows()] == ["Failed"]
    # A transition rolled back with its transaction queues nothing.
    from db import runs

    with dbmod.write_tx():
        flow, _ = runs.get_or_create_flow("etl", [], None)
        run, _ = runs.create_flow_run({"flow_id": flow["id"], "tags": ["prod"]})
    with pytest.raises(RuntimeError), dbmod.write_tx():
        runs.set_flow_run_state(run["id"], {"type": "FAILED"})
        raise RuntimeError("abort")
    assert len(rows()) == 1


def test_custom_webhook_and_slack_delivered(migrated, blocks, fast_settings, receiver):
    hook = new_block(blocks, "custom-webhook", {
        "name": "ops", "url": receiver.url + "/hook", "json_data": {"text": "{{subject}}\n{{body}}", "title": "{{name}}",
                                                                    "auth": "{{token}}"},
        "headers": {"X-Token": "{{token}}"}, "secrets": {"token": "s3cr3t-value"},
    })
    slack = new_block(blocks, "slack-webhook", {"url": receiver.url + "/services/T1/B2/xyz"})
    policy(hook)
    policy(slack)
    run = failing_run(flow_name="etl", run_name="lucky-<!channel>")
    drain(fast_settings, lambda: all(r["status"] == "sent" for r in rows()))
    got = {r.path: r for r in receiver.wait_for(2)}
    hook_req = got["/hook"]
    assert hook_req.method == "POST" and hook_req.headers["User-Agent"] == "Prefect Notifications"
    assert hook_req.headers["X-Token"] == "s3cr3t-value"
    payload = hook_req.json()
    assert payload["title"] == "ops" and payload["auth"] == "s3cr3t-value"
    assert payload["text"].startswith("Prefect flow run notification\nFlow run etl/lucky-<!channel> entered state `Failed`")
    assert run["id"] in payload["text"] and "Flow run URL" not in payload["text"]
    slack_req = got["/services/T1/B2/xyz"]
    text = slack_req.json()["text"]
    assert text.startswith("*Prefect flow run notification*\nFlow run etl/lucky-&lt;!channel&gt;")
    assert {r["status"] for r in rows()} == {"sent"}
    assert all(r["body"] and r["subject"] == "Prefect flow run notification" for r in rows())


def test_retry_on_5xx_then_sent(migrated, blocks, fast_settings, receiver):
    receiver.script = [(503, {}, b"busy"), (502, {}, b"bad gateway")]
    policy(new_block(blocks, "custom-webhook", {"name": "x", "url": receiver.url, "json_data": {"b": "{{body}}"}}))
    failing_run()
    drain(fast_settings, lambda: rows()[0]["status"] == "sent")
    row = rows()[0]
    assert row["status"] == "sent" and row["attempts"] == 3 and len(receiver.requests) == 3


def test_429_retry_after_is_honoured_and_free(migrated, blocks, fast_settings, receiver):
    receiver.script = [(429, {"Retry-After": "1"}, b"slow down")]
    policy(new_block(blocks, "slack-webhook", {"url": receiver.url + "/services/a/b/c"}))
    failing_run()
    drain(fast_settings, lambda: rows()[0]["status"] == "sent")
    first, second = receiver.wait_for(2)[:2]
    assert second.at - first.at >= 0.95
    row = rows()[0]
    assert row["status"] == "sent" and row["attempts"] == 1 and row["rate_limited"] == 1


def test_4xx_is_permanent_and_error_redacted(migrated, blocks, fast_settings, receiver):
    receiver.default = (404, {}, b"no_service")
    policy(new_block(blocks, "slack-webhook", {"url": receiver.url + "/services/T/B/supersecret"}))
    failing_run()
    drain(fast_settings, lambda: rows()[0]["status"] != "pending")
    row = rows()[0]
    assert row["status"] == "failed" and row["last_status_code"] == 404 and len(receiver.requests) == 1
    assert "supersecret" not in (row["last_error"] or "")


def test_slack_200_without_ok_is_failure(migrated, blocks, fast_settings, receiver):
    receiver.default = (200, {}, b"invalid_token")
    policy(new_block(blocks, "slack-webhook", {"url": receiver.url + "/services/T/B/s"}))
    failing_run()
    drain(fast_settings, lambda: rows()[0]["status"] != "pending")
    assert rows()[0]["status"] == "failed"


def test_dead_after_budget_and_retry_command(migrated, blocks, fast_settings, receiver, monkeypatch):
    monkeypatch.setattr(fast_settings, "notifier_max_attempts", 3)
    receiver.default = (500, {}, b"down")
    policy(new_block(blocks, "custom-webhook", {"name": "x", "url": receiver.url}))
    failing_run()
    drain(fast_settings, lambda: rows()[0]["status"] == "dead")
    row = rows()[0]
    assert row["status"] == "dead" and row["attempts"] == 3 and len(receiver.requests) == 3
    with dbmod.write_tx():
        assert notes.retry(dead=True) == 1
    receiver.default = (200, {}, b"")
    drain(fast_settings, lambda: rows()[0]["status"] == "sent")
    assert rows()[0]["status"] == "sent"


def test_hanging_receiver_times_out_and_retries(migrated, blocks, fast_settings, receiver):
    receiver.script = [(200, {}, b"", 1.5)]
    policy(new_block(blocks, "custom-webhook", {"name": "x", "url": receiver.url, "timeout": 0.5}))
    failing_run()
    drain(fast_settings, lambda: rows()[0]["status"] == "sent")
    row = rows()[0]
    assert row["status"] == "sent" and row["attempts"] == 2


def test_expired_lease_is_claimable_again(migrated, blocks, fast_settings, receiver):
    policy(new_block(blocks, "custom-webhook", {"name": "x", "url": receiver.url}))
    failing_run()
    claimed = notes.claim("a", 10, lease_seconds=0.01)
    assert len(claimed) == 1 and notes.claim("b", 10, 60) == []
    time.sleep(0.05)
    again = notes.claim("b", 10, 60)
    assert [r["id"] for r in again] == [claimed[0]["id"]]
    # The first claimant's late outcome is ignored: its token is stale.
    with dbmod.write_tx():
        notes.settle(claimed[0], "failed", error="late")
    assert rows()[0]["status"] == "sending"


def test_automation_jinja_delivered(migrated, blocks, fast_settings, receiver):
    block = new_block(blocks, "custom-webhook", {"name": "x", "url": receiver.url, "json_data": {"s": "{{subject}}", "b": "{{body}}"}})
    trigger = {"type": "event", "match": {"prefect.resource.id": "prefect.flow-run.*"},
               "match_related": {"prefect.resource.role": "tag", "prefect.resource.id": "prefect.tag.prod"},
               "expect": ["prefect.flow-run.Failed"], "posture": "Reactive", "threshold": 1}
    with dbmod.write_tx():
        notes.create_automation({"name": "a", "trigger": trigger, "actions": [
            {"type": "send-notification", "block_document_id": block, "subject": "{{ flow.name }} failed",
             "body": "{{ flow_run.name }} is {{ flow_run.state.name }}: {{ flow_run.state.message }}"}]})
    failing_run(tags=["prod"], run_name="r1")
    failing_run(tags=["dev"], run_name="r2")
    failing_run(tags=["prod"], run_name="r3", state="COMPLETED")
    drain(fast_settings, lambda: rows() and rows()[0]["status"] == "sent")
    assert len(rows()) == 1
    (req,) = receiver.wait_for(1)
    assert req.json() == {"s": "etl failed", "b": "r1 is Failed: boom"}


def test_allow_private_urls_false_refuses_loopback(migrated, blocks, fast_settings, receiver):
    policy(new_block(blocks, "custom-webhook", {"name": "x", "url": receiver.url, "allow_private_urls": False}))
    failing_run()
    drain(fast_settings, lambda: rows()[0]["status"] != "pending")
    row = rows()[0]
    assert row["status"] == "failed" and "private address" in row["last_error"] and receiver.requests == []


def test_slack_is_paced_per_webhook(migrated, blocks, fast_settings, receiver):
    policy(new_block(blocks, "slack-webhook", {"url": receiver.url + "/services/a/b/c"}))
    failing_run()
    failing_run()
    drain(fast_settings, lambda: {r["status"] for r in rows()} == {"sent"})
    first, second = receiver.wait_for(2)[:2]
    assert second.at - first.at >= 0.95
