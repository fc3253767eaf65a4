"""``/work-pools``: pools with their health, one pool's queues (priority, concurrency,
status, runs waiting and running) and workers (ONLINE / OFFLINE, last heartbeat), one
queue's next and active runs. Pausing and resuming a pool or a queue, and a pool's
concurrency limit, go through db.work_pools as ``PATCH /work_pools/...`` does."""

from __future__ import annotations

from db import console_admin as reads
from db import database as db
from db import runs, work_pools
from ui import schema_form as sf
from ui.admin_common import flash, pager_urls, segment
from ui.errors import PageError
from ui.forms import read_form
from ui.render import redirect, render

MESSAGES = {
    "paused": "Work pool paused.", "resumed": "Work pool resumed.", "saved": "Concurrency limit saved.",
    "queue-paused": "Work queue paused.", "queue-resumed": "Work queue resumed.",
}
MAX_WORKERS_SHOWN = 200


def pool_url(name: str) -> str:
    return f"/work-pools/work-pool/{segment(name)}"


def queue_url(pool: str, queue: str) -> str:
    return f"{pool_url(pool)}/queue/{segment(queue)}"


async def _read(fn, *args):
    try:
        return await db.run(fn, *args)
    except runs.NotFound as exc:
        raise PageError(404, str(exc)) from None


class WorkPoolList:
    async def on_get(self, req, resp):
        page = await db.run(reads.work_pools_page, req.get_param("after"), req.get_param("before"))
        next_url, prev_url = pager_urls("/work-pools", page)
        render(req, resp, "work_pools.html", pools=page["rows"], pool_url=pool_url, message=flash(req, MESSAGES),
               next_url=next_url, prev_url=prev_url)


async def _pool_page(req, resp, name: str, *, errors=None, limit_value=None, status=200):
    def read():
        pool = work_pools.get_pool(name)
        queues = work_pools.list_queues(name)
        workers = work_pools.list_workers(name, None, MAX_WORKERS_SHOWN + 1)
        counts = reads.queue_run_counts([q["id"] for q in queues])
        return pool, queues, workers, counts

    pool, queues, workers, counts = await _read(read)
    active = sum(c["active"] for c in counts.values())
    render(
        req, resp, "work_pool.html", status=status, pool=pool, queues=queues, counts=counts, active_runs=active,
        workers=workers[:MAX_WORKERS_SHOWN], workers_capped=len(workers) > MAX_WORKERS_SHOWN,
        pool_url=pool_url, queue_url=queue_url, message=flash(req, MESSAGES), errors=errors or {},
        values={"concurrency_limit": limit_value if limit_value is not None else
                ("" if pool["concurrency_limit"] is None else str(pool["concurrency_limit"]))},
    )


class WorkPoolPage:
    async def on_get(self, req, resp, name):
        await _pool_page(req, resp, name)


async def _write(fn, *args):
    try:
        return await db.run_write(fn, *args)
    except runs.NotFound as exc:
        raise PageError(404, str(exc)) from None
    except work_pools.Forbidden as exc:
        raise PageError(403, str(exc)) from None


class PoolPause:
    def __init__(self, paused: bool):
        self.paused = paused

    async def on_post(self, req, resp, name):
        await read_form(req)
        await _write(work_pools.update_pool, name, {"is_paused": self.paused})
        redirect(resp, f"{pool_url(name)}?msg={'paused' if self.paused else 'resumed'}")


class PoolConcurrency:
    async def on_post(self, req, resp, name):
        form = await read_form(req)
        raw = sf.text(form, "concurrency_limit")
        errors: dict[str, str] = {}
        limit = sf.integer(raw, "concurrency_limit", errors, minimum=0, required=False)
        if errors:
            await _pool_page(req, resp, name, errors=errors, limit_value=raw, status=422)
            return
        await _write(work_pools.update_pool, name, {"concurrency_limit": limit})
        redirect(resp, f"{pool_url(name)}?msg=saved")


class QueuePause:
    def __init__(self, paused: bool):
        self.paused = paused

    async def on_post(self, req, resp, name, queue_name):
        form = await read_form(req)

        def apply():
            work_pools.update_queue(work_pools.read_queue(name, queue_name), {"is_paused": self.paused})

        await _write(apply)
        code = "queue-paused" if self.paused else "queue-resumed"
        back = queue_url(name, queue_name) if sf.text(form, "back") == "queue" else pool_url(name)
        redirect(resp, f"{back}?msg={code}")


class QueuePage:
    async def on_get(self, req, resp, name, queue_name):
        def read():
            queue = work_pools.read_queue(name, queue_name)
            return queue, reads.queue_runs(queue["id"]), reads.queue_run_counts([queue["id"]])[queue["id"]]

        queue, queue_runs, counts = await _read(read)
        render(req, resp, "_admin_work_queue.html", queue=queue, runs=queue_runs, counts=counts, pool_url=pool_url,
               queue_url=queue_url, message=flash(req, MESSAGES))


def register(app) -> None:
    app.add_route("/work-pools", WorkPoolList())
    app.add_route("/work-pools/work-pool/{name}", WorkPoolPage())
    app.add_route("/work-pools/work-pool/{name}/pause", PoolPause(True))
    app.add_route("/work-pools/work-pool/{name}/resume", PoolPause(False))
    app.add_route("/work-pools/work-pool/{name}/concurrency", PoolConcurrency())
    app.add_route("/work-pools/work-pool/{name}/queue/{queue_name}", QueuePage())
    app.add_route("/work-pools/work-pool/{name}/queue/{queue_name}/pause", QueuePause(True))
    app.add_route("/work-pools/work-pool/{name}/queue/{queue_name}/resume", QueuePause(False))
