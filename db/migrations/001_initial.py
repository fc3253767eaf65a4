"""Run-tracking core: flows, flow runs, task runs, their state histories, logs, events,
artifacts. On PostgreSQL also the pg_trgm extension and trigram indexes on names.

The models are frozen here (not imported from db.models) so that this migration keeps
meaning what it meant when later ones change the models.
"""

import peewee as pw

from db.fields import JSONField, UTCDateTime, UUIDStr

# Listing sort indexes: ORDER BY expected_start_time DESC (NULLs last), id DESC is a backward
# scan of (expected_start_time NULLS FIRST, id). SQLite sorts NULLs first already.
SORT_INDEXES = [
    ("flow_run", "ix_flow_run_expected", ["expected_start_time", "id"]),
    ("flow_run", "ix_flow_run_state_expected", ["state_type", "expected_start_time", "id"]),
    ("task_run", "ix_task_run_expected", ["expected_start_time", "id"]),
    ("task_run", "ix_task_run_state_expected", ["state_type", "expected_start_time", "id"]),
]

TRIGRAM_INDEXES = [
    ("flow", "name"),
    ("flow_run", "name"),
    ("task_run", "name"),
]


class PgTrgmUnavailable(RuntimeError):
    pass


def _ensure_pg_trgm(database):
    try:
        with database.atomic():
            database.execute_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except pw.DatabaseError as exc:
        name = database.database
        raise PgTrgmUnavailable(
            f"the PostgreSQL extension pg_trgm is required but could not be created in database "
            f"{name!r}: {str(exc).strip().splitlines()[0]}. Fix: install the extension's package on the "
            f"server (it ships with postgresql-contrib) and have a superuser run "
            f"'CREATE EXTENSION IF NOT EXISTS pg_trgm;' in {name!r}, or grant the role the right to "
            f"create it."
        ) from exc


