"""Read queries of the console's run pages (``/runs/flow-run/<id>``, ``/runs/task-run/<id>``).

Every query is bounded and on an index, so a page costs the same on a database of a million
runs and ten million log lines as on an empty one:

- the run, its flow, deployment and parent run: primary-key lookups;
- a flow run's state history: the (flow_run_id, timestamp) index, newest ``STATE_CAP`` rows;
  a task run's: the (task_run_id) index;
- task runs of a flow run: the (flow_run_id, task_key, dynamic_key) index's prefix, keyset
  pages on (created, id) (the run's own task runs are sorted, never the table), counted up to
  ``COUNT_CAP``;
- subflows: flow_run.parent_task_run_id (indexed) IN the run's task-run ids (that prefix again);
- logs: the (flow_run_id, timestamp) index, keyset pages on (timestamp, id), each page read
  as two plain index ranges (``_log_slice``), so that PostgreSQL walks the index and stops
  after a page; the level filter is a filter on that walk. A task run's logs use the
  partial (task_run_id) index of migration 007 (then sorted: a task run has few lines);
- artifacts: the (flow_run_id) index / the partial (task_run_id) index, keyset on (created, id).

Writes (cancel, retry, resume) go through db.runs and db.flow_run_inputs, called by ui.run_detail.
"""

from __future__ import annotations

import datetime as dt

import orjson
import peewee as pw

from db import flow_run_inputs, runs
from db.console_admin import COUNT_CAP, RUN_COLUMNS, _page, bounded_count  # noqa: F401 (COUNT_CAP: for pages)
from db.models import Artifact, FlowRun, FlowRunState, Log, TaskRun, TaskRunState
from db.models_deployments import Deployment

STATE_CAP = 100
TASK_PAGE = 50
TIMELINE_ROWS = 200
SUBFLOW_CAP = 50
LOG_PAGE = 100
ARTIFACT_PAGE = 5
LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}

TASK_COLUMNS = (TaskRun.id, TaskRun.name, TaskRun.created, TaskRun.state_type, TaskRun.state_name,
                TaskRun.expected_start_time, TaskRun.start_time, TaskRun.end_time, TaskRun.total_run_time,
                TaskRun.run_count, TaskRun.state_timestamp)
LOG_COLUMNS = (Log.id, Log.timestamp, Log.level, Log.name, Log.message, Log.task_run_id)
ARTIFACT_COLUMNS = (Artifact.id, Artifact.created, Artifact.key, Artifact.type, Artifact.description,
                    Artifact.data, Artifact.flow_run_id, Artifact.task_run_id)


# --- flow runs --------------------------------------------------------------------------------


def flow_run(run_id: str) -> dict | None:
    """The run's row with ``flow_name``, ``deployment_name`` and ``parent`` ({id, name} of the
    flow run whose task started this one as a subflow, or None)."""
    row = FlowRun.select().where(FlowRun.id == run_id).dicts().first()
    if row is None:
        return None
    flow = runs.flow_summary(row["flow_id"])
    row["flow_name"] = flow["name"] if flow else None
    row["deployment_name"] = None
    if row.get("deployment_id"):
        row["deployment_name"] = (Deployment.select(Deployment.name)
                                  .where(Deployment.id == row["deployment_id"]).scalar())
    row["parent"] = None
    if row.get("parent_task_run_id"):
        parent_id = TaskRun.select(TaskRun.flow_run_id).where(TaskRun.id == row["parent_task_run_id"]).scalar()
        if parent_id:
            row["parent"] = FlowRun.select(FlowRun.id, FlowRun.name).where(FlowRun.id == parent_id).dicts().first()
    return row


def _latest_states(model, owner_column, owner_id: str, limit: int) -> dict:
    """The newest ``limit`` states of a run, oldest first, and whether there are older ones."""
    found = list(
        model.select(model.id, model.type, model.name, model.timestamp, model.message)
        .where(owner_column == owner_id)
        .order_by(model.timestamp.desc(), model.id.desc())
        .limit(limit + 1).dicts()
    )
    more = len(found) > limit
    found = found[:limit]
    found.reverse()
    return {"rows": found, "more": more}


def flow_run_states(run_id: str, limit: int = STATE_CAP) -> dict:
    return _latest_states(FlowRunState, FlowRunState.flow_run_id, run_id, limit)


