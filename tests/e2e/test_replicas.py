"""Exactly once across replicas: three `appliance serve` processes on one PostgreSQL.

200 deployments with 1-minute interval schedules are created through replica 1; every
replica runs the scheduler and the late-runs service. One replica is SIGKILLed while the
first materialisation is under way. After a window long enough for the scheduler to top
up (the 1-hour horizon moves on) every expected run exists exactly once, none is missing,
and no run was marked Late twice.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
from collections import defaultdict

import httpx
import pytest

from tests import support

DEPLOYMENTS = 200
WINDOW_SECONDS = 75


def _parse(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    dbname, url = support.create_pg_database("appliance_replicas")
    servers = []
    try:
        for i in range(3):
            servers.append(support.LiveServer(url, tmp_path_factory.mktemp(f"replica{i}"), workers=1).start(60))
        yield dbname, servers
    finally:
        for server in servers:
            server.stop()
        support.drop_pg_database(dbname)


def _runs(dbname):
    return support.pg_execute(
        "SELECT deployment_id, expected_start_time, idempotency_key, id FROM flow_run "
        "WHERE auto_scheduled ORDER BY deployment_id, expected_start_time",
        database=dbname,
    )


def test_scheduled_runs_exist_exactly_once_across_replicas(replicas):
    dbname, servers = replicas
    with httpx.Client(base_url=servers[0].url, timeout=60) as api:
        flow = api.post("/flows/", json={"name": "replicated"}).json()
        anchor = dt.datetime.now(dt.UTC).replace(microsecond=0)
        started = time.monotonic()
        dep_ids = []
        for i in range(DEPLOYMENTS):
            resp = api.post("/deployments/", json={
                "name": f"dep-{i:03d}", "flow_id": flow["id"],
                "schedules": [{"schedule": {"interval": 60, "anchor_date": anchor.isoformat()}}]})
            assert resp.status_code == 201, resp.text
            dep_ids.append(resp.json()["id"])
            if i == DEPLOYMENTS // 2:
                # Kill replica 3 mid-run: schedulers are already materialising the first half.
                os.killpg(servers[2].proc.pid, signal.SIGKILL)
                servers[2].proc.wait()
    created_at = dt.datetime.now(dt.UTC)
    time.sleep(max(0.0, WINDOW_SECONDS - (time.monotonic() - started)))
    # Let any in-flight pass finish, then read.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = _runs(dbname)
        by_dep = defaultdict(list)
        for dep_id, when, key, _ in rows:
            by_dep[dep_id].append((when, key))
        horizon = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(minutes=59)
        if len(by_dep) == DEPLOYMENTS and all(max(w for w, _ in v) >= horizon for v in by_dep.values()):
            break
        time.sleep(1)
    assert set(by_dep) == set(dep_ids), f"{len(by_dep)} of {DEPLOYMENTS} deployments have runs"
    keys = [key for _, _, key, _ in rows]
    assert len(keys) == len(set(keys)), "an idempotency key exists twice"
    first_due = anchor.replace(tzinfo=None)
    for dep_id, items in by_dep.items():
        times = [w for w, _ in items]
        assert len(times) == len(set(times)), f"{dep_id}: a date exists twice"
        steps = {(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)}
        assert steps == {60.0}, f"{dep_id}: a run is missing ({sorted(steps)[:5]})"
        # The first run is the first grid date at or after the deployment's first scheduling pass.
        assert first_due <= times[0] <= created_at.replace(tzinfo=None) + dt.timedelta(seconds=60)
        # The horizon moved during the window: the scheduler topped up beyond the first hour.
        assert times[-1] >= first_due + dt.timedelta(minutes=60, seconds=WINDOW_SECONDS - 20)
    late_twice = support.pg_execute(
        "SELECT flow_run_id, count(*) FROM flow_run_state WHERE name = 'Late' "
        "GROUP BY flow_run_id HAVING count(*) > 1",
        database=dbname,
    )
    assert late_twice == []
    for server in servers[:2]:
        log = server.log()
        where = log.find("Traceback")
        assert server.proc.poll() is None and not server.errors_in_log(), log[max(where, 0):][:4000]


def test_two_pollers_on_two_replicas_take_each_of_300_runs_once(replicas):
    """The worker's PENDING handshake under contention: two pollers on different replicas
    race for the same 300 runs (as two process workers would); each run is taken once."""
    import threading

    _, servers = replicas
    with httpx.Client(base_url=servers[0].url, timeout=60) as api:
        api.post("/work_pools/", json={"name": "race-pool", "type": "process"})
        flow = api.post("/flows/", json={"name": "raced"}).json()
        dep = api.post("/deployments/", json={"name": "race", "flow_id": flow["id"],
                                              "work_pool_name": "race-pool"}).json()
        bulk = [{"state": {"type": "SCHEDULED"}} for _ in range(100)]
        ids = set()
        for _ in range(3):
            resp = api.post(f"/deployments/{dep['id']}/create_flow_run/bulk", json=bulk)
            assert resp.status_code == 201, resp.text
            ids |= {r["id"] for r in resp.json()}
    assert len(ids) == 300
    taken: dict[str, list[str]] = defaultdict(list)
    lock = threading.Lock()

    def poller(name: str, url: str):
        with httpx.Client(base_url=url, timeout=60) as api:
            idle = 0
            while idle < 3:
                got = api.post("/work_pools/race-pool/get_scheduled_flow_runs",
                               json={"work_queue_names": [], "limit": 25,
                                     "scheduled_before": (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=10)).isoformat()})
                assert got.status_code == 200, got.text
                runs = got.json()
                idle = idle + 1 if not runs else 0
                for item in runs:
                    run_id = item["flow_run"]["id"]
                    result = api.post(f"/flow_runs/{run_id}/set_state",
                                      json={"state": {"type": "PENDING", "name": "Pending"}}).json()
                    if result["status"] == "ACCEPT":
                        with lock:
                            taken[run_id].append(name)

    threads = [threading.Thread(target=poller, args=(n, s.url)) for n, s in (("w1", servers[0]), ("w2", servers[1]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert set(taken) == ids, f"{len(ids - set(taken))} runs never taken"
    assert all(len(v) == 1 for v in taken.values()), "a run was taken twice"
    assert {w for v in taken.values() for w in v} == {"w1", "w2"}
