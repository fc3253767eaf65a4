"""Flows, flow runs and task runs: creation, state transitions and their bookkeeping.

Every public function here runs inside the caller's write transaction (the API calls
them through ``db.database.run_write``), so a request's changes commit together or not
at all. State transitions: ``set_flow_run_state`` reads the run (row-locked on
PostgreSQL), runs the orchestration rules of db.orchestration, and writes the outcome
with ``_write_flow_run_state``, which applies Prefect's bookkeeping transforms, emits
the server-side ``prefect.flow-run.<State>`` event and mirrors the state onto a
subflow's tracking task run.
"""

from __future__ import annotations

import datetime as dt

import peewee as pw

from db import database as dbmod
from db import deployment_concurrency, notifications
from db import events as events_mod
from db.fields import new_id, utcnow
from db.models import Flow, FlowRun, FlowRunState, TaskRun, TaskRunState
from db.names import generate_name
from db.orchestration import (
    ABORT,
    ACCEPT,
    FLOW_RULES,
    FORCED_FLOW_RULES,
    REJECT,
    TASK_RULES,
    WAIT,
    Context,
    Decision,
    orchestrate,
    protect_persisted_completed,
)
from db.states import TERMINAL, iso, new_state, parse_datetime

DATETIME_DETAIL_KEYS = ("scheduled_time", "pause_timeout", "cache_expiration")

FLOW_RUN_POLICY_DEFAULTS = {
    "max_retries": 0,
    "retry_delay_seconds": 0.0,
    "retries": None,
    "retry_delay": None,
    "pause_keys": [],
    "resuming": False,
    "retry_type": None,
}
TASK_RUN_POLICY_DEFAULTS = {
    "max_retries": 0,
    "retry_delay_seconds": 0.0,
    "retries": None,
    "retry_delay": None,
    "retry_jitter_factor": None,
}


class NotFound(LookupError):
    pass


class Conflict(ValueError):
    pass


def freeze_state(state: dict) -> dict:
    """A state ready to store as JSON: datetimes as ISO strings with microseconds."""
    details = dict(state["state_details"])
    for key in DATETIME_DETAIL_KEYS:
        value = details.get(key)
        if value is not None:
            parsed = parse_datetime(value)
            details[key] = iso(parsed)
    out = dict(state)
    out["state_details"] = details
    if isinstance(out.get("timestamp"), dt.datetime):
        out["timestamp"] = iso(out["timestamp"])
    return out


def state_from_proposal(proposal: dict) -> dict:
    """A StateCreate body (validated upstream) -> an in-memory state with a fresh id."""
    details = dict(proposal.get("state_details") or {})
    if proposal["type"] == "SCHEDULED" and not details.get("scheduled_time"):
        details["scheduled_time"] = utcnow()  # Prefect: a Scheduled state without a time is due now
    return new_state(
        proposal["type"],
        proposal.get("name"),
        message=proposal.get("message"),
        data=proposal.get("data"),
        details=details,
    )


# --- flows ---------------------------------------------------------------------------


def get_or_create_flow(name: str, tags: list, labels: dict | None) -> tuple[dict, bool]:
    existing = Flow.select().where(Flow.name == name).dicts().first()
    if existing:
        return existing, False
    now = utcnow()
    row = {"id": new_id(), "created": now, "updated": now, "name": name, "tags": tags, "labels": labels or {}}
    try:
        with dbmod.database.atomic():  # savepoint: a concurrent create of the same name
            Flow.insert(row).execute()
    except pw.IntegrityError:
        return Flow.select().where(Flow.name == name).dicts().get(), False
    return row, True


def read_flow(flow_id: str) -> dict | None:
    return Flow.select().where(Flow.id == flow_id).dicts().first()


_flow_cache: dict[str, dict] = {}


