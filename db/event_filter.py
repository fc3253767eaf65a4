"""EventFilter (Prefect's events filter) as a SQL pre-filter plus an exact Python match."""

from __future__ import annotations

import datetime as dt

from db.fields import utcnow
from db.models import Event
from db.states import parse_datetime


class EventFilterError(ValueError):
    pass


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
        spec = spec or {}
        if not isinstance(spec, dict):
            raise EventFilterError("filter must be an object")
        occurred = spec.get("occurred") or {}
        try:
            self.since = parse_datetime(occurred.get("since")) or (utcnow() - default_since)
            self.until = parse_datetime(occurred.get("until"))
        except (ValueError, TypeError) as exc:
            raise EventFilterError(f"occurred: {exc}") from None
        self.event = spec.get("event") or {}
        self.resource = spec.get("resource") or {}
        self.related = _as_list(spec.get("related"))
        self.any_resource = _as_list(spec.get("any_resource"))
        self.ids = set((spec.get("id") or {}).get("id") or [])
        self.text = ((spec.get("text") or {}).get("query") or "").strip()
        self.order = spec.get("order") or "DESC"
        if self.order not in ("ASC", "DESC"):
            raise EventFilterError("order must be ASC or DESC")

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
        if self.text:
            blob = f"{name} {event['resource']} {event.get('payload')}".lower()
            for term in self.text.lower().split():
                if term.startswith("-"):
                    if term[1:] in blob:
                        return False
                elif term not in blob:
                    return False
        return True
