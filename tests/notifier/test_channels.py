"""The wire shape of each of the nine channels, sent through the real notifier to a local
receiver (fixed API hosts redirected with APPLIANCE_NOTIFIER_ENDPOINTS)."""

from __future__ import annotations

import base64
import time

import pytest

from db.models_notifications import Notification
from notifier.main import Notifier
from tests.notifier.helpers import failing_run, new_block, policy


@pytest.fixture
def send_one(migrated, blocks, fast_settings, receiver, monkeypatch):
    def go(slug, data, status=200, body=b"ok", count=1):
        receiver.default = (status, {}, body)
        monkeypatch.setattr(fast_settings, "notifier_endpoints", {
            k: receiver.url for k in ("opsgenie-webhook", "pager-duty-webhook", "sendgrid-email", "twilio-sms",
                                      "discord-webhook")
        })
        policy(new_block(blocks, slug, data))
        run = failing_run(flow_name="etl", run_name="lucky-cat")
        n = Notifier(fast_settings, "t")
        deadline = time.time() + 10
        while time.time() < deadline and Notification.select().where(Notification.status == "sent").count() < 1:
            n.run_once()
        n.pool.shutdown()
        row = Notification.select().dicts().first()
        assert row["status"] == "sent", row
        return receiver.wait_for(count)[:count], row, run
    return go


def test_discord(send_one):
    (req,), row, _ = send_one("discord-webhook", {"webhook_id": "123", "webhook_token": "tok", "botname": "bot"}, 204, b"")
    assert req.path == "/api/webhooks/123/tok" and req.query == {"wait": "true"}
    body = req.json()
    assert body["content"].startswith("Prefect flow run notification\r\nFlow run etl/lucky-cat entered state `Failed`")
    assert body["allowed_mentions"] == {"parse": []} and body["username"] == "bot"


def test_mattermost(send_one, receiver):
    port = receiver.server.server_address[1]
    reqs, _, _ = send_one("mattermost-webhook", {"hostname": "127.0.0.1", "port": port, "secure": False, "token": "key",
                                                  "channels": ["ops", "dev"]}, count=2)
    assert {r.path for r in reqs} == {"/hooks/key"}
    assert {r.json()["channel"] for r in reqs} == {"ops", "dev"}
    assert reqs[0].json()["text"].startswith("Prefect flow run notification\nFlow run etl/lucky-cat")


def test_teams(send_one, receiver):
    url = receiver.url + "/workflows/abc/triggers/manual/paths/invoke?api-version=1&sig=SIG"
    (req,), _, _ = send_one("ms-teams-webhook", {"url": url}, 202, b"")
    assert req.query["sig"] == "SIG"
    card = req.json()["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    blocks = card["content"]["body"]
    assert blocks[0]["text"] == "Prefect flow run notification" and "lucky-cat" in blocks[1]["text"]


def test_opsgenie(send_one):
    (req,), row, _ = send_one("opsgenie-webhook", {"apikey": "gk", "target_team": ["ops"], "priority": 2}, 202,
                              b'{"result":"Request will be processed","requestId":"r"}')
    assert req.path == "/v2/alerts" and req.headers["Authorization"] == "GenieKey gk"
    body = req.json()
    assert body["message"] == "Prefect flow run notification" and body["alias"] == row["idempotency_key"]
    assert body["priority"] == "P2" and body["responders"] == [{"type": "team", "name": "ops"}]
    assert "lucky-cat" in body["description"]


def test_pagerduty(send_one):
    (req,), row, _ = send_one("pager-duty-webhook", {"integration_key": "rk", "notify_type": "failure"}, 202,
                              b'{"status":"success"}')
    assert req.path == "/v2/enqueue"
    body = req.json()
    assert body["routing_key"] == "rk" and body["event_action"] == "trigger" and body["dedup_key"] == row["idempotency_key"]
    assert body["payload"]["summary"] == "Prefect flow run notification"
    assert body["payload"]["severity"] == "critical" and body["payload"]["source"] == "Prefect"
    assert " " in body["payload"]["custom_details"]["Prefect Notification Body"]  # no %20 corruption


def test_sendgrid(send_one):
    (req,), _, _ = send_one("sendgrid-email", {"api_key": "SG.k", "sender_email": "p@x.io",
                                                "to_emails": ["a@x.io", "b@x.io"]}, 202, b"")
    assert req.path == "/v3/mail/send" and req.headers["Authorization"] == "Bearer SG.k"
    body = req.json()
    assert body["personalizations"] == [{"to": [{"email": "a@x.io"}]}, {"to": [{"email": "b@x.io"}]}]
    assert body["from"] == {"email": "p@x.io"} and body["subject"] == "Prefect flow run notification"
    assert body["content"][0]["type"] == "text/plain" and "lucky-cat" in body["content"][0]["value"]


def test_twilio(send_one):
    reqs, _, _ = send_one("twilio-sms", {"account_sid": "AC1", "auth_token": "tt", "from_phone_number": "18001234567",
                                          "to_phone_numbers": ["+15551234567"]}, 201, b'{"sid":"SM1"}')
    (req,) = reqs
    assert req.path == "/2010-04-01/Accounts/AC1/Messages.json"
    assert req.headers["Authorization"] == "Basic " + base64.b64encode(b"AC1:tt").decode()
    form = req.form()
    assert form["To"] == "+15551234567" and form["From"] == "+18001234567" and "lucky-cat" in form["Body"]


def test_slack(send_one, receiver):
    (req,), _, _ = send_one("slack-webhook", {"url": receiver.url + "/services/T/B/x"})
    assert req.json()["text"].startswith("*Prefect flow run notification*\nFlow run etl/lucky-cat")


def test_custom_webhook_form_and_params(send_one, receiver):
    (req,), _, _ = send_one("custom-webhook", {"name": "n", "url": receiver.url + "/f", "method": "PUT",
                                                "params": {"s": "{{subject}}"}, "form_data": {"msg": "{{body}}"}})
    assert req.method == "PUT" and req.query["s"] == "Prefect flow run notification"
    assert "lucky-cat" in req.form()["msg"]
