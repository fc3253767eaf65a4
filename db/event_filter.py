"""EventFilter (Prefect's events filter) as a SQL pre-filter plus an exact Python match.

The filter is validated first with the shape of Prefect's EventFilter (unknown keys and
wrongly typed values are refused, as the real server's ``extra="forbid"`` models do);
``EventFilterInvalid`` carries pydantic's errors so the API can answer Prefect's 422.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from db.fields import utcnow
from db.models import Event
from db.states import parse_datetime


class EventFilterError(ValueError):
    pass


class EventFilterInvalid(EventFilterError):
    """The filter does not have EventFilter's shape; ``errors`` are pydantic's (loc inside the filter)."""

    def __init__(self, exc: ValidationError):
        self.errors = exc.errors(include_url=False)
        first = self.errors[0] if self.errors else {"loc": (), "msg": "invalid filter"}
        super().__init__(f"{'.'.join(str(p) for p in first['loc']) or 'filter'}: {first['msg']}")


def _when(value):
    if value is None or isinstance(value, dt.datetime):
        return parse_datetime(value)
    if not isinstance(value, str):
        raise ValueError("Input should be a valid datetime")
    try:
        return parse_datetime(value)
    except ValueError:
        raise ValueError(f"Unable to parse string [{value}]") from None


_Datetime = Annotated[dt.datetime | None, BeforeValidator(_when)]
_Strings = list[str] | None
_Labels = dict[str, str | list[str]] | None


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Occurred(_Part):
    since: _Datetime = None
    until: _Datetime = None


class _Name(_Part):
    prefix: _Strings = None
    exclude_prefix: _Strings = None
    name: _Strings = None
    exclude_name: _Strings = None


class _Resource(_Part):
    id: _Strings = None
    id_prefix: _Strings = None
    labels: _Labels = None
    distinct: bool = False


class _Related(_Part):
    id: _Strings = None
    role: _Strings = None
    resources_in_roles: list[tuple[str, str]] | None = None
    labels: _Labels = None


class _AnyResource(_Part):
    id: _Strings = None
    id_prefix: _Strings = None
    labels: _Labels = None


class _Ids(_Part):
    id: list[uuid.UUID] | None = None


class _Text(_Part):
    query: Annotated[str, Field(max_length=200)]


class _EventFilter(_Part):
    occurred: _Occurred | None = None
    event: _Name | None = None
    resource: _Resource | None = None
    related: _Related | list[_Related] | None = None
    any_resource: _AnyResource | list[_AnyResource] | None = None
    id: _Ids | None = None
    text: _Text | None = None
    order: Literal["ASC", "DESC"] | None = None


def validate_filter(spec) -> dict:
    """The filter as plain JSON-ish data with EventFilter's shape; EventFilterInvalid otherwise."""
    try:
        model = _EventFilter.model_validate(spec or {})
    except ValidationError as exc:
        raise EventFilterInvalid(exc) from None
    return model.model_dump(mode="python", exclude_none=True)


def start_of_day_minus(now: dt.datetime, window: dt.timedelta) -> dt.datetime:
    """Prefect's default lower bound: the start of today (UTC) minus the window."""
    return now.replace(hour=0, minute=0, second=0, microsecond=0) - window


def _labels_match(labels: dict, wanted: dict) -> bool:
    for label, expected in (wanted or {}).items():
        values = expected if isinstance(expected, list) else [expected]
        actual = labels.get(label)
        positives = [v for v in values if not str(v).startswith("!")]
        negatives = [str(v)[1:] for v in values if str(v).startswith("!")]
        if any(_value_match(actual, n) for n in negatives):
            return False
        if positives and not any(_value_match(actual, p) for p in positives):
            return False
    return True


def _value_match(actual, pattern) -> bool:
    if actual is None:
        return False
    pattern = str(pattern)
    if pattern.endswith("*"):
        return str(actual).startswith(pattern[:-1])
    return str(actual) == pattern


