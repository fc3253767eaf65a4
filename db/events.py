"""Stored events: ingest (deduplicated by id), server-emitted flow-run events, wake-ups.

Events live in the ``event`` table; `/events/out` subscribers read them from there, so
every replica sees every event. ``subscribe_wakeup`` lets a subscriber in this process
be woken at once after a commit instead of waiting for its next poll.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import threading

import peewee as pw

from db import database as dbmod
from db.fields import utcnow
from db.models import Event
from db.states import iso, parse_datetime

_waiters: set = set()
_waiters_lock = threading.Lock()


def subscribe_wakeup(loop: asyncio.AbstractEventLoop, flag: asyncio.Event):
    with _waiters_lock:
        _waiters.add((loop, flag))
    return lambda: _unsubscribe(loop, flag)


def _unsubscribe(loop, flag):
    with _waiters_lock:
        _waiters.discard((loop, flag))


def wake_subscribers() -> None:
    with _waiters_lock:
        waiters = list(_waiters)
    for loop, flag in waiters:
        try:
            loop.call_soon_threadsafe(flag.set)
        except RuntimeError:  # loop closed
            _unsubscribe(loop, flag)


def event_row(event: dict, received: dt.datetime | None = None) -> dict:
    """A validated client event (dict) -> a row for the event table."""
    resource = event.get("resource") or {}
    return {
        "id": str(event["id"]),
        "occurred": parse_datetime(event["occurred"]),
        "received": received or utcnow(),
        "event": event["event"],
        "resource_id": resource.get("prefect.resource.id", ""),
        "resource": resource,
        "related": event.get("related") or [],
        "payload": event.get("payload") or {},
        "follows": str(event["follows"]) if event.get("follows") else None,
    }


def insert_events(rows: list[dict]) -> None:
    """Insert event rows, skipping ids already stored (client re-sends are normal)."""
    if not rows:
        return
    for start in range(0, len(rows), 200):
        Event.insert_many(rows[start : start + 200]).on_conflict_ignore().execute()


def row_to_event(row: dict) -> dict:
    return {
        "occurred": iso(row["occurred"]),
        "event": row["event"],
        "resource": row["resource"],
        "related": row["related"],
        "payload": row["payload"],
        "id": row["id"],
        "follows": row["follows"],
        "received": iso(row["received"]),
    }


def flow_run_state_event(run: dict, flow: dict | None, previous: dict | None, state: dict) -> dict:
    """The ``prefect.flow-run.<State>`` event Prefect's server emits for a written state."""
    ts = parse_datetime(state["timestamp"])
    related = []
    if flow:
        related.append(
            {"prefect.resource.id": f"prefect.flow.{flow['id']}", "prefect.resource.role": "flow",
             "prefect.resource.name": flow["name"]}
        )
    if run.get("deployment_id"):
        related.append(
            {"prefect.resource.id": f"prefect.deployment.{run['deployment_id']}",
             "prefect.resource.role": "deployment", "prefect.resource.name": run.get("deployment_name") or ""}
        )
    if run.get("work_queue_id"):
        related.append(
            {"prefect.resource.id": f"prefect.work-queue.{run['work_queue_id']}",
             "prefect.resource.role": "work-queue", "prefect.resource.name": run.get("work_queue_name") or ""}
        )
    if run.get("work_pool_id"):
        related.append(
            {"prefect.resource.id": f"prefect.work-pool.{run['work_pool_id']}",
             "prefect.resource.role": "work-pool", "prefect.resource.name": run.get("work_pool_name") or ""}
        )
    if run.get("parent_task_run_id"):
        related.append(
            {"prefect.resource.id": f"prefect.task-run.{run['parent_task_run_id']}",
             "prefect.resource.role": "task-run"}
        )
    tags = sorted(set(run.get("tags") or []) | set((flow or {}).get("tags") or []))
    related.extend(
        {"prefect.resource.id": f"prefect.tag.{tag}", "prefect.resource.role": "tag"} for tag in tags
    )
    initial = None
    if previous:
        initial = {"type": previous["type"], "name": previous["name"]}
        if previous.get("message"):
            initial["message"] = previous["message"]
    validated = {"type": state["type"], "name": state["name"]}
    if state.get("message"):
        validated["message"] = state["message"]
    follows = None
    if previous and previous.get("timestamp"):
        prev_ts = parse_datetime(previous["timestamp"])
        if prev_ts and ts - prev_ts < dt.timedelta(minutes=5):
            follows = previous["id"]
    return {
        "occurred": ts,
        "event": f"prefect.flow-run.{state['name']}",
        "resource": {
            "prefect.resource.id": f"prefect.flow-run.{run['id']}",
            "prefect.resource.name": run["name"],
            "prefect.run-count": str(run.get("run_count", 0)),
            "prefect.state-message": state.get("message") or "",
            "prefect.state-name": state["name"],
            "prefect.state-timestamp": ts.replace(tzinfo=dt.UTC).isoformat(),
            "prefect.state-type": state["type"],
        },
        "related": related,
        "payload": {
            "intended": {"from": previous["type"] if previous else None, "to": state["type"]},
            "initial_state": initial,
            "validated_state": validated,
        },
        "id": state["id"],
        "follows": follows,
    }


