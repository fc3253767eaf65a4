"""Blocks (Prefect §5.1–5.6): block types, block schemas, block documents.

Document data is stored encrypted (db.secrets_crypto) with references to other saved
blocks kept apart (``{"$ref": {"block_document_id": …}}`` in the data becomes a
``block_document_reference`` row) and re-inlined on read. Secret fields (the schema's
``secret_fields``, ``*`` matching any key) read as ``"********"`` unless secrets are
asked for; a PATCH that sends ``"********"`` back for a secret keeps the stored value.

The built-in catalogue (db/data/block_catalogue.json, generated from Prefect 3.8.8 by
tools/gen_block_catalogue.py) is registered at start-up and protected: its types cannot
be changed or deleted. Every function runs inside the caller's transaction.
"""

from __future__ import annotations

import json
import re
import uuid
from functools import lru_cache
from pathlib import Path

import orjson
import peewee as pw

from db import block_schema as schema_rules
from db import secrets_crypto
from db.fields import new_id, utcnow
from db.models_blocks import BlockDocument, BlockDocumentReference, BlockSchema, BlockType

CATALOGUE = Path(__file__).parent / "data" / "block_catalogue.json"
OBFUSCATED = "********"
NAME_PATTERN = re.compile(r"^[a-z0-9-]*$")
MAX_REFERENCE_DEPTH = 10


class NotFound(LookupError):
    pass


class Conflict(ValueError):
    pass


class Forbidden(PermissionError):
    pass


class Invalid(ValueError):
    pass


# --- block types ----------------------------------------------------------------------------


def create_block_type(data: dict) -> dict:
    if data["name"].lower().startswith("prefect"):
        raise Forbidden("Block type names beginning with 'Prefect' are reserved.")
    exists = BlockType.select(BlockType.id).where((BlockType.name == data["name"]) | (BlockType.slug == data["slug"]))
    if exists.exists():
        raise Conflict(f'Block type with name "{data["name"]}" already exists')
    now = utcnow()
    row = {"id": new_id(), "created": now, "updated": now, "is_protected": False, **data}
    BlockType.insert(row).execute()
    return row


def read_block_type(type_id: str) -> dict | None:
    return BlockType.select().where(BlockType.id == type_id).dicts().first()


def read_block_type_by_slug(slug: str) -> dict | None:
    return BlockType.select().where(BlockType.slug == slug).dicts().first()


UPDATABLE_TYPE_FIELDS = ("logo_url", "documentation_url", "description", "code_example")


def update_block_type(type_id: str, changes: dict) -> None:
    row = read_block_type(type_id)
    if row is None:
        raise NotFound("Block type not found")
    changes = {k: v for k, v in changes.items() if k in UPDATABLE_TYPE_FIELDS}
    if not any(row[k] != v for k, v in changes.items()):
        return  # nothing meaningful changes (Prefect skips these too)
    if row["is_protected"]:
        raise Forbidden("protected block types cannot be updated.")
    BlockType.update(changes, updated=utcnow()).where(BlockType.id == type_id).execute()


def delete_block_type(type_id: str) -> None:
    row = read_block_type(type_id)
    if row is None:
        raise NotFound("Block type not found")
    if row["is_protected"]:
        raise Forbidden("protected block types cannot be deleted.")
    BlockType.delete().where(BlockType.id == type_id).execute()


def list_block_types(where: dict, limit: int, offset: int) -> list[dict]:
    query = BlockType.select()
    types = where.get("block_types") or {}
    if (name := types.get("name")) and name.get("like_") is not None:
        query = query.where(BlockType.name.contains(name["like_"]))
    if (slug := types.get("slug")) and slug.get("any_") is not None:
        query = query.where(BlockType.slug.in_(slug["any_"]))
    schemas = where.get("block_schemas")
    if schemas:
        matching = _schema_query(schemas).select(BlockSchema.block_type)
        query = query.where(BlockType.id.in_(matching))
    return list(query.order_by(BlockType.name).limit(limit).offset(offset).dicts())


# --- block schemas --------------------------------------------------------------------------


