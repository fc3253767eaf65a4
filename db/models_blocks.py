"""Peewee models of blocks: block types, their schemas, block documents (data encrypted
at rest, see db.secrets_crypto) and the references between documents (a field of one
document holding another saved block)."""

from __future__ import annotations

import peewee as pw

from db.fields import JSONField, UTCDateTime, UUIDStr, new_id, utcnow
from db.models import BaseModel


class BlockType(BaseModel):
    id = UUIDStr(primary_key=True, default=new_id)
    created = UTCDateTime(default=utcnow)
    updated = UTCDateTime(default=utcnow)
    name = pw.TextField(unique=True)
    slug = pw.TextField(unique=True)
    logo_url = pw.TextField(null=True)
    documentation_url = pw.TextField(null=True)
    description = pw.TextField(null=True)
    code_example = pw.TextField(null=True)
    # Built-in types (db/data/block_catalogue.json) cannot be changed or deleted.
    is_protected = pw.BooleanField(default=False)


class BlockSchema(BaseModel):
    id = UUIDStr(primary_key=True, default=new_id)
    created = UTCDateTime(default=utcnow)
    updated = UTCDateTime(default=utcnow)
    checksum = pw.TextField(index=True)
    fields = JSONField()
    capabilities = JSONField(default=list)
    version = pw.TextField(default="non-versioned")
    block_type = pw.ForeignKeyField(BlockType, on_delete="CASCADE", column_name="block_type_id", index=True)

    class Meta:
        indexes = ((("checksum", "version"), True),)


class BlockDocument(BaseModel):
    id = UUIDStr(primary_key=True, default=new_id)
    created = UTCDateTime(default=utcnow)
    updated = UTCDateTime(default=utcnow)
    name = pw.TextField()
    # Fernet token of the JSON data (references to other documents removed).
    data = pw.TextField()
    is_anonymous = pw.BooleanField(default=False, index=True)
    block_schema = pw.ForeignKeyField(BlockSchema, on_delete="CASCADE", column_name="block_schema_id", index=True)
    block_type = pw.ForeignKeyField(BlockType, on_delete="CASCADE", column_name="block_type_id")

    class Meta:
        indexes = ((("block_type", "name"), True),)


class BlockDocumentReference(BaseModel):
    id = UUIDStr(primary_key=True, default=new_id)
    created = UTCDateTime(default=utcnow)
    name = pw.TextField()
    parent_block_document = pw.ForeignKeyField(
        BlockDocument, on_delete="CASCADE", column_name="parent_block_document_id", index=True
    )
    reference_block_document = pw.ForeignKeyField(
        BlockDocument, on_delete="CASCADE", column_name="reference_block_document_id", index=True
    )

    class Meta:
        indexes = ((("parent_block_document", "name"), True),)


MODELS = [BlockType, BlockSchema, BlockDocument, BlockDocumentReference]
