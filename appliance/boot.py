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
    """Boot sequence of `serve`: wait for the database, apply migrations, register the
    built-in block types, check the encryption key opens the stored blocks, close."""
    db = open_database(settings)
    connect(db, settings.db_wait_seconds)
    try:
        if migrate_now:
            applied = migrate.upgrade()
            if applied:
                log.info("applied migrations: %s", ", ".join(applied))
        prepare_blocks(settings)
    finally:
        dbmod.close_all()


def prepare_blocks(settings: Settings) -> None:
    """The key must exist and open what is stored (a clear error now, never a 500 later);
    the built-in block catalogue is registered under the migration lock (replicas take turns)."""
    from db import blocks, secrets_crypto

    secrets_crypto.configure(settings)
    try:
        secrets_crypto.cipher()
        if "block_document" not in dbmod.database.obj.get_tables():
            return  # schema not migrated yet (APPLIANCE_MIGRATE_ON_START=false)
        blocks.check_key()
    except secrets_crypto.KeyError_ as exc:
        raise BootError(str(exc)) from None
    with migrate.migration_lock(), dbmod.database.atomic():
        changed = blocks.register_catalogue()
    if changed:
        log.info("registered %d built-in block types and schemas", changed)
