"""Read queries of the console's admin pages: deployments, work pools, blocks, variables,
concurrency limits, notifications.

Everything here is read-only and bounded: lists are keyset-paginated on their sort key
(``WHERE (key, id) > (…) ORDER BY key, id LIMIT n + 1``, never OFFSET) or capped where the
table stays small by nature (work pools, block types, limits, policies), and counts over
``flow_run`` are restricted to one index range and capped (``bounded_count``). Writes go
through the same domain functions the REST API uses (db.deployments, db.work_pools,
db.blocks, db.variables, db.concurrency, db.notifications), called by the page modules.
"""

from __future__ import annotations

import uuid

import peewee as pw

from db import blocks, concurrency
from db.models import Flow, FlowRun
from db.models_blocks import BlockDocument, BlockSchema, BlockType
from db.models_concurrency import ConcurrencyLimit
from db.models_deployments import Deployment, Worker, WorkPool, WorkQueue
from db.models_notifications import Automation, FlowRunNotificationPolicy, Notification
from db.models_variables import Variable
from db.states import STATE_TYPES

PAGE_SIZE = 50
CAP = 200  # rows of the small tables shown at once (keeps each page well under 150 KB)
COUNT_CAP = 1000
ACTIVE_STATES = ("PENDING", "RUNNING", "CANCELLING")
RUN_COLUMNS = (FlowRun.id, FlowRun.name, FlowRun.state_type, FlowRun.state_name, FlowRun.expected_start_time,
               FlowRun.start_time, FlowRun.end_time, FlowRun.total_run_time, FlowRun.next_scheduled_start_time)


def valid_uuid(value: str) -> str | None:
    """The canonical form of ``value``, or None when it is not a UUID."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None


def contains(expr, term: str):
    """``expr`` contains ``term``, case-insensitively, LIKE wildcards taken literally."""
    escaped = term.lower().replace("!", "!!").replace("%", "!%").replace("_", "!_")
    return pw.NodeList((pw.fn.LOWER(expr), pw.SQL("LIKE"), pw.Value(f"%{escaped}%"), pw.SQL("ESCAPE '!'")))


def bounded_count(query, cap: int = COUNT_CAP) -> int:
    """How many rows ``query`` has, counting at most ``cap + 1`` (shown as "1000+")."""
    return query.select(pw.SQL("1")).limit(cap + 1).count()


def keyset_after(key_cols, cursor: tuple, ascending: bool):
    """The rows after ``cursor`` in the order of ``key_cols`` (ascending or descending).

    (a, b) > (x, y) is a > x OR (a = x AND b > y); the leading a >= x in front of it is
    the same set, and it is what lets SQLite start an index range at the cursor (for the bare
    OR it unions two index searches and sorts them all: a whole-table sort per page)."""
    condition = None
    for i in range(len(key_cols) - 1, -1, -1):
        col, val = key_cols[i], cursor[i]
        step = col > val if ascending else col < val
        condition = step if condition is None else (step | ((col == val) & condition))
    first, value = key_cols[0], cursor[0]
    return ((first >= value) if ascending else (first <= value)) & condition


def _page(query, key_cols, cursor: tuple | None, backwards: bool, limit: int, asc: bool = True):
    """One keyset page of ``query`` ordered by ``key_cols`` (the last one unique).

    ``cursor`` is the key of the row the page starts after (or, ``backwards``, ends
    before). Returns (rows in display order, has_more_after, has_more_before)."""
    forward_asc = asc != backwards
    if cursor is not None:
        query = query.where(keyset_after(key_cols, cursor, forward_asc))
    order = [c.asc() if forward_asc else c.desc() for c in key_cols]
    rows = list(query.order_by(*order).limit(limit + 1).dicts())
    more = len(rows) > limit
    rows = rows[:limit]
    if backwards:
        rows.reverse()
        return rows, cursor is not None, more
    return rows, more, cursor is not None


def _pager(rows, more_after, more_before, key: str = "id") -> dict:
    return {
        "rows": rows,
        "next": rows[-1][key] if rows and more_after else None,
        "prev": rows[0][key] if rows and more_before else None,
    }


# --- deployments ------------------------------------------------------------------------------


def deployments_page(search: str = "", after: str | None = None, before: str | None = None,
                     limit: int = PAGE_SIZE) -> dict:
    """Deployments by name (then id), with their flow's name; ``after`` / ``before`` are ids."""
    query = (
        Deployment.select(Deployment.id, Deployment.name, Deployment.flow_id, Deployment.paused, Deployment.status,
                          Deployment.tags, Deployment.work_pool_name, Deployment.work_queue_name,
                          Deployment.updated, Flow.name.alias("flow_name"))
        .join(Flow, pw.JOIN.LEFT_OUTER, on=(Flow.id == Deployment.flow_id))
    )
    if search:
        query = query.where(contains(Deployment.name, search) | contains(Flow.name, search))
    cursor_id = after or before
    cursor = None
    if cursor_id:
        found = Deployment.select(Deployment.name, Deployment.id).where(Deployment.id == cursor_id).tuples().first()
        cursor = tuple(found) if found else None
    rows, more_after, more_before = _page(query, [Deployment.name, Deployment.id], cursor, bool(before), limit)
    ids = [r["id"] for r in rows]
    counts = {}
    if ids:
        from db.models_deployments import DeploymentSchedule

        counts = dict(
            DeploymentSchedule.select(DeploymentSchedule.deployment_id, pw.fn.COUNT(DeploymentSchedule.id))
            .where(DeploymentSchedule.deployment_id.in_(ids))
            .group_by(DeploymentSchedule.deployment_id)
            .tuples()
        )
    for r in rows:
        r["schedule_count"] = counts.get(r["id"], 0)
    return _pager(rows, more_after, more_before)


