"""/flow_runs: create, read, update, delete, set_state, filter, count, paginate, history;
/flow_run_states: state history reads."""

from __future__ import annotations

from api import shapes
from api.errors import conflict, invalid, not_found
from api.http import no_content, read_json, read_model, refuse_nul, send
from api.listing import build_query, count_query, page_body, read_filter_body
from api.schemas import FlowRunCreate, FlowRunUpdate, HistoryRequest, SetState
from db import database as db
from db import runs
from db.fields import utcnow
from db.history import history
from db.models import FlowRun, FlowRunState
from db.queries import flow_run_sorts

FILTER_KEYS = {"flows", "flow_runs", "task_runs", "deployments", "work_pools", "work_pool_queues"}


class FlowRuns:
    async def on_post(self, req, resp):
        body = await read_model(req, FlowRunCreate)
        data = body.domain()
        try:
            row, created = await db.run_write(_create_flow_run, data)
        except runs.NotFound as exc:
            raise not_found(str(exc)) from None
        except runs.Conflict as exc:
            raise conflict(str(exc)) from None
        send(resp, shapes.flow_run(row), 201 if created else 200)


def _create_flow_run(data: dict):
    """Resolve the named work pool/queue (404 if unknown), then create the run."""
    if data.get("work_pool_name") or data.get("work_queue_name"):
        from db import work_pools

        placed = work_pools.resolve_queue(data.get("work_pool_name"), data.get("work_queue_name"))
        data = dict(data, **placed)
    return runs.create_flow_run(data)


class FlowRunById:
    async def on_get(self, req, resp, run_id):
        row = await db.run(runs.read_flow_run, str(run_id))
        if row is None:
            raise not_found("Flow run not found")
        send(resp, shapes.flow_run(row))

    async def on_patch(self, req, resp, run_id):
        body = await read_model(req, FlowRunUpdate)
        try:
            await db.run_write(runs.update_flow_run, str(run_id), body.domain())
        except runs.NotFound:
            raise not_found("Flow run not found") from None
        no_content(resp)

    async def on_delete(self, req, resp, run_id):
        try:
            await db.run_write(runs.delete_flow_run, str(run_id))
        except runs.NotFound:
            raise not_found("Flow run not found") from None
        no_content(resp)


class FlowRunLabels:
    async def on_patch(self, req, resp, run_id):
        labels = await read_json(req)
        if not isinstance(labels, dict):
            raise invalid("", "Input should be a valid dictionary", labels, labels)
        refuse_nul(labels)
        for key, value in labels.items():
            if not isinstance(value, str | int | float | bool):
                raise invalid(key, "Label values must be strings, numbers or booleans", value, labels)
        try:
            await db.run_write(runs.merge_flow_run_labels, str(run_id), labels)
        except runs.NotFound:
            raise not_found("Flow run not found") from None
        no_content(resp)


class FlowRunSetState:
    async def on_post(self, req, resp, run_id):
        body = await read_model(req, SetState)
        try:
            written, result = await db.run_write(
                runs.set_flow_run_state, str(run_id), body.state.proposal(), body.force
            )
        except runs.NotFound:
            raise not_found("Flow run not found") from None
        send(resp, result, 201 if written else 200)


class FlowRunFilter:
    async def on_post(self, req, resp):
        body = await read_filter_body(req)
        query, _, _ = build_query(FlowRun, "flow_runs", body, FILTER_KEYS, flow_run_sorts(), "ID_DESC")
        rows = await db.run(lambda: list(query.dicts()))
        now = utcnow()
        send(resp, [shapes.flow_run(r, now) for r in rows])


class FlowRunCount:
    async def on_post(self, req, resp):
        body = await read_filter_body(req)
        query = count_query(FlowRun, "flow_runs", body, FILTER_KEYS)
        send(resp, await db.run(query.count))


class FlowRunPaginate:
    async def on_post(self, req, resp):
        body = await read_filter_body(req)
        query, limit, page = build_query(
            FlowRun, "flow_runs", body, FILTER_KEYS, flow_run_sorts(), "ID_DESC", paginate=True
        )
        counter = count_query(FlowRun, "flow_runs", body, FILTER_KEYS)
        rows, count = await db.run(lambda: (list(query.dicts()), counter.count()))
        now = utcnow()
        send(resp, page_body([shapes.flow_run(r, now) for r in rows], count, limit, page))


class FlowRunHistory:
    async def on_post(self, req, resp):
        raw = await read_filter_body(req)
        from api.http import parse

        body = parse(HistoryRequest, raw)
        try:
            interval = body.interval()
        except ValueError as exc:
            raise invalid("history_interval_seconds", str(exc), raw.get("history_interval"), raw) from None
        if interval < 1:
            raise invalid("history_interval_seconds", "History interval must not be less than 1 second.", interval, raw)
        query = count_query(FlowRun, "flow_runs", raw, FILTER_KEYS)
        query = query.select(
            FlowRun.expected_start_time,
            FlowRun.state_type,
            FlowRun.state_name,
            FlowRun.total_run_time,
            FlowRun.state_timestamp,
            FlowRun.start_time,
        ).where(FlowRun.expected_start_time >= body.history_start)
        rows = await db.run(lambda: list(query.tuples()))
        send(resp, history(rows, body.history_start, body.history_end, interval))


class FlowRunStates:
    async def on_get(self, req, resp):
        run_id = req.get_param("flow_run_id")
        if not run_id:
            raise invalid("flow_run_id", "Field required", None, loc_root="query")
        try:
            import uuid

            run_id = str(uuid.UUID(run_id))
        except ValueError:
            raise invalid("flow_run_id", "Input should be a valid UUID", run_id, loc_root="query") from None
        rows = await db.run(
            lambda: list(
                FlowRunState.select().where(FlowRunState.flow_run_id == run_id).order_by(FlowRunState.timestamp).dicts()
            )
        )
        send(resp, [shapes.state(r) for r in rows])


class FlowRunStateById:
    async def on_get(self, req, resp, state_id):
        row = await db.run(lambda: FlowRunState.select().where(FlowRunState.id == str(state_id)).dicts().first())
        if row is None:
            raise not_found("Flow run state not found")
        send(resp, shapes.state(row))


def register(app, prefix: str) -> None:
    app.add_route(f"{prefix}/flow_runs", FlowRuns())
    app.add_route(f"{prefix}/flow_runs/filter", FlowRunFilter())
    app.add_route(f"{prefix}/flow_runs/count", FlowRunCount())
    app.add_route(f"{prefix}/flow_runs/paginate", FlowRunPaginate())
    app.add_route(f"{prefix}/flow_runs/history", FlowRunHistory())
    app.add_route(f"{prefix}/flow_runs/{{run_id:uuid}}", FlowRunById())
    app.add_route(f"{prefix}/flow_runs/{{run_id:uuid}}/labels", FlowRunLabels())
    app.add_route(f"{prefix}/flow_runs/{{run_id:uuid}}/set_state", FlowRunSetState())
    app.add_route(f"{prefix}/flow_run_states", FlowRunStates())
    app.add_route(f"{prefix}/flow_run_states/{{state_id:uuid}}", FlowRunStateById())

