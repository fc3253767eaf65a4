"""/flow_run_notification_policies: Prefect's (<= 3.3) notification policies API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from api.errors import invalid, not_found
from api.http import no_content, read_model, send
from db import database as db
from db import notifications as notes
from db.states import iso
from notifier import blocks_access


class PolicyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    is_active: bool = True
    state_names: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    block_document_id: str
    message_template: str | None = None


class PolicyUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    is_active: bool | None = None
    state_names: list[str] | None = None
    tags: list[str] | None = None
    block_document_id: str | None = None
    message_template: str | None = None


class PolicyFilterBody(BaseModel):
    flow_run_notification_policy_filter: dict | None = None
    offset: int = Field(0, ge=0)
    limit: int | None = Field(None, ge=0, le=200)


def shape(row: dict) -> dict:
    return {
        "id": row["id"],
        "created": iso(row["created"]),
        "updated": iso(row["updated"]),
        "is_active": row["is_active"],
        "state_names": row["state_names"] or [],
        "tags": row["tags"] or [],
        "block_document_id": row["block_document_id"],
        "message_template": row["message_template"],
    }


def _domain_call(fn, *args):
    try:
        return fn(*args)
    except notes.Invalid as exc:
        raise invalid(exc.field, str(exc), exc.value) from None


async def _check_block(block_document_id: str) -> None:
    if await db.run(blocks_access.exists, block_document_id) is False:
        raise not_found(f"Block document {block_document_id} not found")


class Policies:
    async def on_post(self, req, resp):
        body = await read_model(req, PolicyCreate)
        await _check_block(body.block_document_id)
        row = await db.run_write(_domain_call, notes.create_policy, body.model_dump())
        send(resp, shape(row), 201)


class PolicyFilter:
    async def on_post(self, req, resp):
        body = await read_model(req, PolicyFilterBody)
        active = ((body.flow_run_notification_policy_filter or {}).get("is_active") or {}).get("eq_")
        rows = await db.run(notes.filter_policies, active, body.offset, body.limit)
        send(resp, [shape(r) for r in rows])


class PolicyById:
    async def on_get(self, req, resp, policy_id):
        row = await db.run(notes.read_policy, str(policy_id))
        if row is None:
            raise not_found("Flow run notification policy not found")
        send(resp, shape(row))

    async def on_patch(self, req, resp, policy_id):
        body = await read_model(req, PolicyUpdate)
        changes = body.model_dump(exclude_unset=True)
        if changes.get("block_document_id"):
            await _check_block(changes["block_document_id"])
        for key in ("is_active", "state_names", "tags", "block_document_id"):
            if key in changes and changes[key] is None:
                raise invalid(key, f"{key} cannot be null", None)
        if not await db.run_write(_domain_call, notes.update_policy, str(policy_id), changes):
            raise not_found("Flow run notification policy not found")
        no_content(resp)

    async def on_delete(self, req, resp, policy_id):
        if not await db.run_write(notes.delete_policy, str(policy_id)):
            raise not_found("Flow run notification policy not found")
        no_content(resp)


def register(app, prefix: str) -> None:
    app.add_route(f"{prefix}/flow_run_notification_policies", Policies())
    app.add_route(f"{prefix}/flow_run_notification_policies/filter", PolicyFilter())
    app.add_route(f"{prefix}/flow_run_notification_policies/{{policy_id:uuid}}", PolicyById())