def deployment_runs(deployment_id: str, limit: int = 10) -> list[dict]:
    """The deployment's latest runs by scheduled start (newest first).

    One short backward range of the (deployment_id, state_type, next_scheduled_start_time)
    index per state type, merged here: a deployment with a million runs costs the same as
    one with ten (every run made from a deployment starts SCHEDULED, so has that time)."""
    found: list[dict] = []
    for state_type in STATE_TYPES:
        found.extend(
            FlowRun.select(*RUN_COLUMNS)
            .where((FlowRun.deployment_id == deployment_id) & (FlowRun.state_type == state_type)
                   & FlowRun.next_scheduled_start_time.is_null(False))
            .order_by(FlowRun.next_scheduled_start_time.desc())
            .limit(limit)
            .dicts()
        )
    found.sort(key=lambda r: (r["next_scheduled_start_time"], r["id"]), reverse=True)
    return found[:limit]


def flow_name(flow_id: str | None) -> str | None:
    if not flow_id:
        return None
    row = Flow.select(Flow.name).where(Flow.id == flow_id).tuples().first()
    return row[0] if row else None


# --- work pools -------------------------------------------------------------------------------


def worker_counts(pool_ids: list[str]) -> tuple[dict[str, int], dict[str, int]]:
    """(workers ONLINE, all workers) per pool id, in one grouped query."""
    online: dict[str, int] = {}
    total: dict[str, int] = {}
    if pool_ids:
        for pool_id, status, count in (
            Worker.select(Worker.work_pool_id, Worker.status, pw.fn.COUNT(Worker.id))
            .where(Worker.work_pool_id.in_(pool_ids)).group_by(Worker.work_pool_id, Worker.status).tuples()
        ):
            total[pool_id] = total.get(pool_id, 0) + count
            if status == "ONLINE":
                online[pool_id] = online.get(pool_id, 0) + count
    return online, total


def work_pools_page(after: str | None = None, before: str | None = None, limit: int = PAGE_SIZE) -> dict:
    """Pools by name (unique), with their queue count and workers online / total;
    ``after`` / ``before`` are names."""
    cursor_name = after if after is not None else before
    cursor = (cursor_name,) if cursor_name is not None else None
    pools, more_after, more_before = _page(WorkPool.select(), [WorkPool.name], cursor, before is not None, limit)
    ids = [p["id"] for p in pools]
    queues = {}
    if ids:
        queues = dict(WorkQueue.select(WorkQueue.work_pool_id, pw.fn.COUNT(WorkQueue.id))
                      .where(WorkQueue.work_pool_id.in_(ids)).group_by(WorkQueue.work_pool_id).tuples())
    online, workers = worker_counts(ids)
    for p in pools:
        p["queue_count"] = queues.get(p["id"], 0)
        p["workers_online"] = online.get(p["id"], 0)
        p["worker_count"] = workers.get(p["id"], 0)
    return _pager(pools, more_after, more_before, key="name")


