"""``/concurrency-limits``: global limits (v2: create, edit limit / active / slot decay,
toggle, reset, delete) and tag limits (v1 views over ``tag:<tag>``: create, reset,
delete, with the task runs holding their slots). Writes call db.concurrency as the
REST API does; a deployment's own limit (``deployment:<id>``) is shown but changed only
through its deployment."""

from __future__ import annotations

import re

from api.concurrency import MAX_INT
from db import concurrency, deployment_concurrency
from db import console_admin as reads
from db import database as db
from ui import schema_form as sf
from ui.admin_common import flash, require_uuid
from ui.errors import PageError
from ui.forms import read_form
from ui.render import redirect, render

NAME_RULE = re.compile(r"^[^/%&><]+$")
MAX_NAME = 1024
MAX_DECAY = 1e9
DEPLOYMENT_PREFIX = deployment_concurrency.limit_name("")
MESSAGES = {
    "created": "Concurrency limit created.", "saved": "Concurrency limit saved.", "reset": "Slots reset.",
    "deleted": "Concurrency limit deleted.", "activated": "Limit activated.", "deactivated": "Limit deactivated.",
    "tag-saved": "Tag limit saved.", "tag-reset": "Tag limit reset.", "tag-deleted": "Tag limit deleted.",
}
LIST_CAP = 100  # rows of each list (keeps the page under 150 KB)
EMPTY_LIMIT = {"name": "", "limit": "", "slot_decay_per_second": "", "active": True}


def _check_name(name: str, errors: dict, field: str = "name") -> None:
    if not name:
        errors[field] = sf.REQUIRED
    elif len(name) > MAX_NAME:
        errors[field] = f"At most {MAX_NAME} characters."
    elif not NAME_RULE.match(name):
        errors[field] = "Must not contain /, %, &, > or <."


def read_limit_form(form: dict) -> tuple[dict, dict, dict]:
    """(values for db.concurrency, errors, echo) of the create / edit form of a global limit."""
    raw = {k: sf.text(form, k) for k in ("name", "limit", "slot_decay_per_second")}
    errors: dict[str, str] = {}
    sf.no_nul(raw, errors)
    _check_name(raw["name"], errors)
    limit = sf.integer(raw["limit"], "limit", errors, minimum=0, maximum=MAX_INT)
    decay = sf.decimal(raw["slot_decay_per_second"], "slot_decay_per_second", errors, maximum=MAX_DECAY)
    active = sf.text(form, "active") in ("true", "on")
    values = {"name": raw["name"], "limit": limit, "active": active, "slot_decay_per_second": decay or 0.0}
    return values, errors, {**raw, "active": active}


def _is_deployment_limit(row: dict) -> bool:
    return row["name"].startswith(DEPLOYMENT_PREFIX)


async def _page(req, resp, *, errors=None, values=None, tag_errors=None, tag_values=None, status=200):
    limits = await db.run(reads.global_limits, LIST_CAP)
    tags = await db.run(reads.tag_limits, LIST_CAP)
    render(
        req, resp, "concurrency.html", status=status,
        limits=limits[:LIST_CAP], limits_capped=len(limits) > LIST_CAP,
        tags=tags[:LIST_CAP], tags_capped=len(tags) > LIST_CAP,
        whole=concurrency.whole, is_deployment_limit=_is_deployment_limit, deployment_prefix=DEPLOYMENT_PREFIX,
        errors=errors or {}, values=values or dict(EMPTY_LIMIT),
        tag_errors=tag_errors or {}, tag_values=tag_values or {"tag": "", "concurrency_limit": ""},
        message=flash(req, MESSAGES),
    )


class LimitList:
    async def on_get(self, req, resp):
        await _page(req, resp)

    async def on_post(self, req, resp):
        form = await read_form(req)
        values, errors, raw = read_limit_form(form)
        if not errors:
            try:
                await db.run_write(concurrency.create_limit, values)
            except concurrency.Conflict:
                errors["name"] = "A concurrency limit with this name already exists."
        if errors:
            await _page(req, resp, errors=errors, values=raw, status=422)
            return
        redirect(resp, "/concurrency-limits?msg=created")


async def _limit(limit_id: str) -> dict:
    row = await db.run(concurrency.read_limit, require_uuid(limit_id, "concurrency limit"))
    if row is None:
        raise PageError(404, "Concurrency limit not found.")
    if _is_deployment_limit(row):
        raise PageError(409, "This is a deployment's concurrency limit: change it with the deployment.")
    return row


