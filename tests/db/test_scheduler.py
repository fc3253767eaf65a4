"""The scheduler and the run services, called directly on both backends."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from db import database as dbmod
from db import deployments as deps
from db import runs, scheduler, services_runs, work_pools
from db.fields import utcnow
from db.models import FlowRun
from db.models_deployments import Worker, WorkPool


def tx(fn, *args, **kwargs):
    with dbmod.database.atomic():
        return fn(*args, **kwargs)


def make_deployment(name="d", schedules=None, **extra):
    flow, _ = tx(runs.get_or_create_flow, "f", [], {})
    data = {"name": name, "flow_id": flow["id"], "schedules": schedules or [], "tags": ["t"], "parameters": {"a": 1}}
    data.update(extra)
    row, _ = tx(deps.upsert, data)
    return row


def future_runs(dep_id):
    return list(FlowRun.select().where(FlowRun.deployment_id == dep_id).order_by(FlowRun.expected_start_time).dicts())


def test_materialises_like_prefect(migrated):
    dep = make_deployment(schedules=[{"schedule": {"interval": 600}, "parameters": {"b": 2}}])
    assert tx(scheduler.run_scheduler_pass) >= 6
    got = future_runs(dep["id"])
    now = utcnow()
    assert len(got) >= 3 and got[-1]["expected_start_time"] >= now + dt.timedelta(minutes=50)
    run = got[0]
    assert run["auto_scheduled"] and run["tags"] == ["auto-scheduled", "t"]
    assert run["parameters"] == {"a": 1, "b": 2}
    assert run["created_by"]["type"] == "SCHEDULE" and run["created_by"]["display_value"] == "IntervalSchedule"
    assert run["state_type"] == "SCHEDULED" and run["state"]["message"] == "Flow run scheduled"
    assert run["idempotency_key"].startswith(f"scheduled {dep['id']} ")
    assert run["labels"]["prefect.deployment.id"] == dep["id"]
    # A second pass (or another replica) adds nothing.
    assert tx(scheduler.schedule_deployments, [dep["id"]]) == 0
    assert tx(scheduler.run_scheduler_pass) == 0


def test_max_scheduled_runs_and_paused(migrated):
    dep = make_deployment(schedules=[{"schedule": {"interval": 60}, "max_scheduled_runs": 5}])
    tx(scheduler.run_scheduler_pass)
    assert len(future_runs(dep["id"])) == 5
    paused = make_deployment("p", schedules=[{"schedule": {"interval": 60}}], paused=True)
    tx(scheduler.run_scheduler_pass)
    assert future_runs(paused["id"]) == []


def test_update_regenerates_and_pause_clears(migrated):
    dep = make_deployment(schedules=[{"schedule": {"interval": 3600}}])
    tx(scheduler.run_scheduler_pass)
    before = {r["id"] for r in future_runs(dep["id"])}
    assert len(before) == 3
    tx(deps.update, dep["id"], {"schedules": [{"schedule": {"cron": "0 * * * *"}}]})
    assert future_runs(dep["id"]) == []
    tx(scheduler.run_scheduler_pass)
    after = future_runs(dep["id"])
    assert after and all(r["created_by"]["display_value"] == "CronSchedule" for r in after)
    tx(deps.set_paused, dep["id"], True)
    assert future_runs(dep["id"]) == []
    assert tx(scheduler.run_scheduler_pass) == 0


def test_concurrent_scheduler_passes_insert_each_run_once(migrated):
    """Several writers (replicas) scheduling the same deployments at once: the idempotency
    key index makes every run exist exactly once."""
    ids = [make_deployment(f"d{i}", schedules=[{"schedule": {"interval": 300}}])["id"] for i in range(10)]
    errors = []

    def replica():
        try:
            dbmod.write_tx  # noqa: B018 - the same entry point the services use
            with dbmod.database.atomic():
                scheduler.schedule_deployments(ids)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=replica) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    keys = [r["idempotency_key"] for i in ids for r in future_runs(i)]
    assert len(keys) == len(set(keys)) == 10 * 12
    assert not [e for e in errors if "could not serialize" not in str(e) and "locked" not in str(e)]


def test_late_runs_and_pause_expiry(migrated):
    flow, _ = tx(runs.get_or_create_flow, "f", [], {})
    past = utcnow() - dt.timedelta(minutes=5)
    late, _ = tx(runs.create_flow_run, {"flow_id": flow["id"], "state": {
        "type": "SCHEDULED", "name": "Scheduled", "state_details": {"scheduled_time": past}}})
    assert tx(services_runs.mark_late_runs) == 1
    row = runs.read_flow_run(late["id"])
    assert row["state_name"] == "Late" and row["next_scheduled_start_time"] == past.replace(microsecond=past.microsecond)
    assert tx(services_runs.mark_late_runs) == 0

    paused, _ = tx(runs.create_flow_run, {"flow_id": flow["id"], "state": {"type": "RUNNING"}})
    tx(runs.set_flow_run_state, paused["id"], {"type": "PAUSED", "state_details": {
        "pause_timeout": utcnow() - dt.timedelta(seconds=1), "pause_key": "k"}})
    assert runs.read_flow_run(paused["id"])["state_type"] == "PAUSED"
    assert tx(services_runs.fail_expired_pauses) == 1
    row = runs.read_flow_run(paused["id"])
    assert row["state_type"] == "FAILED" and "never resumed" in row["state"]["message"]


def test_cancellation_cleanup(migrated):
    flow, _ = tx(runs.get_or_create_flow, "f", [], {})
    parent, _ = tx(runs.create_flow_run, {"flow_id": flow["id"], "state": {"type": "RUNNING"}})
    task, _ = tx(runs.create_task_run, {"flow_run_id": parent["id"], "task_key": "k", "dynamic_key": "0",
                                        "state": {"type": "RUNNING"}})
    tracker, _ = tx(runs.create_task_run, {"flow_run_id": parent["id"], "task_key": "sub", "dynamic_key": "0",
                                           "state": {"type": "RUNNING"}})
    child, _ = tx(runs.create_flow_run, {"flow_id": flow["id"], "parent_task_run_id": tracker["id"],
                                         "state": {"type": "RUNNING"}})
    stuck, _ = tx(runs.create_flow_run, {"flow_id": flow["id"], "state": {"type": "RUNNING"}})
    tx(runs.set_flow_run_state, parent["id"], {"type": "CANCELLED"}, True)
    tx(runs.set_flow_run_state, stuck["id"], {"type": "CANCELLING"})
    assert tx(services_runs.clean_up_cancellations) >= 2
    assert runs.read_task_run(task["id"])["state_type"] == "CANCELLED"
    assert runs.read_flow_run(child["id"])["state_type"] == "CANCELLED"
    assert runs.read_flow_run(stuck["id"])["state_type"] == "CANCELLING"
    later = utcnow() + dt.timedelta(seconds=400)
    tx(services_runs.clean_up_cancellations, later)
    assert runs.read_flow_run(stuck["id"])["state_type"] == "CANCELLED"


def test_foreman_marks_workers_offline_and_pool_not_ready(migrated):
    tx(work_pools.create_pool, {"name": "p", "type": "process"})
    tx(work_pools.heartbeat, "p", "w", 30)
    assert WorkPool.get(WorkPool.name == "p").status == "READY"
    tx(work_pools.mark_offline_workers_and_stale, utcnow() + dt.timedelta(seconds=60))
    assert Worker.get().status == "ONLINE"
    tx(work_pools.mark_offline_workers_and_stale, utcnow() + dt.timedelta(seconds=100))
    assert Worker.get().status == "OFFLINE"
    assert WorkPool.get(WorkPool.name == "p").status == "NOT_READY"


@pytest.mark.parametrize("limit", [None, 2])
def test_pool_selection_rules(migrated, limit):
    tx(work_pools.create_pool, {"name": "p", "type": "process"})
    tx(work_pools.create_queue, "p", {"name": "high", "priority": 1})
    tx(work_pools.create_queue, "p", {"name": "capped", "concurrency_limit": 1})
    flow, _ = tx(runs.get_or_create_flow, "f", [], {})
    now = utcnow()

    def run(queue, minutes, state="SCHEDULED"):
        placed = tx(work_pools.resolve_queue, "p", queue)
        row, _ = tx(runs.create_flow_run, {"flow_id": flow["id"], **placed, "state": {
            "type": state, "state_details": {"scheduled_time": now - dt.timedelta(minutes=minutes)}}})
        return row["id"]

    d1, d2 = run("default", 5), run("default", 10)
    h1 = run("high", 1)
    run("capped", 3)
    run("capped", 2, "RUNNING")  # takes the capped queue's only slot
    got = tx(work_pools.get_scheduled_flow_runs, "p", [], now, None, limit)
    ids = [r["id"] for _, r in got]
    assert ids == [h1, d2, d1][: limit or 3]
    tx(work_pools.update_queue, work_pools.read_queue("p", "high"), {"is_paused": True})
    assert h1 not in [r["id"] for _, r in tx(work_pools.get_scheduled_flow_runs, "p", [], now, None, None)]
    with pytest.raises(runs.NotFound):
        tx(work_pools.get_scheduled_flow_runs, "p", ["nope"], now, None, None)
    tx(work_pools.update_pool, "p", {"is_paused": True})
    assert tx(work_pools.get_scheduled_flow_runs, "p", [], now, None, None) == []
