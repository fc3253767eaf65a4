"""Column types shared by the models and the migrations."""

from __future__ import annotations

import datetime as dt
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
            return value.strftime("%Y-%m-%d %H:%M:%S.%f")
        return value

    def python_value(self, value):
        if isinstance(value, str):
            return dt.datetime.fromisoformat(value)
        return value


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)
