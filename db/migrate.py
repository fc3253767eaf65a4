"""Applying and reverting migrations: upgrade, downgrade, reset, current, history.

Every operation holds a lock for its whole duration so that several processes booting
at once against one database apply each migration exactly once: a PostgreSQL advisory
lock, or an exclusive file lock beside the SQLite file.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
from dataclasses import dataclass
from pathlib import Path

import peewee

from db import database as dbmod

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
MIGRATE_TABLE = "migratehistory"
# pg_advisory_lock key: the ASCII of "appliance" folded into a bigint.
ADVISORY_LOCK_KEY = 0x6170706C69616E63

log = logging.getLogger("appliance.migrate")


class MigrationError(RuntimeError):
    """A migration request that cannot be carried out (unknown revision, broken state)."""


@dataclass
class Revision:
    name: str
    applied: bool


def _router():
    from peewee_migrate import Router  # imported lazily: only migrations need it

    # Quiet peewee-migrate's own INFO lines; the CLI prints what happened.
    logging.getLogger("peewee_migrate").setLevel(logging.WARNING)
    return Router(dbmod.database.obj, migrate_dir=MIGRATIONS_DIR, migrate_table=MIGRATE_TABLE)


def all_revisions() -> list[str]:
    return sorted(p.stem for p in MIGRATIONS_DIR.glob("[0-9][0-9][0-9]_*.py"))


@contextlib.contextmanager
def migration_lock():
    """Hold the cross-process migration lock of the current database."""
    db = dbmod.database.obj
    if isinstance(db, peewee.PostgresqlDatabase):
        db.connect(reuse_if_open=True)
        db.execute_sql("SELECT pg_advisory_lock(%s)", (ADVISORY_LOCK_KEY,))
        try:
            yield
        finally:
            db.execute_sql("SELECT pg_advisory_unlock(%s)", (ADVISORY_LOCK_KEY,))
    else:
        path = db.database
        lock_path = Path(f"{path}.migrate-lock") if path != ":memory:" else None
        if lock_path is None:
            yield
            return
        with open(lock_path, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def applied() -> list[str]:
    db = dbmod.database.obj
    if MIGRATE_TABLE not in db.get_tables():
        return []
    cursor = db.execute_sql(f"SELECT name FROM {MIGRATE_TABLE} ORDER BY id")
    return [row[0] for row in cursor.fetchall()]


def current() -> str:
    done = applied()
    return done[-1] if done else "base"


def history() -> list[Revision]:
    done = set(applied())
    return [Revision(name, name in done) for name in all_revisions()]


def is_at_head() -> bool:
    return applied() == all_revisions()


def _check_revision(target: str) -> None:
    if target not in all_revisions():
        known = ", ".join(all_revisions()) or "none"
        raise MigrationError(f"unknown revision {target!r} (known: {known}, or 'base')")


def upgrade(target: str | None = None) -> list[str]:
    """Apply pending migrations up to ``target`` (default: all). Returns those applied."""
    if target in ("head", None):
        target = None
    else:
        _check_revision(target)
    with migration_lock():
        router = _router()
        if target is not None and target in router.done:
            return []
        return router.run(target)


def downgrade(target: str = "-1") -> list[str]:
    """Revert migrations: ``-1`` (one step, or ``-N``), a revision name (kept) or ``base``."""
    with migration_lock():
        router = _router()
        done = router.done
        if target == "base":
            to_revert = list(reversed(done))
        elif target.startswith("-") and target[1:].isdigit():
            steps = int(target[1:])
            if steps < 1:
                raise MigrationError("downgrade steps must be at least 1")
            to_revert = list(reversed(done))[:steps]
        else:
            _check_revision(target)
            if target not in done:
                raise MigrationError(f"revision {target!r} is not applied; nothing to downgrade to")
            to_revert = list(reversed(done[done.index(target) + 1 :]))
        reverted = []
        for _name in to_revert:
            name = router.done[-1]
            router.rollback()
            reverted.append(name)
        return reverted


def reset() -> list[str]:
    """Drop every table of the database and apply all migrations again."""
    db = dbmod.database.obj
    is_pg = isinstance(db, peewee.PostgresqlDatabase)
    with migration_lock():
        if not is_pg:
            db.execute_sql("PRAGMA foreign_keys = OFF")  # no effect inside a transaction
        try:
            with db.atomic():
                for table in db.get_tables():
                    db.execute_sql(f'DROP TABLE IF EXISTS "{table}"' + (" CASCADE" if is_pg else ""))
        finally:
            if not is_pg:
                db.execute_sql("PRAGMA foreign_keys = ON")
        return _router().run()
