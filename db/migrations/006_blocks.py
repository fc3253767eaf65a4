"""Blocks: block types, block schemas, block documents (encrypted data) and document
references. The built-in catalogue is not inserted here: start-up registers it (as
Prefect's server does), so a newer catalogue needs no migration.

The models are frozen here (not imported from db.models_blocks).
"""

import peewee as pw

from db.fields import JSONField, UTCDateTime, UUIDStr

TABLES = ["block_document_reference", "block_document", "block_schema", "block_type"]


def migrate(migrator, database, fake=False):
    @migrator.create_model
    class BlockType(pw.Model):
        id = UUIDStr(primary_key=True)
        created = UTCDateTime()
        updated = UTCDateTime()
        name = pw.TextField(unique=True)
        slug = pw.TextField(unique=True)
        logo_url = pw.TextField(null=True)
        documentation_url = pw.TextField(null=True)
        description = pw.TextField(null=True)
        code_example = pw.TextField(null=True)
        is_protected = pw.BooleanField()

        class Meta:
            table_name = "block_type"

    @migrator.create_model
    class BlockSchema(pw.Model):
        id = UUIDStr(primary_key=True)
        created = UTCDateTime()
        updated = UTCDateTime()
        checksum = pw.TextField(index=True)
        fields = JSONField()
        capabilities = JSONField()
        version = pw.TextField()
        block_type = pw.ForeignKeyField(BlockType, on_delete="CASCADE", column_name="block_type_id", index=True)

        class Meta:
            table_name = "block_schema"
            indexes = ((("checksum", "version"), True),)

    @migrator.create_model
    class BlockDocument(pw.Model):
        id = UUIDStr(primary_key=True)
        created = UTCDateTime()
        updated = UTCDateTime()
        name = pw.TextField()
        data = pw.TextField()
        is_anonymous = pw.BooleanField(index=True)
        block_schema = pw.ForeignKeyField(BlockSchema, on_delete="CASCADE", column_name="block_schema_id", index=True)
        block_type = pw.ForeignKeyField(BlockType, on_delete="CASCADE", column_name="block_type_id")

        class Meta:
            table_name = "block_document"
            indexes = ((("block_type", "name"), True),)

    @migrator.create_model
    class BlockDocumentReference(pw.Model):
        id = UUIDStr(primary_key=True)
        created = UTCDateTime()
        name = pw.TextField()
        parent_block_document = pw.ForeignKeyField(
            BlockDocument, on_delete="CASCADE", column_name="parent_block_document_id", index=True
        )
        reference_block_document = pw.ForeignKeyField(
            BlockDocument, on_delete="CASCADE", column_name="reference_block_document_id", index=True
        )

        class Meta:
            table_name = "block_document_reference"
            indexes = ((("parent_block_document", "name"), True),)


def rollback(migrator, database, fake=False):
    for table in TABLES:
        migrator.remove_model(table)