def flow_summary(flow_id: str) -> dict | None:
    """id, name and tags of a flow, cached per process (a flow's name never changes)."""
    cached = _flow_cache.get(flow_id)
    if cached is None:
        row = Flow.select(Flow.id, Flow.name, Flow.tags).where(Flow.id == flow_id).dicts().first()
        if row is None:
            return None
        if len(_flow_cache) > 10000:
            _flow_cache.clear()
        _flow_cache[flow_id] = cached = row
    return cached


# --- flow runs -------------------------------------------------------------------------


def read_flow_run(run_id: str) -> dict | None:
    return FlowRun.select().where(FlowRun.id == run_id).dicts().first()


def _lock_flow_run(run_id: str) -> dict | None:
    query = FlowRun.select().where(FlowRun.id == run_id)
    if dbmod.is_postgres():
        query = query.for_update()
    return query.dicts().first()


def create_flow_run(data: dict) -> tuple[dict, bool]:
    """FlowRunCreate (validated) -> (row, created). 200-style hit on idempotency_key."""
    flow = Flow.select(Flow.id).where(Flow.id == data["flow_id"]).first()
    if flow is None:
        raise Conflict("Data integrity conflict. The flow does not exist.")
    key = data.get("idempotency_key")
    if key:
        existing = (
            FlowRun.select().where((FlowRun.flow_id == data["flow_id"]) & (FlowRun.idempotency_key == key)).dicts().first()
        )
        if existing:
            return existing, False
    now = utcnow()
    policy = dict(FLOW_RUN_POLICY_DEFAULTS)
    policy.update(data.get("empirical_policy") or {})
    labels = dict(data.get("labels") or {})
    labels["prefect.flow.id"] = data["flow_id"]
    if data.get("deployment_id"):
        labels["prefect.deployment.id"] = data["deployment_id"]
    run = {
        "id": data.get("id") or new_id(),
        "created": now,
        "updated": now,
        "name": data.get("name") or generate_name(),
        "flow_id": data["flow_id"],
        "deployment_id": data.get("deployment_id"),
        "deployment_version": data.get("deployment_version"),
        "work_queue_id": data.get("work_queue_id"),
        "work_queue_name": data.get("work_queue_name"),
        "work_pool_id": data.get("work_pool_id"),
        "work_pool_name": data.get("work_pool_name"),
        "flow_version": data.get("flow_version"),
        "parameters": data.get("parameters") or {},
        "idempotency_key": key,
        "context": data.get("context") or {},
        "empirical_policy": policy,
        "tags": list(dict.fromkeys(data.get("tags") or [])),
        "labels": labels,
        "parent_task_run_id": data.get("parent_task_run_id"),
        "run_count": 0,
        "total_run_time": 0.0,
        "auto_scheduled": bool(data.get("auto_scheduled")),
        "infrastructure_document_id": data.get("infrastructure_document_id"),
        "infrastructure_pid": None,
        "created_by": data.get("created_by"),
        "job_variables": data.get("job_variables") or {},
    }
    try:
        with dbmod.database.atomic():
            FlowRun.insert(run).execute()
    except pw.IntegrityError:
        if key:
            existing = (
                FlowRun.select()
                .where((FlowRun.flow_id == data["flow_id"]) & (FlowRun.idempotency_key == key))
                .dicts()
                .first()
            )
            if existing:
                return existing, False
        raise
    for column in ("state_id", "state_type", "state_name", "state_timestamp", "state", "expected_start_time",
                   "next_scheduled_start_time", "start_time", "end_time"):
        run[column] = None
    proposal = data.get("state") or {"type": "PENDING"}
    state = state_from_proposal(proposal)
    _write_flow_run_state(run, None, state, now)
    return run, True


