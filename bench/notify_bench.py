#!/usr/bin/env python3
"""notify_bench.py - notification delivery benchmark: state change -> receiver latency and
deliveries per second, for N flow runs entering Failed with a matching policy.

Starts a temp `appliance serve` and `appliance notifier` (or uses --database-url), a local
threaded HTTP receiver, creates a custom-webhook block (through /block_documents when the
blocks API is present, else through the test harness' block file), a policy on Failed,
N flow runs, then moves them all to Failed through the REST API from a few threads.
Latency = receiver arrival - the Failed state's timestamp (from the API response).
Prints exactly ONE JSON line on stdout.

  python bench/notify_bench.py --notifications 1000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
HEADERS = {"user-agent": "prefect/3.8.8 (API 0.8.4)", "x-prefect-api-version": "0.8.4"}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Receiver:
    def __init__(self):
        self.arrivals: dict[str, list[float]] = {}
        self.lock = threading.Lock()
        rec = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                now = time.time()
                try:
                    run_id = json.loads(body)["b"].strip()
                except (ValueError, KeyError):
                    run_id = "?"
                with rec.lock:
                    rec.arrivals.setdefault(run_id, []).append(now)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_block(client: httpx.Client, url: str) -> str | None:
    """A custom-webhook block document via the blocks API; None if the API is absent."""
    bt = client.get("/block_types/slug/custom-webhook")
    if bt.status_code != 200:
        return None
    schemas = client.post("/block_schemas/filter", json={"block_schemas": {"block_type_id": {"any_": [bt.json()["id"]]}}}).json()
    resp = client.post("/block_documents/", json={
        "name": f"bench-{uuid.uuid4().hex[:8]}", "block_type_id": bt.json()["id"], "block_schema_id": schemas[0]["id"],
        "data": {"name": "bench", "url": url, "json_data": {"b": "{{body}}"}, "method": "POST"},
    })
    resp.raise_for_status()
    return resp.json()["id"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--notifications", type=int, default=1000)
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--timeout", type=float, default=120)
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="notify-bench-"))
    db_url = args.database_url or f"sqlite:///{home / 'appliance.db'}"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env.update(APPLIANCE_HOME=str(home), APPLIANCE_DATABASE_URL=db_url, APPLIANCE_LOG_LEVEL="warning",
               APPLIANCE_WORKERS="2")
    appliance = str(Path(sys.executable).parent / "appliance")
    server = subprocess.Popen([appliance, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    procs = [server]
    receiver = Receiver()
    result: dict = {"bench": "notify", "server": "appliance", "notifications": args.notifications}
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}/api", headers=HEADERS, timeout=30)
        for _ in range(300):
            try:
                if client.get("/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        block_id = make_block(client, receiver.url)
        cmd = [appliance, "notifier"]
        if block_id is None:  # blocks API not in this build: the test harness supplies the block
            block_id = str(uuid.uuid4())
            blocks_file = home / "blocks.json"
            blocks_file.write_text(json.dumps({block_id: ["custom-webhook", {"name": "bench", "url": receiver.url,
                                                                            "json_data": {"b": "{{body}}"}}]}))
            env["APPLIANCE_TEST_BLOCKS_FILE"] = str(blocks_file)
            cmd = [sys.executable, str(ROOT / "tests/notifier/scripts/run_notifier.py")]
        procs.append(subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        client.post("/flow_run_notification_policies/", json={
            "state_names": ["Failed"], "block_document_id": block_id, "message_template": "{flow_run_id}"}).raise_for_status()
        flow = client.post("/flows/", json={"name": "notify-bench"}).json()
        run_ids = [client.post("/flow_runs/", json={"flow_id": flow["id"], "state": {"type": "RUNNING"}}).json()["id"]
                   for _ in range(args.notifications)]
        changed: dict[str, float] = {}

        def fail(run_id):
            resp = client.post(f"/flow_runs/{run_id}/set_state", json={"state": {"type": "FAILED", "name": "Failed"}})
            ts = resp.json()["state"]["timestamp"]
            changed[run_id] = datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()

        log(f"failing {len(run_ids)} runs")
        start = time.time()
        with ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(fail, run_ids))
        deadline = time.time() + args.timeout
        while time.time() < deadline and len(receiver.arrivals) < len(run_ids):
            time.sleep(0.05)
        arrivals = receiver.arrivals
        lat = sorted(arrivals[r][0] - changed[r] for r in run_ids if r in arrivals)
        last = max((v[0] for v in arrivals.values()), default=start)
        result.update(
            ok=len(lat) == len(run_ids),
            delivered=len(lat),
            lost=len(run_ids) - len(lat),
            duplicates=sum(len(v) - 1 for v in arrivals.values()),
            latency_p50_ms=round(statistics.median(lat) * 1000, 1) if lat else None,
            latency_p99_ms=round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 1) if lat else None,
            deliveries_per_s=round(len(lat) / max(last - start, 1e-6), 1),
        )
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
    print(json.dumps(result))
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
