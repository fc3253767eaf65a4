"""The one Peewee database of the process, initialised from settings.

Peewee is synchronous, so the ASGI app never touches it on the event loop: every
database call goes through :func:`run` (reads) or :func:`run_write` (one write
transaction), which execute in bounded thread pools. On SQLite all writes of a
process go through one writer thread, so concurrent requests queue in memory instead
of fighting for the file lock ("database is locked"); transactions begin IMMEDIATE so
that a read-then-write never fails on lock upgrade, and the busy timeout covers other
processes. On PostgreSQL each pool thread holds its own connection.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import peewee
from peewee import DatabaseProxy

log = logging.getLogger("appliance.db")

# Column type JSON is JSONB on PostgreSQL and TEXT on SQLite (see db.fields.JSONField).
SQLITE_FIELD_TYPES = {"JSON": "TEXT"}
POSTGRES_FIELD_TYPES = {"JSON": "JSONB"}

database = DatabaseProxy()


class DatabaseURLError(ValueError):
    """The database URL cannot be used (unknown scheme, missing parts)."""


def make_database(url: str, *, busy_timeout_ms: int = 30000) -> peewee.Database:
    """A Peewee database for a sqlite:/// or postgresql:// URL (not yet connected)."""
    parsed = urlparse(url)
    scheme = parsed.scheme.split("+", 1)[0]
    if scheme == "sqlite":
        path = unquote(url.split("://", 1)[1])
        # sqlite:///relative.db -> "/relative.db" is absolute by URL convention;
        # sqlite:////abs/path.db and sqlite:///abs/path.db both end up absolute.
        if path.startswith("/") or path == ":memory:":
            file = path
        else:
            file = str(Path(path).absolute())
        if not file or file == "/":
            raise DatabaseURLError(f"SQLite URL has no file path: {url}")
        if file != ":memory:":
            Path(file).parent.mkdir(parents=True, exist_ok=True)
        return peewee.SqliteDatabase(
            file,
            field_types=SQLITE_FIELD_TYPES,
            lock_type="IMMEDIATE",
            timeout=busy_timeout_ms / 1000,
            pragmas={
                "journal_mode": "wal",
                "foreign_keys": 1,
                "synchronous": "normal",
                "busy_timeout": busy_timeout_ms,
                # 4 MB per connection (8 readers + the writer): W4 reads on 20k runs are as fast as
                # with 16 MB, and memory stays flat as the database grows (16 MB: +50 MiB after W4).
                "cache_size": -4000,
            },
            check_same_thread=False,
        )
    if scheme in ("postgresql", "postgres"):
        if not parsed.path.strip("/"):
            raise DatabaseURLError(f"PostgreSQL URL has no database name: {url}")
        params = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        _raw_json_from_psycopg2()
        return peewee.PostgresqlDatabase(
            unquote(parsed.path.lstrip("/")),
            user=unquote(parsed.username) if parsed.username else None,
            password=unquote(parsed.password) if parsed.password else None,
            host=parsed.hostname or None,
            port=parsed.port or None,
            field_types=POSTGRES_FIELD_TYPES,
            connect_timeout=int(params.pop("connect_timeout", 5)),
            application_name=params.pop("application_name", "appliance"),
            **params,
        )
    raise DatabaseURLError(
        f"unsupported database URL scheme {parsed.scheme!r}: use sqlite:///PATH or postgresql://…"
    )


def _raw_json_from_psycopg2() -> None:
    """Have psycopg2 hand JSON/JSONB back as text: db.fields.JSONField parses it (with orjson).

    Left to psycopg2, a stored JSON string ("# Hello") would arrive already decoded and be
    indistinguishable from JSON text.
    """
    import psycopg2.extras

    psycopg2.extras.register_default_json(loads=lambda text: text, globally=True)
    psycopg2.extras.register_default_jsonb(loads=lambda text: text, globally=True)


def init(url: str, *, busy_timeout_ms: int = 30000, pool_size: int = 8) -> peewee.Database:
    """Point the process-wide database proxy at ``url`` and size the thread pools."""
    db = make_database(url, busy_timeout_ms=busy_timeout_ms)
    close_all()
    database.initialize(db)
    _pools.configure(is_sqlite(), pool_size)
    return db


def is_sqlite() -> bool:
    return isinstance(database.obj, peewee.SqliteDatabase)


