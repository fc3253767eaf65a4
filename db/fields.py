"""Column types shared by the models and the migrations."""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid

import orjson
import peewee


def dumps(value) -> str:
    return orjson.dumps(value, option=orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z).decode()


class JSONField(peewee.Field):
    """Free JSON: JSONB on PostgreSQL, TEXT on SQLite; both hand back text (see
    db.database._raw_json_from_psycopg2), parsed here."""

    field_type = "JSON"

    def db_value(self, value):
        if value is None:
            return None
        return dumps(value)

    def python_value(self, value):
        if value is None:
            return None
        return orjson.loads(value)


class UUIDStr(peewee.CharField):
    """A UUID kept as its canonical 36-character text, the same on both databases."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_length", 36)
        super().__init__(*args, **kwargs)

    def db_value(self, value):
        if value is None:
            return None
        return str(value) if isinstance(value, uuid.UUID) else value


class UTCDateTime(peewee.DateTimeField):
    """Naive-UTC timestamps with microseconds (TIMESTAMP on PostgreSQL, text on SQLite).

    Values are always written with six fraction digits so that SQLite's text ordering
    is the time ordering.
    """

    def db_value(self, value):
        if value is None:
            return None
        if isinstance(value, dt.datetime):
            if value.tzinfo is not None:
                value = value.astimezone(dt.UTC).replace(tzinfo=None)
            return value.isoformat(sep=" ", timespec="microseconds")  # 4-digit years, unlike strftime
        return value

    def python_value(self, value):
        if isinstance(value, str):
            return dt.datetime.fromisoformat(value)
        return value


def uuid7(_now_ns=time.time_ns, _random=os.urandom) -> str:
    """A time-ordered UUID (version 7). Rows keyed by it append at the end of the primary
    key's B-tree instead of landing at random places: inserts cost about half (logs,
    states, events). Prefect's server uses UUIDv7 for the same rows."""
    ms = _now_ns() // 1_000_000
    b = _random(10)
    h = (
        f"{ms:012x}{0x7000 | ((b[0] << 4 | b[1] >> 4) & 0x0FFF):04x}"
        f"{0x8000 | ((b[2] & 0x3F) << 8) | b[3]:04x}{b[4:].hex()}"
    )
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)
