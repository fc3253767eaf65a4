"""/task_runs (REST: subflow tracking tasks, older clients) and /task_run_states.

Ordinary 3.8.8 task runs arrive as events (api/events.py -> db/recorder.py).
"""

from __future__ import annotations

import uuid

from api import shapes
from api.errors import invalid, not_found
from api.http import no_content, parse, read_model, send
from api.listing import build_query, count_query, page_body, read_filter_body
from api.schemas import HistoryRequest, SetState, TaskRunCreate, TaskRunUpdate
from db import database as db
from db import runs
from db.fields import utcnow
from db.history import history
from db.models import TaskRun, TaskRunState
from db.queries import task_run_sorts

FILTER_KEYS = {"flows", "flow_runs", "task_runs", "deployments"}


class TaskRuns:
    async def on_post(self, req, resp):
        body = await read_model(req, TaskRunCreate)
        row, created = await db.run_write(runs.create_task_run, body.domain())
        send(resp, shapes.task_run(row), 201 if created else 200)


class TaskRunById:
    async def on_get(self, req, resp, task_run_id):
        row = await db.run(runs.read_task_run, str(task_run_id))
        if row is None:
            raise not_found("Task run not found")
        send(resp, shapes.task_run(row))

    async def on_patch(self, req, resp, task_run_id):
        body = await read_model(req, TaskRunUpdate)
        try:
            await db.run_write(runs.update_task_run, str(task_run_id), body.values())
        except runs.NotFound:
            raise not_found("Task run not found") from None
        no_content(resp)

    async def on_delete(self, req, resp, task_run_id):
        try:
            await db.run_write(runs.delete_task_run, str(task_run_id))
        except runs.NotFound:
            raise not_found("Task run not found") from None
        no_content(resp)


class TaskRunSetState:
    async def on_post(self, req, resp, task_run_id):
        body = await read_model(req, SetState)
        try:
            written, result = await db.run_write(
                runs.set_task_run_state, str(task_run_id), body.state.proposal(), body.force
            )
        except runs.NotFound:
            raise not_found("Task run not found") from None
        send(resp, result, 201 if written else 200)


class TaskRunFilter:
    async def on_post(self, req, resp):
        body = await read_filter_body(req)
        query, _, _ = build_query(TaskRun, "task_runs", body, FILTER_KEYS, task_run_sorts(), "ID_DESC")
        rows = await db.run(lambda: list(query.dicts()))
        now = utcnow()
        send(resp, [shapes.task_run(r, now) for r in rows])


class TaskRunCount:
    async def on_post(self, req, resp):
        body = await read_filter_body(req)
        query = count_query(TaskRun, "task_runs", body, FILTER_KEYS)
        send(resp, await db.run(query.count))


class TaskRunPaginate:
    async def on_post(self, req, resp):
        body = await read_filter_body(req)
        query, limit, page = build_query(
            TaskRun, "task_runs", body, FILTER_KEYS, task_run_sorts(), "ID_DESC", paginate=True
        )
        counter = count_query(TaskRun, "task_runs", body, FILTER_KEYS)
        rows, count = await db.run(lambda: (list(query.dicts()), counter.count()))
        now = utcnow()
        send(resp, page_body([shapes.task_run(r, now) for r in rows], count, limit, page))


class TaskRunHistory:
    async def on_post(self, req, resp):
        raw = await read_filter_body(req)
        body = parse(HistoryRequest, raw)
        try:
            interval = body.interval()
        except ValueError as exc:
            raise invalid("history_interval_seconds", str(exc), None, raw) from None
        if interval < 1:
            raise invalid("history_interval_seconds", "History interval must not be less than 1 second.", interval, raw)
        query = count_query(TaskRun, "task_runs", raw, FILTER_KEYS).select(
            TaskRun.expected_start_time,
            TaskRun.state_type,
            TaskRun.state_name,
            TaskRun.total_run_time,
            TaskRun.state_timestamp,
            TaskRun.start_time,
        ).where(TaskRun.expected_start_time >= body.history_start)
        rows = await db.run(lambda: list(query.tuples()))
        send(resp, history(rows, body.history_start, body.history_end, interval))


class TaskRunStates:
    async def on_get(self, req, resp):
        value = req.get_param("task_run_id")
        if not value:
            raise invalid("task_run_id", "Field required", None, loc_root="query")
        try:
            task_run_id = str(uuid.UUID(value))
        except ValueError:
            raise invalid("task_run_id", "Input should be a valid UUID", value, loc_root="query") from None
        rows = await db.run(
            lambda: list(
                TaskRunState.select()
                .where(TaskRunState.task_run_id == task_run_id)
                .order_by(TaskRunState.timestamp, TaskRunState.id)
                .dicts()
            )
        )
        send(resp, [shapes.state(r) for r in rows])


class TaskRunStateById:
    async def on_get(self, req, resp, state_id):
        row = await db.run(lambda: TaskRunState.select().where(TaskRunState.id == str(state_id)).dicts().first())
        if row is None:
            raise not_found("Task run state not found")
        send(resp, shapes.state(row))


def register(app, prefix: str) -> None:
    app.add_route(f"{prefix}/task_runs", TaskRuns())
    app.add_route(f"{prefix}/task_runs/filter", TaskRunFilter())
    app.add_route(f"{prefix}/task_runs/count", TaskRunCount())
    app.add_route(f"{prefix}/task_runs/paginate", TaskRunPaginate())
    app.add_route(f"{prefix}/task_runs/history", TaskRunHistory())
    app.add_route(f"{prefix}/task_runs/{{task_run_id:uuid}}", TaskRunById())
    app.add_route(f"{prefix}/task_runs/{{task_run_id:uuid}}/set_state", TaskRunSetState())
    app.add_route(f"{prefix}/task_run_states", TaskRunStates())
    app.add_route(f"{prefix}/task_run_states/{{state_id:uuid}}", TaskRunStateById())
