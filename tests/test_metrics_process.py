"""Metrics and logs of a real `appliance serve`: two gunicorn workers whose samples one
scrape merges (checked against each worker's own file), a dead worker's live gauges
dropped by the master, and JSON access lines carrying the request id, never a secret."""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests import support

ROUTE = "/api/flows/filter"


def scrape(url: str, **kwargs) -> dict:
    result = httpx.get(f"{url}/metrics", timeout=10, **kwargs)
    assert result.status_code == 200, result.text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(result.text)
        for s in family.samples
    }


def requests_of(samples: dict) -> float:
    key = ("appliance_http_requests_total", frozenset({"method": "POST", "route": ROUTE, "status": "200"}.items()))
    return samples.get(key, 0.0)


def per_worker_counts(metrics_dir: Path) -> dict[int, float]:
    """Each worker's own count of the route, from its own file."""
    out = {}
    for path in metrics_dir.glob("counter_*.db"):
        pid = int(path.stem.split("_")[1])
        families = MultiProcessCollector.merge([str(path)])
        out[pid] = sum(s.value for f in families for s in f.samples
                       if s.name == "appliance_http_requests_total" and s.labels.get("route") == ROUTE)
    return out


def test_two_workers_one_scrape_sums_both(tmp_home):
    metrics_dir = tmp_home / "metrics"
    server = support.LiveServer(f"sqlite:///{tmp_home / 'm.db'}", tmp_home, workers=2,
                                APPLIANCE_METRICS_MULTIPROC_DIR=metrics_dir).start()
    try:
        def call(_):
            # A connection per request: the kernel hands them to both workers.
            with httpx.Client(timeout=10) as http:
                assert http.post(f"{server.url}/flows/filter", json={}).status_code == 200

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(call, range(60)))
        by_worker = per_worker_counts(metrics_dir)
        assert len(by_worker) == 2 and all(n > 0 for n in by_worker.values()), by_worker
        assert sum(by_worker.values()) == 60
        for _ in range(4):  # whichever worker answers the scrape, it reports both
            assert requests_of(scrape(server.url)) == 60

        # A killed worker's live gauges go; its counts stay (counters never go down).
        victim = next(iter(by_worker))
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while (metrics_dir / f"gauge_livesum_{victim}.db").exists():
            assert time.monotonic() < deadline, sorted(p.name for p in metrics_dir.iterdir())
            time.sleep(0.1)
        assert (metrics_dir / f"counter_{victim}.db").exists()

        def threads(samples):
            return {dict(labels)["pool"]: v for (name, labels), v in samples.items()
                    if name == "appliance_db_pool_threads"}

        # The survivor's pools alone, then with the replacement worker's: never the dead one's.
        samples = scrape(server.url)
        assert threads(samples) in ({"read": 8, "write": 1}, {"read": 16, "write": 2})
        while threads(samples) != {"read": 16, "write": 2}:
            assert time.monotonic() < deadline, threads(samples)
            time.sleep(0.1)
            samples = scrape(server.url)
        assert requests_of(samples) == 60
    finally:
        assert server.stop() == 0
    errors = [line for line in server.errors_in_log() if f"Worker (pid:{victim}) was sent SIGKILL" not in line]
    assert errors == [], server.log()


def test_json_logs_carry_the_request_id_and_never_the_password(tmp_home):
    name, url = support.create_pg_database()
    secret = "Sup3r-Secret-Pw"
    # Trust authentication accepts any password: the URL carries one for the log to hide.
    url = url.replace("postgres@", f"postgres:{secret}@", 1)
    server = support.LiveServer(url, tmp_home, APPLIANCE_LOG_FORMAT="json", APPLIANCE_ACCESS_LOG="true")
    try:
        server.start()
        answer = httpx.post(f"{server.url}/flows/filter", json={}, headers={"X-Request-ID": "trace-42"})
        assert answer.headers["x-request-id"] == "trace-42"
        httpx.get(f"{server.url}/flows/filter?token={secret}")
        generated = httpx.get(f"{server.url}/health").headers["x-request-id"]
    finally:
        code = server.stop()
        support.drop_pg_database(name)
    assert code == 0
    text = server.log()
    assert secret not in text
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert {"ts", "level", "logger", "message"} <= set(lines[0])
    access = [line for line in lines if line["logger"] == "appliance.access"]
    traced = [line for line in access if line.get("request_id") == "trace-42"]
    assert len(traced) == 1
    assert traced[0]["route"] == ROUTE and traced[0]["method"] == "POST" and traced[0]["status"] == 200
    assert traced[0]["duration_ms"] >= 0
    assert any(line.get("request_id") == generated and line["route"] == "/api/health" for line in access)
    assert all("token" not in line["path"] for line in access)  # query strings are not logged