def _edit(req, resp, row, values, errors, status=200):
    render(req, resp, "_admin_limit_edit.html", status=status, limit=row, values=values, errors=errors,
           whole=concurrency.whole)


class LimitEdit:
    async def on_get(self, req, resp, limit_id):
        row = await _limit(limit_id)
        values = {"name": row["name"], "limit": str(row["limit"]), "active": row["active"],
                  "slot_decay_per_second": f"{row['slot_decay_per_second']:g}"}
        _edit(req, resp, row, values, {})

    async def on_post(self, req, resp, limit_id):
        row = await _limit(limit_id)
        form = await read_form(req)
        values, errors, raw = read_limit_form(form)
        if not errors:
            try:
                await db.run_write(concurrency.update_limit, row["id"], values)
            except concurrency.Conflict:
                errors["name"] = "A concurrency limit with this name already exists."
            except concurrency.NotFound:
                raise PageError(404, "Concurrency limit not found.") from None
        if errors:
            _edit(req, resp, row, raw, errors, status=422)
            return
        redirect(resp, "/concurrency-limits?msg=saved")


class LimitAction:
    """POST toggle / reset / delete of one global limit."""

    def __init__(self, action: str):
        self.action = action

    async def on_post(self, req, resp, limit_id):
        await read_form(req)
        row = await _limit(limit_id)
        try:
            if self.action == "toggle":
                await db.run_write(concurrency.update_limit, row["id"], {"active": not row["active"]})
                code = "deactivated" if row["active"] else "activated"
            elif self.action == "reset":
                # As Prefect's console: the occupied slots go back to zero.
                await db.run_write(concurrency.update_limit, row["id"], {"active_slots": 0, "denied_slots": 0})
                code = "reset"
            else:
                await db.run_write(concurrency.delete_limit, row["id"])
                code = "deleted"
        except concurrency.NotFound:
            raise PageError(404, "Concurrency limit not found.") from None
        redirect(resp, f"/concurrency-limits?msg={code}")


class TagLimits:
    async def on_post(self, req, resp):
        form = await read_form(req)
        raw = {"tag": sf.text(form, "tag"), "concurrency_limit": sf.text(form, "concurrency_limit")}
        errors: dict[str, str] = {}
        sf.no_nul(raw, errors)
        _check_name(raw["tag"], errors, "tag")
        if raw["tag"] and len(raw["tag"]) > 1000:
            errors["tag"] = "At most 1000 characters."
        limit = sf.integer(raw["concurrency_limit"], "concurrency_limit", errors, minimum=0, maximum=MAX_INT)
        if errors:
            await _page(req, resp, tag_errors=errors, tag_values=raw, status=422)
            return
        await db.run_write(concurrency.upsert_tag_limit, raw["tag"], limit)
        redirect(resp, "/concurrency-limits?msg=tag-saved")


class TagLimitAction:
    def __init__(self, action: str):
        self.action = action

    async def on_post(self, req, resp, limit_id):
        await read_form(req)
        view = await db.run(concurrency.read_tag_limit, limit_id=require_uuid(limit_id, "tag limit"))
        if view is None:
            raise PageError(404, "Tag limit not found.")
        try:
            if self.action == "reset":
                await db.run_write(concurrency.reset_tag_limit, view["tag"], None)
            else:
                await db.run_write(concurrency.delete_tag_limit, tag=view["tag"])
        except concurrency.NotFound:
            raise PageError(404, "Tag limit not found.") from None
        redirect(resp, f"/concurrency-limits?msg=tag-{'reset' if self.action == 'reset' else 'deleted'}")


def register(app) -> None:
    app.add_route("/concurrency-limits", LimitList())
    app.add_route("/concurrency-limits/concurrency-limit/{limit_id}/edit", LimitEdit())
    for action in ("toggle", "reset", "delete"):
        app.add_route(f"/concurrency-limits/concurrency-limit/{{limit_id}}/{action}", LimitAction(action))
    app.add_route("/concurrency-limits/tag-limits", TagLimits())
    for action in ("reset", "delete"):
        app.add_route(f"/concurrency-limits/tag-limit/{{limit_id}}/{action}", TagLimitAction(action))
