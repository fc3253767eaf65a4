"""/deployments: upsert, read (by id and by flow/name), update, delete, filter/count/paginate,
pause/resume, schedules, runs from a deployment (single and bulk), the runner's
get_scheduled_flow_runs and ad-hoc schedule generation."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import Field

from api import shapes
from api.concurrency import global_limit
from api.errors import ApiError, conflict, invalid, not_found
from api.http import no_content, parse, read_json, read_model, send
from api.listing import build_query, count_query, page_body, read_filter_body
from api.schemas import Body, StateCreate, UUIDStr, uuid_str
from db import database as db
from db import deployments as deps
from db import runs, scheduler
from db.fields import utcnow
from db.models_deployments import Deployment
from db.states import iso

FILTER_KEYS = {"flows", "flow_runs", "task_runs", "deployments", "work_pools", "work_pool_queues"}
SORTS = {
    "CREATED_DESC": [Deployment.created.desc(), Deployment.id.desc()],
    "UPDATED_DESC": [Deployment.updated.desc(), Deployment.id.desc()],
    "NAME_ASC": [Deployment.name.asc(), Deployment.id.desc()],
    "NAME_DESC": [Deployment.name.desc(), Deployment.id.desc()],
}


class ConcurrencyOptions(Body):
    collision_strategy: Literal["ENQUEUE", "CANCEL_NEW"] = "ENQUEUE"
    grace_period_seconds: int | None = Field(default=None, ge=60, le=86400)


class DeploymentCreate(Body):
    name: str
    flow_id: UUIDStr
    paused: bool = False
    schedules: list[dict[str, Any]] = Field(default_factory=list)
    concurrency_limit: int | None = Field(default=None, gt=0)
    concurrency_options: ConcurrencyOptions | None = None
    enforce_parameter_schema: bool = True
    parameter_openapi_schema: dict[str, Any] | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    labels: dict[str, Any] | None = None
    pull_steps: list[dict[str, Any]] | None = None
    work_queue_name: str | None = None
    work_pool_name: str | None = None
    storage_document_id: UUIDStr | None = None
    infrastructure_document_id: UUIDStr | None = None
    description: str | None = None
    path: str | None = None
    version: str | None = None
    entrypoint: str | None = None
    job_variables: dict[str, Any] = Field(default_factory=dict)

    def domain(self) -> dict:
        data = self.model_dump()
        for key in ("flow_id", "storage_document_id", "infrastructure_document_id"):
            data[key] = uuid_str(data[key])
        return data


class DeploymentUpdate(Body):
    version: str | None = None
    description: str | None = None
    paused: bool | None = None
    schedules: list[dict[str, Any]] | None = None
    concurrency_limit: int | None = Field(default=None, gt=0)
    concurrency_options: ConcurrencyOptions | None = None
    parameters: dict[str, Any] | None = None
    parameter_openapi_schema: dict[str, Any] | None = None
    tags: list[str] | None = None
    labels: dict[str, Any] | None = None
    work_queue_name: str | None = None
    work_pool_name: str | None = None
    path: str | None = None
    job_variables: dict[str, Any] | None = None
    entrypoint: str | None = None
    storage_document_id: UUIDStr | None = None
    infrastructure_document_id: UUIDStr | None = None
    enforce_parameter_schema: bool | None = None
    pull_steps: list[dict[str, Any]] | None = None

    def domain(self) -> dict:
        data = self.model_dump(exclude_unset=True)
        for key in ("storage_document_id", "infrastructure_document_id"):
            if key in data:
                data[key] = uuid_str(data[key])
        # Non-nullable columns: an explicit null means "leave as is".
        for key in ("paused", "parameters", "tags", "job_variables", "enforce_parameter_schema"):
            if key in data and data[key] is None:
                del data[key]
        return data


class DeploymentFlowRunCreate(Body):
    state: StateCreate | None = None
    name: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    enforce_parameter_schema: bool | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    infrastructure_document_id: UUIDStr | None = None
    empirical_policy: dict[str, Any] | None = None
    tags: list[str] = Field(default_factory=list)
    idempotency_key: str | None = None
    parent_task_run_id: UUIDStr | None = None
    work_queue_name: str | None = None
    job_variables: dict[str, Any] | None = None
    labels: dict[str, Any] | None = None

    def domain(self) -> dict:
        data = self.model_dump(exclude={"state"})
        for key in ("infrastructure_document_id", "parent_task_run_id"):
            data[key] = uuid_str(data[key])
        data["state"] = self.state.proposal() if self.state else None
        return data


class ScheduledRunsRequest(Body):
    deployment_ids: list[UUIDStr]
    scheduled_before: dt.datetime | None = None
    limit: int | None = Field(default=None, ge=0)


class ScheduleUpdate(Body):
    schedule: dict[str, Any] | None = None
    active: bool | None = None
    max_scheduled_runs: int | None = Field(default=None, gt=0)
    parameters: dict[str, Any] | None = None
    slug: str | None = None


def _naive(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value


# --- shapes -----------------------------------------------------------------------------------


def schedule_shape(row: dict) -> dict:
    return {
        "id": row["id"],
        "created": iso(row["created"]),
        "updated": iso(row["updated"]),
        "deployment_id": row["deployment_id"],
        "schedule": row["schedule"],
        "active": row["active"],
        "max_scheduled_runs": row["max_scheduled_runs"],
        "parameters": row["parameters"] or {},
        "slug": row["slug"],
    }


def deployment_shape(row: dict) -> dict:
    return {
        "id": row["id"],
        "created": iso(row["created"]),
        "updated": iso(row["updated"]),
        "name": row["name"],
        "version": row["version"],
        "description": row["description"],
        "flow_id": row["flow_id"],
        "paused": row["paused"],
        "schedules": [schedule_shape(s) for s in row.get("schedules") or []],
        "concurrency_limit": row["concurrency_limit"],
        "global_concurrency_limit": (
            global_limit(row["global_concurrency_limit"]) if row.get("global_concurrency_limit") else None
        ),
        "concurrency_options": row["concurrency_options"],
        "job_variables": row["job_variables"] or {},
        "parameters": row["parameters"] or {},
        "tags": row["tags"] or [],
        "labels": row["labels"] or {},
        "work_queue_name": row["work_queue_name"],
        "work_queue_id": row["work_queue_id"],
        "last_polled": iso(row["last_polled"]),
        "parameter_openapi_schema": row["parameter_openapi_schema"],
        "path": row["path"],
        "pull_steps": row["pull_steps"] or [],
        "entrypoint": row["entrypoint"],
        "storage_document_id": row["storage_document_id"],
        "infrastructure_document_id": row["infrastructure_document_id"],
        "created_by": row["created_by"],
        "updated_by": row["updated_by"],
        "work_pool_name": row["work_pool_name"],
        "status": row["status"] or "NOT_READY",
        "enforce_parameter_schema": row["enforce_parameter_schema"],
    }


def _invalid(exc: deps.Invalid, body):
    return invalid(exc.field, exc.message, exc.value, body)


# --- responders -------------------------------------------------------------------------------


class Deployments:
    async def on_post(self, req, resp):
        raw = await read_json(req)
        data = parse(DeploymentCreate, raw).domain()
        try:
            row, created = await db.run_write(deps.upsert, data)
        except deps.Invalid as exc:
            raise _invalid(exc, raw) from None
        except runs.NotFound as exc:
            raise not_found(str(exc)) from None
        except runs.Conflict as exc:
            raise conflict(str(exc)) from None
        send(resp, deployment_shape(row), 201 if created else 200)


class DeploymentById:
    async def on_get(self, req, resp, deployment_id):
        row = await db.run(deps.read, str(deployment_id))
        if row is None:
            raise not_found("Deployment not found")
        send(resp, deployment_shape(row))

    async def on_patch(self, req, resp, deployment_id):
        raw = await read_json(req)
        changes = parse(DeploymentUpdate, raw).domain()
        try:
            await db.run_write(deps.update, str(deployment_id), changes)
        except deps.Invalid as exc:
            raise _invalid(exc, raw) from None
        except runs.NotFound as exc:
            raise not_found(str(exc)) from None
        no_content(resp)

    async def on_delete(self, req, resp, deployment_id):
        try:
            await db.run_write(deps.delete, str(deployment_id))
        except runs.NotFound:
            raise not_found("Deployment not found") from None
        no_content(resp)


class DeploymentByName:
    async def on_get(self, req, resp, flow_name, name):
        row = await db.run(deps.read_by_name, flow_name, name)
        if row is None:
            raise not_found("Deployment not found")
        send(resp, deployment_shape(row))


async def _rows_with_schedules(query):
    return await db.run(lambda: deps.attach_schedules(list(query.dicts())))


class DeploymentFilter:
    async def on_post(self, req, resp):
        body = await read_filter_body(req)
        query, _, _ = build_query(Deployment, "deployments", body, FILTER_KEYS, SORTS, "NAME_ASC")
        send(resp, [deployment_shape(r) for r in await _rows_with_schedules(query)])


class DeploymentCount:
    async def on_post(self, req, resp):
        body = await read_filter_body(req)
        send(resp, await db.run(count_query(Deployment, "deployments", body, FILTER_KEYS).count))


class DeploymentPaginate:
    async def on_post(self, req, resp):
        body = await read_filter_body(req)
        query, limit, page = build_query(Deployment, "deployments", body, FILTER_KEYS, SORTS, "NAME_ASC", paginate=True)
        count = await db.run(count_query(Deployment, "deployments", body, FILTER_KEYS).count)
        rows = await _rows_with_schedules(query)
        send(resp, page_body([deployment_shape(r) for r in rows], count, limit, page))


class DeploymentPause:
    def __init__(self, paused: bool):
        self.paused = paused

    async def on_post(self, req, resp, deployment_id):
        try:
            await db.run_write(deps.set_paused, str(deployment_id), self.paused)
        except runs.NotFound:
            raise not_found("Deployment not found") from None
        send(resp, None)


async def _create_run(deployment_id: str, raw) -> tuple[dict, bool]:
    data = parse(DeploymentFlowRunCreate, raw).domain()
    try:
        return await db.run_write(deps.create_flow_run, deployment_id, data)
    except deps.SchemaViolation as exc:
        raise conflict(f"Error creating flow run: {exc}") from None
    except runs.NotFound as exc:
        raise not_found(str(exc)) from None
    except runs.Conflict as exc:
        raise conflict(str(exc)) from None


class DeploymentCreateFlowRun:
    async def on_post(self, req, resp, deployment_id):
        raw = await read_json(req, {})
        row, created = await _create_run(str(deployment_id), raw or {})
        send(resp, shapes.flow_run(row), 201 if created else 200)


class DeploymentCreateFlowRunBulk:
    async def on_post(self, req, resp, deployment_id):
        raw = await read_json(req)
        if not isinstance(raw, list):
            raise invalid("", "Input should be a valid list", raw, raw)
        if len(raw) > 100:
            raise invalid("", "At most 100 flow runs may be created at once", len(raw), None)
        out = []
        for item in raw:
            row, _ = await _create_run(str(deployment_id), item or {})
            out.append(shapes.flow_run(row))
        send(resp, out, 201)


class DeploymentScheduledRuns:
    async def on_post(self, req, resp):
        body = await read_model(req, ScheduledRunsRequest)
        ids = [str(i) for i in body.deployment_ids]
        rows = await db.run_write(deps.get_scheduled_flow_runs, ids, _naive(body.scheduled_before), body.limit)
        now = utcnow()
        send(resp, [shapes.flow_run(r, now) for r in rows])


class DeploymentScheduleNow:
    """POST /deployments/{id}/schedule: generate this deployment's runs now."""

    async def on_post(self, req, resp, deployment_id):
        dep = await db.run(deps.read, str(deployment_id))
        if dep is None:
            raise not_found("Deployment not found")
        await db.run_write(scheduler.schedule_deployments, [dep["id"]])
        send(resp, None, 201)


