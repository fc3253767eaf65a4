"""/flow_runs/{id}/input (create, read, filter, delete) and /flow_runs/{id}/resume."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from api.errors import conflict, not_found
from api.http import no_content, parse, read_json, read_model, send
from api.schemas import Body
from db import database as db
from db import flow_run_inputs, runs
from db.states import iso


class InputCreate(Body):
    key: str = Field(min_length=1)
    value: str
    sender: str | None = None


class InputFilter(Body):
    prefix: str
    limit: int = Field(default=1, ge=0)
    exclude_keys: list[str] = Field(default_factory=list)


class ResumeBody(Body):
    run_input: dict[str, Any] | None = None


def input_shape(row: dict) -> dict:
    return {
        "id": row["id"],
        "created": iso(row["created"]),
        "updated": iso(row["updated"]),
        "flow_run_id": row["flow_run_id"],
        "key": row["key"],
        "value": row["value"],
        "sender": row["sender"],
    }


class Inputs:
    async def on_post(self, req, resp, run_id):
        body = await read_model(req, InputCreate)
        try:
            await db.run_write(flow_run_inputs.create, str(run_id), body.key, body.value, body.sender)
        except runs.NotFound as exc:
            raise not_found(str(exc)) from None
        except runs.Conflict as exc:
            raise conflict(str(exc)) from None
        send(resp, None, 201)


class InputFilterResource:
    async def on_post(self, req, resp, run_id):
        body = await read_model(req, InputFilter)
        rows = await db.run(flow_run_inputs.filter_inputs, str(run_id), body.prefix, body.limit, body.exclude_keys)
        send(resp, [input_shape(r) for r in rows])


class InputByKey:
    async def on_get(self, req, resp, run_id, key):
        row = await db.run(flow_run_inputs.read, str(run_id), key)
        if row is None:
            raise not_found("Flow run input not found")
        resp.status = 200
        resp.content_type = "text/plain; charset=utf-8"
        resp.data = row["value"].encode()

    async def on_delete(self, req, resp, run_id, key):
        try:
            await db.run_write(flow_run_inputs.delete, str(run_id), key)
        except runs.NotFound as exc:
            raise not_found(str(exc)) from None
        no_content(resp)


class Resume:
    async def on_post(self, req, resp, run_id):
        raw = await read_json(req, {})
        body = parse(ResumeBody, raw if raw is not None else {})
        try:
            written, result = await db.run_write(flow_run_inputs.resume, str(run_id), body.run_input)
        except runs.NotFound:
            raise not_found("Flow run not found") from None
        send(resp, result, 201 if written else 200)


def register(app, prefix: str) -> None:
    p = f"{prefix}/flow_runs/{{run_id:uuid}}"
    app.add_route(f"{p}/input", Inputs())
    app.add_route(f"{p}/input/filter", InputFilterResource())
    app.add_route(f"{p}/input/{{key}}", InputByKey())
    app.add_route(f"{p}/resume", Resume())
