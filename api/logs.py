"""/logs: batch ingest (201, body null) and /logs/filter."""

from __future__ import annotations

from api import shapes
from api.errors import ValidationFailed
from api.http import read_json, send, send_raw
from api.listing import build_query, read_filter_body
from db import database as db
from db import logs
from db.models import Log
from db.queries import LOG_SORTS


class Logs:
    async def on_post(self, req, resp):
        body = await read_json(req)
        try:
            rows = logs.validate_logs(body)
        except logs.LogInvalid as exc:
            loc = ["body"] + ([exc.index] if exc.index >= 0 else []) + ([exc.field] if exc.field else [])
            raise ValidationFailed(
                [{"type": "value_error", "loc": loc, "msg": exc.message, "input": exc.value}],
                body if not isinstance(body, list) or len(body) < 50 else None,
                f"{'.'.join(str(p) for p in loc[1:]) or 'body'}: {exc.message}",
            ) from None
        await db.run_write(logs.insert_logs, rows)
        send_raw(resp, b"null", 201)


class LogFilter:
    async def on_post(self, req, resp):
        body = await read_filter_body(req)
        query, _, _ = build_query(Log, "logs", body, {"logs"}, LOG_SORTS, "TIMESTAMP_ASC")
        rows = await db.run(lambda: list(query.dicts()))
        send(resp, [shapes.log(r) for r in rows])


def register(app, prefix: str) -> None:
    app.add_route(f"{prefix}/logs", Logs())
    app.add_route(f"{prefix}/logs/filter", LogFilter())
