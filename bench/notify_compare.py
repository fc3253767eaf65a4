#!/usr/bin/env python3
"""notify_compare.py - notification latency and throughput of any Prefect 3 server, the
same way on each: a custom-webhook block pointing at a local receiver, an automation
(reactive event trigger on ``prefect.flow-run.Failed`` for one flow, action
``send-notification`` with the run id as body), N flow runs moved to Failed through the
REST API from a few threads. Latency = receiver arrival - the Failed state's timestamp.

Against a running server (the appliance needs its `appliance notifier` running too):

    python bench/notify_compare.py --url http://127.0.0.1:4200/api --notifications 1000

Prints exactly ONE JSON line: delivered, lost, duplicates, latency p50/p99 (ms),
deliveries_per_s (first Failed to last arrival), and how long it waited.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

HEADERS = {"user-agent": "prefect/3.8.8 (API 0.8.4)", "x-prefect-api-version": "0.8.4"}


def log(*args):
    print(*args, file=sys.stderr, flush=True)


class Receiver:
    """A threaded HTTP receiver recording the arrival time of each run id it is sent."""

    def __init__(self):
        self.arrivals: dict[str, list[float]] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                now = time.time()
                try:
                    run_id = json.loads(body)["b"].strip()
                except (ValueError, KeyError, TypeError, AttributeError):
                    run_id = "?"
                with receiver.lock:
                    receiver.arrivals.setdefault(run_id, []).append(now)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def custom_webhook_block(client: httpx.Client, url: str) -> str:
    block_type = client.get("/block_types/slug/custom-webhook")
    block_type.raise_for_status()
    type_id = block_type.json()["id"]
    schemas = client.post("/block_schemas/filter", json={"block_schemas": {"block_type_id": {"any_": [type_id]}}})
    schemas.raise_for_status()
    made = client.post(
        "/block_documents/",
        json={
            "name": f"bench-{uuid.uuid4().hex[:8]}",
            "block_type_id": type_id,
            "block_schema_id": schemas.json()[0]["id"],
            "data": {"name": "bench", "url": url, "method": "POST", "json_data": {"b": "{{body}}"}},
        },
    )
    made.raise_for_status()
    return made.json()["id"]


def failed_automation(client: httpx.Client, flow_id: str, block_id: str) -> str:
    made = client.post(
        "/automations/",
        json={
            "name": f"bench-notify-{uuid.uuid4().hex[:6]}",
            "enabled": True,
            "trigger": {
                "type": "event",
                "posture": "Reactive",
                "match": {"prefect.resource.id": "prefect.flow-run.*"},
                "match_related": {"prefect.resource.id": f"prefect.flow.{flow_id}"},
                "expect": ["prefect.flow-run.Failed"],
                "for_each": ["prefect.resource.id"],
                "threshold": 1,
                "within": 0,
            },
            "actions": [
                {
                    "type": "send-notification",
                    "block_document_id": block_id,
                    "subject": "Flow run failed",
                    "body": "{{ flow_run.id }}",
                }
            ],
        },
    )
    made.raise_for_status()
    return made.json()["id"]


def post(client: httpx.Client, path: str, body: dict, retries: dict) -> httpx.Response:
    """POST with the SDK's retry rule (408/429/502/503: up to 5 retries, Retry-After or 2 s, 4 s...)."""
    for attempt in range(6):
        resp = client.post(path, json=body)
        if resp.status_code not in (408, 429, 502, 503) or attempt == 5:
            return resp
        retries[resp.status_code] = retries.get(resp.status_code, 0) + 1
        time.sleep(float(resp.headers.get("Retry-After") or 2 ** (attempt + 1)))
    return resp


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def run(args) -> dict:
    receiver = Receiver()
    result: dict = {"bench": "notify", "label": args.label, "url": args.url, "notifications": args.notifications}
    with httpx.Client(base_url=args.url, headers=HEADERS, timeout=60) as client:
        flow = client.post("/flows/", json={"name": f"notify-bench-{uuid.uuid4().hex[:6]}"}).json()
        block_id = custom_webhook_block(client, receiver.url)
        automation_id = failed_automation(client, flow["id"], block_id)
        time.sleep(args.settle)  # Prefect loads automations into its triggers service periodically
        retries: dict[int, int] = {}
        run_ids = []
        for _ in range(args.notifications):
            made = post(client, "/flow_runs/", {"flow_id": flow["id"], "state": {"type": "RUNNING"}}, retries)
            made.raise_for_status()
            run_ids.append(made.json()["id"])
        changed: dict[str, float] = {}
        errors: list[str] = []

        def fail(run_id: str) -> None:
            body = {"state": {"type": "FAILED", "name": "Failed"}}
            resp = post(client, f"/flow_runs/{run_id}/set_state", body, retries)
            if resp.status_code not in (200, 201):
                errors.append(f"{resp.status_code} {resp.text[:200]}")
                return
            stamp = resp.json()["state"]["timestamp"]
            changed[run_id] = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()

        log(f"{args.label}: failing {len(run_ids)} runs")
        start = time.time()
        with ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(fail, run_ids))
        deadline = time.time() + args.timeout
        while time.time() < deadline and len(receiver.arrivals) < len(changed):
            time.sleep(0.05)
        time.sleep(args.linger)  # late duplicates
        waited = time.time() - start
        client.delete(f"/automations/{automation_id}")
    arrivals = dict(receiver.arrivals)
    latencies = sorted(arrivals[r][0] - changed[r] for r in changed if r in arrivals)
    last = max((v[0] for v in arrivals.values()), default=start)
    result.update(
        ok=not errors and len(latencies) == len(run_ids),
        errors=len(errors),
        error_samples=errors[:3],
        delivered=len(latencies),
        lost=len(run_ids) - len(latencies),
        duplicates=sum(len(v) - 1 for v in arrivals.values()),
        latency_p50_ms=round(statistics.median(latencies) * 1000, 1) if latencies else None,
        latency_p99_ms=round(percentile(latencies, 0.99) * 1000, 1) if latencies else None,
        deliveries_per_s=round(len(latencies) / max(last - start, 1e-6), 1) if latencies else 0.0,
        waited_s=round(waited, 1),
        retries=retries,
        date_utc=datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the server's API base URL, ending in /api")
    parser.add_argument("--label", default="")
    parser.add_argument("--notifications", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=300, help="how long to wait for deliveries")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds between creating the automation and the load")
    parser.add_argument("--linger", type=float, default=1.0, help="seconds to wait for duplicates after the last arrival")
    result = run(parser.parse_args())
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
