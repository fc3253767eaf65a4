"""Notifications: flow-run notification policies, automations and the notification
outbox. Independent of 002-004: ids of runs, flows and block documents are plain
columns without foreign keys. The models are frozen here."""

import peewee as pw

from db.fields import JSONField, UTCDateTime, UUIDStr

TABLES = ["notification", "automation", "flow_run_notification_policy"]


def migrate(migrator, database, fake=False):
    @migrator.create_model
    class FlowRunNotificationPolicy(pw.Model):
        id = UUIDStr(primary_key=True)
        created = UTCDateTime()
        updated = UTCDateTime()
        is_active = pw.BooleanField()
        state_names = JSONField()
        tags = JSONField()
        block_document_id = UUIDStr()
        message_template = pw.TextField(null=True)

        class Meta:
            table_name = "flow_run_notification_policy"

    @migrator.create_model
    class Automation(pw.Model):
        id = UUIDStr(primary_key=True)
        created = UTCDateTime()
        updated = UTCDateTime()
        name = pw.TextField()
        description = pw.TextField()
        enabled = pw.BooleanField()
        tags = JSONField()
        trigger = JSONField()
        actions = JSONField()
        actions_on_trigger = JSONField()
        actions_on_resolve = JSONField()
        owner_resource = pw.TextField(null=True, index=True)

        class Meta:
            table_name = "automation"

    @migrator.create_model
    class Notification(pw.Model):
        id = UUIDStr(primary_key=True)
        created = UTCDateTime()
        updated = UTCDateTime()
        source_kind = pw.CharField(max_length=16)
        source_id = UUIDStr(index=True)
        flow_run_id = UUIDStr(index=True)
        flow_id = UUIDStr(null=True)
        state_id = UUIDStr()
        state_type = pw.CharField(max_length=16)
        state_name = pw.TextField()
        block_document_id = UUIDStr()
        channel = pw.CharField(max_length=32, null=True)
        template_kind = pw.CharField(max_length=8)
        subject_template = pw.TextField(null=True)
        body_template = pw.TextField()
        status = pw.CharField(max_length=8)
        attempts = pw.IntegerField()
        rate_limited = pw.IntegerField()
        next_attempt_at = UTCDateTime()
        deadline = UTCDateTime()
        lease_until = UTCDateTime(null=True)
        claim_token = pw.CharField(max_length=36, null=True)
        last_status_code = pw.IntegerField(null=True)
        last_error = pw.TextField(null=True)
        idempotency_key = pw.CharField(max_length=64, unique=True)
        subject = pw.TextField(null=True)
        body = pw.TextField(null=True)
        sent_at = UTCDateTime(null=True)

        class Meta:
            table_name = "notification"
            indexes = ((("status", "next_attempt_at"), False),)


def rollback(migrator, database, fake=False):
    for table in TABLES:
        migrator.remove_model(table)
