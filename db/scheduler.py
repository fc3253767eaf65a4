"""The scheduler: materialises auto-scheduled runs of deployments' active schedules.

Prefect's rules: a non-paused deployment with active schedules gets runs up to at
least ``MIN_RUNS`` future runs and at least ``MIN_SCHEDULED_TIME`` ahead, at most
``MAX_RUNS`` per schedule (or the schedule's ``max_scheduled_runs``) and never beyond
``MAX_SCHEDULED_TIME``. Each run's idempotency key is
``"scheduled <deployment> <schedule> <date>"``, unique per flow in the database — so
several replicas running the scheduler at once can only ever insert each run once
(the loser's insert hits the unique index and is skipped).
"""

from __future__ import annotations

import datetime as dt
import time

import peewee as pw

from appliance import metrics
from db import database as dbmod
from db import runs
from db import schedules as sched
from db.fields import new_id, utcnow
from db.models import FlowRun, FlowRunState
from db.models_deployments import Deployment, DeploymentSchedule, WorkPool, WorkQueue
from db.names import generate_name
from db.states import iso, new_state

MIN_RUNS = 3
MAX_RUNS = 100
MIN_SCHEDULED_TIME = dt.timedelta(hours=1)
MAX_SCHEDULED_TIME = dt.timedelta(days=100)
BATCH = 500


def idempotency_key(deployment_id: str, schedule_id: str, when: dt.datetime) -> str:
    return f"scheduled {deployment_id} {schedule_id} {iso(when).replace('Z', '+00:00')}"


def deployments_needing_runs(now: dt.datetime, limit: int = BATCH, after: str = "") -> list[str]:
    """Non-paused deployments with an active schedule and fewer than MIN_RUNS future runs
    or none beyond now + MIN_SCHEDULED_TIME."""
    future = (
        FlowRun.select(
            FlowRun.deployment_id,
            pw.fn.COUNT(FlowRun.id).alias("n"),
            pw.fn.MAX(FlowRun.next_scheduled_start_time).alias("last"),
        )
        .where(
            (FlowRun.auto_scheduled == True)  # noqa: E712
            & (FlowRun.state_type == "SCHEDULED")
            & (FlowRun.next_scheduled_start_time >= now)
            & FlowRun.deployment_id.is_null(False)
        )
        .group_by(FlowRun.deployment_id)
        .alias("future")
    )
    active = DeploymentSchedule.select(DeploymentSchedule.deployment_id).where(DeploymentSchedule.active == True)  # noqa: E712
    query = (
        Deployment.select(Deployment.id)
        .join(future, pw.JOIN.LEFT_OUTER, on=(future.c.deployment_id == Deployment.id))
        .where(
            (Deployment.paused == False)  # noqa: E712
            & (Deployment.id > after)
            & Deployment.id.in_(active)
            & (
                future.c.n.is_null()
                | (future.c.n < MIN_RUNS)
                # A deployment already holding MAX_RUNS future runs cannot get more this pass
                # (the per-schedule cap), however short of the horizon it is.
                | ((future.c.last < now + MIN_SCHEDULED_TIME) & (future.c.n < MAX_RUNS))
            )
        )
        .order_by(Deployment.id)
        .limit(limit)
    )
    return [r for (r,) in query.tuples()]


def _due_dates(schedule: dict, now: dt.datetime) -> list[dt.datetime]:
    """Dates from now: stop once there are MIN_RUNS and MIN_SCHEDULED_TIME is covered."""
    cap = min(schedule["max_scheduled_runs"] or MAX_RUNS, MAX_RUNS)
    candidates = sched.dates(schedule["schedule"], now, now + MAX_SCHEDULED_TIME, cap)
    out = []
    for when in candidates:
        if len(out) >= MIN_RUNS and when > now + MIN_SCHEDULED_TIME:
            break
        out.append(when)
    return out


def runs_for_deployment(dep: dict, schedules: list[dict], placement: dict, now: dt.datetime) -> list[dict]:
    """The run rows (and their first state) the scheduler wants for one deployment."""
    rows = []
    for schedule in schedules:
        if not schedule["active"]:
            continue
        display = schedule["slug"] or sched.display_name(schedule["schedule"])
        parameters = {**(dep["parameters"] or {}), **(schedule["parameters"] or {})}
        for when in _due_dates(schedule, now):
            rows.append(
                {
                    "flow_id": dep["flow_id"],
                    "deployment_id": dep["id"],
                    "deployment_version": dep["version"],
                    "parameters": parameters,
                    "tags": list(dict.fromkeys(["auto-scheduled", *(dep["tags"] or [])])),
                    "labels": dict(dep["labels"] or {}),
                    "idempotency_key": idempotency_key(dep["id"], schedule["id"], when),
                    "auto_scheduled": True,
                    "created_by": {"id": schedule["id"], "type": "SCHEDULE", "display_value": display},
                    "state": {
                        "type": "SCHEDULED",
                        "name": "Scheduled",
                        "message": "Flow run scheduled",
                        "state_details": {"scheduled_time": when},
                    },
                    "job_variables": dep["job_variables"] or {},
                    **placement,
                }
            )
    return rows


def _placement(dep: dict) -> dict:
    out = {"work_queue_id": dep["work_queue_id"], "work_queue_name": dep["work_queue_name"],
           "work_pool_id": None, "work_pool_name": None}
    if dep["work_queue_id"]:
        row = (
            WorkQueue.select(WorkQueue.work_pool_id, WorkPool.name)
            .join(WorkPool, on=(WorkPool.id == WorkQueue.work_pool_id))
            .where(WorkQueue.id == dep["work_queue_id"])
            .tuples()
            .first()
        )
        if row:
            out["work_pool_id"], out["work_pool_name"] = row
    return out


