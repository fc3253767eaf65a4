"""The task-run recorder: client events -> stored events, task-run rows and their states.

The 3.8.8 engine orchestrates tasks client-side and reports every task-run state as a
``prefect.task-run.<State>`` event over the events websocket; this module turns a batch
of such events into rows, in one transaction (Prefect's services/task_run_recorder.py,
restated). Replays are harmless: the state row's id is the event id, and a task run is
only updated by an event newer than its current state, so late or duplicated events
add history but never roll the current state back.
"""

from __future__ import annotations

from db import events as events_mod
from db.fields import utcnow
from db.models import TaskRun, TaskRunState
from db.runs import TASK_RUN_POLICY_DEFAULTS, freeze_state
from db.states import details_with_defaults, parse_datetime

TASK_RUN_PREFIX = "prefect.task-run."
COPIED_KEYS = (
    "name",
    "task_key",
    "dynamic_key",
    "empirical_policy",
    "tags",
    "labels",
    "task_inputs",
    "run_count",
    "flow_run_run_count",
    "total_run_time",
    "cache_key",
    "task_version",
)
COPIED_DATETIMES = ("expected_start_time", "start_time", "end_time", "cache_expiration", "next_scheduled_start_time")


def _suffix_id(resource_id: str, prefix: str) -> str | None:
    if resource_id and resource_id.startswith(prefix):
        return resource_id[len(prefix) :] or None
    return None


def _flow_run_id(event: dict) -> str | None:
    for related in event.get("related") or []:
        if related.get("prefect.resource.role") == "flow-run":
            return _suffix_id(related.get("prefect.resource.id", ""), "prefect.flow-run.")
    return None


def is_task_run_event(event: dict) -> bool:
    resource = event.get("resource") or {}
    return event["event"].startswith(TASK_RUN_PREFIX) and resource.get("prefect.orchestration") == "client"


def _row_from_event(event: dict, occurred) -> tuple[str, dict, dict]:
    """(task_run_id, task-run column values from the event, the state it carries)."""
    resource = event["resource"]
    task_run_id = _suffix_id(resource["prefect.resource.id"], TASK_RUN_PREFIX)
    payload = event.get("payload") or {}
    task_run = payload.get("task_run") or {}
    validated = payload.get("validated_state") or {}
    flow_run_id = _flow_run_id(event)
    values: dict = {}
    for key in COPIED_KEYS:
        if key in task_run:
            values[key] = task_run[key]
    for key in COPIED_DATETIMES:
        if key in task_run:
            values[key] = parse_datetime(task_run[key])
    if "empirical_policy" in values:
        values["empirical_policy"] = {**TASK_RUN_POLICY_DEFAULTS, **(values["empirical_policy"] or {})}
    details = details_with_defaults(validated.get("state_details"))
    details["task_run_id"] = task_run_id
    details["flow_run_id"] = flow_run_id
    state_type = validated.get("type") or resource.get("prefect.state-type")
    state = freeze_state(
        {
            "id": str(event["id"]),
            "type": state_type,
            "name": validated.get("name") or resource.get("prefect.state-name") or (state_type or "").capitalize(),
            "timestamp": occurred,
            "message": validated.get("message"),
            "data": validated.get("data"),
            "state_details": details,
        }
    )
    values.update(
        flow_run_id=flow_run_id,
        state_id=state["id"],
        state_type=state["type"],
        state_name=state["name"],
        state_timestamp=occurred,
        state=state,
    )
    return task_run_id, values, state