def set_flow_run_state(run_id: str, proposal: dict, force: bool = False) -> tuple[bool, dict]:
    """Orchestrate a proposed state. Returns (state written?, OrchestrationResult body)."""
    run = _lock_flow_run(run_id)
    if run is None:
        raise NotFound("Flow run not found")
    now = utcnow()
    current = run["state"]
    proposed = state_from_proposal(proposal)
    ctx = Context(run=run, current=current, proposed=proposed, now=now)
    if force:
        decision = orchestrate(ctx, [protect_persisted_completed, *FORCED_FLOW_RULES])
    else:
        if run.get("deployment_id") and proposed["type"] in ("PENDING", "RUNNING"):
            run["__deployment_slots"] = _deployment_slots(run, current, proposed, now)
        decision = orchestrate(ctx, FLOW_RULES)
        run.pop("__deployment_slots", None)
    _carry_deployment_lease(current, decision.state if decision.status == REJECT else proposed)
    written, result = _apply_decision(run, ctx, decision, now, _write_flow_run_state)
    if written and run.get("deployment_id"):
        kept_for_retry = decision.status == REJECT and (decision.state or {}).get("name") == "AwaitingRetry"
        deployment_concurrency.release_after(current, result["state"], kept_for_retry=kept_for_retry)
    return written, result


def _deployment_slots(run: dict, current, proposed: dict, now) -> dict | None:
    """What rule F6 decides on (limit row locked), plus how to take or renew a lease."""
    slots = deployment_concurrency.slots_for(run, current, proposed, now)
    if slots is not None:
        slots["take"] = lambda: deployment_concurrency.take_slot(run, slots, now)
        slots["renew"] = lambda lease_id: deployment_concurrency.renew(lease_id, slots, now)
    return slots


def _carry_deployment_lease(current: dict | None, proposed: dict | None) -> None:
    """Between PENDING, RUNNING and CANCELLING (and out of an in-process AwaitingRetry) the
    deployment lease travels with the run's state, so whichever state the run leaves from
    can release it."""
    if not current or not proposed:
        return
    if current["type"] not in deployment_concurrency.ACTIVE and current.get("name") != "AwaitingRetry":
        return
    if proposed["type"] not in deployment_concurrency.ACTIVE:
        return
    lease_id = (current.get("state_details") or {}).get(deployment_concurrency.LEASE_KEY)
    details = proposed.setdefault("state_details", {})
    if lease_id and not details.get(deployment_concurrency.LEASE_KEY):
        details[deployment_concurrency.LEASE_KEY] = lease_id


def _apply_decision(run, ctx: Context, decision: Decision, now, write) -> tuple[bool, dict]:
    if decision.status == ACCEPT:
        state = write(run, ctx.current, ctx.proposed, now, ctx.policy_updates)
        return True, _result(state, ACCEPT)
    if decision.status == REJECT and decision.state is not None:
        state = write(run, ctx.current, decision.state, now, ctx.policy_updates)
        return True, _result(state, REJECT, decision.reason)
    if decision.status == WAIT:
        return False, _result(ctx.current, WAIT, decision.reason, decision.delay_seconds)
    return False, _result(ctx.current, decision.status, decision.reason)


def _result(state, status, reason=None, delay=None) -> dict:
    if status == ACCEPT:
        details = {"type": "accept_details"}
    elif status == REJECT:
        details = {"type": "reject_details", "reason": reason}
    elif status == ABORT:
        details = {"type": "abort_details", "reason": reason}
    else:
        details = {"type": "wait_details", "delay_seconds": delay, "reason": reason}
    return {"state": state, "status": status, "details": details}


