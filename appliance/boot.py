"""What happens before the server answers: open the database, wait for it, migrate."""

from __future__ import annotations

import logging
import time

import peewee

from appliance.settings import Settings
from db import database as dbmod
from db import migrate

log = logging.getLogger("appliance.boot")


class BootError(RuntimeError):
    pass


def open_database(settings: Settings) -> peewee.Database:
    try:
        return dbmod.init(
            settings.effective_database_url,
            busy_timeout_ms=settings.db_busy_timeout_ms,
            pool_size=settings.db_pool_size,
        )
    except dbmod.DatabaseURLError as exc:
        raise BootError(str(exc)) from exc


def connect(db: peewee.Database, wait_seconds: float = 0.0) -> None:
    """Connect, retrying with back-off for up to ``wait_seconds`` (the database may be booting)."""
    deadline = time.monotonic() + wait_seconds
    delay = 0.25
    while True:
        try:
            db.connect(reuse_if_open=True)
            db.execute_sql("SELECT 1")
            return
        except peewee.DatabaseError as exc:
            if not db.is_closed():
                db.close()
            if time.monotonic() >= deadline:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise BootError(f"cannot reach the database: {first}") from exc
            log.info("database not reachable yet (%s); retrying", str(exc).strip().splitlines()[:1])
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 2.0)


def prepare(settings: Settings, *, migrate_now: bool) -> None:
    """Boot sequence of `serve`: wait for the database, apply migrations, close."""
    db = open_database(settings)
    connect(db, settings.db_wait_seconds)
    try:
        if migrate_now:
            applied = migrate.upgrade()
            if applied:
                log.info("applied migrations: %s", ", ".join(applied))
    finally:
        dbmod.close_all()
