"""Peewee model of variables: named JSON values with tags (Prefect's ``Variable``)."""

from __future__ import annotations

import peewee as pw

from db.fields import JSONField, UTCDateTime, UUIDStr, new_id, utcnow
from db.models import BaseModel


class Variable(BaseModel):
    id = UUIDStr(primary_key=True, default=new_id)
    created = UTCDateTime(default=utcnow)
    updated = UTCDateTime(default=utcnow)
    name = pw.CharField(max_length=255, unique=True)
    # Any JSON, JSON null included (kept as SQL NULL: the API answers null either way).
    value = JSONField(null=True)
    tags = JSONField(default=list)


MODELS = [Variable]
