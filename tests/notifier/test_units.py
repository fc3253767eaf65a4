"""Pure functions: classification, retry hints, redaction, templates."""

from __future__ import annotations

import email.utils

import pytest
from jinja2.exceptions import SecurityError

from db import notifications as notes
from notifier import templates
from notifier.classify import classify, retry_hint
from notifier.redact import redact


@pytest.mark.parametrize(("channel", "status", "body", "kind"), [
    ("custom-webhook", 204, "", "sent"),
    ("slack-webhook", 200, "ok", "sent"),
    ("slack-webhook", 200, "invalid_token", "failed"),
    ("mattermost-webhook", 200, "ok", "sent"),
    ("custom-webhook", 301, "", "failed"),
    ("custom-webhook", 400, "", "failed"),
    ("discord-webhook", 410, "", "failed"),
    ("custom-webhook", 408, "", "retry"),
    ("custom-webhook", 425, "", "retry"),
    ("custom-webhook", 504, "", "retry"),
    ("twilio-sms", 400, '{"code": 21611}', "retry"),
    ("twilio-sms", 400, '{"code": 21211}', "failed"),
])
def test_classify(channel, status, body, kind):
    assert classify(channel, status, {}, body).kind == kind


def test_retry_hints():
    assert retry_hint({"Retry-After": "7"}) == 7
    assert retry_hint({"Retry-After": "0"}) == 1  # clamped
    when = email.utils.formatdate(1000 + 30, usegmt=True)
    assert retry_hint({"Retry-After": when}, now=1000) == pytest.approx(30, abs=1)
    assert retry_hint({}, {"retry_after": 2.5}) == 2.5
    assert retry_hint({"X-RateLimit-Reset": "1060"}, now=1000) == 60
    assert retry_hint({"X-RateLimit-Period-In-Sec": "99999"}) == 3600
    out = classify("discord-webhook", 429, {}, '{"retry_after": 3.0, "global": false}')
    assert out.kind == "retry" and out.rate_limited and out.retry_after == 3.0


def test_redact():
    text = ("POST https://hooks.slack.com/services/T1/B2/abc failed; https://discord.com/api/webhooks/1/tok "
            "https://x.logic.azure.com/w?api-version=1&sig=SIGN Authorization: Bearer k123 GenieKey gk999 custom-s3cret")
    out = redact(text, ["custom-s3cret"])
    for secret in ("abc", "/tok", "SIGN", "k123", "gk999", "custom-s3cret"):
        assert secret not in out


def test_legacy_template_validation():
    notes.validate_message_template("{flow_name} {flow_run_state_name}")
    with pytest.raises(notes.Invalid):
        notes.validate_message_template("{secret}")
    with pytest.raises(notes.Invalid):
        notes.validate_message_template("{flow_name")


def test_jinja_sandbox_limits():
    assert templates.check_jinja("{% for i in range(3) %}{{ i }}{% endfor %}") is None
    assert "nested" in templates.check_jinja("{% for a in x %}{% for b in y %}{% for c in z %}{% endfor %}{% endfor %}{% endfor %}")
    with pytest.raises(SecurityError, match="range"):
        templates.render_jinja("{% for i in range(1000) %}{% endfor %}", {}, None)
    assert templates.render_jinja("{{ flow.__class__.__mro__ }}", {"flow": {}}, None) == ""
    with pytest.raises(SecurityError):  # immutable: no mutation of the context
        templates.render_jinja("{{ flow.update({1: 2}) }}", {"flow": {}}, None)
    assert templates.render_jinja("{{ flow_run|ui_url }}", {"flow_run": {"id": "r", "flow_id": "f"}}, "http://ui") == "http://ui/runs/flow-run/r"
