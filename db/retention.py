"""Data retention: which rows are old, counting them (``--dry-run``) and deleting them in
bounded batches, every batch its own short transaction.

Kinds, each switched on by its own duration setting (README, "Retention"):

- ``events``: events that occurred before the cut-off (an event's resources, its
  ``resource`` and ``related`` columns, live in its own row);
- ``notifications``: deliveries in a final status (sent, failed, dead) not updated since;
- ``workers``: workers whose last heartbeat is older (a worker that comes back registers
  again with its next heartbeat);
- ``flow_runs``: terminal flow runs that ended before the cut-off, with their children:
  the run's task runs (with their states, logs, artifacts and events) and the run's own
  states, logs, artifacts, inputs and events. An artifact collection whose latest artifact
  is deleted points at the newest remaining version of its key afterwards, or goes with
  the last one (as deleting an artifact through the API does).

A flow-run batch: up to ``batch_size`` eligible runs, oldest ``end_time`` first (through
ix_flow_run_end_time); then their children, deleted parent by parent through each child
table's own parent index, at most ``child_batch_size`` rows per statement, each statement
its own transaction; the runs go last, re-checked as still terminal and old (on PostgreSQL
skipping a run another transaction holds locked). An interrupted pass therefore leaves no
orphan: the runs are still there and the next pass walks their remaining children the same
way. No statement looks for "children whose run is gone": that anti-join reads the whole
child table on every batch (Prefect's log vacuum, PrefectHQ/prefect#22874). On PostgreSQL
the per-parent walk is a LATERAL probe, a plan that cannot become a scan of the child table
however the planner estimates the batch; on SQLite a join from a VALUES list.

Subflow runs are flow runs of their own: they age by their own ``end_time`` (a subflow
ends before or with its parent) and are not deleted with the parent; one that outlives its
parent keeps a ``parent_task_run_id`` that points at nothing, as after any task-run delete.
A run set back from a terminal state while its batch is being deleted keeps its row, but
may have lost history that was past retention anyway.

One pass at a time across replicas and processes: a session advisory lock on a connection
of its own on PostgreSQL, an exclusive lock on a file beside the database on SQLite. The
same steps run from the background service (db.services_core: each transaction through
db.run_write, so on SQLite the one writer thread serves API writes between batches) and
from ``appliance database prune`` (on its own thread).

Space: on PostgreSQL autovacuum makes the deleted rows' space reusable (shrinking the
files takes pg_repack). On SQLite a pass that deleted rows ends with PRAGMA
incremental_vacuum, which returns free pages to the file system when the file has
auto_vacuum=INCREMENTAL; switching an existing file to that takes one VACUUM
(:func:`enable_incremental_vacuum`, ``appliance database prune --vacuum``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import functools
import logging
import time
import zlib
from collections.abc import Callable, Generator
from dataclasses import dataclass

import peewee as pw

from db import artifacts as artifacts_mod
from db import database as dbmod
from db.fields import utcnow
from db.models import Artifact, ArtifactCollection, Event, FlowRun, TaskRun
from db.models_deployments import Worker
from db.models_notifications import Notification
from db.states import TERMINAL

log = logging.getLogger("appliance.retention")

KINDS = ("events", "notifications", "workers", "flow_runs")  # the order of a pass
TABLES = {  # what each kind deletes, as reported
    "events": ("event",),
    "notifications": ("notification",),
    "workers": ("worker",),
    "flow_runs": ("flow_run", "flow_run_state", "task_run", "task_run_state", "log", "artifact",
                  "flow_run_input", "event"),
}
FINAL_NOTIFICATION_STATUSES = ("sent", "failed", "dead")
LOCK_KEY = zlib.crc32(b"appliance.service.retention")
VACUUM_PAGES = 2000  # pages one SQLite incremental-vacuum transaction frees at most
READ, WRITE = "read", "write"
# A child of a run that a task run's own row does not cover: logs and artifacts of a task run
# that name another flow run (or none) than the task run's; the others went with the run's.
OTHER_FLOW_RUN = " AND (c.flow_run_id IS NULL OR c.flow_run_id <> p.fr)"

Counts = dict[str, dict[str, int]]
Step = tuple[str, Callable[[], object]]


class Busy(RuntimeError):
    """Another prune of this database holds the retention lock."""


@dataclass(frozen=True)
class Plan:
    """What one pass deletes: the cut-off of each enabled kind, and how big its batches are."""

    retention: dict[str, dt.timedelta | None]  # every kind asked for; None: off
    cutoffs: dict[str, dt.datetime]  # the enabled kinds: rows older than this go
    batch_size: int = 500
    child_batch_size: int = 2000
    pause_seconds: float = 0.0
    incremental_vacuum: bool = True

    @classmethod
    def from_settings(cls, settings, *, kinds=None, older_than: dt.timedelta | None = None,
                      now: dt.datetime | None = None) -> Plan:
        """The plan of the settings; ``kinds`` picks some, ``older_than`` overrides their durations."""
        now = now or utcnow()
        retention = {kind: older_than or getattr(settings, f"retention_{kind}") for kind in (kinds or KINDS)}
        return cls(
            retention=retention,
            cutoffs={kind: now - age for kind, age in retention.items() if age is not None},
            batch_size=settings.retention_batch_size,
            child_batch_size=settings.retention_child_batch_size,
            pause_seconds=settings.retention_pause_seconds,
            incremental_vacuum=settings.retention_sqlite_incremental_vacuum,
        )

    @property
    def enabled(self) -> bool:
        return bool(self.cutoffs)


def total(counts: Counts) -> int:
    return sum(n for tables in counts.values() for n in tables.values())


def describe(counts: Counts) -> str:
    """One line for the log: ``flow_runs: 120 flow_run, 3400 log; events: 50 event``."""
    parts = []
    for kind, tables in counts.items():
        rows = ", ".join(f"{n} {table}" for table, n in tables.items() if n)
        parts.append(f"{kind}: {rows or 'nothing'}")
    return "; ".join(parts)


# --- running a pass -----------------------------------------------------------------------------


def prune(plan: Plan, *, dry_run: bool = False) -> Counts:
    """One pass on this thread (the CLI): each write step in its own transaction. A dry run
    only reads, and takes no lock. Raises Busy when another pass holds the lock."""
    counts = _empty_counts(plan)
    if not plan.enabled:
        return counts
    with contextlib.nullcontext() if dry_run else _locked():
        _run_sync(_pass(plan, dry_run, counts), plan.pause_seconds)
    return counts


async def prune_async(plan: Plan, *, stop: asyncio.Event | None = None) -> Counts | None:
    """One pass of the background service: every step through the database pools (reads in
    the reader pool, each write step one run_write), so no API request waits behind more
    than one short transaction. None when another replica holds the lock; a set ``stop``
    ends the pass between two steps (the rows counted so far are returned)."""
    counts = _empty_counts(plan)
    if not plan.enabled:
        return counts
    lock = RetentionLock()
    if not await asyncio.to_thread(lock.acquire):
        return None
    try:
        await _run_async(_pass(plan, False, counts), plan.pause_seconds, stop)
    finally:
        await asyncio.to_thread(lock.release)
    return counts


def _empty_counts(plan: Plan) -> Counts:
    return {kind: dict.fromkeys(TABLES[kind], 0) for kind in KINDS if kind in plan.cutoffs}


def _run_sync(steps: Generator[Step, object, None], pause: float) -> None:
    result = None
    with contextlib.closing(steps):
        while True:
            try:
                kind, fn = steps.send(result)
            except StopIteration:
                return
            if kind == WRITE:
                with dbmod.write_tx():
                    result = fn()
                if pause:
                    time.sleep(pause)
            else:
                result = fn()


async def _run_async(steps: Generator[Step, object, None], pause: float, stop: asyncio.Event | None) -> None:
    result = None
    with contextlib.closing(steps):
        while stop is None or not stop.is_set():
            try:
                kind, fn = steps.send(result)
            except StopIteration:
                return
            if kind == WRITE:
                result = await dbmod.run_write(fn)
                if pause:
                    await asyncio.sleep(pause)
            else:
                result = await dbmod.run(fn)


class RetentionLock:
    """One pass at a time per database. PostgreSQL: a session advisory lock on a connection
    of its own (the pass's transactions run on whichever pool threads are free, and the lock
    goes with the connection if the process dies). SQLite: flock on ``<file>.retention-lock``
    (several gunicorn workers share one file)."""

    def __init__(self) -> None:
        self._conn = None
        self._file = None

    def acquire(self) -> bool:
        db = dbmod.database.obj
        if isinstance(db, pw.PostgresqlDatabase):
            import psycopg2

            conn = psycopg2.connect(dbname=db.database, **{**db.connect_params, "application_name": "appliance-retention"})
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))
                held = cursor.fetchone()[0]
            if not held:
                conn.close()
                return False
            self._conn = conn
            return True
        if db.database == ":memory:":
            return True
        handle = open(f"{db.database}.retention-lock", "a+")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._file = handle
        return True

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # a dead connection has released the lock already
                with self._conn.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
            self._conn.close()
            self._conn = None
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


@contextlib.contextmanager
def _locked():
    lock = RetentionLock()
    if not lock.acquire():
        raise Busy("another prune of this database is running (it holds the retention lock); try again later")
    try:
        yield
    finally:
        lock.release()


# --- the steps of a pass ------------------------------------------------------------------------
# Generators yielding (READ | WRITE, fn); the driver runs fn (a WRITE in a transaction of its
# own) and sends its result back. Row counts go into `counts` as each step completes.


def _pass(plan: Plan, dry_run: bool, counts: Counts) -> Generator[Step, object, None]:
    for kind in KINDS:
        if kind in plan.cutoffs:
            yield from _KIND_STEPS[kind](plan, dry_run, counts[kind])
    if not dry_run and plan.incremental_vacuum and dbmod.is_sqlite() and total(counts):
        yield from _incremental_vacuum()


def _events(plan, dry_run, counts):
    condition = Event.occurred < plan.cutoffs["events"]
    yield from _drain(plan, dry_run, counts, Event, condition, Event.occurred)


def _notifications(plan, dry_run, counts):
    cutoff = plan.cutoffs["notifications"]
    for status in FINAL_NOTIFICATION_STATUSES:  # one status at a time: (status, updated) in index order
        condition = (Notification.status == status) & (Notification.updated < cutoff)
        yield from _drain(plan, dry_run, counts, Notification, condition, Notification.updated)


def _workers(plan, dry_run, counts):
    cutoff = plan.cutoffs["workers"]
    condition = (Worker.last_heartbeat_time < cutoff) | (
        Worker.last_heartbeat_time.is_null() & (Worker.created < cutoff)
    )
    yield from _drain(plan, dry_run, counts, Worker, condition, None)


def _flow_runs(plan, dry_run, counts):
    cutoff = plan.cutoffs["flow_runs"]
    after = None
    while True:
        batch = yield READ, functools.partial(_old_runs, cutoff, after, plan.batch_size)
        if not batch:
            return
        after = batch[-1]
        run_ids = [run_id for _end, run_id in batch]
        yield from _run_children(plan, dry_run, counts, run_ids)
        if dry_run:
            counts["flow_run"] += len(run_ids)
        else:
            counts["flow_run"] += yield WRITE, functools.partial(_delete_runs, run_ids, cutoff)


def _run_children(plan, dry_run, counts, run_ids):
    runs = [(run_id, None) for run_id in run_ids]
    # Events the events kind of this pass deleted already are not counted twice.
    events_cutoff = plan.cutoffs.get("events")
    newer = (" AND c.occurred >= {p}", [Event.occurred.db_value(events_cutoff)]) if events_cutoff else ("", [])
    yield from _drain_children(plan, dry_run, counts, "log", "flow_run_id", runs)
    if dry_run:
        tasks = yield READ, functools.partial(_child_rows, "task_run", "flow_run_id", runs, ("id", "flow_run_id"))
        for start in range(0, len(tasks), plan.batch_size):
            chunk = tasks[start : start + plan.batch_size]
            yield from _task_children(plan, dry_run, counts, chunk, newer)
            counts["task_run"] += len(chunk)
    else:
        while True:
            chunk = yield READ, functools.partial(
                _child_rows, "task_run", "flow_run_id", runs, ("id", "flow_run_id"), plan.batch_size
            )
            if not chunk:
                break
            yield from _task_children(plan, dry_run, counts, chunk, newer)
            deleted = yield WRITE, functools.partial(_delete_ids, TaskRun, [task_id for task_id, _ in chunk])
            counts["task_run"] += deleted
            if not deleted:  # someone else deleted them meanwhile: nothing left to walk
                break
    yield from _drain_children(plan, dry_run, counts, "artifact", "flow_run_id", runs, returning=_fix_collections)
    yield from _drain_children(plan, dry_run, counts, "flow_run_input", "flow_run_id", runs)
    resources = [(f"prefect.flow-run.{run_id}", None) for run_id in run_ids]
    yield from _drain_children(plan, dry_run, counts, "event", "resource_id", resources, *newer)
    yield from _drain_children(plan, dry_run, counts, "flow_run_state", "flow_run_id", runs)


def _task_children(plan, dry_run, counts, tasks, newer):
    yield from _drain_children(plan, dry_run, counts, "task_run_state", "task_run_id", tasks)
    yield from _drain_children(plan, dry_run, counts, "log", "task_run_id", tasks, OTHER_FLOW_RUN)
    yield from _drain_children(plan, dry_run, counts, "artifact", "task_run_id", tasks, OTHER_FLOW_RUN,
                               returning=_fix_collections)
    resources = [(f"prefect.task-run.{task_id}", None) for task_id, _ in tasks]
    yield from _drain_children(plan, dry_run, counts, "event", "resource_id", resources, *newer)


def _incremental_vacuum():
    mode = yield READ, lambda: dbmod.database.execute_sql("PRAGMA auto_vacuum").fetchone()[0]
    if mode != 2:  # 2 = INCREMENTAL; otherwise the pragma does nothing
        return
    while (yield WRITE, _free_pages):
        pass


_KIND_STEPS = {"events": _events, "notifications": _notifications, "workers": _workers, "flow_runs": _flow_runs}


def _drain(plan, dry_run, counts, model, condition, order):
    """Delete (or count) the rows of ``model`` matching ``condition``, a batch per transaction,
    in ``order`` (an indexed column, so that the batch is read off the index)."""
    table = model._meta.table_name
    if dry_run:
        counts[table] += yield READ, lambda: model.select().where(condition).count()
        return
    while True:
        deleted = yield WRITE, functools.partial(_delete_where, model, condition, order, plan.batch_size)
        counts[table] += deleted
        if deleted < plan.batch_size:
            return


def _drain_children(plan, dry_run, counts, table, column, parents, extra="", extra_params=(), returning=None):
    """Delete (or count) the rows of ``table`` whose ``column`` is one of the parents' ids,
    at most child_batch_size a transaction. ``parents``: (id, flow run id) pairs, the second
    usable in ``extra`` as ``p.fr``."""
    if not parents:
        return
    if dry_run:
        counts[table] += yield READ, functools.partial(_count_children, table, column, parents, extra, extra_params)
        return
    size = plan.child_batch_size
    while True:
        deleted = yield WRITE, functools.partial(
            _delete_children, table, column, parents, extra, extra_params, size, returning
        )
        counts[table] += deleted
        if deleted < size:
            return


# --- the statements ------------------------------------------------------------------------------


def _old_runs(cutoff: dt.datetime, after: tuple | None, limit: int) -> list[tuple]:
    """(end_time, id) of up to ``limit`` terminal runs that ended before the cut-off, after ``after``."""
    query = FlowRun.select(FlowRun.end_time, FlowRun.id).where(
        (FlowRun.end_time < cutoff) & FlowRun.state_type.in_(TERMINAL)
    )
    if after is not None:
        end, run_id = after
        query = query.where(pw.Tuple(FlowRun.end_time, FlowRun.id) > pw.Tuple(FlowRun.end_time.db_value(end), run_id))
    return list(query.order_by(FlowRun.end_time, FlowRun.id).limit(limit).tuples())


def _delete_runs(run_ids: list[str], cutoff: dt.datetime) -> int:
    eligible = FlowRun.id.in_(run_ids) & (FlowRun.end_time < cutoff) & FlowRun.state_type.in_(TERMINAL)
    if dbmod.is_postgres():  # a run another transaction is changing stays, for a later pass
        eligible = FlowRun.id.in_(FlowRun.select(FlowRun.id).where(eligible).for_update("FOR UPDATE SKIP LOCKED"))
    return FlowRun.delete().where(eligible).execute()


def _delete_ids(model, ids: list[str]) -> int:
    return model.delete().where(model.id.in_(ids)).execute()


def _delete_where(model, condition, order, limit: int) -> int:
    query = model.select(pw.SQL("ctid" if dbmod.is_postgres() else "rowid")).where(condition)
    if order is not None:
        query = query.order_by(order)
    sql, params = query.limit(limit).sql()
    return _delete_rows(model._meta.table_name, sql, params).rowcount


def _delete_rows(table: str, select_sql: str, params: list, returning: str = "") -> pw.Cursor:
    """DELETE the rows whose physical address (ctid / rowid) ``select_sql`` returns."""
    if dbmod.is_postgres():
        sql = f'DELETE FROM "{table}" WHERE ctid = ANY(ARRAY({select_sql})){returning}'
    else:
        sql = f'DELETE FROM "{table}" WHERE rowid IN ({select_sql}){returning}'
    return dbmod.database.execute_sql(sql, params)


def _parents_sql(parents: list[tuple]) -> tuple[str, list]:
    """The parent list as a relation p(id, fr): unnest of two arrays / a VALUES list."""
    if dbmod.is_postgres():
        return "unnest(%s::text[], %s::text[]) AS p(id, fr)", [[a for a, _ in parents], [b for _, b in parents]]
    values = ", ".join(["(?, ?)"] * len(parents))
    return f"WITH p(id, fr) AS (VALUES {values}) ", [v for pair in parents for v in pair]


def _children_select(table, column, parents, extra, extra_params, columns, limit) -> tuple[str, list]:
    """A SELECT of ``columns`` of the parents' children (a WITH query on SQLite), its params."""
    pg = dbmod.is_postgres()
    source, source_params = _parents_sql(parents)
    extra = extra.format(p="%s" if pg else "?")
    cols = ", ".join(f"c.{name} AS {name}" for name in columns)
    if pg:
        # A LATERAL subquery per parent, with a LIMIT (or OFFSET 0) so that it is never flattened
        # into a join the planner could answer by scanning the child table.
        inner_limit = "LIMIT %s" if limit else "OFFSET 0"
        sql = (
            f"SELECT {', '.join(f'x.{name}' for name in columns)} FROM {source} CROSS JOIN LATERAL "
            f'(SELECT {cols} FROM "{table}" AS c WHERE c.{column} = p.id{extra} {inner_limit}) AS x'
        )
        params = [*source_params, *extra_params]
        if limit:
            sql += " LIMIT %s"
            params += [limit, limit]
        return sql, params
    # CROSS JOIN keeps p as the outer loop: one index search of the child table per parent.
    sql = f'{source}SELECT {cols} FROM p CROSS JOIN "{table}" AS c ON c.{column} = p.id{extra}'
    params = [*source_params, *extra_params]
    if limit:
        sql += " LIMIT ?"
        params.append(limit)
    return sql, params


