"""Deployments and their schedules; runs created from a deployment; the runner's
``get_scheduled_flow_runs``.

Every function runs inside the caller's write transaction. Upsert is by
(flow_id, name): an existing deployment is replaced (unspecified fields back to their
defaults, schedules replaced, id kept). Any change that affects what the scheduler
would generate deletes the deployment's future auto-scheduled runs, so that the next
scheduler pass regenerates them from the new definition.
"""

from __future__ import annotations

import datetime as dt

import peewee as pw

from db import database as dbmod
from db import deployment_concurrency, runs, work_pools
from db import schedules as sched
from db.fields import new_id, utcnow
from db.models import Flow, FlowRun, FlowRunState
from db.models_deployments import Deployment, DeploymentSchedule
from db.runs import Conflict, NotFound

DEFAULTS = {
    "version": None,
    "description": None,
    "paused": False,
    "concurrency_limit": None,
    "concurrency_options": None,
    "job_variables": {},
    "parameters": {},
    "tags": [],
    "labels": {},
    "work_queue_name": None,
    "work_pool_name": None,
    "parameter_openapi_schema": None,
    "path": None,
    "pull_steps": None,
    "entrypoint": None,
    "storage_document_id": None,
    "infrastructure_document_id": None,
    "enforce_parameter_schema": True,
}
COLUMNS = set(DEFAULTS)


class Invalid(ValueError):
    def __init__(self, field: str, message: str, value=None):
        super().__init__(message)
        self.field, self.message, self.value = field, message, value


class SchemaViolation(ValueError):
    pass


# --- reads --------------------------------------------------------------------------------


def read(deployment_id: str) -> dict | None:
    row = Deployment.select().where(Deployment.id == deployment_id).dicts().first()
    return _with_schedules(row) if row else None


def get(deployment_id: str) -> dict:
    row = read(deployment_id)
    if row is None:
        raise NotFound("Deployment not found")
    return row


def read_by_name(flow_name: str, name: str) -> dict | None:
    row = (
        Deployment.select(Deployment)
        .join(Flow, on=(Flow.id == Deployment.flow_id))
        .where((Flow.name == flow_name) & (Deployment.name == name))
        .dicts()
        .first()
    )
    return _with_schedules(row) if row else None


def _with_schedules(row: dict) -> dict:
    row["schedules"] = list(
        DeploymentSchedule.select()
        .where(DeploymentSchedule.deployment_id == row["id"])
        .order_by(DeploymentSchedule.created, DeploymentSchedule.id)
        .dicts()
    )
    limit = deployment_concurrency.global_limit_of(row["id"]) if row.get("concurrency_limit") is not None else None
    row["global_concurrency_limit"] = limit
    return row


def attach_schedules(rows: list[dict]) -> list[dict]:
    ids = [r["id"] for r in rows]
    by_dep: dict[str, list] = {i: [] for i in ids}
    if ids:
        for s in (
            DeploymentSchedule.select()
            .where(DeploymentSchedule.deployment_id.in_(ids))
            .order_by(DeploymentSchedule.created, DeploymentSchedule.id)
            .dicts()
        ):
            by_dep[s["deployment_id"]].append(s)
    limits = deployment_concurrency.global_limits_of([r["id"] for r in rows if r.get("concurrency_limit") is not None])
    for r in rows:
        r["schedules"] = by_dep[r["id"]]
        r["global_concurrency_limit"] = limits.get(r["id"])
    return rows


# --- writes -------------------------------------------------------------------------------


def _placement(data: dict) -> dict:
    try:
        placed = work_pools.resolve_queue(data.get("work_pool_name"), data.get("work_queue_name"))
    except NotFound:
        raise
    if placed is None:
        return {"work_queue_id": None, "work_queue_name": None, "work_pool_name": None}
    pool_name = placed["work_pool_name"] if data.get("work_pool_name") else None
    return {"work_queue_id": placed["work_queue_id"], "work_queue_name": placed["work_queue_name"],
            "work_pool_name": pool_name}