def recent_events_query(since: dt.datetime, names: list[str] | None = None):
    query = Event.select().where(Event.occurred >= since)
    if names:
        query = query.where(Event.event.in_(names))
    return query


def count_events() -> int:
    return Event.select(pw.fn.COUNT(Event.id)).scalar()


def _flush_after_commit():
    """Called by db.runs after a write transaction that emitted events."""
    if dbmod.database.obj is not None:
        wake_subscribers()


# --- /events/count-by (Prefect's server/events/counting.py, restated) ---------------------

TIME_UNITS = {"week": 7 * 86400, "day": 86400, "hour": 3600, "minute": 60, "second": 1}
COUNTABLES = ("day", "time", "event", "resource")
# Prefect divides all time into buckets counted from this Monday.
PIVOT = dt.datetime(2024, 4, 1)
MAX_BUCKETS = 1000


class CountInvalid(ValueError):
    pass


def _end_of_period(now: dt.datetime, unit: str) -> dt.datetime:
    last = {"microsecond": 999999}
    if unit in ("minute", "hour", "day", "week"):
        last["second"] = 59
    if unit in ("hour", "day", "week"):
        last["minute"] = 59
    if unit in ("day", "week"):
        last["hour"] = 23
    if unit == "week":
        now = now + dt.timedelta(days=6 - now.weekday())
    return now.replace(**last)


def time_buckets(since: dt.datetime, until: dt.datetime, unit: str, interval: float, now: dt.datetime):
    """(index of the first bucket since PIVOT, bucket size, [(start, end)…]) covering since..until;
    CountInvalid past 1000 buckets. Buckets past now end with the current period."""
    if interval < 0.01:
        raise CountInvalid("The minimum interval is 0.01")
    delta = dt.timedelta(seconds=TIME_UNITS[unit] * interval)
    wanted = math.ceil((until - since) / delta)
    if wanted > MAX_BUCKETS:
        raise CountInvalid(
            f"The given interval would create {wanted} buckets, which is too many. Please increase the "
            f"interval or reduce the time range to produce {MAX_BUCKETS} buckets or fewer."
        )
    end = until if until <= now else _end_of_period(now, unit)
    first = math.floor((since - PIVOT) / delta)
    spans = []
    start = PIVOT + delta * first
    while start < end:
        spans.append((start, start + delta - dt.timedelta(microseconds=1)))
        start += delta
    return first, delta, spans


def _resource_label(event: dict) -> str:
    resource = event.get("resource") or {}
    return resource.get("prefect.resource.name") or resource.get("prefect.name") or resource.get(
        "prefect.resource.id", ""
    )


def count_by(events: list[tuple[dt.datetime, dict]], countable: str, since: dt.datetime, until: dt.datetime,
             unit: str, interval: float, now: dt.datetime) -> list[dict]:
    """EventCount rows for (occurred, event) pairs already matched by the filter.

    Time countables give every bucket of the range (zeros included) in time order, valued by
    their index; ``event``/``resource`` give one row per name/resource id, most frequent first,
    labelled from the newest event, spanning the first to the last occurrence.
    """
    if countable == "day":
        unit, interval = "day", 1.0
    first, delta, spans = time_buckets(since, until, unit, interval, now)
    if countable in ("day", "time"):
        counts = [0] * len(spans)
        for occurred, _ in events:
            index = math.floor((occurred - PIVOT) / delta) - first
            if 0 <= index < len(counts):
                counts[index] += 1
        return [
            {
                "value": str(i),
                "label": start.replace(tzinfo=dt.UTC).isoformat(),
                "count": count,
                "start_time": iso(start),
                "end_time": iso(end),
            }
            for i, ((start, end), count) in enumerate(zip(spans, counts, strict=True))
        ]
    groups: dict[str, dict] = {}
    for occurred, event in events:
        value = event["event"] if countable == "event" else (event.get("resource") or {}).get("prefect.resource.id", "")
        group = groups.get(value)
        if group is None:
            group = groups[value] = {"value": value, "count": 0, "first": occurred, "last": occurred, "label": None}
        group["count"] += 1
        group["first"] = min(group["first"], occurred)
        if occurred >= group["last"] or group["label"] is None:
            group["last"] = max(group["last"], occurred)
            group["label"] = event["event"] if countable == "event" else _resource_label(event)
    rows = [
        {"value": g["value"], "label": g["label"], "count": g["count"], "start_time": iso(g["first"]),
         "end_time": iso(g["last"])}
        for g in groups.values()
    ]
    rows.sort(key=lambda r: (-r["count"], r["label"]))
    return rows
