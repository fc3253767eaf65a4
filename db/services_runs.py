"""Background services of deployments and runs: scheduler, late runs, pause expirations,
cancellation cleanup, CANCELLING timeout, and the foreman (worker/pool/queue/deployment
status).

Every replica runs every service. Each pass first takes a transaction-scoped advisory
lock on PostgreSQL (``pg_try_advisory_xact_lock``): if another replica holds it the pass
does nothing this time. On SQLite the single writer (BEGIN IMMEDIATE) already serialises
passes. Beyond the lock, every write is conditional on the state it saw (state changes go
through the orchestration rules, scheduled runs through a unique idempotency key), so
even overlapping passes cannot do anything twice.
"""

from __future__ import annotations

import datetime as dt
import zlib

from appliance import services
from db import database as dbmod
from db import runs, scheduler, work_pools
from db.fields import utcnow
from db.models import FlowRun, TaskRun
from db.states import TERMINAL, new_state, parse_datetime

LATE_AFTER = dt.timedelta(seconds=15)
CANCELLING_TIMEOUT = dt.timedelta(seconds=300)
BATCH = 200


def _exclusive(name: str) -> bool:
    """True if this replica may do the pass (always on SQLite)."""
    if not dbmod.is_postgres():
        return True
    key = zlib.crc32(f"appliance.service.{name}".encode())
    return bool(dbmod.database.execute_sql("SELECT pg_try_advisory_xact_lock(%s)", (key,)).fetchone()[0])


@services.register("scheduler", 2)
def scheduler_pass() -> int:
    if not _exclusive("scheduler"):
        return 0
    return scheduler.run_scheduler_pass()


@services.register("late-runs", 5)
def mark_late_runs(now: dt.datetime | None = None) -> int:
    if not _exclusive("late-runs"):
        return 0
    now = now or utcnow()
    rows = (
        FlowRun.select(FlowRun.id, FlowRun.state)
        .where(
            (FlowRun.state_type == "SCHEDULED")
            & (FlowRun.state_name == "Scheduled")
            & (FlowRun.next_scheduled_start_time < now - LATE_AFTER)
        )
        .limit(BATCH)
        .dicts()
    )
    marked = 0
    for row in rows:
        scheduled = (row["state"] or {}).get("state_details", {}).get("scheduled_time")
        proposal = {"type": "SCHEDULED", "name": "Late", "state_details": {"scheduled_time": scheduled}}
        written, _ = runs.set_flow_run_state(row["id"], proposal)
        marked += int(written)
    return marked


@services.register("pause-expirations", 5)
def fail_expired_pauses(now: dt.datetime | None = None) -> int:
    if not _exclusive("pause-expirations"):
        return 0
    now = now or utcnow()
    failed = 0
    for row in FlowRun.select(FlowRun.id, FlowRun.state).where(FlowRun.state_type == "PAUSED").limit(BATCH).dicts():
        details = (row["state"] or {}).get("state_details") or {}
        timeout = parse_datetime(details.get("pause_timeout"))
        if timeout is not None and timeout < now:
            written, _ = runs.set_flow_run_state(
                row["id"], {"type": "FAILED", "message": "The flow was paused and never resumed."}, force=True
            )
            failed += int(written)
    return failed


@services.register("cancellation-cleanup", 10)
def clean_up_cancellations(now: dt.datetime | None = None) -> int:
    """Children of CANCELLED runs: task runs -> CANCELLED; subflow runs -> CANCELLING (with a
    deployment, so their own worker stops them) or CANCELLED. CANCELLING past the timeout
    -> CANCELLED."""
    if not _exclusive("cancellation-cleanup"):
        return 0
    now = now or utcnow()
    done = 0
    recent = now - dt.timedelta(hours=1)
    cancelled = FlowRun.select(FlowRun.id).where(
        (FlowRun.state_type == "CANCELLED") & (FlowRun.state_timestamp > recent)
    )
    tasks = (
        TaskRun.select(TaskRun.id)
        .where(TaskRun.flow_run_id.in_(cancelled) & TaskRun.state_type.not_in(TERMINAL))
        .limit(BATCH)
        .tuples()
    )
    for (task_id,) in tasks:
        written, _ = runs.set_task_run_state(
            task_id, {"type": "CANCELLED", "message": "The parent flow run was cancelled."}, force=True
        )
        done += int(written)
    parent_tasks = TaskRun.select(TaskRun.id).where(TaskRun.flow_run_id.in_(cancelled))
    subflows = (
        FlowRun.select(FlowRun.id, FlowRun.deployment_id, FlowRun.state_type)
        .where(FlowRun.parent_task_run_id.in_(parent_tasks) & FlowRun.state_type.not_in([*TERMINAL, "CANCELLING"]))
        .limit(BATCH)
        .dicts()
    )
    for sub in subflows:
        target = "CANCELLING" if sub["deployment_id"] and sub["state_type"] != "PAUSED" else "CANCELLED"
        written, _ = runs.set_flow_run_state(
            sub["id"], {"type": target, "message": "The parent flow run was cancelled."}, force=True
        )
        done += int(written)
    stuck = (
        FlowRun.select(FlowRun.id)
        .where((FlowRun.state_type == "CANCELLING") & (FlowRun.state_timestamp < now - CANCELLING_TIMEOUT))
        .limit(BATCH)
        .tuples()
    )
    for (run_id,) in stuck:
        written, _ = runs.set_flow_run_state(
            run_id,
            {"type": "CANCELLED", "message": "Flow run cancellation timed out; marked this flow run as Cancelled."},
            force=True,
        )
        done += int(written)
    return done


@services.register("foreman", 15)
def foreman() -> dict:
    if not _exclusive("foreman"):
        return {"changed": 0}
    return work_pools.mark_offline_workers_and_stale()


__all__ = ["new_state"]