def queue_run_counts(queue_ids: list[str]) -> dict[str, dict]:
    """queue id -> {"active": runs PENDING/RUNNING/CANCELLING, "scheduled": SCHEDULED (capped)}.

    Both are ranges of the (work_queue_id, state_type, next_scheduled_start_time) index."""
    out = {q: {"active": 0, "scheduled": 0} for q in queue_ids}
    if not queue_ids:
        return out
    for queue_id, count in (
        FlowRun.select(FlowRun.work_queue_id, pw.fn.COUNT(FlowRun.id))
        .where(FlowRun.work_queue_id.in_(queue_ids) & FlowRun.state_type.in_(ACTIVE_STATES))
        .group_by(FlowRun.work_queue_id).tuples()
    ):
        out[queue_id]["active"] = count
    for queue_id in queue_ids:
        out[queue_id]["scheduled"] = bounded_count(
            FlowRun.select().where((FlowRun.work_queue_id == queue_id) & (FlowRun.state_type == "SCHEDULED"))
        )
    return out


def queue_runs(queue_id: str, limit: int = 20) -> dict[str, list[dict]]:
    """A queue's next scheduled runs (soonest first) and its active runs."""
    upcoming = list(
        FlowRun.select(*RUN_COLUMNS)
        .where((FlowRun.work_queue_id == queue_id) & (FlowRun.state_type == "SCHEDULED"))
        .order_by(FlowRun.next_scheduled_start_time, FlowRun.id).limit(limit).dicts()
    )
    active = list(
        FlowRun.select(*RUN_COLUMNS)
        .where((FlowRun.work_queue_id == queue_id) & FlowRun.state_type.in_(ACTIVE_STATES))
        .limit(limit).dicts()
    )
    return {"upcoming": upcoming, "active": active}


# --- blocks -----------------------------------------------------------------------------------


def block_documents(type_slug: str | None = None, search: str = "", limit: int = CAP) -> list[dict]:
    """Named (not anonymous) block documents by type then name, without their data."""
    query = (
        BlockDocument.select(BlockDocument.id, BlockDocument.name, BlockDocument.created, BlockDocument.updated,
                             BlockType.name.alias("type_name"), BlockType.slug.alias("type_slug"))
        .join(BlockType, on=(BlockType.id == BlockDocument.block_type))
        .where(BlockDocument.is_anonymous == False)  # noqa: E712
    )
    if type_slug:
        query = query.where(BlockType.slug == type_slug)
    if search:
        query = query.where(contains(BlockDocument.name, search))
    return list(query.order_by(BlockType.name, BlockDocument.name, BlockDocument.id).limit(limit + 1).dicts())


def block_types_with_counts() -> list[dict]:
    """Every block type (by name) with how many named documents it has and its capabilities."""
    types = list(BlockType.select().order_by(BlockType.name).limit(CAP).dicts())
    counts = dict(
        BlockDocument.select(BlockDocument.block_type, pw.fn.COUNT(BlockDocument.id))
        .where(BlockDocument.is_anonymous == False)  # noqa: E712
        .group_by(BlockDocument.block_type).tuples()
    )
    caps: dict[str, set] = {}
    for type_id, capabilities in BlockSchema.select(BlockSchema.block_type, BlockSchema.capabilities).tuples():
        caps.setdefault(type_id, set()).update(_json_list(capabilities))
    for t in types:
        t["document_count"] = counts.get(t["id"], 0)
        t["capabilities"] = sorted(caps.get(t["id"], ()))
    return types


def _json_list(value) -> list:
    if isinstance(value, str):
        import orjson

        return orjson.loads(value)
    return list(value or [])


def latest_schema(type_id: str) -> dict | None:
    """The schema new documents of a type are made with: the newest, a versioned one before
    "non-versioned" (the built-in catalogue registers all its schemas at the same instant)."""
    schemas = list(BlockSchema.select(BlockSchema.id, BlockSchema.created, BlockSchema.version)
                   .where(BlockSchema.block_type == type_id).dicts())
    if not schemas:
        return None
    best = max(schemas, key=lambda s: (s["created"], s["version"] != "non-versioned", s["version"]))
    return blocks.read_block_schema(best["id"])


def documents_of_types(slugs: list[str], limit: int = CAP) -> dict[str, list[tuple[str, str]]]:
    """slug -> [(document id, name)] of the named documents of those types (for selects)."""
    out: dict[str, list[tuple[str, str]]] = {s: [] for s in slugs}
    if not slugs:
        return out
    query = (
        BlockDocument.select(BlockDocument.id, BlockDocument.name, BlockType.slug)
        .join(BlockType, on=(BlockType.id == BlockDocument.block_type))
        .where(BlockType.slug.in_(slugs) & (BlockDocument.is_anonymous == False))  # noqa: E712
        .order_by(BlockDocument.name).limit(limit).tuples()
    )
    for doc_id, name, slug in query:
        out[slug].append((doc_id, name))
    return out


