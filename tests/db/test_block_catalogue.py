"""The built-in block catalogue is Prefect 3.8.8's own: regenerating it from the real
classes (tools/gen_block_catalogue.py) gives the committed file; checksums follow §5.2."""

from __future__ import annotations

import json
import subprocess
import sys

from db import block_schema
from tests.support import REPO

SECRET_CHECKSUM = "sha256:c078ed9c1e813e224c0b353d7ad4564a11d51d3198d9ac0686478165a1911c78"


def test_catalogue_has_not_drifted_from_prefect(tmp_path):
    out = tmp_path / "catalogue.json"
    result = subprocess.run([sys.executable, str(REPO / "tools" / "gen_block_catalogue.py"), "--out", str(out)],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    committed = (REPO / "db" / "data" / "block_catalogue.json").read_text()
    assert out.read_text() == committed, "db/data/block_catalogue.json is stale: run tools/gen_block_catalogue.py"


def test_catalogue_covers_the_core_and_notification_types():
    catalogue = json.loads((REPO / "db" / "data" / "block_catalogue.json").read_text())
    slugs = {t["slug"] for t in catalogue["block_types"]}
    assert {"secret", "local-file-system", "remote-file-system", "smb", "webhook", "custom-webhook",
            "discord-webhook", "mattermost-webhook", "ms-teams-webhook", "opsgenie-webhook", "pager-duty-webhook",
            "sendgrid-email", "slack-webhook", "twilio-sms"} <= slugs
    secret = [s for s in catalogue["block_schemas"] if s["block_type_slug"] == "secret"]
    assert [s["checksum"] for s in secret] == [SECRET_CHECKSUM]


def test_checksum_test_vector_and_rules():
    fields = {
        "block_schema_references": {}, "block_type_slug": "secret", "title": "Secret", "type": "object",
        "description": "A block that represents a secret value. The value stored in this block will be obfuscated "
                       "when this block is viewed or edited in the UI.",
        "properties": {"value": {
            "anyOf": [{"format": "password", "type": "string", "writeOnly": True}, {"title": "string", "type": "string"},
                      {"$ref": "#/definitions/JsonValue", "title": "JSON"}],
            "description": "A value that should be kept secret.",
            "examples": ["sk-1234567890", {"password": "s3cr3t", "username": "johndoe"}],
            "format": "password", "title": "Value", "writeOnly": True, "position": 0}},
        "required": ["value"], "secret_fields": ["value", "value"], "definitions": {"JsonValue": {}},
    }
    assert block_schema.checksum(fields) == SECRET_CHECKSUM
    # Secret-field lists and empty or block definitions do not change the checksum.
    assert block_schema.checksum({**fields, "secret_fields": []}) == SECRET_CHECKSUM
    with_block_def = {**fields, "definitions": {"JsonValue": {}, "Other": {"block_type_slug": "x"}}}
    assert block_schema.checksum(with_block_def) == SECRET_CHECKSUM
    assert block_schema.checksum({**fields, "title": "Changed"}) != SECRET_CHECKSUM
