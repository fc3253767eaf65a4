"""Peewee models of global concurrency limits (Prefect's v2 limits; a v1 tag limit is the
v2 limit named ``tag:<tag>``) and of the leases that hold their slots.

``active_slots`` on the limit is the admission counter: it is read and written only under
the limit's row lock (db.concurrency), so it is the single source of truth for admission.
Each lease records which limits it took slots from (``ConcurrencyLeaseLimit``) so that a
release, a lease expiry (the sweeper) or a limit reset gives back exactly those slots.
"""

from __future__ import annotations

import peewee as pw

from db.fields import UTCDateTime, UUIDStr, new_id, utcnow
from db.models import BaseModel


class ConcurrencyLimit(BaseModel):
    id = UUIDStr(primary_key=True, default=new_id)
    created = UTCDateTime(default=utcnow)
    # Also the reference time of slot decay: every write that changes the slot counters
    # first folds the decay since ``updated`` into them, then moves ``updated`` to now.
    updated = UTCDateTime(default=utcnow)
    active = pw.BooleanField(default=True)
    name = pw.TextField(unique=True)
    limit = pw.IntegerField()
    # Kept as floats so that slot decay is exact however often the row is written (the API
    # shows whole slots: db.concurrency.whole); without decay they stay whole numbers.
    active_slots = pw.DoubleField(default=0.0)
    denied_slots = pw.DoubleField(default=0.0)
    slot_decay_per_second = pw.DoubleField(default=0.0)
    avg_slot_occupancy_seconds = pw.DoubleField(default=2.0)

    class Meta:
        table_name = "concurrency_limit"


class ConcurrencyLease(BaseModel):
    id = UUIDStr(primary_key=True, default=new_id)
    created = UTCDateTime(default=utcnow)
    expires = UTCDateTime(index=True)
    slots = pw.IntegerField()
    holder_type = pw.CharField(max_length=16, null=True)  # flow_run | task_run | deployment
    holder_id = UUIDStr(null=True, index=True)

    class Meta:
        table_name = "concurrency_lease"


class ConcurrencyLeaseLimit(BaseModel):
    """One limit a lease holds ``lease.slots`` slots of."""

    lease = pw.ForeignKeyField(ConcurrencyLease, on_delete="CASCADE", column_name="lease_id")
    limit = pw.ForeignKeyField(ConcurrencyLimit, on_delete="CASCADE", column_name="limit_id", index=True)

    class Meta:
        table_name = "concurrency_lease_limit"
        primary_key = pw.CompositeKey("lease", "limit")


MODELS = [ConcurrencyLimit, ConcurrencyLease, ConcurrencyLeaseLimit]
