"""End to end with the real Prefect 3.8.8 SDK: a policy, and separately an Automation made
with the SDK's class, on Failed + tag; a live server, the notifier as its own process, a
real HTTP receiver. One message naming flow, run and state within 2 s of the state
change; untagged and Completed runs send nothing."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import time
import uuid

import pytest

from tests import support
from tests.e2e.conftest import SCRIPTS, last_json_line, run_script
from tests.notifier.receivers import Receiver


@pytest.fixture
def receiver():
    r = Receiver(default=(200, {}, b""))
    yield r
    r.close()


def start_notifier(server):
    """The real `appliance notifier`, same settings (database, key) as the server."""
    env = {**server.env, "APPLIANCE_NOTIFIER_POLL_INTERVAL": "0.2",
           "APPLIANCE_NOTIFIER_HEARTBEAT_PATH": str(server.home / "hb")}
    return subprocess.Popen([support.APPLIANCE_BIN, "notifier"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def custom_webhook_block(api, url: str) -> str:
    """A custom-webhook block document saved through the blocks API (stored encrypted)."""
    block_type = api.get("/block_types/slug/custom-webhook").json()
    schema = api.post("/block_schemas/filter",
                      json={"block_schemas": {"block_type_id": {"any_": [block_type["id"]]}}}).json()[0]
    made = api.post("/block_documents/", json={
        "name": f"ops-{uuid.uuid4().hex[:6]}", "block_type_id": block_type["id"], "block_schema_id": schema["id"],
        "data": {"name": "ops", "url": url, "json_data": {"subject": "{{subject}}", "body": "{{body}}"}},
    })
    assert made.status_code == 201, made.text
    return made.json()["id"]


@pytest.mark.parametrize("mode", ["policy", "automation"])
def test_failed_tagged_run_notifies_once(live_server, api, receiver, mode):
    tag = f"t{uuid.uuid4().hex[:8]}"
    block_id = custom_webhook_block(api, receiver.url + "/hook")
    notifier = start_notifier(live_server)
    try:
        out = run_script(SCRIPTS / "notify_flows.py", live_server.url, live_server.home,
                         NOTIFY_MODE=mode, NOTIFY_BLOCK_ID=block_id, NOTIFY_TAG=tag)
        assert out.returncode == 0, out.stderr[-3000:]
        ids = last_json_line(out.stdout)
        run = ids["tagged_failed"]
        (msg,) = receiver.wait_for(1, 10)[:1]
        time.sleep(1.0)  # nothing else may arrive
        assert len(receiver.requests) == 1, [r.body for r in receiver.requests]
        text = json.dumps(msg.json())
        assert run["name"] in text and f"nightly-{tag}" in text and "Failed" in text
        state = api.get(f"/flow_runs/{run['id']}").json()["state"]
        changed = dt.datetime.fromisoformat(state["timestamp"].replace("Z", "+00:00")).timestamp()
        assert msg.at - changed < 2.0
    finally:
        notifier.send_signal(signal.SIGTERM)
        assert notifier.wait(20) == 0
