"""Work pools, work queues and workers, and the worker's run selection
(``get_scheduled_flow_runs``).

Every function runs inside the caller's transaction. Pools are addressed by name (as
the API does); a pool always has a default queue (created with it). Queue priorities
within a pool are kept unique by shifting the others.
"""

from __future__ import annotations

import datetime as dt

import peewee as pw

from db import database as dbmod
from db.fields import new_id, utcnow
from db.models import FlowRun
from db.models_deployments import Deployment, Worker, WorkPool, WorkQueue
from db.runs import Conflict, NotFound

DEFAULT_AGENT_POOL = "default-agent-pool"
AGENT_TYPE = "prefect-agent"
DEFAULT_LIMIT = 200
OFFLINE_AFTER_MISSED_BEATS = 3
DEFAULT_HEARTBEAT_SECONDS = 30
STALE_POLL_SECONDS = 60


class Forbidden(PermissionError):
    pass


def _pool_not_found(name: str) -> NotFound:
    return NotFound(f'Work pool "{name}" not found.')


# --- pools ------------------------------------------------------------------------------


def read_pool(name: str) -> dict | None:
    return WorkPool.select().where(WorkPool.name == name).dicts().first()


def read_pool_by_id(pool_id: str) -> dict | None:
    return WorkPool.select().where(WorkPool.id == pool_id).dicts().first()


def get_pool(name: str) -> dict:
    pool = read_pool(name)
    if pool is None:
        raise _pool_not_found(name)
    return pool


def _initial_status(data: dict) -> str | None:
    if data.get("is_paused"):
        return "PAUSED"
    return None if data.get("type", AGENT_TYPE) == AGENT_TYPE else "NOT_READY"


def create_pool(data: dict, *, internal: bool = False) -> dict:
    name = data["name"]
    if not internal and name.lower().startswith("prefect"):
        raise Forbidden("Work pools starting with 'Prefect' are reserved for internal use.")
    if read_pool(name) is not None:
        raise Conflict("A work pool with this name already exists.")
    now = utcnow()
    pool = {
        "id": new_id(),
        "created": now,
        "updated": now,
        "name": name,
        "description": data.get("description"),
        "type": data.get("type") or AGENT_TYPE,
        "base_job_template": data.get("base_job_template") or {},
        "is_paused": bool(data.get("is_paused")),
        "concurrency_limit": data.get("concurrency_limit"),
        "status": _initial_status(data),
        "default_queue_id": None,
        "storage_configuration": data.get("storage_configuration"),
    }
    try:
        with dbmod.database.atomic():
            WorkPool.insert(pool).execute()
    except pw.IntegrityError:
        raise Conflict("A work pool with this name already exists.") from None
    queue = _insert_queue(pool["id"], {"name": "default", "description": "The work pool's default queue."}, 1, now)
    WorkPool.update(default_queue_id=queue["id"]).where(WorkPool.id == pool["id"]).execute()
    pool["default_queue_id"] = queue["id"]
    return pool


def update_pool(name: str, changes: dict) -> None:
    pool = get_pool(name)
    changes = dict(changes)
    if "is_paused" in changes and changes["is_paused"] is not None:
        if changes["is_paused"]:
            changes["status"] = "PAUSED"
        elif pool["is_paused"]:
            changes["status"] = _unpaused_status(pool)
    changes["updated"] = utcnow()
    WorkPool.update(changes).where(WorkPool.id == pool["id"]).execute()


def _unpaused_status(pool: dict) -> str | None:
    if pool["type"] == AGENT_TYPE:
        return None
    online = Worker.select().where((Worker.work_pool_id == pool["id"]) & (Worker.status == "ONLINE")).exists()
    return "READY" if online else "NOT_READY"


def delete_pool(name: str) -> None:
    pool = get_pool(name)
    if pool["name"] == DEFAULT_AGENT_POOL:
        raise Forbidden("Cannot delete the default agent work pool.")
    Worker.delete().where(Worker.work_pool_id == pool["id"]).execute()
    WorkQueue.delete().where(WorkQueue.work_pool_id == pool["id"]).execute()
    WorkPool.delete().where(WorkPool.id == pool["id"]).execute()


def active_slots(pool_id: str) -> int:
    return (
        FlowRun.select()
        .where((FlowRun.work_pool_id == pool_id) & FlowRun.state_type.in_(("PENDING", "RUNNING", "CANCELLING")))
        .count()
    )


