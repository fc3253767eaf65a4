"""Housekeeping services of the run-tracking core (see appliance.services)."""

from __future__ import annotations

import datetime as dt

from appliance import services
from appliance.settings import get_settings
from db.fields import utcnow
from db.models import Event

PRUNE_BATCH = 5000


def prune_events(now: dt.datetime | None = None, retention_days: float | None = None) -> int:
    """Delete events older than the retention window, a bounded batch per pass.

    Safe in every replica at once: each pass deletes rows by id, and a row another
    replica already deleted is simply not there.
    """
    days = get_settings().events_retention_days if retention_days is None else retention_days
    cutoff = (now or utcnow()) - dt.timedelta(days=days)
    old = Event.select(Event.id).where(Event.occurred < cutoff).limit(PRUNE_BATCH)
    return Event.delete().where(Event.id.in_(old)).execute()


services.register("prune-events", 300)(prune_events)
