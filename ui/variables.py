"""``/variables``: the list (name search, keyset pages), create, edit and delete, through the
same domain functions as the REST API (db.variables: its name and value rules, 409 on a
duplicate name)."""

from __future__ import annotations

import orjson

from db import console_admin as reads
from db import database as db
from db import variables
from ui import schema_form as sf
from ui.admin_common import flash, pager_urls, require_uuid
from ui.errors import PageError
from ui.forms import read_form
from ui.render import redirect, render

MESSAGES = {"created": "Variable created.", "saved": "Variable saved.", "deleted": "Variable deleted."}


def parse_value(text: str):
    """A JSON value; text that is not JSON is the string itself (what people mostly store)."""
    if text.strip() == "":
        return ""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def value_text(value) -> str:
    """What the value input shows: strings as typed, anything else as JSON."""
    if isinstance(value, str):
        try:
            orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def _read(form: dict) -> tuple[dict, dict, dict]:
    """(changes, errors, echo) of a create or edit form."""
    raw = {"name": sf.text(form, "name"), "value": sf.text(form, "value", strip=False),
           "tags": sf.text(form, "tags")}
    errors: dict[str, str] = {}
    sf.no_nul(raw, errors)
    name = raw["name"]
    if not name:
        errors.setdefault("name", sf.REQUIRED)
    elif len(name) > variables.MAX_NAME_LENGTH:
        errors.setdefault("name", f"At most {variables.MAX_NAME_LENGTH} characters.")
    else:
        try:
            variables.check_name(name)
        except ValueError as exc:
            errors.setdefault("name", str(exc))
    value = parse_value(raw["value"])
    try:
        variables.check_value(value)
    except ValueError as exc:
        errors.setdefault("value", str(exc))
    return {"name": name, "value": value, "tags": sf.tags_list(raw["tags"])}, errors, raw


async def _list_page(req, resp, *, errors=None, values=None, status=200):
    search = (req.get_param("q") or "").strip()
    after, before = req.get_param("after"), req.get_param("before")
    page = await db.run(reads.variables_page, search, after, before)
    next_url, prev_url = pager_urls("/variables", page, q=search)
    render(req, resp, "variables.html", status=status, page=page, search=search, next_url=next_url,
           prev_url=prev_url, errors=errors or {}, values=values or {"name": "", "value": "", "tags": ""},
           message=flash(req, MESSAGES), value_text=value_text)


class VariableList:
    async def on_get(self, req, resp):
        await _list_page(req, resp)

    async def on_post(self, req, resp):
        form = await read_form(req)
        changes, errors, raw = _read(form)
        if not errors:
            try:
                await db.run_write(variables.create_variable, changes["name"], changes["value"], changes["tags"])
            except variables.Conflict as exc:
                errors["name"] = str(exc)
        if errors:
            await _list_page(req, resp, errors=errors, values=raw, status=422)
            return
        redirect(resp, "/variables?msg=created")


async def _variable(variable_id: str) -> dict:
    row = await db.run(variables.read_variable, require_uuid(variable_id, "variable"))
    if row is None:
        raise PageError(404, "Variable not found.")
    return row


class VariableEdit:
    async def on_get(self, req, resp, variable_id):
        row = await _variable(variable_id)
        values = {"name": row["name"], "value": value_text(row["value"]), "tags": ", ".join(row["tags"] or [])}
        render(req, resp, "_admin_variable_edit.html", variable=row, values=values, errors={})

    async def on_post(self, req, resp, variable_id):
        row = await _variable(variable_id)
        form = await read_form(req)
        changes, errors, raw = _read(form)
        if not errors:
            try:
                await db.run_write(variables.update_variable, changes, variable_id=row["id"])
            except variables.Conflict as exc:
                errors["name"] = str(exc)
            except variables.NotFound:
                raise PageError(404, "Variable not found.") from None
        if errors:
            render(req, resp, "_admin_variable_edit.html", status=422, variable=row, values=raw, errors=errors)
            return
        redirect(resp, "/variables?msg=saved")


class VariableDelete:
    async def on_post(self, req, resp, variable_id):
        await read_form(req)
        try:
            await db.run_write(variables.delete_variable, variable_id=require_uuid(variable_id, "variable"))
        except variables.NotFound:
            raise PageError(404, "Variable not found.") from None
        redirect(resp, "/variables?msg=deleted")


def register(app) -> None:
    app.add_route("/variables", VariableList())
    app.add_route("/variables/variable/{variable_id}/edit", VariableEdit())
    app.add_route("/variables/variable/{variable_id}/delete", VariableDelete())