# --- queues ------------------------------------------------------------------------------


def _insert_queue(pool_id: str, data: dict, priority: int, now) -> dict:
    queue = {
        "id": new_id(),
        "created": now,
        "updated": now,
        "name": data["name"],
        "description": data.get("description"),
        "is_paused": bool(data.get("is_paused")),
        "concurrency_limit": data.get("concurrency_limit"),
        "priority": priority,
        "work_pool_id": pool_id,
        "last_polled": None,
        "status": "PAUSED" if data.get("is_paused") else "NOT_READY",
    }
    try:
        with dbmod.database.atomic():
            WorkQueue.insert(queue).execute()
    except pw.IntegrityError:
        raise Conflict("A work queue with this name already exists.") from None
    return queue


def _shift_priorities(pool_id: str, priority: int, exclude: str | None = None) -> None:
    """Make room at ``priority``: the queues at or below it move down by one (kept unique)."""
    query = WorkQueue.update(priority=WorkQueue.priority + 1).where(
        (WorkQueue.work_pool_id == pool_id) & (WorkQueue.priority >= priority)
    )
    if exclude:
        query = query.where(WorkQueue.id != exclude)
    query.execute()


def create_queue(pool_name: str, data: dict) -> dict:
    pool = _lock_pool(pool_name)
    if WorkQueue.select().where((WorkQueue.work_pool_id == pool["id"]) & (WorkQueue.name == data["name"])).exists():
        raise Conflict("A work queue with this name already exists.")
    last = WorkQueue.select(pw.fn.MAX(WorkQueue.priority)).where(WorkQueue.work_pool_id == pool["id"]).scalar() or 0
    priority = data.get("priority")
    if priority is None or priority > last:
        priority = last + 1 if priority is None else priority
    else:
        _shift_priorities(pool["id"], priority)
    return dict(_insert_queue(pool["id"], data, priority, utcnow()), work_pool_name=pool["name"])


def _lock_pool(name: str) -> dict:
    query = WorkPool.select().where(WorkPool.name == name)
    if dbmod.is_postgres():
        query = query.for_update()
    pool = query.dicts().first()
    if pool is None:
        raise _pool_not_found(name)
    return pool


def read_queue(pool_name: str, queue_name: str) -> dict:
    pool = get_pool(pool_name)
    queue = (
        WorkQueue.select().where((WorkQueue.work_pool_id == pool["id"]) & (WorkQueue.name == queue_name)).dicts().first()
    )
    if queue is None:
        raise NotFound(f"Work queue '{queue_name}' not found.")
    return dict(queue, work_pool_name=pool["name"])


def read_queue_by_id(queue_id: str) -> dict | None:
    queue = WorkQueue.select().where(WorkQueue.id == queue_id).dicts().first()
    if queue is None:
        return None
    pool = read_pool_by_id(queue["work_pool_id"])
    return dict(queue, work_pool_name=pool["name"] if pool else None)


def list_queues(pool_name: str, names: list[str] | None = None, limit=None, offset=None) -> list[dict]:
    pool = get_pool(pool_name)
    query = WorkQueue.select().where(WorkQueue.work_pool_id == pool["id"])
    if names is not None:
        query = query.where(WorkQueue.name.in_(names))
    query = query.order_by(WorkQueue.priority, WorkQueue.name)
    if limit is not None:
        query = query.limit(limit)
    if offset:
        query = query.offset(offset)
    return [dict(q, work_pool_name=pool["name"]) for q in query.dicts()]


def update_queue(queue: dict, changes: dict) -> None:
    changes = {k: v for k, v in changes.items()}
    if changes.get("priority") is not None and changes["priority"] != queue["priority"]:
        taken = WorkQueue.select().where(
            (WorkQueue.work_pool_id == queue["work_pool_id"])
            & (WorkQueue.priority == changes["priority"])
            & (WorkQueue.id != queue["id"])
        ).exists()
        if taken:
            _shift_priorities(queue["work_pool_id"], changes["priority"], exclude=queue["id"])
    if "is_paused" in changes and changes["is_paused"] is not None:
        if changes["is_paused"]:
            changes["status"] = "PAUSED"
        elif queue["is_paused"]:
            changes["status"] = _poll_status(queue.get("last_polled"))
    changes["updated"] = utcnow()
    WorkQueue.update(changes).where(WorkQueue.id == queue["id"]).execute()