def create_block_schema(data: dict) -> tuple[dict, bool]:
    """(schema, created?): an identical schema (checksum and version) is returned as is."""
    if read_block_type(data["block_type_id"]) is None:
        raise NotFound(f"Block type {data['block_type_id']} not found.")
    checksum = schema_rules.checksum(data["fields"])
    version = data.get("version") or "non-versioned"
    existing = read_block_schema_by_checksum(checksum, version)
    if existing is not None:
        return existing, False
    now = utcnow()
    row = {
        "id": new_id(), "created": now, "updated": now, "checksum": checksum,
        "fields": schema_rules.stored_fields(data["fields"]),
        "capabilities": list(data.get("capabilities") or []), "version": version,
        "block_type": data["block_type_id"],
    }
    BlockSchema.insert(row).execute()
    return read_block_schema(row["id"]), True


def _with_type(rows) -> list[dict]:
    rows = list(rows)
    types = {t["id"]: t for t in BlockType.select().where(BlockType.id.in_({r["block_type"] for r in rows})).dicts()}
    for row in rows:
        row["block_type_id"] = row.pop("block_type")
        row["block_type"] = types.get(row["block_type_id"])
    return rows


def read_block_schema(schema_id: str) -> dict | None:
    found = _with_type(BlockSchema.select().where(BlockSchema.id == schema_id).dicts())
    return found[0] if found else None


def read_block_schema_by_checksum(checksum: str, version: str | None = None) -> dict | None:
    query = BlockSchema.select().where(BlockSchema.checksum == checksum)
    if version is not None:
        query = query.where(BlockSchema.version == version)
    found = _with_type(query.order_by(BlockSchema.created.desc()).limit(1).dicts())
    return found[0] if found else None


def _schema_query(where: dict):
    query = BlockSchema.select()
    if (type_id := where.get("block_type_id")) and type_id.get("any_") is not None:
        query = query.where(BlockSchema.block_type.in_([str(t) for t in type_id["any_"]]))
    if (ids := where.get("id")) and ids.get("any_") is not None:
        query = query.where(BlockSchema.id.in_([str(i) for i in ids["any_"]]))
    if (version := where.get("version")) and version.get("any_") is not None:
        query = query.where(BlockSchema.version.in_(version["any_"]))
    caps = (where.get("block_capabilities") or {}).get("all_")
    if caps:
        # Capabilities are a short JSON list: filter in Python over the candidate ids.
        wanted = set(caps)
        ids = [r["id"] for r in query.select(BlockSchema.id, BlockSchema.capabilities).dicts()
               if wanted <= set(r["capabilities"] or [])]
        query = BlockSchema.select().where(BlockSchema.id.in_(ids))
    return query


def list_block_schemas(where: dict, limit: int, offset: int) -> list[dict]:
    query = _schema_query(where.get("block_schemas") or {})
    return _with_type(query.order_by(BlockSchema.created.desc()).limit(limit).offset(offset).dicts())


def delete_block_schema(schema_id: str) -> None:
    row = read_block_schema(schema_id)
    if row is None:
        raise NotFound("Block schema not found")
    if row["block_type"] and row["block_type"]["is_protected"]:
        raise Forbidden("Block schemas for protected block types cannot be deleted.")
    BlockSchema.delete().where(BlockSchema.id == schema_id).execute()


def capabilities() -> list[str]:
    found: set[str] = set()
    for (caps,) in BlockSchema.select(BlockSchema.capabilities).tuples():
        found.update(orjson.loads(caps) if isinstance(caps, str) else caps or [])
    return sorted(found)


# --- secrets in document data ---------------------------------------------------------------


def _mask(data, path: tuple[str, ...]):
    if not path or not isinstance(data, dict):
        return
    head, rest = path[0], path[1:]
    keys = list(data) if head == "*" else [head] if head in data else []
    for key in keys:
        if rest:
            _mask(data[key], rest)
        elif data[key] is not None:
            data[key] = OBFUSCATED


def masked(data: dict, fields: dict) -> dict:
    data = json.loads(json.dumps(data))
    for path in schema_rules.secret_paths(fields):
        _mask(data, path)
    return data


def _keep_obfuscated_secrets(new: dict, current: dict, fields: dict) -> dict:
    """A secret sent back as ``"********"`` keeps its stored value."""
    new = json.loads(json.dumps(new))

    def walk(new_part, current_part, path):
        if not isinstance(new_part, dict) or not isinstance(current_part, dict) or not path:
            return
        head, rest = path[0], path[1:]
        keys = [k for k in new_part if k in current_part] if head == "*" else [head] if head in new_part else []
        for key in keys:
            if rest:
                walk(new_part[key], current_part.get(key), rest)
            elif new_part[key] == OBFUSCATED and key in current_part:
                new_part[key] = current_part[key]

    for path in schema_rules.secret_paths(fields):
        walk(new, current, path)
    return new


