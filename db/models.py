"""Peewee models of the run-tracking core: flows, flow and task runs with their state
histories, logs, events and artifacts.

Current state is denormalised onto each run row (``state_*`` columns plus the full
``state`` JSON) so that reads never join the state history. Task runs, task-run
states, logs, events and artifacts carry plain id columns without foreign keys: the
client sends them in any order (logs before their task run, events before their flow
run), and the real server accepts that too.
"""

from __future__ import annotations

import peewee as pw

from db.database import database
from db.fields import JSONField, UTCDateTime, UUIDStr, new_id, utcnow


class BaseModel(pw.Model):
    class Meta:
        database = database
        legacy_table_names = False


class Flow(BaseModel):
    id = UUIDStr(primary_key=True, default=new_id)
    created = UTCDateTime(default=utcnow)
    updated = UTCDateTime(default=utcnow)
    name = pw.TextField(unique=True)
    tags = JSONField(default=list)
    labels = JSONField(null=True)


class FlowRun(BaseModel):
    id = UUIDStr(primary_key=True, default=new_id)
    created = UTCDateTime(default=utcnow)
    updated = UTCDateTime(default=utcnow)
    name = pw.TextField()
    flow_id = pw.ForeignKeyField(Flow, on_delete="CASCADE", column_name="flow_id")
    deployment_id = UUIDStr(null=True, index=True)
    deployment_version = pw.TextField(null=True)
    work_queue_id = UUIDStr(null=True, index=True)
    work_queue_name = pw.TextField(null=True)
    work_pool_id = UUIDStr(null=True)
    work_pool_name = pw.TextField(null=True)
    flow_version = pw.TextField(null=True)
    parameters = JSONField(default=dict)
    idempotency_key = pw.TextField(null=True)
    context = JSONField(default=dict)
    empirical_policy = JSONField(default=dict)
    tags = JSONField(default=list)
    labels = JSONField(null=True)
    parent_task_run_id = UUIDStr(null=True, index=True)
    state_id = UUIDStr(null=True)
    state_type = pw.CharField(max_length=16, null=True)
    state_name = pw.TextField(null=True)
    state_timestamp = UTCDateTime(null=True)
    state = JSONField(null=True)
    run_count = pw.IntegerField(default=0)
    expected_start_time = UTCDateTime(null=True)
    next_scheduled_start_time = UTCDateTime(null=True, index=True)
    start_time = UTCDateTime(null=True)
    end_time = UTCDateTime(null=True)
    total_run_time = pw.FloatField(default=0.0)
    auto_scheduled = pw.BooleanField(default=False)
    infrastructure_document_id = UUIDStr(null=True)
    infrastructure_pid = pw.TextField(null=True)
    created_by = JSONField(null=True)
    job_variables = JSONField(null=True)

    class Meta:
        indexes = (
            (("flow_id", "idempotency_key"), True),
            # Sort indexes: the listing order (expected start, then id) straight from the index.
            (("expected_start_time", "id"), False),
            (("state_type", "expected_start_time", "id"), False),
        )


class FlowRunState(BaseModel):
    id = UUIDStr(primary_key=True, default=new_id)
    created = UTCDateTime(default=utcnow)
    flow_run_id = pw.ForeignKeyField(FlowRun, on_delete="CASCADE", column_name="flow_run_id")
    type = pw.CharField(max_length=16)
    name = pw.TextField()
    timestamp = UTCDateTime()
    message = pw.TextField(null=True)
    data = JSONField(null=True)
    state_details = JSONField(default=dict)

    class Meta:
        indexes = ((("flow_run_id", "timestamp"), True),)


