"""Blocks with the real Prefect SDK and CLI against a live server, on both backends:
Secret, SlackWebhook and a user-defined block saved, loaded, overwritten, listed,
inspected and deleted; the built-in types listed by `prefect block type ls`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import SCRIPTS, last_json_line, sdk_env

PREFECT = str(Path(sys.executable).parent / "prefect")


def cli(env, *args, ok=True):
    result = subprocess.run([PREFECT, *args], env=env, capture_output=True, text=True, timeout=90)
    if ok:
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def env(live_server, tmp_path_factory):
    return sdk_env(live_server.url, tmp_path_factory.mktemp("blocks-sdk"), PREFECT_CLI_PROMPT="false", COLUMNS=250)


def test_blocks_with_the_sdk_and_cli(api, env, live_server):
    result = subprocess.run([sys.executable, str(SCRIPTS / "block_flows.py")], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    out = last_json_line(result.stdout)
    assert out["secret"] == "s3cr3t" and out["secret_after_overwrite"] == "rotated"
    assert out["refused_without_overwrite"] is True
    # The built-in types exist: the SDK only looks up the type and the schema, then creates
    # (the client's own CSRF-token fetch aside).
    calls = [tuple(c) for c in out["slack_calls"] if "/block_" in c[1]]
    assert calls == [
        ("GET", "/api/block_types/slug/slack-webhook"),
        ("GET", "/api/block_schemas/checksum/" + calls[1][1].rsplit("/", 1)[1]),
        ("POST", "/api/block_documents/"),
    ]
    assert out["slack_url"] == "https://hooks.slack.com/services/T000/B000/XXXX"
    assert out["custom"] == ["u", "p", 5432] and out["custom_after_overwrite"] == ["u2", "p2", 6543]

    masked = api.get("/block_types/slug/secret/block_documents/name/db-password").json()
    assert masked["data"] == {"value": "********"}

    listed = cli(env, "block", "ls").stdout
    for name in ("db-password", "alerts", "warehouse"):
        assert name in listed
    inspected = cli(env, "block", "inspect", "warehousecreds/warehouse").stdout
    assert "u2" in inspected and "p2" not in inspected
    types = cli(env, "block", "type", "ls").stdout
    for slug in ("slack-webhook", "secret", "local-file-system", "twilio-sms"):
        assert slug in types
    cli(env, "block", "delete", "warehousecreds/warehouse")
    assert api.get("/block_types/slug/warehousecreds/block_documents/name/warehouse").status_code == 404
    assert not live_server.errors_in_log(), live_server.errors_in_log()
