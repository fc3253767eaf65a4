"""/flows: get-or-create by name, read, filter, count, paginate, update, delete."""

from __future__ import annotations

from api import shapes
from api.errors import not_found
from api.http import no_content, read_model, send
from api.listing import build_query, count_query, page_body, read_filter_body
from api.schemas import FlowCreate, FlowUpdate
from db import database as db
from db import runs
from db.models import Flow
from db.queries import flow_sorts

FILTER_KEYS = {"flows", "flow_runs", "task_runs", "deployments", "work_pools", "work_queues"}


class Flows:
    async def on_post(self, req, resp):
        body = await read_model(req, FlowCreate)
        row, created = await db.run_write(runs.get_or_create_flow, body.name, body.tags, body.labels)
        send(resp, shapes.flow(row), 201 if created else 200)


class FlowById:
    async def on_get(self, req, resp, flow_id):
        row = await db.run(runs.read_flow, str(flow_id))
        if row is None:
            raise not_found("Flow not found")
        send(resp, shapes.flow(row))

    async def on_patch(self, req, resp, flow_id):
        body = await read_model(req, FlowUpdate)
        changes = body.values()

        def update():
            if not changes:
                return Flow.select().where(Flow.id == str(flow_id)).exists()
            return Flow.update(**changes, updated=runs.utcnow()).where(Flow.id == str(flow_id)).execute()

        if not await db.run_write(update):
            raise not_found("Flow not found")
        no_content(resp)

    async def on_delete(self, req, resp, flow_id):
        try:
            await db.run_write(_delete_flow, str(flow_id))
        except runs.NotFound:
            raise not_found("Flow not found") from None
        no_content(resp)


def _delete_flow(flow_id: str) -> None:
    """A flow goes with its deployments (and their schedules), as Prefect's FK cascade does."""
    from db import deployments
    from db.models_deployments import Deployment

    for (deployment_id,) in Deployment.select(Deployment.id).where(Deployment.flow_id == flow_id).tuples():
        deployments.delete(deployment_id)
    runs.delete_flow(flow_id)


class FlowByName:
    async def on_get(self, req, resp, name):
        row = await db.run(lambda: Flow.select().where(Flow.name == name).dicts().first())
        if row is None:
            raise not_found("Flow not found")
        send(resp, shapes.flow(row))


class FlowFilter:
    async def on_post(self, req, resp):
        body = await read_filter_body(req)
        query, _, _ = build_query(Flow, "flows", body, FILTER_KEYS, flow_sorts(), "NAME_ASC")
        rows = await db.run(lambda: list(query.dicts()))
        send(resp, [shapes.flow(r) for r in rows])


class FlowCount:
    async def on_post(self, req, resp):
        body = await read_filter_body(req)
        query = count_query(Flow, "flows", body, FILTER_KEYS)
        send(resp, await db.run(query.count))


class FlowPaginate:
    async def on_post(self, req, resp):
        body = await read_filter_body(req)
        query, limit, page = build_query(Flow, "flows", body, FILTER_KEYS, flow_sorts(), "NAME_ASC", paginate=True)
        counter = count_query(Flow, "flows", body, FILTER_KEYS)

        def fetch():
            return list(query.dicts()), counter.count()

        rows, count = await db.run(fetch)
        send(resp, page_body([shapes.flow(r) for r in rows], count, limit, page))


def register(app, prefix: str) -> None:
    app.add_route(f"{prefix}/flows", Flows())
    app.add_route(f"{prefix}/flows/filter", FlowFilter())
    app.add_route(f"{prefix}/flows/count", FlowCount())
    app.add_route(f"{prefix}/flows/paginate", FlowPaginate())
    app.add_route(f"{prefix}/flows/name/{{name}}", FlowByName())
    app.add_route(f"{prefix}/flows/{{flow_id:uuid}}", FlowById())

