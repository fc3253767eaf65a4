"""/work_queues: the id-addressed (legacy) work-queue reads the events worker and CLI use."""

from __future__ import annotations

from api.errors import not_found
from api.http import send
from api.listing import read_filter_body
from api.work_pools import queue_shape
from db import database as db
from db import work_pools
from db.models_deployments import WorkPool, WorkQueue
from db.states import iso


def _all_queues(names=None, limit=None, offset=None) -> list[dict]:
    query = (
        WorkQueue.select(WorkQueue, WorkPool.name.alias("work_pool_name"))
        .join(WorkPool, on=(WorkPool.id == WorkQueue.work_pool_id))
        .order_by(WorkQueue.name)
    )
    if names is not None:
        query = query.where(WorkQueue.name.in_(names))
    if limit is not None:
        query = query.limit(limit)
    if offset:
        query = query.offset(offset)
    return list(query.dicts())


class QueueById:
    async def on_get(self, req, resp, queue_id):
        row = await db.run(work_pools.read_queue_by_id, str(queue_id))
        if row is None:
            raise not_found("Work queue not found")
        send(resp, queue_shape(row))


class QueueStatus:
    async def on_get(self, req, resp, queue_id):
        row = await db.run(work_pools.read_queue_by_id, str(queue_id))
        if row is None:
            raise not_found("Work queue not found")
        shaped = queue_shape(row)
        send(resp, {"healthy": shaped["status"] == "READY", "late_runs_count": 0,
                    "last_polled": iso(row["last_polled"]), "health_check_policy": {
                        "maximum_late_runs": 0, "maximum_seconds_since_last_polled": 60}})


class QueueByName:
    async def on_get(self, req, resp, name):
        rows = await db.run(_all_queues, [name])
        if not rows:
            raise not_found("Work queue not found")
        send(resp, queue_shape(rows[0]))


class QueueFilter:
    async def on_post(self, req, resp):
        body = await read_filter_body(req)
        names = None
        wq = body.get("work_queues") or {}
        if isinstance(wq, dict) and isinstance(wq.get("name"), dict) and wq["name"].get("any_") is not None:
            names = list(wq["name"]["any_"])
        rows = await db.run(_all_queues, names, body.get("limit"), body.get("offset"))
        send(resp, [queue_shape(r) for r in rows])


def register(app, prefix: str) -> None:
    p = f"{prefix}/work_queues"
    app.add_route(f"{p}/filter", QueueFilter())
    app.add_route(f"{p}/name/{{name}}", QueueByName())
    app.add_route(f"{p}/{{queue_id:uuid}}", QueueById())
    app.add_route(f"{p}/{{queue_id:uuid}}/status", QueueStatus())