def _child_rows(table, column, parents, columns, limit=None) -> list[tuple]:
    sql, params = _children_select(table, column, parents, "", (), columns, limit)
    return [tuple(row) for row in dbmod.database.execute_sql(sql, params).fetchall()]


def _count_children(table, column, parents, extra, extra_params) -> int:
    source, source_params = _parents_sql(parents)
    if dbmod.is_postgres():
        sql = (
            f"SELECT coalesce(sum(x.n), 0) FROM {source} CROSS JOIN LATERAL "
            f'(SELECT count(*) AS n FROM "{table}" AS c WHERE c.{column} = p.id{extra.format(p="%s")}) AS x'
        )
    else:
        sql = f'{source}SELECT count(*) FROM p CROSS JOIN "{table}" AS c ON c.{column} = p.id{extra.format(p="?")}'
    return int(dbmod.database.execute_sql(sql, [*source_params, *extra_params]).fetchone()[0])


def _delete_children(table, column, parents, extra, extra_params, limit, returning) -> int:
    address = "ctid" if dbmod.is_postgres() else "rowid"
    sql, params = _children_select(table, column, parents, extra, extra_params, (address,), limit)
    if returning is None:
        return _delete_rows(table, sql, params).rowcount
    rows = _delete_rows(table, sql, params, " RETURNING id, key").fetchall()
    returning(rows)
    return len(rows)