def record_events(events: list[dict]) -> int:
    """Store a batch of validated client events and apply the task-run ones. Returns rows touched."""
    received = utcnow()
    events_mod.insert_events([events_mod.event_row(e, received) for e in events])
    task_events = []
    for event in events:
        if is_task_run_event(event) and _suffix_id(event["resource"].get("prefect.resource.id", ""), TASK_RUN_PREFIX):
            task_events.append((parse_datetime(event["occurred"]), event))
    if not task_events:
        return 0
    task_events.sort(key=lambda pair: pair[0])

    parsed = [(occurred, *_row_from_event(event, occurred)) for occurred, event in task_events]
    ids = list({task_run_id for _, task_run_id, _, _ in parsed})
    existing = {}
    for start in range(0, len(ids), 500):
        for row in TaskRun.select().where(TaskRun.id.in_(ids[start : start + 500])).dicts():
            existing[row["id"]] = row
    _adopt_natural_keys(parsed, existing)

    inserts: dict[str, dict] = {}
    updates: dict[str, dict] = {}
    states = []
    for occurred, task_run_id, values, state in parsed:
        target_id = values.pop("__target_id", task_run_id)
        if target_id != task_run_id:
            state["state_details"]["task_run_id"] = target_id
        states.append(
            {
                "id": state["id"],
                "created": received,
                "task_run_id": target_id,
                "type": state["type"],
                "name": state["name"],
                "timestamp": occurred,
                "message": state["message"],
                "data": state["data"],
                "state_details": state["state_details"],
            }
        )
        if target_id in inserts:
            row = inserts[target_id]
            if row["state_timestamp"] < occurred:
                row.update(values)
            continue
        current = existing.get(target_id)
        if current is None:
            inserts[target_id] = _new_task_row(target_id, values, received)
            continue
        pending = updates.get(target_id)
        current_ts = pending["state_timestamp"] if pending else current["state_timestamp"]
        if current_ts is None or current_ts < occurred:
            merged = dict(pending or {})
            merged.update(values)
            merged["updated"] = received
            updates[target_id] = merged

    for start in range(0, len(states), 200):
        TaskRunState.insert_many(states[start : start + 200]).on_conflict_ignore().execute()
    rows = list(inserts.values())
    for start in range(0, len(rows), 100):
        TaskRun.insert_many(rows[start : start + 100]).on_conflict_ignore().execute()
    for task_run_id, changes in updates.items():
        TaskRun.update(changes).where(TaskRun.id == task_run_id).execute()
    return len(rows) + len(updates)


def _adopt_natural_keys(parsed, existing: dict) -> None:
    """Events for a task run that was created over REST under another id join that row."""
    unknown = [(tid, v) for _, tid, v, _ in parsed if tid not in existing and "task_key" in v]
    if not unknown:
        return
    keys = {(v.get("flow_run_id"), v["task_key"], v.get("dynamic_key")) for _, v in unknown}
    task_keys = list({k[1] for k in keys})
    found = {}
    for row in TaskRun.select().where(TaskRun.task_key.in_(task_keys)).dicts():
        found[(row["flow_run_id"], row["task_key"], row["dynamic_key"])] = row
    if not found:
        return
    for _, task_run_id, values, _ in parsed:
        key = (values.get("flow_run_id"), values.get("task_key"), values.get("dynamic_key"))
        row = found.get(key)
        if row is not None and row["id"] != task_run_id:
            values["__target_id"] = row["id"]
            existing.setdefault(row["id"], row)


def _new_task_row(task_run_id: str, values: dict, now) -> dict:
    row = {
        "id": task_run_id,
        "created": now,
        "updated": now,
        "name": values.get("name") or "",
        "flow_run_id": None,
        "task_key": values.get("task_key") or "",
        "dynamic_key": values.get("dynamic_key") or task_run_id,
        "cache_key": None,
        "cache_expiration": None,
        "task_version": None,
        "empirical_policy": dict(TASK_RUN_POLICY_DEFAULTS),
        "tags": [],
        "labels": {},
        "task_inputs": {},
        "run_count": 0,
        "flow_run_run_count": 0,
        "expected_start_time": None,
        "next_scheduled_start_time": None,
        "start_time": None,
        "end_time": None,
        "total_run_time": 0.0,
    }
    row.update(values)
    return row