def _task_cursor(task_run_id: str | None) -> tuple | None:
    if not task_run_id:
        return None
    found = TaskRun.select(TaskRun.created, TaskRun.id).where(TaskRun.id == task_run_id).tuples().first()
    return tuple(found) if found else None


def task_runs(run_id: str, after: str | None = None, limit: int = TASK_PAGE) -> dict:
    """A keyset page of the run's task runs in the order they were created; ``after`` is the
    id of the last task run of the previous page. {"rows", "next" (an id or None)}."""
    query = TaskRun.select(*TASK_COLUMNS).where(TaskRun.flow_run_id == run_id)
    rows, more, _ = _page(query, [TaskRun.created, TaskRun.id], _task_cursor(after), False, limit)
    return {"rows": rows, "next": rows[-1]["id"] if rows and more else None}


def task_run_count(run_id: str) -> int:
    """How many task runs the run has, counted up to COUNT_CAP + 1."""
    return bounded_count(TaskRun.select().where(TaskRun.flow_run_id == run_id))


def subflow_runs(run_id: str, limit: int = SUBFLOW_CAP) -> list[dict]:
    """Flow runs started as subflows of this run (their parent task run belongs to it)."""
    # From the run's task runs (task_run's flow_run_id index) to their subflows (flow_run's
    # parent_task_run_id index), then sorted. With "parent_task_run_id IN (its task runs)"
    # SQLite walked all of flow_run in expected-start order instead (130 ms on 100k runs);
    # a CROSS JOIN fixes SQLite's join order, PostgreSQL plans it as the inner join it is.
    return list(
        TaskRun.select(*RUN_COLUMNS).join(FlowRun, pw.JOIN.CROSS)
        .where((TaskRun.flow_run_id == run_id) & (FlowRun.parent_task_run_id == TaskRun.id))
        .order_by(FlowRun.expected_start_time, FlowRun.id).limit(limit + 1).dicts()
    )


# --- logs -------------------------------------------------------------------------------------


def level_number(name: str | None) -> int:
    """The minimum level of a ``level`` filter (a name, any case); 0 (everything) otherwise."""
    return LEVELS.get((name or "").strip().upper(), 0)


def level_name(level: int) -> str:
    for name, number in LEVELS.items():
        if level == number:
            return name
    return f"Level {level}"


def _log_slice(query, cursor: tuple | None, backwards: bool, limit: int) -> tuple[list[dict], bool]:
    """Up to ``limit`` rows of ``query`` after (or, ``backwards``, before) ``cursor`` in
    (timestamp, id) order, nearest first, and whether there are more.

    Two plain ranges instead of one row comparison: the lines on the cursor's own timestamp
    (``timestamp = t AND id > i``), then those strictly after it (``timestamp > t``). Each is
    a range of the (flow_run_id, timestamp) index that PostgreSQL estimates well, so it walks
    the index and stops after a page; a row comparison (or its OR form) is estimated so
    selective that the planner would rather fetch the run's whole tail and sort it."""
    ts, ident = Log.timestamp, Log.id
    order = (ts.desc(), ident.desc()) if backwards else (ts.asc(), ident.asc())
    if cursor is None:
        rows = list(query.order_by(*order).limit(limit + 1).dicts())
    else:
        moment, last_id = cursor
        same = (ts == moment) & ((ident < last_id) if backwards else (ident > last_id))
        rows = list(query.where(same).order_by(*order).limit(limit + 1).dicts())
        if len(rows) <= limit:
            beyond = (ts < moment) if backwards else (ts > moment)
            rows += list(query.where(beyond).order_by(*order).limit(limit + 1 - len(rows)).dicts())
    more = len(rows) > limit
    return rows[:limit], more


