"""Deployments and execution: deployments, deployment schedules, work pools, work queues,
workers, flow-run inputs. Only 001's tables are referenced (by plain id columns).

The models are frozen here (not imported from db.models_deployments).
"""

import peewee as pw

from db.fields import JSONField, UTCDateTime, UUIDStr

# The worker's and runner's polls: due SCHEDULED runs of a queue / a deployment, by time.
RUN_INDEXES = [
    ("ix_flow_run_queue_due", ["work_queue_id", "state_type", "next_scheduled_start_time"]),
    ("ix_flow_run_deployment_due", ["deployment_id", "state_type", "next_scheduled_start_time"]),
]

TABLES = ["flow_run_input", "worker", "work_queue", "work_pool", "deployment_schedule", "deployment"]


def migrate(migrator, database, fake=False):
    @migrator.create_model
    class Deployment(pw.Model):
        id = UUIDStr(primary_key=True)
        created = UTCDateTime()
        updated = UTCDateTime()
        name = pw.TextField()
        flow_id = UUIDStr(index=True)
        version = pw.TextField(null=True)
        description = pw.TextField(null=True)
        paused = pw.BooleanField()
        concurrency_limit = pw.IntegerField(null=True)
        concurrency_options = JSONField(null=True)
        job_variables = JSONField()
        parameters = JSONField()
        tags = JSONField()
        labels = JSONField(null=True)
        work_queue_name = pw.TextField(null=True)
        work_queue_id = UUIDStr(null=True, index=True)
        work_pool_name = pw.TextField(null=True)
        last_polled = UTCDateTime(null=True)
        parameter_openapi_schema = JSONField(null=True)
        path = pw.TextField(null=True)
        pull_steps = JSONField(null=True)
        entrypoint = pw.TextField(null=True)
        storage_document_id = UUIDStr(null=True)
        infrastructure_document_id = UUIDStr(null=True)
        created_by = JSONField(null=True)
        updated_by = JSONField(null=True)
        status = pw.CharField(max_length=16)
        enforce_parameter_schema = pw.BooleanField()

        class Meta:
            table_name = "deployment"
            indexes = ((("flow_id", "name"), True),)

    @migrator.create_model
    class DeploymentSchedule(pw.Model):
        id = UUIDStr(primary_key=True)
        created = UTCDateTime()
        updated = UTCDateTime()
        deployment_id = UUIDStr(index=True)
        schedule = JSONField()
        active = pw.BooleanField()
        max_scheduled_runs = pw.IntegerField(null=True)
        parameters = JSONField()
        slug = pw.TextField(null=True)

        class Meta:
            table_name = "deployment_schedule"

    @migrator.create_model
    class WorkPool(pw.Model):
        id = UUIDStr(primary_key=True)
        created = UTCDateTime()
        updated = UTCDateTime()
        name = pw.TextField(unique=True)
        description = pw.TextField(null=True)
        type = pw.TextField()
        base_job_template = JSONField()
        is_paused = pw.BooleanField()
        concurrency_limit = pw.IntegerField(null=True)
        status = pw.CharField(max_length=16, null=True)
        default_queue_id = UUIDStr(null=True)
        storage_configuration = JSONField(null=True)

        class Meta:
            table_name = "work_pool"

    @migrator.create_model
    class WorkQueue(pw.Model):
        id = UUIDStr(primary_key=True)
        created = UTCDateTime()
        updated = UTCDateTime()
        name = pw.TextField()
        description = pw.TextField(null=True)
        is_paused = pw.BooleanField()
        concurrency_limit = pw.IntegerField(null=True)
        priority = pw.IntegerField()
        work_pool_id = UUIDStr(index=True)
        last_polled = UTCDateTime(null=True)
        status = pw.CharField(max_length=16)

        class Meta:
            table_name = "work_queue"
            indexes = ((("work_pool_id", "name"), True),)

    @migrator.create_model
    class Worker(pw.Model):
        id = UUIDStr(primary_key=True)
        created = UTCDateTime()
        updated = UTCDateTime()
        name = pw.TextField()
        work_pool_id = UUIDStr(index=True)
        last_heartbeat_time = UTCDateTime(null=True)
        heartbeat_interval_seconds = pw.IntegerField(null=True)
        status = pw.CharField(max_length=16)

        class Meta:
            table_name = "worker"
            indexes = ((("work_pool_id", "name"), True),)

    @migrator.create_model
    class FlowRunInput(pw.Model):
        id = UUIDStr(primary_key=True)
        created = UTCDateTime()
        updated = UTCDateTime()
        flow_run_id = UUIDStr()
        key = pw.TextField()
        value = pw.TextField()
        sender = pw.TextField(null=True)

        class Meta:
            table_name = "flow_run_input"
            indexes = ((("flow_run_id", "key"), True),)

    for name, columns in RUN_INDEXES:
        migrator.sql(f"CREATE INDEX IF NOT EXISTS {name} ON flow_run ({', '.join(columns)})")


def rollback(migrator, database, fake=False):
    for name, _columns in RUN_INDEXES:
        migrator.sql(f"DROP INDEX IF EXISTS {name}")
    for table in TABLES:
        migrator.remove_model(table)
