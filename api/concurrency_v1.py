"""/concurrency_limits: v1 tag limits (Prefect §5.9), views over the v2 limit named
``tag:<tag>`` (same id). ``active_slots`` lists the task runs holding live leases.

Status codes are Prefect's: create answers 201 new / 200 updated, delete answers 200
with ``null`` (not 204), reset answers 200 ``null``.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from api.concurrency import MAX_INT, MAX_NAMES
from api.errors import ApiError, not_found
from api.http import read_model, send
from api.listing import filter_failed, read_filter_body
from db import concurrency
from db import database as db
from db.filters import FilterError, paging
from db.states import iso

NOT_FOUND = "Concurrency limit not found"

Tag = Annotated[str, Field(min_length=1, max_length=1000, pattern=r"^[^/%&><]+$")]


class TagLimitCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tag: Tag
    concurrency_limit: Annotated[int, Field(ge=0, le=MAX_INT)]


class Reset(BaseModel):
    model_config = ConfigDict(extra="ignore")

    slot_override: Annotated[list[uuid.UUID], Field(max_length=10000)] | None = None


class TagSlots(BaseModel):
    model_config = ConfigDict(extra="ignore")

    names: Annotated[list[str], Field(max_length=MAX_NAMES)]
    task_run_id: uuid.UUID


def shape(view: dict) -> dict:
    return {**view, "created": iso(view["created"]), "updated": iso(view["updated"])}


class TagLimits:
    async def on_post(self, req, resp):
        body = await read_model(req, TagLimitCreate)
        view, created = await db.run_write(concurrency.upsert_tag_limit, body.tag, body.concurrency_limit)
        send(resp, shape(view), 201 if created else 200)


class _OneTagLimit:
    """GET / DELETE of one tag limit, by ``key`` (``tag`` or ``limit_id``)."""

    key = "tag"

    async def on_get(self, req, resp, ident):
        view = await db.run(concurrency.read_tag_limit, **{self.key: str(ident)})
        if view is None:
            raise not_found(NOT_FOUND)
        send(resp, shape(view))

    async def on_delete(self, req, resp, ident):
        try:
            await db.run_write(concurrency.delete_tag_limit, **{self.key: str(ident)})
        except concurrency.NotFound:
            raise not_found(NOT_FOUND) from None
        send(resp, None)


class TagLimitByTag(_OneTagLimit):
    key = "tag"


class TagLimitById(_OneTagLimit):
    key = "limit_id"


class TagLimitFilter:
    async def on_post(self, req, resp):
        body = await read_filter_body(req)
        try:
            limit, offset = paging(body)
        except FilterError as exc:
            raise filter_failed(exc, body) from None
        views = await db.run(concurrency.list_tag_limits, limit, offset)
        send(resp, [shape(v) for v in views])


class TagLimitReset:
    async def on_post(self, req, resp, ident):
        body = await read_model(req, Reset)
        override = [str(u) for u in body.slot_override] if body.slot_override else None
        try:
            await db.run_write(concurrency.reset_tag_limit, ident, override)
        except concurrency.NotFound:
            raise not_found(NOT_FOUND) from None
        send(resp, None)


class TagIncrement:
    async def on_post(self, req, resp):
        body = await read_model(req, TagSlots)
        try:
            rows = await db.run_write(concurrency.v1_increment, body.names, str(body.task_run_id))
        except concurrency.Refused as exc:
            raise ApiError(423, exc.detail, {"Retry-After": str(exc.retry_after)}) from None
        send(resp, rows)


class TagDecrement:
    async def on_post(self, req, resp):
        body = await read_model(req, TagSlots)
        send(resp, await db.run_write(concurrency.v1_decrement, body.names, str(body.task_run_id)))


def register(app, prefix: str) -> None:
    base = f"{prefix}/concurrency_limits"
    app.add_route(base, TagLimits())
    app.add_route(f"{base}/filter", TagLimitFilter())
    app.add_route(f"{base}/increment", TagIncrement())
    app.add_route(f"{base}/decrement", TagDecrement())
    app.add_route(f"{base}/tag/{{ident}}", TagLimitByTag())
    app.add_route(f"{base}/tag/{{ident}}/reset", TagLimitReset())
    app.add_route(f"{base}/{{ident:uuid}}", TagLimitById())
