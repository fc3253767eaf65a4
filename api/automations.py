"""/automations: notification automations (Prefect 3.4+ ``send-notification``).

Only automations the server evaluates are stored (db.notifications.compile_trigger):
anything else is refused with 422 naming the unsupported part. After creating/updating
a deployment the SDK deletes the automations it owns (202), and
``prefect deployment inspect`` lists the related ones.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from api.errors import invalid, not_found
from api.http import no_content, read_json, read_model, send
from db import database as db
from db import notifications as notes
from db.states import iso

FIELDS = ("name", "description", "enabled", "tags", "trigger", "actions", "actions_on_trigger", "actions_on_resolve")


class AutomationBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str
    description: str = ""
    enabled: bool = True
    tags: list[str] = Field(default_factory=list)
    trigger: dict
    actions: list[dict] = Field(default_factory=list)
    actions_on_trigger: list[dict] = Field(default_factory=list)
    actions_on_resolve: list[dict] = Field(default_factory=list)
    owner_resource: str | None = None


class AutomationPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool


def shape(row: dict) -> dict:
    out = {"id": row["id"], "created": iso(row["created"]), "updated": iso(row["updated"])}
    out.update({key: row[key] for key in FIELDS})
    out["owner_resource"] = row["owner_resource"]
    return out


def _checked(fn, *args):
    try:
        return fn(*args)
    except notes.Invalid as exc:
        raise invalid(exc.field, str(exc), exc.value) from None


class Automations:
    async def on_post(self, req, resp):
        body = await read_model(req, AutomationBody)
        row = await db.run_write(_checked, notes.create_automation, body.model_dump())
        send(resp, shape(row), 201)


class AutomationById:
    async def on_get(self, req, resp, automation_id):
        row = await db.run(notes.read_automation, str(automation_id))
        if row is None:
            raise not_found("Automation not found")
        send(resp, shape(row))

    async def on_put(self, req, resp, automation_id):
        body = await read_model(req, AutomationBody)
        if not await db.run_write(_checked, notes.replace_automation, str(automation_id), body.model_dump()):
            raise not_found("Automation not found")
        no_content(resp)

    async def on_patch(self, req, resp, automation_id):
        body = await read_model(req, AutomationPatch)
        if not await db.run_write(notes.set_automation_enabled, str(automation_id), body.enabled):
            raise not_found("Automation not found")
        no_content(resp)

    async def on_delete(self, req, resp, automation_id):
        if not await db.run_write(notes.delete_automation, str(automation_id)):
            raise not_found("Automation not found")
        no_content(resp)


def _name_filter(body: dict) -> str | None:
    names = (((body or {}).get("automations") or {}).get("name") or {}).get("any_")
    return names[0] if names else None


class AutomationFilter:
    async def on_post(self, req, resp):
        body = await read_json(req, {}) or {}
        rows = await db.run(notes.filter_automations, _name_filter(body), int(body.get("offset") or 0), body.get("limit"))
        send(resp, [shape(r) for r in rows])


class AutomationCount:
    async def on_post(self, req, resp):
        body = await read_json(req, {}) or {}
        rows = await db.run(notes.filter_automations, _name_filter(body))
        send(resp, len(rows))


class OwnedBy:
    async def on_delete(self, req, resp, resource_id):
        await db.run_write(notes.delete_owned_automations, resource_id)
        send(resp, None, 202)


class RelatedTo:
    async def on_get(self, req, resp, resource_id):
        rows = await db.run(notes.related_automations, resource_id)
        send(resp, [shape(r) for r in rows])


def register(app, prefix: str) -> None:
    app.add_route(f"{prefix}/automations", Automations())
    app.add_route(f"{prefix}/automations/filter", AutomationFilter())
    app.add_route(f"{prefix}/automations/count", AutomationCount())
    app.add_route(f"{prefix}/automations/{{automation_id:uuid}}", AutomationById())
    app.add_route(f"{prefix}/automations/owned-by/{{resource_id}}", OwnedBy())
    app.add_route(f"{prefix}/automations/related-to/{{resource_id}}", RelatedTo())