def _bookkeeping(run: dict, previous: dict | None, state: dict, *, is_flow: bool, policy: dict) -> dict:
    """Prefect's universal transforms: the run-row columns a new state changes."""
    ts = state["timestamp"]
    changes: dict = {
        "state_id": state["id"],
        "state_type": state["type"],
        "state_name": state["name"],
        "state_timestamp": ts,
        "updated": utcnow(),
    }
    prev_type = previous["type"] if previous else None
    if state["type"] == "RUNNING":
        if run.get("start_time") is None:
            changes["start_time"] = ts
        if not (is_flow and policy.get("resuming")):
            changes["run_count"] = (run.get("run_count") or 0) + 1
    if state["type"] in TERMINAL:
        # The first terminal state ends the run (a later terminal -> terminal keeps it); a
        # run that ends without ever running starts and ends at the same instant.
        if run.get("end_time") is None:
            changes["end_time"] = ts
            if run.get("start_time") is None and "start_time" not in changes:
                changes["start_time"] = ts
    elif prev_type in TERMINAL:
        changes["end_time"] = None
    if prev_type == "RUNNING" and previous.get("timestamp"):
        delta = (ts - parse_datetime(previous["timestamp"])).total_seconds()
        changes["total_run_time"] = (run.get("total_run_time") or 0.0) + max(delta, 0.0)
    scheduled = parse_datetime(state["state_details"].get("scheduled_time"))
    if run.get("expected_start_time") is None:
        changes["expected_start_time"] = scheduled if state["type"] == "SCHEDULED" and scheduled else ts
    changes["next_scheduled_start_time"] = scheduled if state["type"] == "SCHEDULED" else None
    if is_flow and state["type"] == "RUNNING" or state["type"] in TERMINAL:
        if policy.get("resuming"):
            policy = dict(policy, resuming=False)
    return changes | {"__policy": policy}


def _unique_timestamp(run: dict, now: dt.datetime) -> dt.datetime:
    last = run.get("state_timestamp")
    if last is not None and now <= last:
        return last + dt.timedelta(microseconds=1)
    return now


def _write_flow_run_state(run: dict, previous, state: dict, now, policy_updates: dict | None = None) -> dict:
    state["timestamp"] = _unique_timestamp(run, now)
    details = state["state_details"]
    details["flow_run_id"] = run["id"]
    if run.get("parent_task_run_id"):
        details["task_run_id"] = run["parent_task_run_id"]
    # The run count follows the policy as it was before this transition; the rules' updates
    # come after (as Prefect's after_transition): resuming a pause counts a run and leaves
    # ``resuming`` set, so only the RUNNING after a suspension's reschedule is not counted.
    changes = _bookkeeping(run, previous, state, is_flow=True, policy=dict(run.get("empirical_policy") or {}))
    policy = changes.pop("__policy")
    policy.update(policy_updates or {})
    frozen = freeze_state(state)
    changes["state"] = frozen
    changes["empirical_policy"] = policy
    FlowRunState.insert(
        id=frozen["id"],
        created=now,
        flow_run_id=run["id"],
        type=state["type"],
        name=state["name"],
        timestamp=state["timestamp"],
        message=state.get("message"),
        data=state.get("data"),
        state_details=frozen["state_details"],
    ).execute()
    FlowRun.update(changes).where(FlowRun.id == run["id"]).execute()
    run.update(changes)
    flow = flow_summary(run["flow_id"])
    event = events_mod.flow_run_state_event(run, flow, previous, frozen)
    events_mod.insert_events([events_mod.event_row(event, received=utcnow())])
    # Transactional outbox: matched notifications commit (or roll back) with this state.
    notifications.enqueue_for_state(run, flow, frozen)
    if run.get("parent_task_run_id"):
        _mirror_onto_tracking_task(run, frozen)
    return frozen


def _mirror_onto_tracking_task(child: dict, child_state: dict) -> None:
    """Copy a subflow's state onto the parent's tracking task run (forced)."""
    task = TaskRun.select().where(TaskRun.id == child["parent_task_run_id"]).dicts().first()
    if task is None:
        return
    copy = new_state(
        child_state["type"],
        child_state["name"],
        message=child_state.get("message"),
        data=child_state.get("data"),
        details={
            **{k: v for k, v in child_state["state_details"].items() if k not in ("flow_run_id", "task_run_id")},
            "child_flow_run_id": child["id"],
        },
    )
    _write_task_run_state(task, task.get("state"), copy, utcnow())


