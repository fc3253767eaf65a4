"""Peewee models of deployments and execution: deployments with their schedules, work
pools, work queues, workers, and flow-run inputs (pause/resume ``run_input``).

Like the core models, cross-entity references are plain id columns; the domain
functions in db.deployments / db.work_pools keep them consistent (deleting a pool
deletes its queues and workers; deleting a deployment deletes its schedules).
"""

from __future__ import annotations

import peewee as pw

from db.fields import JSONField, UTCDateTime, UUIDStr, new_id, utcnow
from db.models import BaseModel


class Deployment(BaseModel):
    id = UUIDStr(primary_key=True, default=new_id)
    created = UTCDateTime(default=utcnow)
    updated = UTCDateTime(default=utcnow)
    name = pw.TextField()
    flow_id = UUIDStr(index=True)
    version = pw.TextField(null=True)
    description = pw.TextField(null=True)
    paused = pw.BooleanField(default=False)
    concurrency_limit = pw.IntegerField(null=True)
    concurrency_options = JSONField(null=True)
    job_variables = JSONField(default=dict)
    parameters = JSONField(default=dict)
    tags = JSONField(default=list)
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
    status = pw.CharField(max_length=16, default="NOT_READY")
    enforce_parameter_schema = pw.BooleanField(default=True)

    class Meta:
        indexes = ((("flow_id", "name"), True),)


class DeploymentSchedule(BaseModel):
    id = UUIDStr(primary_key=True, default=new_id)
    created = UTCDateTime(default=utcnow)
    updated = UTCDateTime(default=utcnow)
    deployment_id = UUIDStr(index=True)
    schedule = JSONField()
    active = pw.BooleanField(default=True)
    max_scheduled_runs = pw.IntegerField(null=True)
    parameters = JSONField(default=dict)
    slug = pw.TextField(null=True)


class WorkPool(BaseModel):
    id = UUIDStr(primary_key=True, default=new_id)
    created = UTCDateTime(default=utcnow)
    updated = UTCDateTime(default=utcnow)
    name = pw.TextField(unique=True)
    description = pw.TextField(null=True)
    type = pw.TextField(default="prefect-agent")
    base_job_template = JSONField(default=dict)
    is_paused = pw.BooleanField(default=False)
    concurrency_limit = pw.IntegerField(null=True)
    status = pw.CharField(max_length=16, null=True)
    default_queue_id = UUIDStr(null=True)
    storage_configuration = JSONField(null=True)


class WorkQueue(BaseModel):
    id = UUIDStr(primary_key=True, default=new_id)
    created = UTCDateTime(default=utcnow)
    updated = UTCDateTime(default=utcnow)
    name = pw.TextField()
    description = pw.TextField(null=True)
    is_paused = pw.BooleanField(default=False)
    concurrency_limit = pw.IntegerField(null=True)
    priority = pw.IntegerField(default=1)
    work_pool_id = UUIDStr(index=True)
    last_polled = UTCDateTime(null=True)
    status = pw.CharField(max_length=16, default="NOT_READY")

    class Meta:
        indexes = ((("work_pool_id", "name"), True),)


class Worker(BaseModel):
    id = UUIDStr(primary_key=True, default=new_id)
    created = UTCDateTime(default=utcnow)
    updated = UTCDateTime(default=utcnow)
    name = pw.TextField()
    work_pool_id = UUIDStr(index=True)
    last_heartbeat_time = UTCDateTime(null=True)
    heartbeat_interval_seconds = pw.IntegerField(null=True)
    status = pw.CharField(max_length=16, default="OFFLINE")

    class Meta:
        indexes = ((("work_pool_id", "name"), True),)


class FlowRunInput(BaseModel):
    id = UUIDStr(primary_key=True, default=new_id)
    created = UTCDateTime(default=utcnow)
    updated = UTCDateTime(default=utcnow)
    flow_run_id = UUIDStr()
    key = pw.TextField()
    value = pw.TextField()
    sender = pw.TextField(null=True)

    class Meta:
        indexes = ((("flow_run_id", "key"), True),)


MODELS = [Deployment, DeploymentSchedule, WorkPool, WorkQueue, Worker, FlowRunInput]