def schedule_deployments(deployment_ids: list[str], now: dt.datetime | None = None) -> int:
    """Insert the missing auto-scheduled runs of these deployments; returns how many were new."""
    now = now or utcnow()
    if not deployment_ids:
        return 0
    deps = {d["id"]: d for d in Deployment.select().where(Deployment.id.in_(deployment_ids)).dicts()}
    by_dep: dict[str, list] = {}
    for s in DeploymentSchedule.select().where(DeploymentSchedule.deployment_id.in_(list(deps))).dicts():
        by_dep.setdefault(s["deployment_id"], []).append(s)
    wanted = []
    for dep_id, dep in deps.items():
        if dep["paused"]:
            continue
        wanted.extend(runs_for_deployment(dep, by_dep.get(dep_id, []), _placement(dep), now))
    return insert_scheduled_runs(wanted)


def insert_scheduled_runs(wanted: list[dict]) -> int:
    """Bulk-insert runs whose (flow, idempotency key) is not taken yet, with their first state.

    ``INSERT ... ON CONFLICT DO NOTHING`` on the unique (flow_id, idempotency_key) index:
    a replica inserting the same run concurrently waits for the other's commit and then
    skips it, so each run exists exactly once. Only the rows this call inserted (found by
    their fresh ids) get a state-history row.
    """
    created = 0
    now = utcnow()
    for start in range(0, len(wanted), BATCH):
        batch = [_run_row(data, now) for data in wanted[start:start + BATCH]]
        if not batch:
            continue
        states = {row["id"]: row.pop("__state") for row in batch}
        _bulk_insert(FlowRun, batch, ignore_conflicts=True)
        mine = [r for (r,) in FlowRun.select(FlowRun.id).where(FlowRun.id.in_(list(states))).tuples()]
        if mine:
            _bulk_insert(FlowRunState, [_state_row(run_id, states[run_id], now) for run_id in mine])
        created += len(mine)
    return created


def _bulk_insert(model, rows: list[dict], ignore_conflicts: bool = False) -> None:
    """One multi-row INSERT through the driver (Peewee's per-value SQL building costs ~10x
    the database's own time for thousands of rows). Values go through each field's
    ``db_value`` so they are stored exactly as Peewee would store them."""
    fields = [model._meta.fields[name] for name in rows[0]]
    columns = ", ".join(f'"{f.column_name}"' for f in fields)
    table = model._meta.table_name
    values = [tuple(f.db_value(row[f.name]) for f in fields) for row in rows]
    db = dbmod.database.obj
    if dbmod.is_postgres():
        from psycopg2.extras import execute_values

        conflict = " ON CONFLICT DO NOTHING" if ignore_conflicts else ""
        execute_values(db.cursor(), f'INSERT INTO "{table}" ({columns}) VALUES %s{conflict}', values, page_size=500)
    else:
        verb = "INSERT OR IGNORE" if ignore_conflicts else "INSERT"
        marks = ", ".join("?" for _ in fields)
        db.cursor().executemany(f'{verb} INTO "{table}" ({columns}) VALUES ({marks})', values)


def _run_row(data: dict, now: dt.datetime) -> dict:
    run_id = new_id()
    when = data["state"]["state_details"]["scheduled_time"]
    state = new_state(
        "SCHEDULED", "Scheduled", message=data["state"]["message"],
        details={"scheduled_time": when, "flow_run_id": run_id}, timestamp=now,
    )
    frozen = runs.freeze_state(state)
    policy = dict(runs.FLOW_RUN_POLICY_DEFAULTS)
    labels = dict(data["labels"] or {})
    labels["prefect.flow.id"] = data["flow_id"]
    labels["prefect.deployment.id"] = data["deployment_id"]
    return {
        "id": run_id,
        "created": now,
        "updated": now,
        "name": generate_name(),
        "flow_id": data["flow_id"],
        "deployment_id": data["deployment_id"],
        "deployment_version": data["deployment_version"],
        "work_queue_id": data["work_queue_id"],
        "work_queue_name": data["work_queue_name"],
        "work_pool_id": data["work_pool_id"],
        "work_pool_name": data["work_pool_name"],
        "parameters": data["parameters"],
        "idempotency_key": data["idempotency_key"],
        "context": {},
        "empirical_policy": policy,
        "tags": data["tags"],
        "labels": labels,
        "run_count": 0,
        "total_run_time": 0.0,
        "auto_scheduled": True,
        "created_by": data["created_by"],
        "job_variables": data["job_variables"],
        "state_id": state["id"],
        "state_type": "SCHEDULED",
        "state_name": "Scheduled",
        "state_timestamp": now,
        "state": frozen,
        "expected_start_time": when,
        "next_scheduled_start_time": when,
        "__state": frozen,
    }


def _state_row(run_id: str, frozen: dict, now: dt.datetime) -> dict:
    return {
        "id": frozen["id"],
        "created": now,
        "flow_run_id": run_id,
        "type": "SCHEDULED",
        "name": "Scheduled",
        "timestamp": now,
        "message": frozen["message"],
        "data": None,
        "state_details": frozen["state_details"],
    }


def run_scheduler_pass(now: dt.datetime | None = None, limit: int = BATCH, max_batches: int = 20) -> int:
    """Schedule every deployment that needs runs, a batch of deployments at a time."""
    started = time.perf_counter()
    now = now or utcnow()
    created = 0
    after = ""  # id cursor: deployments that cannot reach MIN_RUNS must not starve the rest
    for _ in range(max_batches):
        ids = deployments_needing_runs(now, limit, after)
        if not ids:
            break
        created += schedule_deployments(ids, now)
        if len(ids) < limit:
            break
        after = ids[-1]
    metrics.record_scheduler_pass(time.perf_counter() - started, created)
    return created
