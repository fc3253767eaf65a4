"""The notifier process's own /metrics (APPLIANCE_NOTIFIER_METRICS_PORT): deliveries by
channel and outcome, parsed by prometheus_client's parser."""

from __future__ import annotations

import signal
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests import support
from tests.notifier.helpers import failing_run, new_block, policy
from tests.notifier.test_processes import start, statuses, wait


def deliveries(port: int) -> dict:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (s.labels["channel"], s.labels["outcome"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "appliance_notifications_deliveries"
        for s in family.samples
        if s.name.endswith("_total")
    }


def test_deliveries_counted_by_channel_and_outcome(migrated, blocks, fast_settings, receiver, tmp_home):
    receiver.script = [(500, {}, b"down")]  # the first attempt fails and is retried, then sent
    block = new_block(blocks, "custom-webhook", {"name": "x", "url": receiver.url, "json_data": {"b": "{{body}}"}})
    policy(block)
    failing_run()
    port = support.free_port()
    proc = start(migrated, tmp_home, blocks, APPLIANCE_NOTIFIER_METRICS_PORT=str(port))
    try:
        assert wait(lambda: statuses() == ["sent"], 30), proc.stdout.read1().decode() if proc.poll() else ""
        deadline = time.monotonic() + 10
        while deliveries(port) != {("custom-webhook", "retry"): 1, ("custom-webhook", "sent"): 1}:
            assert time.monotonic() < deadline, deliveries(port)
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
