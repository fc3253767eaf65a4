"""End to end with the real Prefect 3.8.8 SDK: a policy, and separately an Automation made
with the SDK's class, on Failed + tag; a live server, the notifier as its own process, a
real HTTP receiver. One message naming flow, run and state within 2 s of the state
change; untagged and Completed runs send nothing."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.e2e.conftest import SCRIPTS, last_json_line, run_script
from tests.notifier.receivers import Receiver

NOTIFIER = Path(__file__).parents[1] / "notifier" / "scripts" / "run_notifier.py"


@pytest.fixture
def receiver():
    r = Receiver(default=(200, {}, b""))
    yield r
    r.close()


def start_notifier(server, blocks: dict):
    blocks_file = server.home / f"blocks-{uuid.uuid4().hex[:6]}.json"
    blocks_file.write_text(json.dumps(blocks))
    env = {**server.env, "APPLIANCE_TEST_BLOCKS_FILE": str(blocks_file), "APPLIANCE_NOTIFIER_POLL_INTERVAL": "0.2",
           "APPLIANCE_NOTIFIER_HEARTBEAT_PATH": str(server.home / "hb")}
    return subprocess.Popen([sys.executable, str(NOTIFIER)], env=env, cwd=Path(__file__).parents[2],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.parametrize("mode", ["policy", "automation"])
def test_failed_tagged_run_notifies_once(live_server, api, receiver, mode):
    tag = f"t{uuid.uuid4().hex[:8]}"
    block_id = str(uuid.uuid4())
    blocks = {block_id: ["custom-webhook", {"name": "ops", "url": receiver.url + "/hook",
                                            "json_data": {"subject": "{{subject}}", "body": "{{body}}"}}]}
    notifier = start_notifier(live_server, blocks)
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