def upsert(data: dict) -> tuple[dict, bool]:
    """DeploymentCreate (validated) -> (row with schedules, created?)."""
    if Flow.select(Flow.id).where(Flow.id == data["flow_id"]).first() is None:
        raise Conflict("Data integrity conflict. The flow does not exist.")
    schedules = [_schedule_create(s, i) for i, s in enumerate(data.get("schedules") or [])]
    now = utcnow()
    values = {k: data.get(k, DEFAULTS[k]) for k in COLUMNS}
    for key in ("job_variables", "parameters", "tags", "labels"):
        if values[key] is None:
            values[key] = DEFAULTS[key]
    values["labels"] = dict(values["labels"], **{"prefect.flow.id": data["flow_id"]})
    values["pull_steps"] = values["pull_steps"] or []
    if values["parameter_openapi_schema"] is None:
        values["parameter_openapi_schema"] = {}
    values.update(_placement(data))
    query = Deployment.select().where((Deployment.flow_id == data["flow_id"]) & (Deployment.name == data["name"]))
    if dbmod.is_postgres():
        query = query.for_update()
    existing = query.dicts().first()
    if existing is None:
        row = dict(values, id=data.get("id") or new_id(), created=now, updated=now, name=data["name"],
                   flow_id=data["flow_id"], last_polled=None, status="NOT_READY",
                   created_by=data.get("created_by"), updated_by=data.get("updated_by"))
        try:
            with dbmod.database.atomic():
                Deployment.insert(row).execute()
        except pw.IntegrityError:
            existing = query.dicts().first()
            if existing is None:
                raise
    if existing is not None:
        row = dict(existing, **values, updated=now)
        Deployment.update(values, updated=now).where(Deployment.id == existing["id"]).execute()
        DeploymentSchedule.delete().where(DeploymentSchedule.deployment_id == existing["id"]).execute()
        delete_future_auto_scheduled(existing["id"])
    for s in schedules:
        _insert_schedule(row["id"], s, now)
    deployment_concurrency.sync_limit(row["id"], row["concurrency_limit"])
    return _with_schedules(row), existing is None


def update(deployment_id: str, changes: dict) -> None:
    """DeploymentUpdate (PATCH): only the fields given change; schedules by slug rules."""
    query = Deployment.select().where(Deployment.id == deployment_id)
    if dbmod.is_postgres():
        query = query.for_update()
    row = query.dicts().first()
    if row is None:
        raise NotFound("Deployment not found")
    changes = dict(changes)
    new_schedules = changes.pop("schedules", None)
    values = {k: v for k, v in changes.items() if k in COLUMNS}
    if "work_pool_name" in values or "work_queue_name" in values:
        merged = {"work_pool_name": values.get("work_pool_name", row["work_pool_name"]),
                  "work_queue_name": values.get("work_queue_name", row["work_queue_name"])}
        values.update(_placement(merged))
    if "labels" in values:
        values["labels"] = dict(values["labels"] or {}, **{"prefect.flow.id": row["flow_id"]})
    now = utcnow()
    if values:
        Deployment.update(values, updated=now).where(Deployment.id == deployment_id).execute()
    if "concurrency_limit" in values:
        deployment_concurrency.sync_limit(deployment_id, values["concurrency_limit"])
    if new_schedules is not None:
        _replace_schedules(deployment_id, new_schedules, now)
    if values or new_schedules is not None:
        delete_future_auto_scheduled(deployment_id)


def _replace_schedules(deployment_id: str, provided: list, now) -> None:
    creates = [_schedule_create(s, i) for i, s in enumerate(provided)]
    existing = list(DeploymentSchedule.select().where(DeploymentSchedule.deployment_id == deployment_id).dicts())
    all_existing_slugged = bool(existing) and all(e["slug"] for e in existing)
    if all_existing_slugged and creates and not all(c.get("slug") for c in creates):
        raise Invalid("schedules", "Please provide a slug for each schedule in your request to ensure schedules "
                      "are updated correctly.")
    if all_existing_slugged and creates and all(c.get("slug") for c in creates):
        by_slug = {e["slug"]: e for e in existing}
        wanted = {c["slug"] for c in creates}
        for e in existing:
            if e["slug"] not in wanted:
                DeploymentSchedule.delete().where(DeploymentSchedule.id == e["id"]).execute()
        for c in creates:
            if c["slug"] in by_slug:
                DeploymentSchedule.update(
                    {k: c[k] for k in ("schedule", "active", "max_scheduled_runs", "parameters")}, updated=now
                ).where(DeploymentSchedule.id == by_slug[c["slug"]]["id"]).execute()
            else:
                _insert_schedule(deployment_id, c, now)
        return
    DeploymentSchedule.delete().where(DeploymentSchedule.deployment_id == deployment_id).execute()
    for c in creates:
        _insert_schedule(deployment_id, c, now)


def delete(deployment_id: str) -> None:
    if Deployment.select(Deployment.id).where(Deployment.id == deployment_id).first() is None:
        raise NotFound("Deployment not found")
    delete_future_scheduled(deployment_id)
    DeploymentSchedule.delete().where(DeploymentSchedule.deployment_id == deployment_id).execute()
    Deployment.delete().where(Deployment.id == deployment_id).execute()
    deployment_concurrency.sync_limit(deployment_id, None)