class DeploymentSchedules:
    async def on_get(self, req, resp, deployment_id):
        dep = await db.run(deps.read, str(deployment_id))
        if dep is None:
            raise not_found("Deployment not found")
        send(resp, [schedule_shape(s) for s in dep["schedules"]])

    async def on_post(self, req, resp, deployment_id):
        raw = await read_json(req)
        items = raw if isinstance(raw, list) else [raw]
        try:
            rows = await db.run_write(deps.create_schedules, str(deployment_id), items)
        except deps.Invalid as exc:
            raise _invalid(exc, raw) from None
        except runs.NotFound as exc:
            raise not_found(str(exc)) from None
        send(resp, [schedule_shape(r) for r in rows], 201)


class DeploymentScheduleById:
    async def on_patch(self, req, resp, deployment_id, schedule_id):
        raw = await read_json(req)
        changes = parse(ScheduleUpdate, raw).model_dump(exclude_unset=True)
        try:
            await db.run_write(deps.update_schedule, str(deployment_id), str(schedule_id), changes)
        except deps.Invalid as exc:
            raise invalid(f"schedule.{exc.field.removeprefix('schedule.')}", exc.message, exc.value, raw) from None
        except runs.NotFound as exc:
            raise not_found(str(exc)) from None
        no_content(resp)

    async def on_delete(self, req, resp, deployment_id, schedule_id):
        try:
            await db.run_write(deps.delete_schedule, str(deployment_id), str(schedule_id))
        except runs.NotFound as exc:
            raise not_found(str(exc)) from None
        no_content(resp)