def migrate(migrator, database, fake=False):
    is_pg = isinstance(database, pw.PostgresqlDatabase)
    if is_pg and not fake:
        _ensure_pg_trgm(database)

    @migrator.create_model
    class Flow(pw.Model):
        id = UUIDStr(primary_key=True)
        created = UTCDateTime()
        updated = UTCDateTime()
        name = pw.TextField(unique=True)
        tags = JSONField()
        labels = JSONField(null=True)

        class Meta:
            table_name = "flow"

    @migrator.create_model
    class FlowRun(pw.Model):
        id = UUIDStr(primary_key=True)
        created = UTCDateTime()
        updated = UTCDateTime()
        name = pw.TextField()
        flow_id = pw.ForeignKeyField(Flow, on_delete="CASCADE", column_name="flow_id")
        deployment_id = UUIDStr(null=True, index=True)
        deployment_version = pw.TextField(null=True)
        work_queue_id = UUIDStr(null=True, index=True)
        work_queue_name = pw.TextField(null=True)
        work_pool_id = UUIDStr(null=True)
        work_pool_name = pw.TextField(null=True)
        flow_version = pw.TextField(null=True)
        parameters = JSONField()
        idempotency_key = pw.TextField(null=True)
        context = JSONField()
        empirical_policy = JSONField()
        tags = JSONField()
        labels = JSONField(null=True)
        parent_task_run_id = UUIDStr(null=True, index=True)
        state_id = UUIDStr(null=True)
        state_type = pw.CharField(max_length=16, null=True)
        state_name = pw.TextField(null=True)
        state_timestamp = UTCDateTime(null=True)
        state = JSONField(null=True)
        run_count = pw.IntegerField()
        expected_start_time = UTCDateTime(null=True)
        next_scheduled_start_time = UTCDateTime(null=True, index=True)
        start_time = UTCDateTime(null=True)
        end_time = UTCDateTime(null=True)
        total_run_time = pw.FloatField()
        auto_scheduled = pw.BooleanField()
        infrastructure_document_id = UUIDStr(null=True)
        infrastructure_pid = pw.TextField(null=True)
        created_by = JSONField(null=True)
        job_variables = JSONField(null=True)

        class Meta:
            table_name = "flow_run"
            indexes = ((("flow_id", "idempotency_key"), True),)

    @migrator.create_model
    class FlowRunState(pw.Model):
        id = UUIDStr(primary_key=True)
        created = UTCDateTime()
        flow_run_id = pw.ForeignKeyField(FlowRun, on_delete="CASCADE", column_name="flow_run_id")
        type = pw.CharField(max_length=16)
        name = pw.TextField()
        timestamp = UTCDateTime()
        message = pw.TextField(null=True)
        data = JSONField(null=True)
        state_details = JSONField()

        class Meta:
            table_name = "flow_run_state"
            indexes = ((("flow_run_id", "timestamp"), True),)

    @migrator.create_model
    class TaskRun(pw.Model):
        id = UUIDStr(primary_key=True)
        created = UTCDateTime()
        updated = UTCDateTime()
        name = pw.TextField()
        flow_run_id = UUIDStr(null=True)
        task_key = pw.TextField()
        dynamic_key = pw.TextField()
        cache_key = pw.TextField(null=True)
        cache_expiration = UTCDateTime(null=True)
        task_version = pw.TextField(null=True)
        empirical_policy = JSONField()
        tags = JSONField()
        labels = JSONField(null=True)
        task_inputs = JSONField()
        state_id = UUIDStr(null=True)
        state_type = pw.CharField(max_length=16, null=True)
        state_name = pw.TextField(null=True)
        state_timestamp = UTCDateTime(null=True)
        state = JSONField(null=True)
        run_count = pw.IntegerField()
        flow_run_run_count = pw.IntegerField()
        expected_start_time = UTCDateTime(null=True)
        next_scheduled_start_time = UTCDateTime(null=True)
        start_time = UTCDateTime(null=True)
        end_time = UTCDateTime(null=True)
        total_run_time = pw.FloatField()

        class Meta:
            table_name = "task_run"
            indexes = ((("flow_run_id", "task_key", "dynamic_key"), True),)

    @migrator.create_model
    class TaskRunState(pw.Model):
        id = UUIDStr(primary_key=True)
        created = UTCDateTime()
        task_run_id = UUIDStr(index=True)
        type = pw.CharField(max_length=16)
        name = pw.TextField()
        timestamp = UTCDateTime()
        message = pw.TextField(null=True)
        data = JSONField(null=True)
        state_details = JSONField()

        class Meta:
            table_name = "task_run_state"

    @migrator.create_model
    class Log(pw.Model):
        id = UUIDStr(primary_key=True)
        created = UTCDateTime()
        name = pw.TextField()
        level = pw.IntegerField()
        message = pw.TextField()
        timestamp = UTCDateTime()
        flow_run_id = UUIDStr(null=True)
        task_run_id = UUIDStr(null=True)

        class Meta:
            table_name = "log"
            indexes = ((("flow_run_id", "timestamp"), False),)

    @migrator.create_model
    class Event(pw.Model):
        id = UUIDStr(primary_key=True)
        occurred = UTCDateTime(index=True)
        received = UTCDateTime()
        event = pw.TextField()
        resource_id = pw.TextField(index=True)
        resource = JSONField()
        related = JSONField()
        payload = JSONField()
        follows = UUIDStr(null=True)

        class Meta:
            table_name = "event"
            indexes = ((("event", "occurred"), False),)

    @migrator.create_model
    class Artifact(pw.Model):
        id = UUIDStr(primary_key=True)
        created = UTCDateTime()
        updated = UTCDateTime()
        key = pw.TextField(null=True, index=True)
        type = pw.TextField(null=True)
        description = pw.TextField(null=True)
        data = JSONField(null=True)
        metadata_ = JSONField(null=True, column_name="metadata_")
        flow_run_id = UUIDStr(null=True, index=True)
        task_run_id = UUIDStr(null=True)

        class Meta:
            table_name = "artifact"

    @migrator.create_model
    class ArtifactCollection(pw.Model):
        id = UUIDStr(primary_key=True)
        created = UTCDateTime()
        updated = UTCDateTime()
        key = pw.TextField(unique=True)
        latest_id = UUIDStr()
        type = pw.TextField(null=True)
        description = pw.TextField(null=True)
        data = JSONField(null=True)
        metadata_ = JSONField(null=True, column_name="metadata_")
        flow_run_id = UUIDStr(null=True)
        task_run_id = UUIDStr(null=True)

        class Meta:
            table_name = "artifact_collection"

    for table, name, columns in SORT_INDEXES:
        cols = ", ".join(f"{c} NULLS FIRST" if is_pg and c == "expected_start_time" else c for c in columns)
        migrator.sql(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({cols})")

    if is_pg:
        for table, column in TRIGRAM_INDEXES:
            migrator.sql(
                f"CREATE INDEX IF NOT EXISTS ix_{table}_{column}_trgm ON {table} "
                f"USING gin ({column} gin_trgm_ops)"
            )


def rollback(migrator, database, fake=False):
    for _table, name, _columns in SORT_INDEXES:
        migrator.sql(f"DROP INDEX IF EXISTS {name}")
    if isinstance(database, pw.PostgresqlDatabase):
        for table, column in TRIGRAM_INDEXES:
            migrator.sql(f"DROP INDEX IF EXISTS ix_{table}_{column}_trgm")
    for table in (
        "artifact_collection",
        "artifact",
        "event",
        "log",
        "task_run_state",
        "task_run",
        "flow_run_state",
        "flow_run",
        "flow",
    ):
        migrator.remove_model(table)
