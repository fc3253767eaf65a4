"""Events: the `/events/in` websocket (client events -> task runs), the `/events/out`
subscription stream, batch ingest and reads.

`/events/in` follows Prefect's protocol: subprotocol ``prefect``, an ``auth`` message
answered with ``auth_success``, then one event per text frame with no acks (the client
counts events as delivered when its periodic ping is answered). Frames are read into a
bounded queue and written in batches, one transaction per batch, so ingest keeps up
with the client while the queue's bound pushes back on a client that outruns it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import logging
import uuid

import falcon
import orjson
import peewee

from api import state
from api.errors import ApiError, ValidationFailed, invalid
from api.http import no_content, read_json, send
from appliance import metrics
from db import database as db
from db import events as events_mod
from db import recorder
from db.event_filter import CompiledFilter, EventFilterError, EventFilterInvalid
from db.fields import utcnow
from db.models import Event
from db.states import parse_datetime

log = logging.getLogger("appliance.events")

QUEUE_BOUND = 5000
BATCH_MAX = 1000
BACKFILL_WINDOW = dt.timedelta(minutes=15)
POLL_SECONDS = 1.0
MAX_FILTER_LIMIT = 50


class EventInvalid(ValueError):
    pass


def validate_event(obj) -> dict:
    """The checks Prefect's server applies to a client event; raises EventInvalid."""
    if not isinstance(obj, dict):
        raise EventInvalid("event must be an object")
    try:
        obj["id"] = str(uuid.UUID(str(obj.get("id"))))
    except ValueError:
        raise EventInvalid("id: Input should be a valid UUID") from None
    name = obj.get("event")
    if not isinstance(name, str) or not name or len(name) > 1024:
        raise EventInvalid("event: a string of 1 to 1024 characters is required")
    try:
        occurred = parse_datetime(obj.get("occurred"))
    except (ValueError, TypeError):
        occurred = None
    if occurred is None:
        raise EventInvalid("occurred: Input should be a valid datetime")
    resource = obj.get("resource")
    if not isinstance(resource, dict) or not resource.get("prefect.resource.id"):
        raise EventInvalid("resource: prefect.resource.id is required")
    if len(resource) > 500:
        raise EventInvalid("resource: at most 500 labels")
    related = obj.get("related") or []
    if not isinstance(related, list) or len(related) > 100:
        raise EventInvalid("related: a list of at most 100 resources is required")
    for item in related:
        if not isinstance(item, dict) or not item.get("prefect.resource.id") or not item.get("prefect.resource.role"):
            raise EventInvalid("related: each resource needs prefect.resource.id and prefect.resource.role")
    payload = obj.get("payload")
    if payload is None:
        obj["payload"] = {}
    elif not isinstance(payload, dict):
        raise EventInvalid("payload: Input should be a valid dictionary")
    follows = obj.get("follows")
    if follows is not None:
        try:
            obj["follows"] = str(uuid.UUID(str(follows)))
        except ValueError:
            obj["follows"] = None
    return obj


async def _authenticate(ws) -> bool:
    """The first message must be {"type": "auth", "token": …}; answer or close 1008."""
    try:
        message = orjson.loads(await ws.receive_text())
    except (orjson.JSONDecodeError, falcon.WebSocketDisconnected):
        message = None
    if not isinstance(message, dict) or message.get("type") != "auth":
        await ws.close(1008, "Expected 'auth' message")
        return False
    token = message.get("token")
    if state.auth is not None and state.auth.expected is not None:
        if token is None:
            await ws.close(1008, "Auth required but no token provided")
            return False
        if not state.auth.token_ok(token):
            await ws.close(1008, "Invalid token")
            return False
    await ws.send_text('{"type":"auth_success"}')
    return True


async def _accept(req, ws) -> bool:
    if "prefect" in ws.subprotocols:
        await ws.accept(subprotocol="prefect")
        return await _authenticate(ws)
    # Legacy mode (no subprotocol): no auth message, refused when auth is configured.
    if state.auth is not None and state.auth.expected is not None:
        await ws.close(1008)
        return False
    await ws.accept()
    return True


class EventsIn:
    async def on_websocket(self, req, ws):
        if not await _accept(req, ws):
            return
        queue: asyncio.Queue = asyncio.Queue(QUEUE_BOUND)

        async def read_frames():
            try:
                while True:
                    await queue.put(await ws.receive_text())
            except falcon.WebSocketDisconnected:
                pass
            finally:
                await queue.put(None)

        reader = asyncio.create_task(read_frames())
        try:
            done = False
            while not done:
                item = await queue.get()
                if item is None:
                    break
                frames = [item]
                while len(frames) < BATCH_MAX and not queue.empty():
                    nxt = queue.get_nowait()
                    if nxt is None:
                        done = True
                        break
                    frames.append(nxt)
                batch = []
                for frame in frames:
                    try:
                        batch.append(validate_event(orjson.loads(frame)))
                    except (orjson.JSONDecodeError, EventInvalid) as exc:
                        log.warning("skipping an invalid event frame: %s", exc)
                if batch and not await _store(batch):
                    # Let the client reconnect and re-send what it has not seen confirmed.
                    await ws.close(1011)
                    break
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader


async def _store(batch: list[dict]) -> bool:
    for attempt in range(5):
        try:
            await db.run_write(recorder.record_events, batch)
            events_mod.wake_subscribers()
            metrics.record_events_ingested("websocket", batch)
            return True
        except peewee.IntegrityError:
            # One event the recorder cannot apply (e.g. a natural-key collision) must not fail
            # its whole batch on every re-send: apply them one by one and drop the bad ones.
            return await _store_each(batch)
        except Exception as exc:  # noqa: BLE001 - retried, then the socket is closed
            log.warning("storing %d events failed (attempt %d): %s", len(batch), attempt + 1, exc)
            if db.is_transient(exc):
                metrics.record_db_busy("retried")
            await asyncio.sleep(0.2 * (attempt + 1))
    return False


async def _store_each(batch: list[dict]) -> bool:
    try:
        for event in batch:
            try:
                await db.run_write(recorder.record_events, [event])
                metrics.record_events_ingested("websocket", [event])
            except peewee.IntegrityError as exc:
                log.warning("dropping event %s (%s): %s", event["id"], event["event"], str(exc).splitlines()[0])
    except Exception as exc:  # noqa: BLE001 - let the client reconnect and re-send
        log.warning("storing events one by one failed: %s", exc)
        return False
    finally:
        events_mod.wake_subscribers()
    return True


class EventsOut:
    """Subscription: backfill matching events of the last 15 minutes, then stream new ones."""

    async def on_websocket(self, req, ws):
        if not await _accept(req, ws):
            return
        try:
            message = orjson.loads(await ws.receive_text())
        except (orjson.JSONDecodeError, falcon.WebSocketDisconnected):
            message = None
        if not isinstance(message, dict) or message.get("type") != "filter":
            await ws.close(1002, "Expected 'filter' message")
            return
        try:
            flt = CompiledFilter(message.get("filter"), default_since=BACKFILL_WINDOW)
        except (EventFilterError, AttributeError, TypeError) as exc:
            await ws.close(1002, f"Invalid filter: {exc}"[:120])
            return
        backfill = message.get("backfill", True)

        wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        unsubscribe = events_mod.subscribe_wakeup(loop, wake)
        closed = asyncio.Event()

        async def watch_close():
            try:
                while True:
                    await ws.receive_text()
            except falcon.WebSocketDisconnected:
                pass
            finally:
                closed.set()
                wake.set()

        watcher = asyncio.create_task(watch_close())
        seen: dict[str, dt.datetime] = {}
        cursor = utcnow() - dt.timedelta(seconds=2)
        try:
            if backfill:
                since = max(flt.since, utcnow() - BACKFILL_WINDOW)
                rows = await db.run(_backfill_rows, flt, since)
                for row in rows:
                    if await self._send(ws, flt, row, seen) is False:
                        return
            while not closed.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(wake.wait(), POLL_SECONDS)
                wake.clear()
                if closed.is_set():
                    break
                rows = await db.run(_new_rows, cursor - dt.timedelta(seconds=2))
                for row in rows:
                    cursor = max(cursor, row["received"])
                    if await self._send(ws, flt, row, seen) is False:
                        return
                horizon = cursor - dt.timedelta(seconds=10)
                for key in [k for k, v in seen.items() if v < horizon]:
                    del seen[key]
        finally:
            unsubscribe()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher

    @staticmethod
    async def _send(ws, flt: CompiledFilter, row: dict, seen: dict):
        if row["id"] in seen:
            return None
        seen[row["id"]] = row["received"]
        event = events_mod.row_to_event(row)
        if flt.until is not None and row["occurred"] > flt.until:
            return None
        if not flt.matches(event):
            return None
        try:
            await ws.send_text(orjson.dumps({"type": "event", "event": event}).decode())
        except falcon.WebSocketDisconnected:
            return False
        return True


def _backfill_rows(flt: CompiledFilter, since: dt.datetime) -> list[dict]:
    query = flt.sql().where(Event.occurred >= since).order_by(Event.occurred.asc(), Event.id).limit(2500)
    return list(query.dicts())


def _new_rows(after: dt.datetime) -> list[dict]:
    return list(Event.select().where(Event.received >= after).order_by(Event.received, Event.id).limit(2000).dicts())


class EventsBatch:
    """POST /events: a JSON array of events (what in-process clients send)."""

    async def on_post(self, req, resp):
        body = await read_json(req)
        if not isinstance(body, list):
            raise invalid("", "Input should be a valid list", body, body)
        batch = []
        for i, item in enumerate(body):
            try:
                batch.append(validate_event(item))
            except EventInvalid as exc:
                raise invalid(str(i), str(exc), item, None) from None
        if batch:
            await db.run_write(recorder.record_events, batch)
            events_mod.wake_subscribers()
            metrics.record_events_ingested("http", batch)
        no_content(resp)