def update_flow_run(run_id: str, changes: dict) -> None:
    if not changes:
        if FlowRun.select(FlowRun.id).where(FlowRun.id == run_id).first() is None:
            raise NotFound("Flow run not found")
        return
    changes = dict(changes, updated=utcnow())
    if "empirical_policy" in changes:
        policy = dict(FLOW_RUN_POLICY_DEFAULTS)
        policy.update(changes["empirical_policy"] or {})
        changes["empirical_policy"] = policy
    if FlowRun.update(changes).where(FlowRun.id == run_id).execute() == 0:
        raise NotFound("Flow run not found")


def merge_flow_run_labels(run_id: str, labels: dict) -> None:
    run = _lock_flow_run(run_id)
    if run is None:
        raise NotFound("Flow run not found")
    merged = dict(run.get("labels") or {})
    merged.update(labels)
    FlowRun.update(labels=merged, updated=utcnow()).where(FlowRun.id == run_id).execute()


def delete_flow_run(run_id: str) -> None:
    """Delete a run with its states, task runs and their states; keep logs and artifacts."""
    if FlowRun.select(FlowRun.id).where(FlowRun.id == run_id).first() is None:
        raise NotFound("Flow run not found")
    task_ids = TaskRun.select(TaskRun.id).where(TaskRun.flow_run_id == run_id)
    FlowRun.update(parent_task_run_id=None).where(FlowRun.parent_task_run_id.in_(task_ids)).execute()
    TaskRunState.delete().where(TaskRunState.task_run_id.in_(task_ids)).execute()
    TaskRun.delete().where(TaskRun.flow_run_id == run_id).execute()
    FlowRunState.delete().where(FlowRunState.flow_run_id == run_id).execute()
    FlowRun.delete().where(FlowRun.id == run_id).execute()


def delete_flow(flow_id: str) -> None:
    if Flow.select(Flow.id).where(Flow.id == flow_id).first() is None:
        raise NotFound("Flow not found")
    for (run_id,) in FlowRun.select(FlowRun.id).where(FlowRun.flow_id == flow_id).tuples():
        delete_flow_run(run_id)
    Flow.delete().where(Flow.id == flow_id).execute()
    _flow_cache.pop(flow_id, None)


# --- task runs -------------------------------------------------------------------------


def read_task_run(task_run_id: str) -> dict | None:
    return TaskRun.select().where(TaskRun.id == task_run_id).dicts().first()


def create_task_run(data: dict) -> tuple[dict, bool]:
    """TaskRunCreate (REST; subflow tracking tasks) -> (row, created)."""
    flow_run_id = data.get("flow_run_id")
    existing = (
        TaskRun.select()
        .where(
            (TaskRun.flow_run_id == flow_run_id if flow_run_id else TaskRun.flow_run_id.is_null())
            & (TaskRun.task_key == data["task_key"])
            & (TaskRun.dynamic_key == data["dynamic_key"])
        )
        .dicts()
        .first()
    )
    if existing:
        return existing, False
    now = utcnow()
    labels = dict(data.get("labels") or {})
    if flow_run_id:
        flow_id = FlowRun.select(FlowRun.flow_id).where(FlowRun.id == flow_run_id).scalar()
        if flow_id is not None:
            labels.setdefault("prefect.flow.id", flow_id)
        labels.setdefault("prefect.flow-run.id", flow_run_id)
    policy = dict(TASK_RUN_POLICY_DEFAULTS)
    policy.update(data.get("empirical_policy") or {})
    task = {
        "id": data.get("id") or new_id(),
        "created": now,
        "updated": now,
        "name": data.get("name") or data["task_key"],
        "flow_run_id": flow_run_id,
        "task_key": data["task_key"],
        "dynamic_key": data["dynamic_key"],
        "cache_key": data.get("cache_key"),
        "cache_expiration": parse_datetime(data.get("cache_expiration")),
        "task_version": data.get("task_version"),
        "empirical_policy": policy,
        "tags": list(dict.fromkeys(data.get("tags") or [])),
        "labels": labels,
        "task_inputs": data.get("task_inputs") or {},
        "run_count": 0,
        "flow_run_run_count": 0,
        "total_run_time": 0.0,
    }
    try:
        with dbmod.database.atomic():
            TaskRun.insert(task).execute()
    except pw.IntegrityError:
        existing = TaskRun.select().where(TaskRun.id == task["id"]).dicts().first()
        if existing:
            return existing, False
        raise
    for column in ("state_id", "state_type", "state_name", "state_timestamp", "state", "expected_start_time",
                   "next_scheduled_start_time", "start_time", "end_time"):
        task[column] = None
    state = state_from_proposal(data.get("state") or {"type": "PENDING"})
    _write_task_run_state(task, None, state, now)
    return task, True