def set_paused(deployment_id: str, paused: bool) -> None:
    if not Deployment.update(paused=paused, updated=utcnow()).where(Deployment.id == deployment_id).execute():
        raise NotFound("Deployment not found")
    if paused:
        delete_future_auto_scheduled(deployment_id)


def _delete_runs(run_ids) -> int:
    ids = [r for (r,) in run_ids.tuples()]
    if not ids:
        return 0
    FlowRunState.delete().where(FlowRunState.flow_run_id.in_(ids)).execute()
    return FlowRun.delete().where(FlowRun.id.in_(ids)).execute()


def delete_future_auto_scheduled(deployment_id: str) -> int:
    """Auto-scheduled, never-run SCHEDULED runs (not waiting for a slot) go; the scheduler regenerates."""
    return _delete_runs(
        FlowRun.select(FlowRun.id).where(
            (FlowRun.deployment_id == deployment_id)
            & (FlowRun.auto_scheduled == True)  # noqa: E712
            & (FlowRun.state_type == "SCHEDULED")
            & (FlowRun.run_count == 0)
            & (FlowRun.state_name != "AwaitingConcurrencySlot")
            & (FlowRun.next_scheduled_start_time >= utcnow())
        )
    )


def delete_future_scheduled(deployment_id: str) -> int:
    return _delete_runs(
        FlowRun.select(FlowRun.id).where(
            (FlowRun.deployment_id == deployment_id)
            & (FlowRun.state_type == "SCHEDULED")
            & (FlowRun.run_count == 0)
        )
    )


# --- schedules -----------------------------------------------------------------------------


def _schedule_create(data, index: int | None = None) -> dict:
    prefix = f"schedules.{index}." if index is not None else ""
    if not isinstance(data, dict):
        raise Invalid(prefix.rstrip(".") or "body", "Input should be a valid dictionary", data)
    if "schedule" not in data or data["schedule"] is None:
        raise Invalid(f"{prefix}schedule", "Field required", None)
    try:
        schedule = sched.normalize(data["schedule"])
    except sched.ScheduleError as exc:
        raise Invalid(prefix + exc.field, exc.message, exc.value) from None
    max_runs = data.get("max_scheduled_runs")
    if max_runs is not None and (isinstance(max_runs, bool) or not isinstance(max_runs, int) or max_runs <= 0):
        raise Invalid(f"{prefix}max_scheduled_runs", "Input should be greater than 0", max_runs)
    params = data.get("parameters") or {}
    if not isinstance(params, dict):
        raise Invalid(f"{prefix}parameters", "Input should be a valid dictionary", params)
    active = data.get("active", True)
    return {"schedule": schedule, "active": True if active is None else bool(active),
            "max_scheduled_runs": max_runs, "parameters": params, "slug": data.get("slug")}


def _insert_schedule(deployment_id: str, create: dict, now) -> dict:
    row = dict(create, id=new_id(), created=now, updated=now, deployment_id=deployment_id)
    DeploymentSchedule.insert(row).execute()
    return row


def create_schedules(deployment_id: str, items: list) -> list[dict]:
    get(deployment_id)
    creates = [_schedule_create(s, i) for i, s in enumerate(items)]
    now = utcnow()
    rows = [_insert_schedule(deployment_id, c, now) for c in creates]
    delete_future_auto_scheduled(deployment_id)
    return rows


def update_schedule(deployment_id: str, schedule_id: str, changes: dict) -> None:
    existing = DeploymentSchedule.select().where(
        (DeploymentSchedule.id == schedule_id) & (DeploymentSchedule.deployment_id == deployment_id)
    ).dicts().first()
    if existing is None:
        raise NotFound("Schedule not found.")
    values = {}
    if changes.get("schedule") is not None:
        try:
            values["schedule"] = sched.normalize(changes["schedule"])
        except sched.ScheduleError as exc:
            raise Invalid(exc.field, exc.message, exc.value) from None
    for key in ("active", "max_scheduled_runs", "parameters", "slug"):
        if key in changes:
            values[key] = changes[key]
    if values:
        DeploymentSchedule.update(values, updated=utcnow()).where(DeploymentSchedule.id == schedule_id).execute()
    delete_future_auto_scheduled(deployment_id)


def delete_schedule(deployment_id: str, schedule_id: str) -> None:
    deleted = DeploymentSchedule.delete().where(
        (DeploymentSchedule.id == schedule_id) & (DeploymentSchedule.deployment_id == deployment_id)
    ).execute()
    if not deleted:
        raise NotFound("Schedule not found.")
    delete_future_auto_scheduled(deployment_id)