def compile_filter(spec, body) -> CompiledFilter:
    """The body's EventFilter compiled; Prefect's 422 (loc under body.filter) when malformed."""
    try:
        return CompiledFilter(spec)
    except EventFilterInvalid as exc:
        errors = [
            {"type": e["type"], "loc": ["body", "filter", *e["loc"]], "msg": e["msg"], "input": e.get("input")}
            for e in exc.errors
        ]
        raise ValidationFailed(errors, body) from None
    except EventFilterError as exc:
        raise invalid("filter", str(exc), spec, body) from None


def _page(flt: CompiledFilter, limit: int, offset: int):
    query = flt.sql()
    order = (Event.occurred.asc(), Event.id.asc()) if flt.order == "ASC" else (Event.occurred.desc(), Event.id.desc())
    needs_python = bool(
        flt.event.get("prefix") or flt.event.get("exclude_prefix") or flt.event.get("exclude_name")
        or flt.related or flt.any_resource or flt.text or flt.resource.get("id_prefix") or flt.resource.get("labels")
    )
    if not needs_python:
        total = query.count()
        rows = list(query.order_by(*order).limit(limit).offset(offset).dicts())
        return [events_mod.row_to_event(r) for r in rows], total
    matched = [e for e in (events_mod.row_to_event(r) for r in query.order_by(*order).limit(20000).dicts()) if flt.matches(e)]
    return matched[offset : offset + limit], len(matched)


def _next_page_url(req, spec, limit: int, offset: int, total: int) -> str | None:
    if offset + limit >= total:
        return None
    token = base64.urlsafe_b64encode(orjson.dumps({"filter": spec, "limit": limit, "offset": offset + limit})).decode()
    return f"{req.scheme}://{req.netloc}{state.settings.api_prefix}/events/filter/next?page-token={token}"


class EventFilterResource:
    async def on_post(self, req, resp):
        body = await read_json(req, {})
        body = {} if body is None else body
        if not isinstance(body, dict):
            raise invalid("", "Input should be a valid dictionary", body, body)
        limit = body.get("limit", MAX_FILTER_LIMIT)
        if limit is None:
            limit = MAX_FILTER_LIMIT
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= MAX_FILTER_LIMIT:
            raise invalid("limit", f"Input should be an integer from 0 to {MAX_FILTER_LIMIT}", limit, body)
        spec = body.get("filter")
        flt = compile_filter(spec, body)
        events, total = await db.run(_page, flt, limit, 0)
        send(resp, {"events": events, "total": total, "next_page": _next_page_url(req, spec, limit, 0, total)})


class EventFilterNext:
    async def on_get(self, req, resp):
        token = req.get_param("page-token")
        if token is None:
            raise invalid("page-token", "Field required", None, loc_root="query")
        try:
            state_ = orjson.loads(base64.urlsafe_b64decode(token.encode()))
            spec, limit, offset = state_["filter"], int(state_["limit"]), int(state_["offset"])
            flt = CompiledFilter(spec)
        except Exception:  # noqa: BLE001 - any malformed token
            raise ApiError(403, "Invalid page token") from None
        events, total = await db.run(_page, flt, limit, offset)
        send(resp, {"events": events, "total": total, "next_page": _next_page_url(req, spec, limit, offset, total)})


class EventCountBy:
    async def on_post(self, req, resp, countable):
        body = await read_json(req, {})
        body = {} if body is None else body
        if countable not in events_mod.COUNTABLES:
            raise ValidationFailed(
                [{"type": "enum", "loc": ["path", "countable"],
                  "msg": "Input should be 'day', 'time', 'event' or 'resource'", "input": countable}],
                body,
            )
        if not isinstance(body, dict):
            raise invalid("", "Input should be a valid dictionary", body, body)
        flt = compile_filter(body.get("filter"), body)
        unit = body.get("time_unit", "day")
        if unit not in events_mod.TIME_UNITS:
            raise invalid("time_unit", f"Input should be one of {', '.join(events_mod.TIME_UNITS)}", unit, body)
        interval = body.get("time_interval", 1.0)
        if isinstance(interval, bool) or not isinstance(interval, int | float) or interval < 0.01:
            raise invalid("time_interval", "Input should be a number greater than or equal to 0.01", interval, body)
        now = utcnow()
        until = flt.until or now

        def matched():
            rows = flt.sql(until_now=False).where(Event.occurred <= until).limit(50000).dicts()
            pairs = ((r["occurred"], events_mod.row_to_event(r)) for r in rows)
            return [(occurred, e) for occurred, e in pairs if flt.matches(e)]

        try:
            events_mod.time_buckets(flt.since, until, unit, float(interval), now)  # refuse before reading
        except events_mod.CountInvalid as exc:
            raise ApiError(422, str(exc)) from None
        events = await db.run(matched)
        send(resp, events_mod.count_by(events, countable, flt.since, until, unit, float(interval), now))


def register(app, prefix: str) -> None:
    app.add_route(f"{prefix}/events/in", EventsIn())
    app.add_route(f"{prefix}/events/out", EventsOut())
    app.add_route(f"{prefix}/events", EventsBatch())
    app.add_route(f"{prefix}/events/filter", EventFilterResource())
    app.add_route(f"{prefix}/events/filter/next", EventFilterNext())
    app.add_route(f"{prefix}/events/count-by/{{countable}}", EventCountBy())

