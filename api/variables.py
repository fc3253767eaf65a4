"""/variables: create, read / update / delete by id or by name, filter, count (Prefect §5.7)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from api.errors import ApiError, not_found
from api.http import no_content, read_model, send
from api.listing import build_query, count_query, read_filter_body
from db import database as db
from db import variables
from db.states import iso

FILTER_KEYS = {"variables"}

VariableName = Annotated[
    str, Field(max_length=variables.MAX_NAME_LENGTH), AfterValidator(variables.check_name)
]
VariableValue = Annotated[Any, AfterValidator(variables.check_value)]


class VariableCreate(BaseModel):
    # Like Prefect's action models: unknown keys are refused.
    model_config = ConfigDict(extra="forbid")

    name: VariableName
    value: VariableValue
    tags: list[str] = Field(default_factory=list)


class VariableUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: VariableName | None = None
    value: VariableValue = None
    tags: list[str] | None = None

    def changes(self) -> dict:
        """The keys the client sent; an explicit null name or tags means "leave as is"."""
        sent = self.model_dump(exclude_unset=True)
        return {k: v for k, v in sent.items() if v is not None or k == "value"}


def shape(row: dict) -> dict:
    return {
        "id": row["id"],
        "created": iso(row["created"]),
        "updated": iso(row["updated"]),
        "name": row["name"],
        "value": row["value"],
        "tags": row["tags"] or [],
    }


def _conflict(exc: variables.Conflict) -> ApiError:
    return ApiError(409, str(exc))


class Variables:
    async def on_post(self, req, resp):
        body = await read_model(req, VariableCreate)
        try:
            row = await db.run_write(variables.create_variable, body.name, body.value, body.tags)
        except variables.Conflict as exc:
            raise _conflict(exc) from None
        send(resp, shape(row), 201)


class _OneVariable:
    """GET / PATCH / DELETE of one variable, found by ``key`` (``variable_id`` or ``name``)."""

    key = "variable_id"

    async def on_get(self, req, resp, ident):
        row = await db.run(variables.read_variable, **{self.key: str(ident)})
        if row is None:
            raise not_found("Variable not found.")
        send(resp, shape(row))

    async def on_patch(self, req, resp, ident):
        body = await read_model(req, VariableUpdate)
        try:
            await db.run_write(variables.update_variable, body.changes(), **{self.key: str(ident)})
        except variables.NotFound as exc:
            raise not_found(str(exc)) from None
        except variables.Conflict as exc:
            raise _conflict(exc) from None
        no_content(resp)

    async def on_delete(self, req, resp, ident):
        try:
            await db.run_write(variables.delete_variable, **{self.key: str(ident)})
        except variables.NotFound as exc:
            raise not_found(str(exc)) from None
        no_content(resp)


class VariableById(_OneVariable):
    key = "variable_id"


class VariableByName(_OneVariable):
    key = "name"


class VariableFilter:
    async def on_post(self, req, resp):
        body = await read_filter_body(req)
        query, _, _ = build_query(
            variables.Variable, "variables", body, FILTER_KEYS, variables.SORTS, "NAME_ASC"
        )
        rows = await db.run(lambda: list(query.dicts()))
        send(resp, [shape(r) for r in rows])


class VariableCount:
    async def on_post(self, req, resp):
        body = await read_filter_body(req)
        query = count_query(variables.Variable, "variables", body, FILTER_KEYS)
        send(resp, await db.run(query.count))


def register(app, prefix: str) -> None:
    app.add_route(f"{prefix}/variables", Variables())
    app.add_route(f"{prefix}/variables/filter", VariableFilter())
    app.add_route(f"{prefix}/variables/count", VariableCount())
    app.add_route(f"{prefix}/variables/name/{{ident}}", VariableByName())
    app.add_route(f"{prefix}/variables/{{ident:uuid}}", VariableById())