def _encode(data: dict) -> str:
    return secrets_crypto.encrypt(orjson.dumps(data))


def _decode(token: str) -> dict:
    return orjson.loads(secrets_crypto.decrypt(token))


def _split_references(data: dict) -> tuple[dict, list[tuple[str, str]]]:
    plain, references = {}, []
    for key, value in data.items():
        if isinstance(value, dict) and "$ref" in value:
            ref = value["$ref"]
            target = ref.get("block_document_id") if isinstance(ref, dict) else None
            if target is None:
                raise Invalid(f"Received block reference without a block_document_id in key {key}")
            try:
                target = str(uuid.UUID(str(target)))
            except ValueError:
                raise Invalid(f"Invalid block_document_id in the reference of key {key}") from None
            references.append((key, target))
        else:
            plain[key] = value
    return plain, references


def _write_references(parent_id: str, references: list[tuple[str, str]]) -> None:
    BlockDocumentReference.delete().where(BlockDocumentReference.parent_block_document == parent_id).execute()
    for name, target in references:
        if target == parent_id or BlockDocument.select(BlockDocument.id).where(BlockDocument.id == target).first() is None:
            raise NotFound(f"Block document {target} referenced by {name!r} not found")
        if _reaches(target, parent_id):
            raise Invalid(f"Reference {name!r} would form a cycle of block documents")
        BlockDocumentReference.insert(
            id=new_id(), created=utcnow(), name=name, parent_block_document=parent_id, reference_block_document=target
        ).execute()


def _reaches(start: str, goal: str, depth: int = 0) -> bool:
    if depth > MAX_REFERENCE_DEPTH:
        return True
    children = [r[0] for r in BlockDocumentReference.select(BlockDocumentReference.reference_block_document)
                .where(BlockDocumentReference.parent_block_document == start).tuples()]
    return any(child == goal or _reaches(child, goal, depth + 1) for child in children)


# --- block documents ------------------------------------------------------------------------


def create_block_document(data: dict) -> dict:
    type_row = read_block_type(data["block_type_id"])
    if type_row is None:
        raise NotFound(f"Block type {data['block_type_id']} not found.")
    schema = read_block_schema(data["block_schema_id"])
    if schema is None:
        raise NotFound(f"Block schema {data['block_schema_id']} not found.")
    if schema["block_type_id"] != type_row["id"]:
        raise Invalid("The block schema does not belong to the block type.")
    name = data.get("name")
    if data.get("is_anonymous") and not name:
        name = f"anonymous-{uuid.uuid4()}"
    exists = BlockDocument.select(BlockDocument.id).where(
        (BlockDocument.block_type == type_row["id"]) & (BlockDocument.name == name)
    )
    if exists.exists():
        raise Conflict("Block already exists")
    plain, references = _split_references(data.get("data") or {})
    now = utcnow()
    doc_id = new_id()
    try:
        with BlockDocument._meta.database.atomic():
            BlockDocument.insert(
                id=doc_id, created=now, updated=now, name=name, data=_encode(plain),
                is_anonymous=bool(data.get("is_anonymous")), block_schema=schema["id"], block_type=type_row["id"],
            ).execute()
    except pw.IntegrityError:
        raise Conflict("Block already exists") from None
    _write_references(doc_id, references)
    return read_block_document(doc_id, include_secrets=False, as_api=True)


def _document_rows(where) -> list[dict]:
    return list(BlockDocument.select().where(where).dicts())


