"""/work_pools: pools, their queues and workers, worker heartbeats and the worker's
get_scheduled_flow_runs. The worker-channel websocket is refused with 404 so that
workers use the REST heartbeat (spec §4.6)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import Field

from api import shapes
from api.errors import ApiError, conflict, invalid, not_found
from api.http import no_content, parse, read_json, send
from api.listing import build_query, count_query, read_filter_body
from api.schemas import Body
from db import database as db
from db import runs, work_pools
from db.fields import utcnow
from db.filters import FilterError, paging
from db.models_deployments import WorkPool
from db.states import iso

POOL_SORTS = {"NAME_ASC": [WorkPool.name.asc()], "NAME_DESC": [WorkPool.name.desc()]}
STORAGE_DEFAULT = {"bundle_upload_step": None, "bundle_execution_step": None, "default_result_storage_block_id": None}


class WorkPoolCreate(Body):
    name: str = Field(min_length=1)
    description: str | None = None
    type: str = "prefect-agent"
    base_job_template: dict[str, Any] = Field(default_factory=dict)
    is_paused: bool = False
    concurrency_limit: int | None = Field(default=None, ge=0)
    storage_configuration: dict[str, Any] | None = None


class WorkPoolUpdate(Body):
    description: str | None = None
    is_paused: bool | None = None
    base_job_template: dict[str, Any] | None = None
    concurrency_limit: int | None = Field(default=None, ge=0)
    storage_configuration: dict[str, Any] | None = None


class WorkQueueCreate(Body):
    name: str = Field(min_length=1)
    description: str | None = ""  # the real server answers "" for a queue created without one
    is_paused: bool = False
    concurrency_limit: int | None = Field(default=None, ge=0)
    priority: int | None = Field(default=None, ge=1)


class WorkQueueUpdate(Body):
    name: str | None = None
    description: str | None = None
    is_paused: bool | None = None
    concurrency_limit: int | None = Field(default=None, ge=0)
    priority: int | None = Field(default=None, ge=1)


class Heartbeat(Body):
    name: str = Field(min_length=1)
    heartbeat_interval_seconds: int | None = None


class ScheduledRunsRequest(Body):
    work_queue_names: list[str] | None = None
    scheduled_before: dt.datetime | None = None
    scheduled_after: dt.datetime | None = None
    limit: int | None = Field(default=None, ge=0)


def _naive(value):
    if value is None:
        return None
    return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value


def pool_shape(row: dict, slots: int | None = None) -> dict:
    return {
        "id": row["id"],
        "created": iso(row["created"]),
        "updated": iso(row["updated"]),
        "name": row["name"],
        "description": row["description"],
        "type": row["type"],
        "base_job_template": row["base_job_template"] or {},
        "is_paused": row["is_paused"],
        "concurrency_limit": row["concurrency_limit"],
        "status": row["status"],
        "default_queue_id": row["default_queue_id"],
        "storage_configuration": {**STORAGE_DEFAULT, **(row["storage_configuration"] or {})},
        "active_slots": slots,
    }


def queue_shape(row: dict) -> dict:
    return {
        "id": row["id"],
        "created": iso(row["created"]),
        "updated": iso(row["updated"]),
        "name": row["name"],
        "description": row["description"],
        "is_paused": row["is_paused"],
        "concurrency_limit": row["concurrency_limit"],
        "priority": row["priority"],
        "work_pool_id": row["work_pool_id"],
        "filter": None,
        "last_polled": iso(row["last_polled"]),
        "work_pool_name": row.get("work_pool_name"),
        "status": "PAUSED" if row["is_paused"] else row["status"] or "NOT_READY",
        "active_slots": None,
    }


def worker_shape(row: dict) -> dict:
    return {
        "id": row["id"],
        "created": iso(row["created"]),
        "updated": iso(row["updated"]),
        "name": row["name"],
        "work_pool_id": row["work_pool_id"],
        "last_heartbeat_time": iso(row["last_heartbeat_time"]),
        "heartbeat_interval_seconds": row["heartbeat_interval_seconds"],
        "status": row["status"],
    }


def _domain_error(exc: Exception) -> ApiError:
    if isinstance(exc, runs.NotFound):
        return not_found(str(exc))
    if isinstance(exc, runs.Conflict):
        return conflict(str(exc))
    if isinstance(exc, work_pools.Forbidden):
        return ApiError(403, str(exc))
    raise exc


async def _write(fn, *args):
    try:
        return await db.run_write(fn, *args)
    except (runs.NotFound, runs.Conflict, work_pools.Forbidden) as exc:
        raise _domain_error(exc) from None


async def _read(fn, *args):
    try:
        return await db.run(fn, *args)
    except (runs.NotFound, runs.Conflict, work_pools.Forbidden) as exc:
        raise _domain_error(exc) from None


def _paging(body: dict):
    try:
        return paging(body)
    except FilterError as exc:
        raise invalid(exc.path, exc.message, exc.value, body) from None


# --- pools ----------------------------------------------------------------------------------


class WorkPools:
    async def on_post(self, req, resp):
        data = parse(WorkPoolCreate, await read_json(req)).model_dump()
        row = await _write(work_pools.create_pool, data)
        send(resp, pool_shape(row), 201)


class WorkPoolByName:
    async def on_get(self, req, resp, name):
        row = await _read(work_pools.get_pool, name)
        send(resp, pool_shape(row))

    async def on_patch(self, req, resp, name):
        changes = parse(WorkPoolUpdate, await read_json(req)).model_dump(exclude_unset=True)
        if changes.get("is_paused", False) is None:
            del changes["is_paused"]
        if "base_job_template" in changes and changes["base_job_template"] is None:
            del changes["base_job_template"]
        await _write(work_pools.update_pool, name, changes)
        no_content(resp)

    async def on_delete(self, req, resp, name):
        await _write(work_pools.delete_pool, name)
        no_content(resp)


class WorkPoolFilter:
    async def on_post(self, req, resp):
        body = await read_filter_body(req)
        query, _, _ = build_query(WorkPool, "work_pools", body, {"work_pools"}, POOL_SORTS, "NAME_ASC")
        rows = await db.run(lambda: list(query.dicts()))
        send(resp, [pool_shape(r) for r in rows])


class WorkPoolCount:
    async def on_post(self, req, resp):
        body = await read_filter_body(req)
        send(resp, await db.run(count_query(WorkPool, "work_pools", body, {"work_pools"}).count))


class WorkerChannel:
    """The 3.8 worker channel is not offered: 404 makes the worker fall back to REST."""

    async def on_get(self, req, resp, name):
        raise not_found("Not Found")


# --- queues ---------------------------------------------------------------------------------


class Queues:
    async def on_post(self, req, resp, name):
        data = parse(WorkQueueCreate, await read_json(req)).model_dump()
        row = await _write(work_pools.create_queue, name, data)
        send(resp, queue_shape(row), 201)


class QueueFilter:
    async def on_post(self, req, resp, name):
        body = await read_filter_body(req)
        limit, offset = _paging(body)
        names = None
        wq = body.get("work_queues") or {}
        if isinstance(wq, dict) and isinstance(wq.get("name"), dict) and wq["name"].get("any_") is not None:
            names = list(wq["name"]["any_"])
        rows = await _read(work_pools.list_queues, name, names, limit, offset)
        send(resp, [queue_shape(r) for r in rows])


class QueueByName:
    async def on_get(self, req, resp, name, queue_name):
        send(resp, queue_shape(await _read(work_pools.read_queue, name, queue_name)))

    async def on_patch(self, req, resp, name, queue_name):
        changes = parse(WorkQueueUpdate, await read_json(req)).model_dump(exclude_unset=True)
        for key in ("is_paused", "name"):
            if key in changes and changes[key] is None:
                del changes[key]

        def apply():
            queue = work_pools.read_queue(name, queue_name)
            work_pools.update_queue(queue, changes)

        await _write(apply)
        no_content(resp)

    async def on_delete(self, req, resp, name, queue_name):
        def apply():
            work_pools.delete_queue(work_pools.read_queue(name, queue_name))

        await _write(apply)
        no_content(resp)


# --- workers --------------------------------------------------------------------------------


class WorkerHeartbeat:
    async def on_post(self, req, resp, name):
        body = parse(Heartbeat, await read_json(req))
        await _write(work_pools.heartbeat, name, body.name, body.heartbeat_interval_seconds)
        no_content(resp)


class WorkerFilter:
    async def on_post(self, req, resp, name):
        body = await read_filter_body(req)
        limit, offset = _paging(body)
        statuses = None
        workers = body.get("workers") or {}
        if isinstance(workers, dict) and isinstance(workers.get("status"), dict):
            statuses = workers["status"].get("any_")
        rows = await _read(work_pools.list_workers, name, statuses, limit, offset)
        send(resp, [worker_shape(r) for r in rows])


class WorkerByName:
    async def on_delete(self, req, resp, name, worker_name):
        await _write(work_pools.delete_worker, name, worker_name)
        no_content(resp)


class PoolScheduledRuns:
    async def on_post(self, req, resp, name):
        body = parse(ScheduledRunsRequest, await read_json(req, {}) or {})
        pairs = await _write(
            work_pools.get_scheduled_flow_runs,
            name,
            body.work_queue_names,
            _naive(body.scheduled_before),
            _naive(body.scheduled_after),
            body.limit,
        )
        now = utcnow()
        out = []
        for queue, run in pairs:
            shaped = shapes.flow_run(run, now)
            out.append({"work_pool_id": queue["work_pool_id"], "work_queue_id": queue["id"], "flow_run": shaped})
        send(resp, out)


def register(app, prefix: str) -> None:
    p = f"{prefix}/work_pools"
    app.add_route(p, WorkPools())
    app.add_route(f"{p}/filter", WorkPoolFilter())
    app.add_route(f"{p}/count", WorkPoolCount())
    app.add_route(f"{p}/{{name}}", WorkPoolByName())
    app.add_route(f"{p}/{{name}}/get_scheduled_flow_runs", PoolScheduledRuns())
    app.add_route(f"{p}/{{name}}/queues", Queues())
    app.add_route(f"{p}/{{name}}/queues/filter", QueueFilter())
    app.add_route(f"{p}/{{name}}/queues/{{queue_name}}", QueueByName())
    app.add_route(f"{p}/{{name}}/workers/heartbeat", WorkerHeartbeat())
    app.add_route(f"{p}/{{name}}/workers/filter", WorkerFilter())
    app.add_route(f"{p}/{{name}}/workers/connect", WorkerChannel())
    app.add_route(f"{p}/{{name}}/workers/{{worker_name}}", WorkerByName())