def logs(*, flow_run_id: str | None = None, task_run_id: str | None = None, min_level: int = 0,
         after: tuple | None = None, before: tuple | None = None, from_start: bool = False,
         limit: int = LOG_PAGE) -> dict:
    """A keyset page of a flow run's (or a task run's) logs in time order.

    ``after`` / ``before`` are (timestamp, id) of the row the page starts after / ends before;
    ``from_start`` is the first page; with none of them, the newest lines (the tail, which
    the page keeps refreshing while the run goes on). Returns {"rows", "next", "prev" (the
    (timestamp, id) cursors of the neighbouring pages, or None), "tail" (no later lines)}."""
    if flow_run_id is not None:
        query = Log.select(*LOG_COLUMNS).where(Log.flow_run_id == flow_run_id)
    else:
        query = Log.select(*LOG_COLUMNS).where(Log.task_run_id == task_run_id)
    if min_level:
        query = query.where(Log.level >= min_level)
    if after is not None or from_start:
        rows, more_after = _log_slice(query, after, False, limit)
        more_before = after is not None
    else:
        rows, more_before = _log_slice(query, before, True, limit)
        rows.reverse()
        more_after = before is not None
    for row in rows:
        row["level_name"] = level_name(row["level"])

    def cursor(row):
        return (row["timestamp"], row["id"])

    return {
        "rows": rows,
        "next": cursor(rows[-1]) if rows and more_after else None,
        "prev": cursor(rows[0]) if rows and more_before else None,
        "tail": not more_after,
    }


# --- artifacts --------------------------------------------------------------------------------


def artifacts(*, flow_run_id: str | None = None, task_run_id: str | None = None, after: str | None = None,
              limit: int = ARTIFACT_PAGE) -> dict:
    """A keyset page of a run's artifacts, oldest first; ``after`` is an artifact id."""
    if flow_run_id is not None:
        query = Artifact.select(*ARTIFACT_COLUMNS).where(Artifact.flow_run_id == flow_run_id)
    else:
        query = Artifact.select(*ARTIFACT_COLUMNS).where(Artifact.task_run_id == task_run_id)
    cursor = None
    if after:
        found = Artifact.select(Artifact.created, Artifact.id).where(Artifact.id == after).tuples().first()
        cursor = tuple(found) if found else None
    rows, more, _ = _page(query, [Artifact.created, Artifact.id], cursor, False, limit)
    return {"rows": rows, "next": rows[-1]["id"] if rows and more else None}


# --- task runs --------------------------------------------------------------------------------


def task_run(task_run_id: str) -> dict | None:
    """The task run's row with ``flow_run`` ({id, name, state_type} of its flow run, or None)."""
    row = TaskRun.select().where(TaskRun.id == task_run_id).dicts().first()
    if row is None:
        return None
    row["flow_run"] = None
    if row.get("flow_run_id"):
        row["flow_run"] = (FlowRun.select(FlowRun.id, FlowRun.name, FlowRun.state_type)
                           .where(FlowRun.id == row["flow_run_id"]).dicts().first())
    return row


def task_run_states(task_run_id: str, limit: int = STATE_CAP) -> dict:
    return _latest_states(TaskRunState, TaskRunState.task_run_id, task_run_id, limit)


# --- resuming ---------------------------------------------------------------------------------


def resume_input(run: dict) -> dict | None:
    """What a paused run waits for: {"schema" (a JSON schema, or None when it cannot be
    read), "description" (markdown text or None)}; None when the pause takes no input.

    The SDK's ``pause_flow_run(wait_for_input=...)`` stores the RunInput's schema (and its
    description) as flow-run inputs under the keys of the state's ``run_input_keyset``."""
    state = run.get("state") or {}
    keyset = (state.get("state_details") or {}).get("run_input_keyset")
    if state.get("type") != "PAUSED" or not isinstance(keyset, dict) or not keyset.get("schema"):
        return None
    schema = description = None
    found = flow_run_inputs.read(run["id"], keyset["schema"])
    if found is not None:
        try:
            schema = orjson.loads(found["value"])
        except orjson.JSONDecodeError:
            schema = None
    if keyset.get("description"):
        found = flow_run_inputs.read(run["id"], keyset["description"])
        if found is not None:
            try:
                description = orjson.loads(found["value"])
            except orjson.JSONDecodeError:
                description = found["value"]
    return {"schema": schema if isinstance(schema, dict) else None,
            "description": description if isinstance(description, str) else None}


def elapsed(row: dict, now: dt.datetime) -> float | None:
    """Seconds a run (or task run) has run: its total run time, plus the current stretch
    while it is RUNNING (the total grows only when a run leaves RUNNING)."""
    total = row.get("total_run_time") or 0.0
    if row.get("state_type") == "RUNNING" and row.get("state_timestamp") is not None:
        total += max((now - row["state_timestamp"]).total_seconds(), 0.0)
    if total:
        return total
    start, end = row.get("start_time"), row.get("end_time")
    if start is not None and end is not None:
        return max((end - start).total_seconds(), 0.0)
    return None
