"""The notifier as real processes: kill -9 mid-delivery then restart, two notifiers over
500 queued notifications (every one delivered, none twice), SIGTERM, --check."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from db import database as dbmod
from db import runs
from db.models_notifications import Notification
from tests import support
from tests.notifier.helpers import failing_run, new_block, policy

SCRIPT = Path(__file__).parent / "scripts" / "run_notifier.py"


def start(database_url, home, blocks, *args, **env):
    blocks_file = home / "blocks.json"
    blocks_file.write_text(json.dumps(blocks))
    full = {
        **os.environ,
        "APPLIANCE_DATABASE_URL": database_url,
        "APPLIANCE_HOME": str(home),
        "APPLIANCE_NOTIFIER_POLL_INTERVAL": "0.05",
        "APPLIANCE_TEST_BLOCKS_FILE": str(blocks_file),
        "APPLIANCE_LOG_LEVEL": "warning",
        # PostgreSQL start-up requires the key (several processes must share one).
        "APPLIANCE_SECRET_KEY": support.TEST_SECRET_KEY,
        **env,
    }
    return subprocess.Popen([sys.executable, str(SCRIPT), *args], env=full, cwd=Path(__file__).parents[2],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def statuses():
    return [r.status for r in Notification.select(Notification.status)]


def wait(cond, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_kill_9_mid_delivery_then_restart_delivers(migrated, blocks, fast_settings, receiver, tmp_home):
    receiver.script = [(200, {}, b"", 5)]  # the first delivery hangs; the notifier dies in it
    block = new_block(blocks, "custom-webhook", {"name": "x", "url": receiver.url, "json_data": {"b": "{{body}}"}})
    policy(block)
    failing_run()
    proc = start(migrated, tmp_home, blocks, APPLIANCE_NOTIFIER_LEASE_SECONDS="1")
    try:
        assert receiver.wait_for(1, 15)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert statuses() == ["sending"]
        proc = start(migrated, tmp_home, blocks, APPLIANCE_NOTIFIER_LEASE_SECONDS="1")
        assert wait(lambda: statuses() == ["sent"], 20), proc.stdout.read1().decode() if proc.poll() else ""
        assert len(receiver.requests) == 2  # at-least-once: the killed attempt may have landed
    finally:
        proc.kill()
        proc.wait(10)


def test_two_notifiers_500_each_once(migrated, blocks, fast_settings, receiver, tmp_home):
    block = new_block(blocks, "custom-webhook", {"name": "x", "url": receiver.url, "json_data": {"b": "{{body}}"}})
    policy(block, template="{flow_run_id}")
    with dbmod.write_tx():
        flow, _ = runs.get_or_create_flow("bulk", [], None)
        ids = []
        for i in range(500):
            run, _ = runs.create_flow_run({"flow_id": flow["id"], "name": f"r{i}"})
            runs.set_flow_run_state(run["id"], {"type": "FAILED"}, force=True)
            ids.append(run["id"])
    assert Notification.select().count() == 500
    procs = [start(migrated, tmp_home, blocks, APPLIANCE_NOTIFIER_HEARTBEAT_PATH=str(tmp_home / f"hb{i}"))
             for i in range(2)]
    try:
        assert wait(lambda: set(statuses()) == {"sent"}, 60)
        bodies = [r.json()["b"] for r in receiver.wait_for(500, 5)]
        assert sorted(bodies) == sorted(ids)  # every one delivered, none twice
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            assert p.wait(20) == 0


def test_check_follows_heartbeat(migrated, blocks, fast_settings, tmp_home):
    env = {**os.environ, "APPLIANCE_DATABASE_URL": migrated, "APPLIANCE_HOME": str(tmp_home),
           "APPLIANCE_SECRET_KEY": support.TEST_SECRET_KEY}
    cli = [sys.executable, "-m", "appliance.cli", "notifier", "--check"]
    assert subprocess.run(cli, env=env, capture_output=True).returncode == 1
    proc = start(migrated, tmp_home, blocks)
    try:
        assert wait(lambda: (tmp_home / "notifier.heartbeat").exists(), 20)
        assert subprocess.run(cli, env=env, capture_output=True).returncode == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