class TaskRun(BaseModel):
    id = UUIDStr(primary_key=True, default=new_id)
    created = UTCDateTime(default=utcnow)
    updated = UTCDateTime(default=utcnow)
    name = pw.TextField()
    flow_run_id = UUIDStr(null=True)
    task_key = pw.TextField()
    dynamic_key = pw.TextField()
    cache_key = pw.TextField(null=True)
    cache_expiration = UTCDateTime(null=True)
    task_version = pw.TextField(null=True)
    empirical_policy = JSONField(default=dict)
    tags = JSONField(default=list)
    labels = JSONField(null=True)
    task_inputs = JSONField(default=dict)
    state_id = UUIDStr(null=True)
    state_type = pw.CharField(max_length=16, null=True)
    state_name = pw.TextField(null=True)
    state_timestamp = UTCDateTime(null=True)
    state = JSONField(null=True)
    run_count = pw.IntegerField(default=0)
    flow_run_run_count = pw.IntegerField(default=0)
    expected_start_time = UTCDateTime(null=True)
    next_scheduled_start_time = UTCDateTime(null=True)
    start_time = UTCDateTime(null=True)
    end_time = UTCDateTime(null=True)
    total_run_time = pw.FloatField(default=0.0)

    class Meta:
        indexes = (
            (("flow_run_id", "task_key", "dynamic_key"), True),
            (("expected_start_time", "id"), False),
            (("state_type", "expected_start_time", "id"), False),
        )


class TaskRunState(BaseModel):
    id = UUIDStr(primary_key=True, default=new_id)
    created = UTCDateTime(default=utcnow)
    task_run_id = UUIDStr(index=True)
    type = pw.CharField(max_length=16)
    name = pw.TextField()
    timestamp = UTCDateTime()
    message = pw.TextField(null=True)
    data = JSONField(null=True)
    state_details = JSONField(default=dict)


class Log(BaseModel):
    id = UUIDStr(primary_key=True, default=new_id)
    created = UTCDateTime(default=utcnow)
    name = pw.TextField()
    level = pw.IntegerField()
    message = pw.TextField()
    timestamp = UTCDateTime()
    flow_run_id = UUIDStr(null=True)
    task_run_id = UUIDStr(null=True)

    class Meta:
        indexes = ((("flow_run_id", "timestamp"), False),)


class Event(BaseModel):
    id = UUIDStr(primary_key=True)
    occurred = UTCDateTime(index=True)
    received = UTCDateTime(default=utcnow)
    event = pw.TextField()
    resource_id = pw.TextField(index=True)
    resource = JSONField(default=dict)
    related = JSONField(default=list)
    payload = JSONField(default=dict)
    follows = UUIDStr(null=True)

    class Meta:
        indexes = ((("event", "occurred"), False),)


class Artifact(BaseModel):
    id = UUIDStr(primary_key=True, default=new_id)
    created = UTCDateTime(default=utcnow)
    updated = UTCDateTime(default=utcnow)
    key = pw.TextField(null=True, index=True)
    type = pw.TextField(null=True)
    description = pw.TextField(null=True)
    data = JSONField(null=True)
    metadata_ = JSONField(null=True, column_name="metadata_")
    flow_run_id = UUIDStr(null=True, index=True)
    task_run_id = UUIDStr(null=True)


class ArtifactCollection(BaseModel):
    id = UUIDStr(primary_key=True, default=new_id)
    created = UTCDateTime(default=utcnow)
    updated = UTCDateTime(default=utcnow)
    key = pw.TextField(unique=True)
    latest_id = UUIDStr()
    type = pw.TextField(null=True)
    description = pw.TextField(null=True)
    data = JSONField(null=True)
    metadata_ = JSONField(null=True, column_name="metadata_")
    flow_run_id = UUIDStr(null=True)
    task_run_id = UUIDStr(null=True)


ALL_MODELS = [Flow, FlowRun, FlowRunState, TaskRun, TaskRunState, Log, Event, Artifact, ArtifactCollection]

# Name columns searched by `like_` filters: trigram GIN indexes on PostgreSQL.
TRIGRAM_COLUMNS = [("flow", "name"), ("flow_run", "name"), ("task_run", "name")]
