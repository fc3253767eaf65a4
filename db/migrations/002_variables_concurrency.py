"""Variables, global concurrency limits (v1 tag limits are v2 limits named ``tag:<tag>``)
and the leases holding their slots. Independent of the other migrations' tables.

The models are frozen here (not imported from db.models_variables / models_concurrency).
"""

import peewee as pw

from db.fields import JSONField, UTCDateTime, UUIDStr

TABLES = ["concurrency_lease_limit", "concurrency_lease", "concurrency_limit", "variable"]


def migrate(migrator, database, fake=False):
    @migrator.create_model
    class Variable(pw.Model):
        id = UUIDStr(primary_key=True)
        created = UTCDateTime()
        updated = UTCDateTime()
        name = pw.CharField(max_length=255, unique=True)
        value = JSONField(null=True)
        tags = JSONField()

        class Meta:
            table_name = "variable"

    @migrator.create_model
    class ConcurrencyLimit(pw.Model):
        id = UUIDStr(primary_key=True)
        created = UTCDateTime()
        updated = UTCDateTime()
        active = pw.BooleanField()
        name = pw.TextField(unique=True)
        limit = pw.IntegerField()
        active_slots = pw.DoubleField()
        denied_slots = pw.DoubleField()
        slot_decay_per_second = pw.DoubleField()
        avg_slot_occupancy_seconds = pw.DoubleField()

        class Meta:
            table_name = "concurrency_limit"

    @migrator.create_model
    class ConcurrencyLease(pw.Model):
        id = UUIDStr(primary_key=True)
        created = UTCDateTime()
        expires = UTCDateTime(index=True)
        slots = pw.IntegerField()
        holder_type = pw.CharField(max_length=16, null=True)
        holder_id = UUIDStr(null=True, index=True)

        class Meta:
            table_name = "concurrency_lease"

    @migrator.create_model
    class ConcurrencyLeaseLimit(pw.Model):
        lease = pw.ForeignKeyField(ConcurrencyLease, on_delete="CASCADE", column_name="lease_id")
        limit = pw.ForeignKeyField(ConcurrencyLimit, on_delete="CASCADE", column_name="limit_id", index=True)

        class Meta:
            table_name = "concurrency_lease_limit"
            primary_key = pw.CompositeKey("lease", "limit")


def rollback(migrator, database, fake=False):
    for table in TABLES:
        migrator.remove_model(table)
