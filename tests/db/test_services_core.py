import datetime as dt

from db import events as events_mod
from db.fields import utcnow
from db.models import Event
from db.services_core import prune_events


def _event(i, occurred):
    return events_mod.event_row({
        "id": f"00000000-0000-7000-8000-{i:012d}", "occurred": occurred, "event": "x.y",
        "resource": {"prefect.resource.id": "r"}, "related": [], "payload": {}})


def test_prune_events_keeps_the_retention_window(migrated):
    now = utcnow()
    events_mod.insert_events([_event(1, now - dt.timedelta(days=8)), _event(2, now - dt.timedelta(days=1))])
    assert prune_events(now, retention_days=7) == 1
    assert [e.id for e in Event.select()] == ["00000000-0000-7000-8000-000000000002"]
    assert prune_events(now, retention_days=7) == 0