def register(app, prefix: str) -> None:
    p = f"{prefix}/deployments"
    app.add_route(p, Deployments())
    app.add_route(f"{p}/filter", DeploymentFilter())
    app.add_route(f"{p}/count", DeploymentCount())
    app.add_route(f"{p}/paginate", DeploymentPaginate())
    app.add_route(f"{p}/get_scheduled_flow_runs", DeploymentScheduledRuns())
    app.add_route(f"{p}/name/{{flow_name}}/{{name}}", DeploymentByName())
    app.add_route(f"{p}/{{deployment_id:uuid}}", DeploymentById())
    app.add_route(f"{p}/{{deployment_id:uuid}}/pause_deployment", DeploymentPause(True))
    app.add_route(f"{p}/{{deployment_id:uuid}}/resume_deployment", DeploymentPause(False))
    app.add_route(f"{p}/{{deployment_id:uuid}}/create_flow_run", DeploymentCreateFlowRun())
    app.add_route(f"{p}/{{deployment_id:uuid}}/create_flow_run/bulk", DeploymentCreateFlowRunBulk())
    app.add_route(f"{p}/{{deployment_id:uuid}}/schedule", DeploymentScheduleNow())
    app.add_route(f"{p}/{{deployment_id:uuid}}/schedules", DeploymentSchedules())
    app.add_route(f"{p}/{{deployment_id:uuid}}/schedules/{{schedule_id:uuid}}", DeploymentScheduleById())


__all__ = ["ApiError", "register"]