# --- runs from a deployment ----------------------------------------------------------------


def validate_parameters(schema: dict | None, parameters: dict) -> None:
    if not schema:
        return
    import jsonschema

    validator_cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        errors = sorted(validator_cls(schema).iter_errors(parameters), key=lambda e: list(e.path))
    except jsonschema.exceptions.SchemaError:
        return  # a schema the SDK produced but we cannot read is not the caller's fault
    if errors:
        err = errors[0]
        where = ".".join(str(p) for p in err.path) or "parameters"
        raise SchemaViolation(f"Validation failed for field '{where}'. Failure reason: {err.message}")


def _hydrate(value):
    """Prefect's ``__prefect_kind`` placeholders: json and none decode; others pass through."""
    if isinstance(value, dict):
        kind = value.get("__prefect_kind")
        if kind == "json" and isinstance(value.get("value"), str):
            import orjson

            try:
                return orjson.loads(value["value"])
            except orjson.JSONDecodeError:
                return value["value"]
        if kind == "none":
            return None
        if kind in ("jinja", "workspace_variable") and "value" in value:
            return value
        return {k: _hydrate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_hydrate(v) for v in value]
    return value


def create_flow_run(deployment_id: str, data: dict) -> tuple[dict, bool]:
    """DeploymentFlowRunCreate -> (run row, created?). 409 (SchemaViolation) on bad parameters."""
    dep = get(deployment_id)
    parameters = _hydrate({**(dep["parameters"] or {}), **(data.get("parameters") or {})})
    enforce = data.get("enforce_parameter_schema")
    if enforce is None:
        enforce = dep["enforce_parameter_schema"]
    if enforce:
        validate_parameters(dep["parameter_openapi_schema"], parameters)
    placement = {"work_queue_id": dep["work_queue_id"], "work_queue_name": dep["work_queue_name"],
                 "work_pool_name": None, "work_pool_id": None}
    if dep["work_queue_id"]:
        queue = work_pools.read_queue_by_id(dep["work_queue_id"])
        if queue:
            placement["work_pool_id"] = queue["work_pool_id"]
            placement["work_pool_name"] = queue["work_pool_name"]
            if data.get("work_queue_name") and data["work_queue_name"] != queue["name"]:
                placement.update(work_pools.resolve_queue(queue["work_pool_name"], data["work_queue_name"],
                                                          create_missing=True))
    state = data.get("state") or {"type": "SCHEDULED", "name": "Scheduled"}
    if state.get("type") == "SCHEDULED":
        details = dict(state.get("state_details") or {})
        details.setdefault("scheduled_time", None)
        if details["scheduled_time"] is None:
            details["scheduled_time"] = utcnow()
        state = dict(state, state_details=details)
    labels = {**(dep["labels"] or {}), **(data.get("labels") or {})}
    policy = dict(data.get("empirical_policy") or {})
    run = {
        "flow_id": dep["flow_id"],
        "deployment_id": dep["id"],
        "deployment_version": dep["version"],
        "name": data.get("name"),
        "parameters": parameters,
        "context": data.get("context") or {},
        "tags": list(dict.fromkeys([*(dep["tags"] or []), *(data.get("tags") or [])])),
        "labels": labels,
        "idempotency_key": data.get("idempotency_key"),
        "parent_task_run_id": data.get("parent_task_run_id"),
        "job_variables": data.get("job_variables") or {},
        "infrastructure_document_id": data.get("infrastructure_document_id") or dep["infrastructure_document_id"],
        "empirical_policy": policy,
        "state": state,
        "created_by": data.get("created_by"),
        "work_queue_id": placement["work_queue_id"],
        "work_queue_name": placement["work_queue_name"],
        "work_pool_id": placement["work_pool_id"],
        "work_pool_name": placement["work_pool_name"],
    }
    return runs.create_flow_run(run)


def get_scheduled_flow_runs(deployment_ids: list[str], before: dt.datetime | None, limit: int | None) -> list[dict]:
    """The runner's poll: SCHEDULED runs of these deployments due by ``before``; marks them READY."""
    now = utcnow()
    if deployment_ids:
        Deployment.update(last_polled=now, status="READY").where(Deployment.id.in_(deployment_ids)).execute()
    query = FlowRun.select().where(FlowRun.deployment_id.in_(deployment_ids) & (FlowRun.state_type == "SCHEDULED"))
    if before is not None:
        query = query.where(FlowRun.next_scheduled_start_time <= before)
    return list(query.order_by(FlowRun.next_scheduled_start_time).limit(limit or 200).dicts())
