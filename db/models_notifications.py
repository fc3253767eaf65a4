"""Peewee models of notifications: flow-run notification policies (Prefect <= 3.3),
automations (Prefect 3.4+ ``send-notification``), and the notification outbox.

The outbox row is written in the same transaction as the state change that caused it
(db.notifications.enqueue_for_state) and is then claimed, sent and settled by the
``appliance notifier`` sidecar. ``block_document_id`` is a plain UUID column (blocks
live in their own migration; a deleted block fails the delivery, it does not cascade).
"""

from __future__ import annotations

import peewee as pw

from db.fields import JSONField, UTCDateTime, UUIDStr, new_id, utcnow
from db.models import BaseModel


class FlowRunNotificationPolicy(BaseModel):
    id = UUIDStr(primary_key=True, default=new_id)
    created = UTCDateTime(default=utcnow)
    updated = UTCDateTime(default=utcnow)
    is_active = pw.BooleanField(default=True)
    state_names = JSONField(default=list)
    tags = JSONField(default=list)
    block_document_id = UUIDStr()
    message_template = pw.TextField(null=True)


class Automation(BaseModel):
    id = UUIDStr(primary_key=True, default=new_id)
    created = UTCDateTime(default=utcnow)
    updated = UTCDateTime(default=utcnow)
    name = pw.TextField()
    description = pw.TextField(default="")
    enabled = pw.BooleanField(default=True)
    tags = JSONField(default=list)
    trigger = JSONField()
    actions = JSONField(default=list)
    actions_on_trigger = JSONField(default=list)
    actions_on_resolve = JSONField(default=list)
    # The related resource that owns the automation (deployment-owned automations).
    owner_resource = pw.TextField(null=True, index=True)


class Notification(BaseModel):
    """One message to send: pending -> sending -> sent | failed | dead."""

    id = UUIDStr(primary_key=True, default=new_id)
    created = UTCDateTime(default=utcnow)
    updated = UTCDateTime(default=utcnow)
    source_kind = pw.CharField(max_length=16)  # "policy" | "automation"
    source_id = UUIDStr(index=True)
    flow_run_id = UUIDStr(index=True)
    flow_id = UUIDStr(null=True)
    state_id = UUIDStr()
    state_type = pw.CharField(max_length=16)
    state_name = pw.TextField()
    block_document_id = UUIDStr()
    channel = pw.CharField(max_length=32, null=True)  # block type slug, known at send time
    template_kind = pw.CharField(max_length=8)  # "legacy" (str.format) | "jinja"
    subject_template = pw.TextField(null=True)
    body_template = pw.TextField()
    status = pw.CharField(max_length=8, default="pending")
    attempts = pw.IntegerField(default=0)
    rate_limited = pw.IntegerField(default=0)  # 429s: do not consume the attempt budget
    next_attempt_at = UTCDateTime(default=utcnow)
    deadline = UTCDateTime()
    lease_until = UTCDateTime(null=True)
    claim_token = pw.CharField(max_length=36, null=True)
    last_status_code = pw.IntegerField(null=True)
    last_error = pw.TextField(null=True)  # redacted
    idempotency_key = pw.CharField(max_length=64, unique=True)
    subject = pw.TextField(null=True)  # rendered, for audit
    body = pw.TextField(null=True)
    sent_at = UTCDateTime(null=True)

    class Meta:
        table_name = "notification"
        indexes = ((("status", "next_attempt_at"), False),)


MODELS = [FlowRunNotificationPolicy, Automation, Notification]
