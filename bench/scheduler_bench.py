#!/usr/bin/env python3
"""scheduler_bench.py - scheduler and worker-polling benchmarks for servers speaking the
Prefect 3 REST API (the appliance or the real Prefect server, side by side).

Depends only on httpx. Every subcommand prints exactly ONE JSON line on stdout (progress
goes to stderr); a failed request or verification prints "ok": false without figures.

  scheduler  N interval deployments (every 60 s) created at once; seconds until the
             server has materialised their runs (>= 60 per deployment, one hour ahead)
  poll       a work pool holding R scheduled runs (seeded by the server's scheduler from
             R/100 deployments at 100 runs each); p50/p95 of the worker's
             POST /work_pools/{pool}/get_scheduled_flow_runs
  worker     K deployment runs on a process pool; one `prefect worker` started; runs
             started per second (first PENDING to last RUNNING) and total seconds

  python bench/scheduler_bench.py scheduler --url http://127.0.0.1:4200/api --deployments 1000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

HEADERS = {"user-agent": "prefect/3.8.8 (API 0.8.4)", "x-prefect-api-version": "0.8.4"}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Failed(Exception):
    pass


def check(resp: httpx.Response, *ok: int) -> dict | list | None:
    if resp.status_code not in ok:
        raise Failed(f"{resp.request.method} {resp.request.url.path} -> {resp.status_code}: {resp.text[:300]}")
    return resp.json() if resp.content else None


class RetryingClient(httpx.Client):
    """Retries 503/429 like the SDK (PREFECT_CLIENT_MAX_RETRIES=5, 2 s doubling)."""

    def request(self, *args, **kwargs):
        for attempt in range(6):
            resp = super().request(*args, **kwargs)
            if resp.status_code not in (429, 503) or attempt == 5:
                return resp
            time.sleep(float(resp.headers.get("retry-after") or 2 ** (attempt + 1)))
        return resp


def client(url: str) -> httpx.Client:
    return RetryingClient(base_url=url.rstrip("/"), headers=HEADERS, timeout=120)


def make_deployments(api, n: int, interval: float, pool: str | None = None, tag: str = "") -> tuple[str, list[str]]:
    flow = check(api.post("/flows/", json={"name": f"bench-{tag}-{uuid.uuid4().hex[:8]}"}), 200, 201)
    anchor = datetime.now(UTC).isoformat()
    ids = []
    for i in range(n):
        body = {"name": f"d{i:05d}", "flow_id": flow["id"],
                "schedules": [{"schedule": {"interval": interval, "anchor_date": anchor, "timezone": "UTC"},
                               "active": True}]}
        if pool:
            body["work_pool_name"] = pool
        ids.append(check(api.post("/deployments/", json=body), 200, 201)["id"])
        if i and i % 200 == 0:
            log(f"  {i} deployments")
    return flow["id"], ids


def count_runs(api, flow_id: str) -> int:
    return check(api.post("/flow_runs/count", json={"flows": {"id": {"any_": [flow_id]}},
                                                    "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}}), 200)


def wait_count(api, flow_id: str, target: int, timeout: float) -> tuple[float, int]:
    start = time.monotonic()
    seen = 0
    while time.monotonic() - start < timeout:
        seen = count_runs(api, flow_id)
        if seen >= target:
            return time.monotonic() - start, seen
        time.sleep(0.25)
    raise Failed(f"only {seen} of {target} runs after {timeout} s")


def bench_scheduler(args) -> dict:
    with client(args.url) as api:
        t0 = time.monotonic()
        flow_id, ids = make_deployments(api, args.deployments, 60.0, tag="sched")
        created = time.monotonic() - t0
        target = args.deployments * 60
        waited, seen = wait_count(api, flow_id, target, args.timeout)
        return {"deployments": args.deployments, "runs": seen, "create_seconds": round(created, 2),
                "materialise_seconds": round(waited, 2), "total_seconds": round(created + waited, 2)}


def bench_poll(args) -> dict:
    per_deployment = 100
    n_deployments = max(1, args.runs // per_deployment)
    pool = f"bench-pool-{uuid.uuid4().hex[:6]}"
    with client(args.url) as api:
        check(api.post("/work_pools/", json={"name": pool, "type": "process"}), 201)
        # 100 runs per deployment: an interval short enough that 100 fit in the first hour.
        flow_id, _ = make_deployments(api, n_deployments, 30.0, pool=pool, tag="poll")
        waited, seen = wait_count(api, flow_id, n_deployments * per_deployment, args.timeout)
        log(f"  {seen} runs scheduled after {waited:.1f} s")
        samples = []
        for _ in range(args.samples):
            before = (datetime.now(UTC) + timedelta(seconds=10)).isoformat(sep=" ")
            t = time.perf_counter()
            check(api.post(f"/work_pools/{pool}/get_scheduled_flow_runs",
                           json={"work_queue_names": [], "scheduled_before": before}), 200)
            samples.append((time.perf_counter() - t) * 1000)
        samples.sort()
        return {"scheduled_runs": seen, "samples": len(samples), "p50_ms": round(statistics.median(samples), 2),
                "p95_ms": round(samples[int(len(samples) * 0.95) - 1], 2)}


FLOW_SOURCE = '''
from prefect import flow

@flow
def bench_flow(i: int = 0):
    return i
'''


def bench_worker(args) -> dict:
    pool = f"bench-proc-{uuid.uuid4().hex[:6]}"
    home = Path(tempfile.mkdtemp(prefix="sched-bench-"))
    (home / "bench_flows.py").write_text(FLOW_SOURCE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_API_URL=args.url, PREFECT_HOME=str(home / "ph"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_WORKER_QUERY_SECONDS="1", PREFECT_WORKER_PREFETCH_SECONDS="2")
    prefect = str(Path(sys.executable).parent / "prefect")
    worker = None
    try:
        with client(args.url) as api:
            check(api.post("/work_pools/", json={"name": pool, "type": "process"}), 201)
            deploy = (f"from prefect import flow\nflow.from_source(source={str(home)!r}, "
                      f"entrypoint='bench_flows.py:bench_flow').deploy(name='bench', work_pool_name={pool!r})")
            subprocess.run([sys.executable, "-c", deploy], env=env, cwd=home, check=True, capture_output=True,
                           timeout=120)
            dep = check(api.get("/deployments/name/bench-flow/bench"), 200)
            ids = [check(api.post(f"/deployments/{dep['id']}/create_flow_run", json={"parameters": {"i": i}}), 201)["id"]
                   for i in range(args.runs)]
            worker = subprocess.Popen([prefect, "worker", "start", "--pool", pool, "--type", "process",
                                       "--limit", str(args.limit)], env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True)
            t0 = time.monotonic()
            while time.monotonic() - t0 < args.timeout:
                runs = check(api.post("/flow_runs/filter", json={"flow_runs": {"id": {"any_": ids}}}), 200)
                if all(r["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") for r in runs):
                    break
                time.sleep(0.5)
            else:
                raise Failed("worker did not finish the runs in time")
            total = time.monotonic() - t0
            if any(r["state_type"] != "COMPLETED" for r in runs):
                raise Failed("a run did not complete")
            starts = sorted(datetime.fromisoformat(r["start_time"].replace("Z", "+00:00")) for r in runs)
            span = max((starts[-1] - starts[0]).total_seconds(), 1e-6)
            return {"runs": args.runs, "total_seconds": round(total, 2),
                    "runs_started_per_second": round((len(starts) - 1) / span, 3) if len(starts) > 1 else None}
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
        shutil.rmtree(home, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("scheduler")
    s.add_argument("--deployments", type=int, default=1000)
    p = sub.add_parser("poll")
    p.add_argument("--runs", type=int, default=100_000)
    p.add_argument("--samples", type=int, default=50)
    w = sub.add_parser("worker")
    w.add_argument("--runs", type=int, default=20)
    w.add_argument("--limit", type=int, default=10)
    for sp in (s, p, w):
        sp.add_argument("--url", required=True, help="API base URL, e.g. http://127.0.0.1:4200/api")
        sp.add_argument("--label", default="")
        sp.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args(argv)
    fn = {"scheduler": bench_scheduler, "poll": bench_poll, "worker": bench_worker}[args.cmd]
    out = {"bench": args.cmd, "label": args.label, "url": args.url}
    try:
        out.update(fn(args), ok=True)
    except (Failed, httpx.HTTPError, subprocess.SubprocessError) as exc:
        out.update(ok=False, error=str(exc)[:500])
    print(json.dumps(out), flush=True)
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