def notification_blocks(limit: int = CAP) -> list[dict]:
    """Named documents of block types with the "notify" capability (the notification blocks)."""
    notify_types = {
        type_id for type_id, capabilities in BlockSchema.select(BlockSchema.block_type, BlockSchema.capabilities).tuples()
        if "notify" in _json_list(capabilities)
    }
    if not notify_types:
        return []
    return list(
        BlockDocument.select(BlockDocument.id, BlockDocument.name, BlockType.name.alias("type_name"),
                             BlockType.slug.alias("type_slug"))
        .join(BlockType, on=(BlockType.id == BlockDocument.block_type))
        .where(BlockDocument.block_type.in_(list(notify_types)) & (BlockDocument.is_anonymous == False))  # noqa: E712
        .order_by(BlockType.name, BlockDocument.name).limit(limit).dicts()
    )


def block_names(ids: list[str]) -> dict[str, dict]:
    """document id -> {"name", "type_name", "type_slug"} (for links from policies and logs)."""
    ids = [i for i in {valid_uuid(i) for i in ids if i} if i]
    if not ids:
        return {}
    query = (
        BlockDocument.select(BlockDocument.id, BlockDocument.name, BlockType.name.alias("type_name"),
                             BlockType.slug.alias("type_slug"))
        .join(BlockType, on=(BlockType.id == BlockDocument.block_type))
        .where(BlockDocument.id.in_(ids)).dicts()
    )
    return {r["id"]: r for r in query}


# --- variables --------------------------------------------------------------------------------


def variables_page(search: str = "", after: str | None = None, before: str | None = None,
                   limit: int = PAGE_SIZE) -> dict:
    """Variables by name (unique); ``after`` / ``before`` are names."""
    query = Variable.select()
    if search:
        query = query.where(contains(Variable.name, search))
    cursor_name = after if after is not None else before
    cursor = (cursor_name,) if cursor_name is not None else None
    rows, more_after, more_before = _page(query, [Variable.name], cursor, before is not None, limit)
    return _pager(rows, more_after, more_before, key="name")


# --- concurrency limits -----------------------------------------------------------------------


def global_limits(limit: int = CAP) -> list[dict]:
    """v2 limits other than the tag limits (those have their own list), by name."""
    return concurrency.list_limits(limit + 1, 0, ~ConcurrencyLimit.name.startswith(concurrency.TAG_PREFIX))


def tag_limits(limit: int = CAP) -> list[dict]:
    return concurrency.list_tag_limits(limit + 1, 0)


# --- notifications ----------------------------------------------------------------------------


def policies(limit: int = CAP) -> list[dict]:
    return list(FlowRunNotificationPolicy.select().order_by(FlowRunNotificationPolicy.created)
                .limit(limit + 1).dicts())


def automations(limit: int = CAP) -> list[dict]:
    return list(Automation.select().order_by(Automation.name, Automation.created).limit(limit + 1).dicts())


def delivery_log(status: str | None = None, after: str | None = None, before: str | None = None,
                 limit: int = PAGE_SIZE) -> dict:
    """The notification outbox, newest first; ``after`` / ``before`` are ids."""
    query = Notification.select(
        Notification.id, Notification.created, Notification.updated, Notification.source_kind,
        Notification.source_id, Notification.flow_run_id, Notification.state_name, Notification.state_type,
        Notification.block_document_id, Notification.channel, Notification.status, Notification.attempts,
        Notification.next_attempt_at, Notification.last_status_code, Notification.last_error, Notification.sent_at,
    )
    if status:
        query = query.where(Notification.status == status)
    cursor_id = after or before
    cursor = None
    if cursor_id:
        found = Notification.select(Notification.created, Notification.id).where(
            Notification.id == cursor_id).tuples().first()
        cursor = tuple(found) if found else None
    rows, more_after, more_before = _page(query, [Notification.created, Notification.id], cursor, bool(before),
                                          limit, asc=False)
    return _pager(rows, more_after, more_before)


def run_names(run_ids: list[str]) -> dict[str, str]:
    ids = [i for i in {valid_uuid(i) for i in run_ids if i} if i]
    if not ids:
        return {}
    return dict(FlowRun.select(FlowRun.id, FlowRun.name).where(FlowRun.id.in_(ids)).tuples())


def status_counts() -> dict[str, int]:
    """Delivery-log rows per status, each capped (the status index answers each)."""
    return {
        status: bounded_count(Notification.select().where(Notification.status == status))
        for status in ("pending", "sending", "failed", "dead")
    }
