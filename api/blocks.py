"""Blocks (Prefect §5.1–5.6): /block_types, /block_schemas, /block_documents and
/block_capabilities, with the by-slug and by-name routes the SDK and CLI use.

Responders validate and shape; db.blocks holds the rules (secret masking and keeping,
references, protection of the built-in catalogue).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from api.errors import ApiError, conflict, invalid, not_found
from api.http import no_content, parse, query_bool, read_model, send
from api.listing import filter_failed, read_filter_body
from db import blocks
from db import database as db
from db.filters import FilterError, paging
from db.states import iso


def _no_reserved_chars(value: str | None) -> str | None:
    if value is not None and any(c in value for c in "/%&><"):
        raise ValueError("Name cannot contain '/', '%', '&', '>' or '<'.")
    return value


def _document_name(value: str | None) -> str | None:
    if value is not None and not blocks.NAME_PATTERN.match(value):
        raise ValueError("Block document name must only contain lowercase letters, numbers, and dashes.")
    return value


TypeName = Annotated[str, Field(min_length=1, max_length=1000), AfterValidator(_no_reserved_chars)]
Slug = Annotated[str, Field(min_length=1, max_length=1000, pattern=r"^[a-z0-9-]+$")]
DocumentName = Annotated[str | None, Field(max_length=1000), AfterValidator(_document_name)]
Text = Annotated[str | None, Field(max_length=100_000)]


class BlockTypeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: TypeName
    slug: Slug
    logo_url: Text = None
    documentation_url: Text = None
    description: Text = None
    code_example: Text = None


class BlockTypeUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    logo_url: Text = None
    documentation_url: Text = None
    description: Text = None
    code_example: Text = None


class BlockSchemaCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fields: dict = Field(default_factory=dict)
    block_type_id: uuid.UUID
    capabilities: list[Annotated[str, Field(max_length=1000)]] = Field(default_factory=list, max_length=100)
    version: Annotated[str, Field(min_length=1, max_length=100)] = "non-versioned"


class BlockDocumentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: DocumentName = None
    data: dict = Field(default_factory=dict)
    block_schema_id: uuid.UUID
    block_type_id: uuid.UUID
    is_anonymous: bool = False


class BlockDocumentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    block_schema_id: uuid.UUID | None = None
    data: dict = Field(default_factory=dict)
    merge_existing_data: bool = True


# Filter bodies: unknown keys and nulls are tolerated (the CLI sends some), wrong types are 422.
class _Filter(BaseModel):
    model_config = ConfigDict(extra="ignore")


class AnyStr(_Filter):
    any_: list[str] | None = None


class AnyUUID(_Filter):
    any_: list[uuid.UUID] | None = None


class NameFilter(_Filter):
    any_: list[str] | None = None
    like_: str | None = None


class EqBool(_Filter):
    eq_: bool | None = None


class AllStr(_Filter):
    all_: list[str] | None = None


class TypeFilter(_Filter):
    name: NameFilter | None = None
    slug: AnyStr | None = None


class SchemaFilter(_Filter):
    block_type_id: AnyUUID | None = None
    block_capabilities: AllStr | None = None
    id: AnyUUID | None = None
    version: AnyStr | None = None


class DocumentFilter(_Filter):
    id: AnyUUID | None = None
    is_anonymous: EqBool | None = None
    block_type_id: AnyUUID | None = None
    name: NameFilter | None = None


class FilterBody(_Filter):
    block_types: TypeFilter | None = None
    block_schemas: SchemaFilter | None = None
    block_documents: DocumentFilter | None = None
    include_secrets: bool | None = False
    sort: Literal["NAME_ASC", "NAME_DESC", "BLOCK_TYPE_AND_NAME_ASC"] | None = "NAME_ASC"


async def _filter(req, limit_default: int = 200) -> tuple[dict, int, int, FilterBody]:
    body = await read_filter_body(req)
    parsed = parse(FilterBody, body)
    try:
        limit, offset = paging(body, limit_default)
    except FilterError as exc:
        raise filter_failed(exc, body) from None
    where = parsed.model_dump(mode="json", exclude_unset=True, include={"block_types", "block_schemas", "block_documents"})
    return {k: v for k, v in where.items() if v is not None}, limit, offset, parsed


# --- shapes ---------------------------------------------------------------------------------


def type_shape(row: dict) -> dict:
    return {
        "id": row["id"], "created": iso(row["created"]), "updated": iso(row["updated"]),
        "name": row["name"], "slug": row["slug"], "logo_url": row["logo_url"],
        "documentation_url": row["documentation_url"], "description": row["description"],
        "code_example": row["code_example"], "is_protected": row["is_protected"],
    }


def schema_shape(row: dict) -> dict:
    return {
        "id": row["id"], "created": iso(row["created"]), "updated": iso(row["updated"]),
        "checksum": row["checksum"], "fields": row["fields"], "block_type_id": row["block_type_id"],
        "block_type": type_shape(row["block_type"]) if row.get("block_type") else None,
        "capabilities": row["capabilities"] or [], "version": row["version"],
    }


def _reference_shape(references: dict) -> dict:
    return {
        name: {"block_document": {**ref["block_document"],
                                  "block_type": type_shape(ref["block_document"]["block_type"]),
                                  "block_document_references": _reference_shape(
                                      ref["block_document"]["block_document_references"])}}
        for name, ref in references.items()
    }


def document_shape(doc: dict) -> dict:
    return {
        "id": doc["id"], "created": iso(doc["created"]), "updated": iso(doc["updated"]), "name": doc["name"],
        "data": doc["data"], "block_schema_id": doc["block_schema_id"],
        "block_schema": schema_shape(doc["block_schema"]), "block_type_id": doc["block_type_id"],
        "block_type_name": doc["block_type_name"], "block_type": type_shape(doc["block_type"]),
        "block_document_references": _reference_shape(doc["block_document_references"]),
        "is_anonymous": doc["is_anonymous"],
    }


def _fail(exc: Exception) -> ApiError:
    if isinstance(exc, blocks.NotFound):
        return not_found(str(exc))
    if isinstance(exc, blocks.Conflict):
        return conflict(str(exc))
    if isinstance(exc, blocks.Forbidden):
        return ApiError(403, str(exc))
    return ApiError(400, str(exc))


BLOCK_ERRORS = (blocks.NotFound, blocks.Conflict, blocks.Forbidden, blocks.Invalid)


def _uuid(value: str, field: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise invalid(field, "Input should be a valid UUID", value, loc_root="path") from None


# --- block types ----------------------------------------------------------------------------


class BlockTypes:
    async def on_post(self, req, resp):
        body = await read_model(req, BlockTypeCreate)
        try:
            row = await db.run_write(blocks.create_block_type, body.model_dump())
        except BLOCK_ERRORS as exc:
            raise _fail(exc) from None
        send(resp, type_shape(row), 201)


class BlockTypeFilter:
    async def on_post(self, req, resp):
        where, limit, offset, _ = await _filter(req)
        rows = await db.run(blocks.list_block_types, where, limit, offset)
        send(resp, [type_shape(r) for r in rows])


class BlockTypeById:
    async def on_get(self, req, resp, type_id):
        row = await db.run(blocks.read_block_type, str(type_id))
        if row is None:
            raise not_found("Block type not found")
        send(resp, type_shape(row))

    async def on_patch(self, req, resp, type_id):
        body = await read_model(req, BlockTypeUpdate)
        try:
            await db.run_write(blocks.update_block_type, str(type_id), body.model_dump(exclude_unset=True))
        except BLOCK_ERRORS as exc:
            raise _fail(exc) from None
        no_content(resp)

    async def on_delete(self, req, resp, type_id):
        try:
            await db.run_write(blocks.delete_block_type, str(type_id))
        except BLOCK_ERRORS as exc:
            raise _fail(exc) from None
        no_content(resp)


class BlockTypeBySlug:
    async def on_get(self, req, resp, slug):
        row = await db.run(blocks.read_block_type_by_slug, slug)
        if row is None:
            raise not_found("Block type not found")
        send(resp, type_shape(row))


class DocumentsOfType:
    async def on_get(self, req, resp, slug):
        include = query_bool(req, "include_secrets")

        def read():
            if blocks.read_block_type_by_slug(slug) is None:
                return None
            return blocks.list_block_documents({"block_types": {"slug": {"any_": [slug]}}}, 200, 0, include)

        docs = await db.run(read)
        if docs is None:
            raise not_found("Block type not found")
        send(resp, [document_shape(d) for d in docs])


class DocumentOfTypeByName:
    async def on_get(self, req, resp, slug, name):
        doc = await db.run(blocks.read_block_document_by_name, slug, name, query_bool(req, "include_secrets"))
        if doc is None:
            raise not_found("Block document not found")
        send(resp, document_shape(doc))


class InstallSystemBlockTypes:
    async def on_post(self, req, resp):
        await db.run_write(blocks.register_catalogue)
        send(resp, None)


# --- block schemas --------------------------------------------------------------------------


class BlockSchemas:
    async def on_post(self, req, resp):
        body = await read_model(req, BlockSchemaCreate)
        data = body.model_dump()
        data["block_type_id"] = str(data["block_type_id"])
        try:
            row, created = await db.run_write(blocks.create_block_schema, data)
        except BLOCK_ERRORS as exc:
            raise _fail(exc) from None
        send(resp, schema_shape(row), 201 if created else 200)


class BlockSchemaFilter:
    async def on_post(self, req, resp):
        where, limit, offset, _ = await _filter(req)
        rows = await db.run(blocks.list_block_schemas, where, limit, offset)
        send(resp, [schema_shape(r) for r in rows])


class BlockSchemaById:
    async def on_get(self, req, resp, schema_id):
        row = await db.run(blocks.read_block_schema, str(schema_id))
        if row is None:
            raise not_found("Block schema not found")
        send(resp, schema_shape(row))

    async def on_delete(self, req, resp, schema_id):
        try:
            await db.run_write(blocks.delete_block_schema, str(schema_id))
        except BLOCK_ERRORS as exc:
            raise _fail(exc) from None
        no_content(resp)


class BlockSchemaByChecksum:
    async def on_get(self, req, resp, checksum):
        row = await db.run(blocks.read_block_schema_by_checksum, checksum, req.get_param("version"))
        if row is None:
            raise not_found("Block schema not found")
        send(resp, schema_shape(row))


class BlockCapabilities:
    async def on_get(self, req, resp):
        send(resp, await db.run(blocks.capabilities))


# --- block documents ------------------------------------------------------------------------


class BlockDocuments:
    async def on_post(self, req, resp):
        body = await read_model(req, BlockDocumentCreate)
        if not body.is_anonymous and not body.name:
            raise invalid("name", "Names must be provided for block documents.", None)
        data = body.model_dump(mode="json")
        try:
            doc = await db.run_write(blocks.create_block_document, data)
        except BLOCK_ERRORS as exc:
            raise _fail(exc) from None
        send(resp, document_shape(doc), 201)


class BlockDocumentFilter:
    async def on_post(self, req, resp):
        where, limit, offset, parsed = await _filter(req)
        docs = await db.run(
            blocks.list_block_documents, where, limit, offset, bool(parsed.include_secrets), parsed.sort or "NAME_ASC"
        )
        send(resp, [document_shape(d) for d in docs])


class BlockDocumentCount:
    async def on_post(self, req, resp):
        where, _, _, _ = await _filter(req)
        send(resp, await db.run(blocks.count_block_documents, where))


class BlockDocumentById:
    async def on_get(self, req, resp, doc_id):
        doc = await db.run(blocks.read_block_document, str(doc_id), query_bool(req, "include_secrets"))
        if doc is None:
            raise not_found("Block document not found")
        send(resp, document_shape(doc))

    async def on_patch(self, req, resp, doc_id):
        body = await read_model(req, BlockDocumentUpdate)
        changes = body.model_dump(mode="json", exclude_unset=True)
        changes.setdefault("merge_existing_data", True)
        try:
            await db.run_write(blocks.update_block_document, str(doc_id), changes)
        except BLOCK_ERRORS as exc:
            raise _fail(exc) from None
        no_content(resp)

    async def on_delete(self, req, resp, doc_id):
        try:
            await db.run_write(blocks.delete_block_document, str(doc_id))
        except BLOCK_ERRORS as exc:
            raise _fail(exc) from None
        no_content(resp)


def register(app, prefix: str) -> None:
    app.add_route(f"{prefix}/block_types", BlockTypes())
    app.add_route(f"{prefix}/block_types/filter", BlockTypeFilter())
    app.add_route(f"{prefix}/block_types/install_system_block_types", InstallSystemBlockTypes())
    app.add_route(f"{prefix}/block_types/slug/{{slug}}", BlockTypeBySlug())
    app.add_route(f"{prefix}/block_types/slug/{{slug}}/block_documents", DocumentsOfType())
    app.add_route(f"{prefix}/block_types/slug/{{slug}}/block_documents/name/{{name}}", DocumentOfTypeByName())
    app.add_route(f"{prefix}/block_types/{{type_id:uuid}}", BlockTypeById())
    app.add_route(f"{prefix}/block_schemas", BlockSchemas())
    app.add_route(f"{prefix}/block_schemas/filter", BlockSchemaFilter())
    app.add_route(f"{prefix}/block_schemas/checksum/{{checksum}}", BlockSchemaByChecksum())
    app.add_route(f"{prefix}/block_schemas/{{schema_id:uuid}}", BlockSchemaById())
    app.add_route(f"{prefix}/block_capabilities", BlockCapabilities())
    app.add_route(f"{prefix}/block_documents", BlockDocuments())
    app.add_route(f"{prefix}/block_documents/filter", BlockDocumentFilter())
    app.add_route(f"{prefix}/block_documents/count", BlockDocumentCount())
    app.add_route(f"{prefix}/block_documents/{{doc_id:uuid}}", BlockDocumentById())