def _poll_status(last_polled) -> str:
    if last_polled and utcnow() - last_polled < dt.timedelta(seconds=STALE_POLL_SECONDS):
        return "READY"
    return "NOT_READY"


def delete_queue(queue: dict) -> None:
    pool = read_pool_by_id(queue["work_pool_id"])
    if pool and pool["default_queue_id"] == queue["id"]:
        raise Forbidden("Can't delete a pool's default queue.")
    WorkQueue.delete().where(WorkQueue.id == queue["id"]).execute()


def resolve_queue(pool_name: str | None, queue_name: str | None, *, create_missing: bool = False) -> dict | None:
    """(pool, queue) columns for a run/deployment naming a pool and/or queue; None when neither.

    A queue without a pool is a legacy queue in the default agent pool (created if missing).
    """
    if not pool_name and not queue_name:
        return None
    if pool_name:
        pool = get_pool(pool_name)
    else:
        pool = read_pool(DEFAULT_AGENT_POOL) or create_pool({"name": DEFAULT_AGENT_POOL}, internal=True)
        create_missing = True
    if queue_name:
        queue = (
            WorkQueue.select()
            .where((WorkQueue.work_pool_id == pool["id"]) & (WorkQueue.name == queue_name))
            .dicts()
            .first()
        )
        if queue is None:
            if not create_missing:
                raise NotFound(f"Work queue '{queue_name}' not found.")
            queue = create_queue(pool["name"], {"name": queue_name})
    else:
        queue = WorkQueue.select().where(WorkQueue.id == pool["default_queue_id"]).dicts().first()
    return {
        "work_pool_id": pool["id"],
        "work_pool_name": pool["name"],
        "work_queue_id": queue["id"],
        "work_queue_name": queue["name"],
    }


# --- workers -----------------------------------------------------------------------------


def heartbeat(pool_name: str, worker_name: str, interval: int | None) -> None:
    pool = get_pool(pool_name)
    now = utcnow()
    row = {
        "id": new_id(),
        "created": now,
        "updated": now,
        "name": worker_name,
        "work_pool_id": pool["id"],
        "last_heartbeat_time": now,
        "heartbeat_interval_seconds": interval,
        "status": "ONLINE",
    }
    updated = (
        Worker.update(last_heartbeat_time=now, heartbeat_interval_seconds=interval, status="ONLINE", updated=now)
        .where((Worker.work_pool_id == pool["id"]) & (Worker.name == worker_name))
        .execute()
    )
    if not updated:
        try:
            with dbmod.database.atomic():
                Worker.insert(row).execute()
        except pw.IntegrityError:  # a concurrent first heartbeat of the same worker
            pass
    if pool["status"] == "NOT_READY":
        WorkPool.update(status="READY", updated=now).where(
            (WorkPool.id == pool["id"]) & (WorkPool.status == "NOT_READY")
        ).execute()


def list_workers(pool_name: str, statuses: list[str] | None = None, limit=None, offset=None) -> list[dict]:
    pool = get_pool(pool_name)
    query = Worker.select().where(Worker.work_pool_id == pool["id"])
    if statuses:
        query = query.where(Worker.status.in_(statuses))
    query = query.order_by(Worker.last_heartbeat_time.desc())
    if limit is not None:
        query = query.limit(limit)
    if offset:
        query = query.offset(offset)
    return list(query.dicts())


def delete_worker(pool_name: str, worker_name: str) -> None:
    pool = get_pool(pool_name)
    if not Worker.delete().where((Worker.work_pool_id == pool["id"]) & (Worker.name == worker_name)).execute():
        raise NotFound("Worker not found.")


# --- run selection -----------------------------------------------------------------------