def set_task_run_state(task_run_id: str, proposal: dict, force: bool = False) -> tuple[bool, dict]:
    query = TaskRun.select().where(TaskRun.id == task_run_id)
    if dbmod.is_postgres():
        query = query.for_update()
    task = query.dicts().first()
    if task is None:
        raise NotFound("Task run not found")
    now = utcnow()
    proposed = state_from_proposal(proposal)
    ctx = Context(run=task, current=task.get("state"), proposed=proposed, now=now)
    if force:
        decision = Decision(ACCEPT)
    else:
        if proposed["type"] == "RUNNING" and task.get("flow_run_id"):
            task["__flow_run"] = (
                FlowRun.select(FlowRun.id, FlowRun.state, FlowRun.run_count)
                .where(FlowRun.id == task["flow_run_id"])
                .dicts()
                .first()
            )
        decision = orchestrate(ctx, TASK_RULES)
        task.pop("__flow_run", None)
    return _apply_decision(task, ctx, decision, now, _write_task_run_state)


def _write_task_run_state(task: dict, previous, state: dict, now, policy_updates: dict | None = None) -> dict:
    state["timestamp"] = _unique_timestamp(task, now)
    details = state["state_details"]
    details["task_run_id"] = task["id"]
    details["flow_run_id"] = task.get("flow_run_id")
    policy_updates = dict(policy_updates or {})
    reset = policy_updates.pop("__reset_run_count", False)
    if reset:
        task = dict(task, run_count=0)
    changes = _bookkeeping(task, previous, state, is_flow=False, policy=task.get("empirical_policy") or {})
    changes.pop("__policy")
    if reset and "run_count" not in changes:
        changes["run_count"] = 0
    if state["type"] == "RUNNING" and task.get("flow_run_id"):
        parent_count = FlowRun.select(FlowRun.run_count).where(FlowRun.id == task["flow_run_id"]).scalar()
        if parent_count is not None:
            changes["flow_run_run_count"] = parent_count
    frozen = freeze_state(state)
    changes["state"] = frozen
    TaskRunState.insert(
        id=frozen["id"],
        created=now,
        task_run_id=task["id"],
        type=state["type"],
        name=state["name"],
        timestamp=state["timestamp"],
        message=state.get("message"),
        data=state.get("data"),
        state_details=frozen["state_details"],
    ).execute()
    TaskRun.update(changes).where(TaskRun.id == task["id"]).execute()
    task.update(changes)
    return frozen


def update_task_run(task_run_id: str, changes: dict) -> None:
    changes = dict(changes, updated=utcnow())
    if TaskRun.update(changes).where(TaskRun.id == task_run_id).execute() == 0:
        raise NotFound("Task run not found")


def delete_task_run(task_run_id: str) -> None:
    if TaskRun.delete().where(TaskRun.id == task_run_id).execute() == 0:
        raise NotFound("Task run not found")
    TaskRunState.delete().where(TaskRunState.task_run_id == task_run_id).execute()

