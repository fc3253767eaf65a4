"""appliance.logging_setup: text by default, JSON lines on demand, secrets masked in both."""

from __future__ import annotations

import io
import json
import logging

import pytest

from appliance import logging_setup
from appliance.settings import Settings


@pytest.fixture
def captured():
    """Configure the root logger into a buffer; restore the previous handlers afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    buffer = io.StringIO()

    def configure(fmt: str, settings: Settings):
        logging_setup.configure("info", fmt, secrets=logging_setup.secrets_of(settings), access_log=True,
                                stream=buffer)
        return buffer

    yield configure
    root.handlers[:] = handlers
    root.setLevel(level)
    logging_setup._secrets = ()


SETTINGS = Settings(
    database_url="postgresql://app:p%40ss-W0rd@db:5432/app",
    auth_string="admin:hunter22",
    secret_key="dGVzdC1rZXktdGhlLWFwcGxpYW5jZS10ZXN0LXN1aXQ=",
)


def test_secrets_of_settings():
    found = logging_setup.secrets_of(SETTINGS)
    assert {"p%40ss-W0rd", "p@ss-W0rd", "hunter22", SETTINGS.secret_key} <= set(found)


def test_json_lines_with_access_fields_and_request_id(captured):
    buffer = captured("json", SETTINGS)
    token = logging_setup.request_id.set("rid-1")
    try:
        logging.getLogger("appliance.api").warning("connecting with %s", "postgresql://app:p@ss-W0rd@db/app")
        logging.getLogger(logging_setup.ACCESS_LOGGER).info(
            "GET /api/x 200 1.00ms", extra={"method": "GET", "route": "/api/x", "path": "/api/x", "status": 200,
                                            "duration_ms": 1.0})
        try:
            raise RuntimeError("auth hunter22 failed")
        except RuntimeError:
            logging.getLogger("appliance.api").exception("boom")
    finally:
        logging_setup.request_id.reset(token)
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert [line["level"] for line in lines] == ["WARNING", "INFO", "ERROR"]
    assert lines[0]["message"] == "connecting with postgresql://app:********@db/app"
    assert lines[0]["request_id"] == "rid-1" and lines[0]["ts"].endswith("Z")
    assert lines[1] | {"ts": None} == {
        "ts": None, "level": "INFO", "logger": "appliance.access", "message": "GET /api/x 200 1.00ms",
        "request_id": "rid-1", "method": "GET", "route": "/api/x", "path": "/api/x", "status": 200, "duration_ms": 1.0}
    assert "RuntimeError: auth ******** failed" in lines[2]["exc"] and "hunter22" not in buffer.getvalue()


def test_text_is_the_default_and_masks_too(captured):
    buffer = captured(Settings().log_format, SETTINGS)
    logging.getLogger("appliance.boot").info("key is %s", SETTINGS.secret_key)
    line = buffer.getvalue().strip()
    assert line.endswith("INFO [appliance.boot] key is ********")
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)
