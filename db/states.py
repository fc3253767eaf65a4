"""State objects as the API carries them: defaults, canonical names, parsing helpers."""

from __future__ import annotations

import datetime as dt

from db.fields import uuid7

STATE_TYPES = (
    "SCHEDULED",
    "PENDING",
    "RUNNING",
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "CRASHED",
    "PAUSED",
    "CANCELLING",
)
TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "CRASHED"})
CANONICAL_NAMES = {t: t.capitalize() for t in STATE_TYPES}

# Every StateDetails key the client expects back, with its default.
STATE_DETAILS_DEFAULTS = {
    "flow_run_id": None,
    "task_run_id": None,
    "child_flow_run_id": None,
    "scheduled_time": None,
    "cache_key": None,
    "cache_expiration": None,
    "deferred": False,
    "untrackable_result": False,
    "pause_timeout": None,
    "pause_reschedule": False,
    "pause_key": None,
    "run_input_keyset": None,
    "refresh_cache": None,
    "retriable": None,
    "transition_id": None,
    "task_parameters_id": None,
    "traceparent": None,
    "deployment_concurrency_lease_id": None,
}


def parse_datetime(value) -> dt.datetime | None:
    """ISO 8601 with 'T' or ' ', 'Z' or an offset, or naive (UTC) -> naive UTC."""
    if value is None or isinstance(value, dt.datetime):
        parsed = value
    else:
        text = str(value).strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        parsed = dt.datetime.fromisoformat(text)
    if parsed is not None and parsed.tzinfo is not None:
        try:
            parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
        except OverflowError:  # e.g. 0001-01-01T00:00:00+05:00 is before year 1 in UTC
            raise ValueError(f"datetime out of range: {value}") from None
    return parsed


def iso(value: dt.datetime | None) -> str | None:
    """Naive-UTC datetime -> '2026-11-21T13:28:57.144766Z' (microseconds always)."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.isoformat(timespec="microseconds") + "Z"  # (strftime drops the zero padding of years < 1000)


def details_with_defaults(details: dict | None) -> dict:
    merged = dict(STATE_DETAILS_DEFAULTS)
    if details:
        merged.update(details)
    return merged


def new_state(
    type_: str,
    name: str | None = None,
    *,
    message: str | None = None,
    data=None,
    details: dict | None = None,
    timestamp: dt.datetime | None = None,
    state_id: str | None = None,
) -> dict:
    """A state as stored and returned: timestamps are naive-UTC datetimes in memory."""
    return {
        "id": state_id or uuid7(),
        "type": type_,
        "name": name or CANONICAL_NAMES[type_],
        "timestamp": timestamp,
        "message": message,
        "data": data,
        "state_details": details_with_defaults(details),
    }


def scheduled_time(state: dict | None) -> dt.datetime | None:
    if not state:
        return None
    return parse_datetime((state.get("state_details") or {}).get("scheduled_time"))


def has_persisted_result(data) -> bool:
    """A state's data is a persisted result record: a non-empty object whose ``type`` is not
    "unpersisted" (Prefect's ``_has_persisted_result``; null, ``{}`` and non-object data are not)."""
    return isinstance(data, dict) and bool(data) and data.get("type") != "unpersisted"