def is_postgres() -> bool:
    return isinstance(database.obj, peewee.PostgresqlDatabase)


class _Pools:
    """Thread pools that run the blocking database work of the ASGI app."""

    def __init__(self) -> None:
        self.reader: ThreadPoolExecutor | None = None
        self.writer: ThreadPoolExecutor | None = None
        self.lock = threading.Lock()
        # Metric labels of the two pools: on PostgreSQL reads and writes share one pool.
        self.read_label, self.write_label = "read", "write"
        self.threads: dict[str, int] = {}

    def configure(self, sqlite: bool, size: int) -> None:
        with self.lock:
            self.shutdown()
            self.reader = ThreadPoolExecutor(max_workers=size, thread_name_prefix="db-read")
            # SQLite has one writer at a time: one thread serialises this process's writes.
            self.writer = (
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="db-write") if sqlite else self.reader
            )
            self.read_label, self.write_label = ("read", "write") if sqlite else ("shared", "shared")
            self.threads = {"read": size, "write": 1} if sqlite else {"shared": size}

    def shutdown(self) -> None:
        for pool in {id(p): p for p in (self.reader, self.writer) if p}.values():
            pool.shutdown(wait=False, cancel_futures=True)
        self.reader = self.writer = None


_pools = _Pools()


def _connected(fn, *args, **kwargs):
    """Run ``fn`` on this thread's connection, reconnecting once if it was dropped."""
    db = database.obj
    for attempt in (1, 2):
        db.connect(reuse_if_open=True)
        try:
            return fn(*args, **kwargs)
        except (peewee.InterfaceError, peewee.OperationalError) as exc:
            if attempt == 2 or not _connection_lost(db, exc):
                raise
            log.warning("database connection lost (%s); reconnecting", exc)
            try:
                db.close()
            except Exception:  # noqa: BLE001 - the connection is already broken
                pass


def _connection_lost(db, exc) -> bool:
    if isinstance(db, peewee.SqliteDatabase):
        return False
    conn = db._state.conn
    return conn is None or getattr(conn, "closed", 0) != 0


def _in_write_tx(fn, *args, **kwargs):
    with database.atomic():
        return fn(*args, **kwargs)


# Set by appliance.metrics: ``pool_probe(pool_label, submitted, call)`` runs ``call`` in the
# pool thread, observing how long it queued and how many threads are busy. None: no metrics.
pool_probe = None


async def run(fn, *args, **kwargs):
    """Run a read-only ``fn(*args)`` in the reader pool (autocommit)."""
    loop = asyncio.get_running_loop()
    call = functools.partial(_connected, fn, *args, **kwargs)
    if pool_probe is not None:
        call = functools.partial(pool_probe, _pools.read_label, time.perf_counter(), call)
    return await loop.run_in_executor(_pools.reader, call)


async def run_write(fn, *args, **kwargs):
    """Run ``fn(*args)`` inside one write transaction, off the event loop."""
    loop = asyncio.get_running_loop()
    call = functools.partial(_connected, _in_write_tx, fn, *args, **kwargs)
    if pool_probe is not None:
        call = functools.partial(pool_probe, _pools.write_label, time.perf_counter(), call)
    return await loop.run_in_executor(_pools.writer, call)


def pool_threads() -> dict[str, int]:
    """Threads per pool label, as configured by init()."""
    return dict(_pools.threads)


def write_tx():
    """A write transaction for synchronous callers (CLI, services, tests)."""
    return database.atomic()


def close_all() -> None:
    _pools.shutdown()
    if database.obj is not None and not database.is_closed():
        database.close()


def is_transient(exc: BaseException) -> bool:
    """Errors a client should simply retry (answered with 503 + Retry-After)."""
    text = str(exc).lower()
    if isinstance(exc, peewee.OperationalError) and (
        "database is locked" in text or "database is busy" in text
    ):
        return True
    pgcode = getattr(getattr(exc, "orig", None) or exc, "pgcode", None)
    # serialization_failure, deadlock_detected, lock_not_available, admin shutdown
    if pgcode in {"40001", "40P01", "55P03", "57P01"}:
        return True
    return isinstance(exc, peewee.InterfaceError | peewee.OperationalError) and (
        "connection" in text and ("closed" in text or "refused" in text or "terminat" in text)
    )