def _full(row: dict, include_secrets: bool, depth: int = 0) -> dict:
    """A document with its schema and type, references re-inlined (masked unless asked)."""
    if depth > MAX_REFERENCE_DEPTH:
        raise Invalid("Block document reference graph exceeds max depth")
    schema = read_block_schema(row["block_schema"])
    data = _decode(row["data"])
    if not include_secrets:
        data = masked(data, schema["fields"])
    references = {}
    links = BlockDocumentReference.select().where(BlockDocumentReference.parent_block_document == row["id"]).dicts()
    for link in links:
        child_row = BlockDocument.select().where(BlockDocument.id == link["reference_block_document"]).dicts().first()
        if child_row is None:
            continue
        child = _full(child_row, include_secrets, depth + 1)
        data[link["name"]] = child["data"]
        references[link["name"]] = {
            "block_document": {
                "id": child["id"], "name": child["name"], "block_type": child["block_type"],
                "is_anonymous": child["is_anonymous"],
                "block_document_references": child["block_document_references"],
            }
        }
    return {
        "id": row["id"], "created": row["created"], "updated": row["updated"], "name": row["name"],
        "data": data, "block_schema_id": schema["id"], "block_schema": schema,
        "block_type_id": row["block_type"], "block_type_name": schema["block_type"]["name"],
        "block_type": schema["block_type"], "block_document_references": references,
        "is_anonymous": row["is_anonymous"],
    }


def read_block_document(doc_id: str, include_secrets: bool = False, as_api: bool = False) -> dict | None:
    """A full block document (API shape), or None. The notifier reads through this with
    ``include_secrets=True`` (``block_type.slug`` and the decrypted ``data``)."""
    try:
        doc_id = str(uuid.UUID(str(doc_id)))
    except ValueError:
        return None
    rows = _document_rows(BlockDocument.id == doc_id)
    return _full(rows[0], include_secrets) if rows else None


def read_block_document_by_name(slug: str, name: str, include_secrets: bool = False) -> dict | None:
    rows = list(
        BlockDocument.select(BlockDocument)
        .join(BlockType, on=(BlockType.id == BlockDocument.block_type))
        .where((BlockType.slug == slug) & (BlockDocument.name == name))
        .dicts()
    )
    return _full(rows[0], include_secrets) if rows else None


def _document_query(where: dict):
    query = BlockDocument.select(BlockDocument).join(BlockType, on=(BlockType.id == BlockDocument.block_type))
    docs = where.get("block_documents")
    if docs is not None:
        if "is_anonymous" not in docs:
            docs = {**docs, "is_anonymous": {"eq_": False}}  # Prefect's filter default
        if (anon := docs.get("is_anonymous")) and anon.get("eq_") is not None:
            query = query.where(BlockDocument.is_anonymous == bool(anon["eq_"]))
        if (ids := docs.get("id")) and ids.get("any_") is not None:
            query = query.where(BlockDocument.id.in_([str(i) for i in ids["any_"]]))
        if (type_id := docs.get("block_type_id")) and type_id.get("any_") is not None:
            query = query.where(BlockDocument.block_type.in_([str(t) for t in type_id["any_"]]))
        name = docs.get("name") or {}
        if name.get("any_") is not None:
            query = query.where(BlockDocument.name.in_(name["any_"]))
        if name.get("like_") is not None:
            query = query.where(BlockDocument.name.contains(name["like_"]))
    types = where.get("block_types") or {}
    if (tname := types.get("name")) and tname.get("like_") is not None:
        query = query.where(BlockType.name.contains(tname["like_"]))
    if (slug := types.get("slug")) and slug.get("any_") is not None:
        query = query.where(BlockType.slug.in_(slug["any_"]))
    if where.get("block_schemas"):
        query = query.where(BlockDocument.block_schema.in_(_schema_query(where["block_schemas"]).select(BlockSchema.id)))
    return query


SORTS = {
    "NAME_ASC": lambda: [BlockDocument.name.asc()],
    "NAME_DESC": lambda: [BlockDocument.name.desc()],
    "BLOCK_TYPE_AND_NAME_ASC": lambda: [BlockType.name.asc(), BlockDocument.name.asc()],
}


def list_block_documents(where: dict, limit: int, offset: int, include_secrets: bool, sort: str = "NAME_ASC") -> list[dict]:
    query = _document_query(where).order_by(*SORTS[sort]()).limit(limit).offset(offset)
    return [_full(row, include_secrets) for row in query.dicts()]


def count_block_documents(where: dict) -> int:
    return _document_query(where).count()