def _resource_match(resource: dict, spec: dict) -> bool:
    rid = resource.get("prefect.resource.id", "")
    if spec.get("id") is not None and rid not in spec["id"]:
        return False
    if spec.get("id_prefix") is not None and not any(rid.startswith(p) for p in spec["id_prefix"]):
        return False
    if spec.get("labels") and not _labels_match(resource, spec["labels"]):
        return False
    return True


def _related_match(related: list, spec: dict) -> bool:
    if spec.get("resources_in_roles"):
        pairs = {(r.get("prefect.resource.id"), r.get("prefect.resource.role")) for r in related}
        if not all((rid, role) in pairs for rid, role in spec["resources_in_roles"]):
            return False
    candidates = related
    if spec.get("role") is not None:
        candidates = [r for r in candidates if r.get("prefect.resource.role") in spec["role"]]
        if not candidates:
            return False
    if spec.get("id") is not None or spec.get("labels"):
        return any(_resource_match(r, {"id": spec.get("id"), "labels": spec.get("labels")}) for r in candidates)
    return True


def _as_list(value):
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


class CompiledFilter:
    def __init__(self, spec: dict | None, *, default_since: dt.timedelta = dt.timedelta(days=180)):
        if spec is not None and not isinstance(spec, dict):
            raise EventFilterError("filter must be an object")
        spec = validate_filter(spec)
        occurred = spec.get("occurred") or {}
        self.since = occurred.get("since") or start_of_day_minus(utcnow(), default_since)
        self.until = occurred.get("until")
        self.event = spec.get("event") or {}
        self.resource = spec.get("resource") or {}
        self.related = _as_list(spec.get("related"))
        self.any_resource = _as_list(spec.get("any_resource"))
        self.ids = {str(i) for i in (spec.get("id") or {}).get("id") or []}
        self.text = ((spec.get("text") or {}).get("query") or "").strip()
        self.order = spec.get("order") or "DESC"

    def sql(self, until_now: bool = True):
        query = Event.select().where(Event.occurred >= self.since)
        until = self.until or (utcnow() if until_now else None)
        if until is not None:
            query = query.where(Event.occurred <= until)
        names = self.event.get("name")
        if names:
            query = query.where(Event.event.in_(names))
        if self.ids:
            query = query.where(Event.id.in_(list(self.ids)))
        resource_ids = self.resource.get("id")
        if resource_ids:
            query = query.where(Event.resource_id.in_(resource_ids))
        return query

    def matches(self, event: dict) -> bool:
        name = event["event"]
        ev = self.event
        if ev.get("name") and name not in ev["name"]:
            return False
        if ev.get("prefix") and not any(name.startswith(p) for p in ev["prefix"]):
            return False
        if ev.get("exclude_prefix") and any(name.startswith(p) for p in ev["exclude_prefix"]):
            return False
        if ev.get("exclude_name") and name in ev["exclude_name"]:
            return False
        if self.ids and str(event["id"]) not in self.ids:
            return False
        if self.resource and not _resource_match(event["resource"], self.resource):
            return False
        related = event.get("related") or []
        for spec in self.related:
            if not _related_match(related, spec):
                return False
        for spec in self.any_resource:
            resources = [event["resource"], *related]
            if not any(_resource_match(r, spec) for r in resources):
                return False
        if self.text and not _text_match(self.text, event):
            return False
        return True


def _text_match(query: str, event: dict) -> bool:
    """Prefect's event text search: terms OR'd, -/! excluded, + required, over the event name,
    resource and related label values and the payload."""
    from db.queries import parse_text_query

    include, exclude, required = parse_text_query(query)
    parts = [event["event"], *map(str, (event.get("resource") or {}).values())]
    for related in event.get("related") or []:
        parts.extend(map(str, related.values()))
    parts.append(str(event.get("payload")))
    blob = " ".join(parts).lower()
    if include and not any(t.lower() in blob for t in include):
        return False
    if any(t.lower() in blob for t in exclude):
        return False
    return all(t.lower() in blob for t in required)
