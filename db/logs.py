"""Log ingest: the hottest write path, so rows go in with one executemany per batch."""

from __future__ import annotations

import datetime as dt
import uuid

from db import database as dbmod
from db.fields import utcnow, uuid7
from db.states import parse_datetime

LOG_COLUMNS = ("id", "created", "name", "level", "message", "timestamp", "flow_run_id", "task_run_id")
MAX_BATCH = 10000


class LogInvalid(ValueError):
    def __init__(self, index: int, field: str, message: str, value=None):
        super().__init__(f"{index}.{field}: {message}")
        self.index = index
        self.field = field
        self.message = message
        self.value = value


def _uuid_or_none(value, index, field, seen: dict):
    if value is None:
        return None
    canonical = seen.get(value)  # a batch usually names one flow run over and over
    if canonical is None:
        try:
            canonical = seen[value] = str(uuid.UUID(value))
        except (ValueError, TypeError, AttributeError):
            raise LogInvalid(index, field, "Input should be a valid UUID", value) from None
    return canonical


def _storage_timestamp(value) -> str | None:
    """The client's timestamp in the stored text form; None when it is not a datetime."""
    if not isinstance(value, str):
        return None
    try:
        if len(value) == 27 and value[10] == "T" and value[26] == "Z":  # the SDK's own form
            dt.datetime.fromisoformat(value[:26])
            return f"{value[:10]} {value[11:26]}"
        parsed = parse_datetime(value)
    except ValueError:
        return None
    return parsed.strftime("%Y-%m-%d %H:%M:%S.%f")


def validate_logs(items) -> list[tuple]:
    """A JSON array of LogCreate -> rows for insert_logs; LogInvalid names the bad field."""
    if not isinstance(items, list):
        raise LogInvalid(-1, "", "Input should be a valid list", items)
    if len(items) > MAX_BATCH:
        raise LogInvalid(-1, "", f"At most {MAX_BATCH} logs per request", len(items))
    now = utcnow().strftime("%Y-%m-%d %H:%M:%S.%f")
    rows = []
    seen: dict = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise LogInvalid(i, "", "Input should be a valid dictionary", item)
        name, level, message = item.get("name"), item.get("level"), item.get("message")
        if not isinstance(name, str):
            raise LogInvalid(i, "name", "Field required" if name is None else "Input should be a valid string", name)
        if isinstance(level, bool) or not isinstance(level, int):
            raise LogInvalid(i, "level", "Field required" if level is None else "Input should be a valid integer", level)
        if not isinstance(message, str):
            raise LogInvalid(i, "message", "Field required" if message is None else "Input should be a valid string", message)
        timestamp = _storage_timestamp(item.get("timestamp"))
        if timestamp is None:
            raise LogInvalid(i, "timestamp", "Input should be a valid datetime", item.get("timestamp"))
        rows.append(
            (
                uuid7(),
                now,
                name,
                level,
                message,
                timestamp,
                _uuid_or_none(item.get("flow_run_id"), i, "flow_run_id", seen),
                _uuid_or_none(item.get("task_run_id"), i, "task_run_id", seen),
            )
        )
    return rows


def insert_logs(rows: list[tuple]) -> None:
    """Insert validated rows in the current transaction (executemany / execute_values)."""
    if not rows:
        return
    db = dbmod.database.obj
    cols = ", ".join(LOG_COLUMNS)
    cursor = db.cursor()
    if dbmod.is_postgres():
        from psycopg2.extras import execute_values

        execute_values(cursor, f"INSERT INTO log ({cols}) VALUES %s", rows, page_size=1000)
    else:
        marks = ", ".join("?" * len(LOG_COLUMNS))
        cursor.executemany(f"INSERT INTO log ({cols}) VALUES ({marks})", rows)
