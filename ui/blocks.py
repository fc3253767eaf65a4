"""``/blocks``: saved block documents (by type, name search), the catalogue of block types,
create from a type's latest schema, view, edit and delete.

Forms come from the block schema (ui.schema_form). Secrets never reach the browser: the
view shows ``********`` for every secret field (the schema's ``secret_fields`` as the API
masks them, and any ``format: password`` / ``writeOnly`` field too); the edit form's
secret inputs are empty, and an empty one keeps the stored value, read server-side from
the decrypted document. Writes are db.blocks.create_block_document and
update_block_document, what ``POST /block_documents`` and ``PATCH /block_documents/{id}`` call.
"""

from __future__ import annotations

from db import blocks
from db import console_admin as reads
from db import database as db
from ui import schema_form as sf
from ui.admin_common import flash, require_uuid, segment
from ui.errors import PageError
from ui.forms import read_form
from ui.render import redirect, render

MESSAGES = {"created": "Block created.", "saved": "Block saved.", "deleted": "Block deleted."}
MAX_NAME = 1000
NAME_RULE = "Lowercase letters, numbers and dashes only."
NAME = "block_name"  # the document's name input (schema fields are all under "f.")


def _choices(fields: list[sf.Field]) -> dict[str, list[tuple[str, str]]]:
    """Field path -> [(document id, label)] of the documents a nested-block select offers."""
    nested = sf.block_fields(fields)
    slugs = sorted({s for f in nested for s in f.block_types})
    docs = reads.documents_of_types(slugs)
    out = {}
    for f in nested:
        several = len(f.block_types) > 1
        out[f.path] = [(doc_id, f"{slug} / {name}" if several else name)
                       for slug in f.block_types for doc_id, name in docs.get(slug, [])]
    return out


def with_references(doc: dict) -> dict:
    """The document's data with each referenced block as ``{"$ref": …}`` (how it is saved)."""
    data = dict(doc["data"] or {})
    for name, ref in (doc.get("block_document_references") or {}).items():
        data[name] = {"$ref": {"block_document_id": ref["block_document"]["id"]}}
    return data


def stored_secret_paths(fields: list[sf.Field], data: dict) -> set[str]:
    return {path for path in sf.secret_paths(fields) if sf.value_at(data, path) not in (sf.MISSING, None)}


def _check_name(name: str, errors: dict) -> None:
    if not name:
        errors[NAME] = sf.REQUIRED
    elif len(name) > MAX_NAME:
        errors[NAME] = f"At most {MAX_NAME} characters."
    elif not blocks.NAME_PATTERN.match(name):
        errors[NAME] = NAME_RULE
    elif "\x00" in name:
        errors[NAME] = "Must not contain NUL characters."


def _domain_error(exc: Exception) -> str:
    if isinstance(exc, blocks.Conflict):
        return "A block of this type with this name already exists."
    return str(exc)


# --- lists ------------------------------------------------------------------------------------


class BlockList:
    async def on_get(self, req, resp):
        type_slug = (req.get_param("type") or "").strip()
        search = (req.get_param("q") or "").strip()

        def read():
            return reads.block_documents(type_slug or None, search), reads.block_types_with_counts()

        docs, types = await db.run(read)
        if type_slug and type_slug not in {t["slug"] for t in types}:
            raise PageError(404, f"There is no block type {type_slug!r}.")
        render(req, resp, "blocks.html", docs=docs[: reads.CAP], capped=len(docs) > reads.CAP, types=types,
               type_slug=type_slug, search=search, message=flash(req, MESSAGES))


class BlockCatalog:
    async def on_get(self, req, resp):
        types = await db.run(reads.block_types_with_counts)
        render(req, resp, "blocks_catalog.html", types=types, segment=segment)


# --- create -----------------------------------------------------------------------------------


async def _type_and_schema(slug: str) -> tuple[dict, dict]:
    def read():
        block_type = blocks.read_block_type_by_slug(slug)
        return block_type, (reads.latest_schema(block_type["id"]) if block_type else None)

    block_type, schema = await db.run(read)
    if block_type is None:
        raise PageError(404, f"There is no block type {slug!r}.")
    if schema is None:
        raise PageError(409, f"The block type {block_type['name']} has no schema yet: save one from the SDK first.")
    return block_type, schema


def _form_page(req, resp, *, block_type, fields, values, errors, choices, action, doc=None, stored=(), status=200):
    render(req, resp, "block_form.html", status=status, block_type=block_type, fields=fields, values=values,
           errors=errors, choices=choices, action=action, doc=doc, stored=set(stored))


class BlockCreate:
    async def on_get(self, req, resp, slug):
        block_type, schema = await _type_and_schema(slug)
        fields = sf.build(schema["fields"])
        choices = await db.run(_choices, fields)
        values = {**sf.display(fields, None), NAME: ""}
        _form_page(req, resp, block_type=block_type, fields=fields, values=values, errors={}, choices=choices,
                   action=f"/blocks/catalog/{segment(slug)}/create")

    async def on_post(self, req, resp, slug):
        block_type, schema = await _type_and_schema(slug)
        form = await read_form(req)
        fields = sf.build(schema["fields"])
        name = sf.text(form, NAME)
        data, errors = sf.parse(fields, form)
        _check_name(name, errors)
        if not errors:
            errors.update(sf.validate(schema["fields"], data, fields))
        if not errors:
            body = {"name": name, "data": data, "block_schema_id": schema["id"], "block_type_id": block_type["id"],
                    "is_anonymous": False}
            try:
                doc = await db.run_write(blocks.create_block_document, body)
            except (blocks.Conflict, blocks.NotFound, blocks.Invalid, blocks.Forbidden) as exc:
                errors[NAME if isinstance(exc, blocks.Conflict) else sf.FORM_ERROR] = _domain_error(exc)
            else:
                redirect(resp, f"/blocks/block/{doc['id']}?msg=created")
                return
        choices = await db.run(_choices, fields)
        values = {**sf.echo(fields, form), NAME: name}
        _form_page(req, resp, block_type=block_type, fields=fields, values=values, errors=errors, choices=choices,
                   action=f"/blocks/catalog/{segment(slug)}/create", status=422)