def get_scheduled_flow_runs(
    pool_name: str,
    queue_names: list[str] | None,
    before: dt.datetime | None,
    after: dt.datetime | None,
    limit: int | None,
) -> list[tuple[dict, dict]]:
    """Runs a worker should start now: [(queue, run row)], by queue priority then time.

    Paused pools/queues give nothing; each queue's and the pool's concurrency limit
    caps how many more runs may start (PENDING/RUNNING/CANCELLING count as taken).
    Marks the polled queues (and their deployments) READY.
    """
    pool = get_pool(pool_name)
    queues = WorkQueue.select().where(WorkQueue.work_pool_id == pool["id"])
    if queue_names:
        queues = queues.where(WorkQueue.name.in_(queue_names))
    queues = list(queues.order_by(WorkQueue.priority).dicts())
    if queue_names:
        missing = set(queue_names) - {q["name"] for q in queues}
        if missing:
            raise NotFound(f"Work queue '{sorted(missing)[0]}' not found.")
    now = utcnow()
    _mark_polled([q["id"] for q in queues], now)
    if pool["is_paused"]:
        return []
    limit = DEFAULT_LIMIT if limit is None else limit
    pool_room = None
    if pool["concurrency_limit"] is not None:
        pool_room = max(pool["concurrency_limit"] - active_slots(pool["id"]), 0)
        limit = min(limit, pool_room)
    out: list[tuple[dict, dict]] = []
    for queue in queues:
        if len(out) >= limit:
            break
        if queue["is_paused"]:
            continue
        room = limit - len(out)
        if queue["concurrency_limit"] is not None:
            taken = (
                FlowRun.select()
                .where(
                    (FlowRun.work_queue_id == queue["id"])
                    & FlowRun.state_type.in_(("PENDING", "RUNNING", "CANCELLING"))
                )
                .count()
            )
            room = min(room, max(queue["concurrency_limit"] - taken, 0))
        if room <= 0:
            continue
        query = FlowRun.select().where(
            (FlowRun.work_queue_id == queue["id"]) & (FlowRun.state_type == "SCHEDULED")
        )
        if before is not None:
            query = query.where(FlowRun.next_scheduled_start_time <= before)
        if after is not None:
            query = query.where(FlowRun.next_scheduled_start_time >= after)
        rows = query.order_by(FlowRun.next_scheduled_start_time).limit(room * 2 + 10).dicts()
        for run in rows:
            if (run["empirical_policy"] or {}).get("retry_type") == "in_process":
                continue
            out.append((queue, run))
            room -= 1
            if room <= 0:
                break
    return out


def _mark_polled(queue_ids: list[str], now: dt.datetime) -> None:
    if not queue_ids:
        return
    WorkQueue.update(last_polled=now, status="READY").where(
        WorkQueue.id.in_(queue_ids) & (WorkQueue.is_paused == False)  # noqa: E712
    ).execute()
    WorkQueue.update(last_polled=now).where(WorkQueue.id.in_(queue_ids) & (WorkQueue.is_paused == True)).execute()  # noqa: E712
    Deployment.update(last_polled=now, status="READY").where(Deployment.work_queue_id.in_(queue_ids)).execute()


# --- foreman (status upkeep; called by a background service) ------------------------------


def mark_offline_workers_and_stale(now: dt.datetime | None = None) -> dict:
    """Workers past 3 missed heartbeats -> OFFLINE; pools without ONLINE workers -> NOT_READY;
    queues and deployments not polled for 60 s -> NOT_READY. Conditional updates only, so
    several replicas doing this at once converge on the same result."""
    now = now or utcnow()
    changed = 0
    for worker in Worker.select().where(Worker.status == "ONLINE").dicts():
        interval = worker["heartbeat_interval_seconds"] or DEFAULT_HEARTBEAT_SECONDS
        if worker["last_heartbeat_time"] and now - worker["last_heartbeat_time"] > dt.timedelta(
            seconds=interval * OFFLINE_AFTER_MISSED_BEATS
        ):
            changed += Worker.update(status="OFFLINE", updated=now).where(
                (Worker.id == worker["id"]) & (Worker.last_heartbeat_time == worker["last_heartbeat_time"])
            ).execute()
    online_pools = Worker.select(Worker.work_pool_id).where(Worker.status == "ONLINE")
    changed += WorkPool.update(status="NOT_READY", updated=now).where(
        (WorkPool.status == "READY") & WorkPool.id.not_in(online_pools)
    ).execute()
    stale = now - dt.timedelta(seconds=STALE_POLL_SECONDS)
    changed += WorkQueue.update(status="NOT_READY").where(
        (WorkQueue.status == "READY") & ((WorkQueue.last_polled.is_null()) | (WorkQueue.last_polled < stale))
    ).execute()
    changed += Deployment.update(status="NOT_READY").where(
        (Deployment.status == "READY") & ((Deployment.last_polled.is_null()) | (Deployment.last_polled < stale))
    ).execute()
    return {"changed": changed}
