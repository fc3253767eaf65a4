"""Log ingest: the hottest write path, so rows go in with one executemany per batch."""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid

from db import database as dbmod
from db.fields import utcnow
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
    if isinstance(value, int | float) and not isinstance(value, bool):
        # Unix seconds (milliseconds above 2e10), as pydantic reads numbers.
        try:
            seconds = value / 1000 if abs(value) > 2e10 else value
            parsed = dt.datetime.fromtimestamp(seconds, dt.UTC).replace(tzinfo=None)
        except (OverflowError, OSError, ValueError):
            return None
        return _stored(parsed)
    if not isinstance(value, str):
        return None
    try:
        if len(value) == 27 and value[10] == "T" and value[26] == "Z":  # the SDK's own form
            dt.datetime.fromisoformat(value[:26])
            return f"{value[:10]} {value[11:26]}"
        parsed = parse_datetime(value)
    except ValueError:
        return None
    return _stored(parsed)


def _stored(value: dt.datetime) -> str:
    # As db.fields.UTCDateTime writes it (isoformat keeps four-digit years; strftime does not).
    return value.isoformat(sep=" ", timespec="microseconds")


def _level(value) -> int | None:
    """An int, or what pydantic's lax mode reads as one ("20", 20.0); else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _batch_ids(count: int) -> list[str]:
    """UUIDv7 ids that sort in batch order: one millisecond and random prefix, then a counter
    in the random tail, so logs with equal timestamps read back in the order they were sent."""
    ms = time.time_ns() // 1_000_000
    b = os.urandom(10)
    rand_a = (b[0] << 4 | b[1] >> 4) & 0x0FFF
    start = int.from_bytes(b[2:10], "big") >> 3  # 61 random bits: room for MAX_BATCH increments in 62
    ids = []
    for i in range(count):
        tail = start + i
        h = f"{ms:012x}{0x7000 | rand_a:04x}{0x8000 | (tail >> 48):04x}{tail & 0xFFFFFFFFFFFF:012x}"
        ids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return ids


def validate_logs(items) -> list[tuple]:
    """A JSON array of LogCreate -> rows for insert_logs; LogInvalid names the bad field."""
    if not isinstance(items, list):
        raise LogInvalid(-1, "", "Input should be a valid list", items)
    if len(items) > MAX_BATCH:
        raise LogInvalid(-1, "", f"At most {MAX_BATCH} logs per request", len(items))
    now = _stored(utcnow())
    rows = []
    seen: dict = {}
    ids = _batch_ids(len(items))
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise LogInvalid(i, "", "Input should be a valid dictionary", item)
        name, level, message = item.get("name"), item.get("level"), item.get("message")
        if not isinstance(name, str):
            raise LogInvalid(i, "name", "Field required" if name is None else "Input should be a valid string", name)
        level = _level(level)
        if level is None:
            raw = item.get("level")
            raise LogInvalid(i, "level", "Field required" if raw is None else "Input should be a valid integer", raw)
        if not isinstance(message, str):
            raise LogInvalid(i, "message", "Field required" if message is None else "Input should be a valid string", message)
        if "\x00" in message or "\x00" in name:  # PostgreSQL cannot store NUL: refused on both backends
            field = "message" if "\x00" in message else "name"
            raise LogInvalid(i, field, "String should not contain NUL (0x00) characters", item[field])
        timestamp = _storage_timestamp(item.get("timestamp"))
        if timestamp is None:
            raise LogInvalid(i, "timestamp", "Input should be a valid datetime", item.get("timestamp"))
        rows.append(
            (
                ids[i],
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