# --- one document -----------------------------------------------------------------------------


async def _document(doc_id: str) -> dict:
    """The document as the API shows it without secrets (masked)."""
    doc = await db.run(blocks.read_block_document, require_uuid(doc_id, "block document"), False)
    if doc is None:
        raise PageError(404, "Block document not found.")
    return doc


def view_rows(fields: list[sf.Field], data: dict, references: dict) -> list[dict]:
    """(label, kind, shown value) of each field for the view: secrets as ********."""
    rows = []

    def visit(f: sf.Field, depth: int):
        value = sf.value_at(data, f.path)
        if f.kind == "object" and isinstance(value, dict):
            rows.append({"label": f.label, "depth": depth, "kind": "group", "value": None})
            for child in f.children:
                visit(child, depth + 1)
            return
        row = {"label": f.label, "depth": depth, "kind": f.kind, "value": value, "link": None}
        if value is sf.MISSING or value is None:
            row.update(kind="empty", value=None)
        elif f.kind == "secret":
            row["value"] = sf.OBFUSCATED
        elif f.kind == "block":
            ref = references.get(f.path)
            if ref:
                target = ref["block_document"]
                row.update(kind="link", value=target.get("name") or target["id"],
                           link=f"/blocks/block/{target['id']}")
            else:
                row["kind"] = "json"
        elif f.kind in ("json", "object"):
            row["kind"] = "json"
        rows.append(row)

    for f in fields:
        visit(f, 0)
    return rows


class BlockPage:
    async def on_get(self, req, resp, doc_id):
        doc = await _document(doc_id)
        fields = sf.build(doc["block_schema"]["fields"])
        code = (doc["block_type"].get("code_example") or "").replace("BLOCK_NAME", doc["name"] or "")
        render(req, resp, "block.html", doc=doc, rows=view_rows(fields, doc["data"], doc["block_document_references"]),
               code_example=code, message=flash(req, MESSAGES))


class BlockEdit:
    async def on_get(self, req, resp, doc_id):
        doc = await _document(doc_id)
        fields = sf.build(doc["block_schema"]["fields"])
        data = with_references(doc)
        choices = await db.run(_choices, fields)
        _form_page(req, resp, block_type=doc["block_type"], fields=fields, values=sf.display(fields, data), errors={},
                   choices=choices, action=f"/blocks/block/{doc['id']}/edit", doc=doc,
                   stored=stored_secret_paths(fields, data))

    async def on_post(self, req, resp, doc_id):
        doc = await _document(doc_id)
        form = await read_form(req)
        schema_fields = doc["block_schema"]["fields"]
        fields = sf.build(schema_fields)
        # Decrypted, server-side only: an empty secret input keeps what is stored.
        full = await db.run(blocks.read_block_document, doc["id"], True)
        if full is None:
            raise PageError(404, "Block document not found.")
        stored = with_references(full)
        data, errors = sf.parse(fields, form, stored=stored)
        if not errors:
            errors.update(sf.validate(schema_fields, data, fields))
        if not errors:
            known = {f.path for f in fields}
            # Keys the schema does not describe are kept as they are (the form cannot show them).
            new = {**{k: v for k, v in stored.items() if k not in known}, **data}
            try:
                await db.run_write(blocks.update_block_document, doc["id"],
                                   {"data": new, "merge_existing_data": False})
            except blocks.NotFound as exc:
                raise PageError(404, str(exc)) from None
            except (blocks.Invalid, blocks.Conflict, blocks.Forbidden) as exc:
                errors[sf.FORM_ERROR] = _domain_error(exc)
            else:
                redirect(resp, f"/blocks/block/{doc['id']}?msg=saved")
                return
        choices = await db.run(_choices, fields)
        _form_page(req, resp, block_type=doc["block_type"], fields=fields, values=sf.echo(fields, form), errors=errors,
                   choices=choices, action=f"/blocks/block/{doc['id']}/edit", doc=doc,
                   stored=stored_secret_paths(fields, with_references(doc)), status=422)


class BlockDelete:
    async def on_post(self, req, resp, doc_id):
        await read_form(req)
        try:
            await db.run_write(blocks.delete_block_document, require_uuid(doc_id, "block document"))
        except blocks.NotFound:
            raise PageError(404, "Block document not found.") from None
        redirect(resp, "/blocks?msg=deleted")


def register(app) -> None:
    app.add_route("/blocks", BlockList())
    app.add_route("/blocks/catalog", BlockCatalog())
    app.add_route("/blocks/catalog/{slug}/create", BlockCreate())
    app.add_route("/blocks/block/{doc_id}", BlockPage())
    app.add_route("/blocks/block/{doc_id}/edit", BlockEdit())
    app.add_route("/blocks/block/{doc_id}/delete", BlockDelete())