def update_block_document(doc_id: str, changes: dict) -> None:
    row = BlockDocument.select().where(BlockDocument.id == doc_id).dicts().first()
    if row is None:
        raise NotFound("Block document not found")
    values: dict = {"updated": utcnow()}
    schema_id = changes.get("block_schema_id")
    if schema_id is not None and schema_id != row["block_schema"]:
        proposed = read_block_schema(schema_id)
        if proposed is None:
            raise NotFound(f"Block schema {schema_id} not found.")
        if proposed["block_type_id"] != row["block_type"]:
            raise Invalid("Must migrate block document to a block schema of the same block type.")
        values["block_schema"] = schema_id
    if changes.get("data") is not None:
        current = _decode(row["data"])
        fields = read_block_schema(row["block_schema"])["fields"]
        # The stored secrets of referenced documents are not in ``current``: compare with
        # the full (decrypted) document so "********" round-trips of nested data keep too.
        new = _keep_obfuscated_secrets(changes["data"], current, fields)
        if changes.get("merge_existing_data", True):
            links = {r["name"]: r["reference_block_document"] for r in BlockDocumentReference.select().where(
                BlockDocumentReference.parent_block_document == doc_id).dicts()}
            merged = dict(current)
            merged.update({k: {"$ref": {"block_document_id": v}} for k, v in links.items()})
            merged.update(new)
            new = merged
        plain, references = _split_references(new)
        values["data"] = _encode(plain)
        _write_references(doc_id, references)
    BlockDocument.update(values).where(BlockDocument.id == doc_id).execute()


def delete_block_document(doc_id: str) -> None:
    if not BlockDocument.delete().where(BlockDocument.id == doc_id).execute():
        raise NotFound("Block document not found")


# --- the built-in catalogue -----------------------------------------------------------------


@lru_cache(maxsize=1)
def catalogue() -> dict:
    return json.loads(CATALOGUE.read_text())


def register_catalogue() -> int:
    """Insert or refresh the built-in block types (protected) and their schemas; returns
    how many rows changed. Idempotent; run at start-up under the migration lock."""
    changed = 0
    now = utcnow()
    type_ids = {}
    # Two reads up front, compared in memory: this runs at every boot, mostly changing nothing.
    types = list(BlockType.select().dicts())
    by_slug, by_name = {r["slug"]: r for r in types}, {r["name"]: r for r in types}
    schemas = set(BlockSchema.select(BlockSchema.checksum, BlockSchema.version).tuples())
    for entry in catalogue()["block_types"]:
        values = {k: entry[k] for k in ("name", "slug", "logo_url", "documentation_url", "description", "code_example")}
        values["is_protected"] = entry.get("is_protected", True)
        # Else a user type squatting the name: the built-in takes it over.
        row = by_slug.get(entry["slug"]) or by_name.get(entry["name"])
        if row is None:
            type_ids[entry["slug"]] = new_id()
            BlockType.insert(id=type_ids[entry["slug"]], created=now, updated=now, **values).execute()
            changed += 1
        else:
            type_ids[entry["slug"]] = row["id"]
            if any(row[k] != v for k, v in values.items()):
                BlockType.update(values, updated=now).where(BlockType.id == row["id"]).execute()
                changed += 1
    for entry in catalogue()["block_schemas"]:
        if (entry["checksum"], entry["version"]) not in schemas:
            BlockSchema.insert(
                id=new_id(), created=now, updated=now, checksum=entry["checksum"], fields=entry["fields"],
                capabilities=entry["capabilities"], version=entry["version"],
                block_type=type_ids[entry["block_type_slug"]],
            ).execute()
            changed += 1
    return changed


# --- keys -----------------------------------------------------------------------------------


def check_key() -> None:
    """Start-up check: the configured key opens the stored documents (one is enough)."""
    sample = BlockDocument.select(BlockDocument.data).limit(1).tuples().first()
    if sample is not None:
        secrets_crypto.decrypt(sample[0])


def rotate_key(new_key: str) -> int:
    """Re-encrypt every document with ``new_key`` (decrypting with the configured keys),
    in the caller's single transaction. Returns the number of documents."""
    from cryptography.fernet import Fernet

    target = Fernet(new_key.encode())
    rows = list(BlockDocument.select(BlockDocument.id, BlockDocument.data).tuples())
    for doc_id, token in rows:
        plain = secrets_crypto.decrypt(token)
        BlockDocument.update(data=target.encrypt(plain).decode()).where(BlockDocument.id == doc_id).execute()
    return len(rows)