def _fix_collections(deleted: list[tuple]) -> None:
    """Artifact collections whose latest artifact was just deleted: point them at the newest
    remaining artifact of their key, or delete them with the last one."""
    gone = {artifact_id for artifact_id, _key in deleted}
    for key in {key for _id, key in deleted if key}:
        collection = ArtifactCollection.select().where(ArtifactCollection.key == key).first()
        if collection is None or collection.latest_id not in gone:
            continue
        newest = (
            Artifact.select().where(Artifact.key == key)
            .order_by(Artifact.created.desc(), Artifact.id.desc()).dicts().first()
        )
        if newest is None:
            ArtifactCollection.delete().where(ArtifactCollection.key == key).execute()
        else:
            artifacts_mod._point_collection_at(newest)


def _free_pages() -> int:
    """Return up to VACUUM_PAGES free pages of the SQLite file to the file system; the count."""
    db = dbmod.database
    before = db.execute_sql("PRAGMA freelist_count").fetchone()[0]
    # Python's sqlite3 steps this pragma once per execute, and one step frees one page.
    cursor = db.connection().cursor()
    try:
        for _ in range(min(before, VACUUM_PAGES)):
            cursor.execute("PRAGMA incremental_vacuum(1)")
    finally:
        cursor.close()
    return before - db.execute_sql("PRAGMA freelist_count").fetchone()[0]


def enable_incremental_vacuum() -> dict:
    """SQLite: switch the file to auto_vacuum=INCREMENTAL, which takes one VACUUM (it rewrites
    the whole file and holds the write lock meanwhile: run it when the server is quiet), then
    checkpoint the WAL. Outside any transaction. Returns the file's size before and after."""
    db = dbmod.database

    def size() -> int:
        return db.execute_sql("PRAGMA page_count").fetchone()[0] * db.execute_sql("PRAGMA page_size").fetchone()[0]

    before = size()
    switched = db.execute_sql("PRAGMA auto_vacuum").fetchone()[0] != 2
    if switched:
        db.execute_sql("PRAGMA auto_vacuum = INCREMENTAL")
        db.execute_sql("VACUUM")
        db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return {"switched": switched, "bytes_before": before, "bytes_after": size()}
