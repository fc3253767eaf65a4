"""``/deployments``: the list (name search, keyset pages) and one deployment: details,
schedules (each one's active toggle), pause / resume, recent runs, and "Run" with a form
generated from its ``parameter_openapi_schema`` (ui.schema_form), prefilled with the
deployment's parameters over the schema's defaults.

A run is created exactly as ``POST /deployments/{id}/create_flow_run`` creates it: the
API's own body model (api.deployments.DeploymentFlowRunCreate) and db.deployments.create_flow_run,
which merges the deployment's parameters and enforces the schema; then 303 to the run's page.
"""

from __future__ import annotations

import orjson

from api.deployments import DeploymentFlowRunCreate
from db import console_admin as reads
from db import database as db
from db import deployments as deps
from db import runs
from ui import schema_form as sf
from ui.admin_common import flash, pager_urls, require_uuid
from ui.errors import PageError
from ui.forms import read_form
from ui.render import format_duration, redirect, render

MESSAGES = {
    "paused": "Deployment paused: its schedules create no runs.", "resumed": "Deployment resumed.",
    "schedule-on": "Schedule activated.", "schedule-off": "Schedule paused.",
}
# Inputs beside the generated ones (those are all named "f.<parameter>").
PARAMETERS_JSON = "parameters_json"  # the one input of a deployment without a usable schema
RUN_NAME, RUN_TAGS = "run_name", "run_tags"


def describe_schedule(schedule: dict) -> str:
    """'every 1h 00m', 'cron 0 3 * * *', 'rrule FREQ=DAILY' (+ the time zone)."""
    zone = schedule.get("timezone")
    suffix = f" ({zone})" if zone else ""
    if "interval" in schedule:
        return f"every {format_duration(schedule['interval'])}{suffix}"
    if "cron" in schedule:
        return f"cron {schedule['cron']}{suffix}"
    if "rrule" in schedule:
        return f"rrule {schedule['rrule']}{suffix}"
    return orjson.dumps(schedule).decode()


class DeploymentList:
    async def on_get(self, req, resp):
        search = (req.get_param("q") or "").strip()
        after, before = req.get_param("after"), req.get_param("before")
        for cursor in (after, before):
            if cursor:
                require_uuid(cursor, "deployment")
        page = await db.run(reads.deployments_page, search, after, before)
        next_url, prev_url = pager_urls("/deployments", page, q=search)
        render(req, resp, "deployments.html", page=page, search=search, next_url=next_url, prev_url=prev_url)


async def _deployment(deployment_id: str) -> dict:
    dep = await db.run(deps.read, require_uuid(deployment_id, "deployment"))
    if dep is None:
        raise PageError(404, "Deployment not found.")
    return dep


class DeploymentPage:
    async def on_get(self, req, resp, deployment_id):
        dep = await _deployment(deployment_id)

        def read():
            return reads.flow_name(dep["flow_id"]), reads.deployment_runs(dep["id"])

        flow_name, recent = await db.run(read)
        render(req, resp, "deployment.html", dep=dep, flow_name=flow_name, recent=recent,
               describe_schedule=describe_schedule, message=flash(req, MESSAGES))


class DeploymentPause:
    def __init__(self, paused: bool):
        self.paused = paused

    async def on_post(self, req, resp, deployment_id):
        await read_form(req)
        dep_id = require_uuid(deployment_id, "deployment")
        try:
            await db.run_write(deps.set_paused, dep_id, self.paused)
        except runs.NotFound:
            raise PageError(404, "Deployment not found.") from None
        redirect(resp, f"/deployments/deployment/{dep_id}?msg={'paused' if self.paused else 'resumed'}")


class ScheduleToggle:
    async def on_post(self, req, resp, deployment_id, schedule_id):
        await read_form(req)
        dep = await _deployment(deployment_id)
        wanted = require_uuid(schedule_id, "schedule")
        schedule = next((s for s in dep["schedules"] if s["id"] == wanted), None)
        if schedule is None:
            raise PageError(404, "Schedule not found.")
        try:
            await db.run_write(deps.update_schedule, dep["id"], schedule["id"], {"active": not schedule["active"]})
        except runs.NotFound:
            raise PageError(404, "Schedule not found.") from None
        code = "schedule-off" if schedule["active"] else "schedule-on"
        redirect(resp, f"/deployments/deployment/{dep['id']}?msg={code}")


# --- the run form -----------------------------------------------------------------------------


def run_fields(dep: dict) -> list[sf.Field]:
    try:
        return sf.build(dep.get("parameter_openapi_schema") or {})
    except (TypeError, ValueError, AttributeError):
        return []  # a schema we cannot read: the parameters are given as JSON instead


def initial_values(dep: dict, fields: list[sf.Field]) -> dict:
    parameters = dep.get("parameters") or {}
    if not fields:
        return {PARAMETERS_JSON: orjson.dumps(parameters, option=orjson.OPT_INDENT_2).decode(), RUN_NAME: "", RUN_TAGS: ""}
    return {**sf.display(fields, parameters), RUN_NAME: "", RUN_TAGS: ""}


def read_run_form(dep: dict, fields: list[sf.Field], form: dict) -> tuple[dict, dict]:
    """(DeploymentFlowRunCreate body, errors by field path / input name)."""
    errors: dict[str, str] = {}
    if fields:
        parameters, errors = sf.parse(fields, form)
        if not errors and dep.get("enforce_parameter_schema", True):
            errors.update(sf.validate(dep.get("parameter_openapi_schema"), parameters, fields))
    else:
        raw = sf.text(form, PARAMETERS_JSON)
        parameters = {}
        if raw:
            try:
                parameters = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                errors[PARAMETERS_JSON] = f"Must be valid JSON ({exc.args[0].split(':')[0]})."
            if not isinstance(parameters, dict):
                errors[PARAMETERS_JSON] = "Must be a JSON object of parameter names and values."
                parameters = {}
    name, tags = sf.text(form, RUN_NAME), sf.text(form, RUN_TAGS)
    sf.no_nul({RUN_NAME: name, RUN_TAGS: tags}, errors)
    body = {"parameters": parameters, "name": name or None, "tags": sf.tags_list(tags)}
    return body, errors


def _run_page(req, resp, dep, fields, values, errors, status=200):
    render(req, resp, "_admin_deployment_run.html", status=status, dep=dep, fields=fields, values=values,
           errors=errors, parameters_json=PARAMETERS_JSON)


class DeploymentRun:
    async def on_get(self, req, resp, deployment_id):
        dep = await _deployment(deployment_id)
        fields = run_fields(dep)
        _run_page(req, resp, dep, fields, initial_values(dep, fields), {})

    async def on_post(self, req, resp, deployment_id):
        dep = await _deployment(deployment_id)
        form = await read_form(req)
        fields = run_fields(dep)
        body, errors = read_run_form(dep, fields, form)
        if not errors:
            data = DeploymentFlowRunCreate.model_validate(body).domain()
            try:
                row, _ = await db.run_write(deps.create_flow_run, dep["id"], data)
            except deps.SchemaViolation as exc:
                errors[sf.FORM_ERROR] = str(exc)
            except runs.NotFound as exc:
                raise PageError(404, str(exc)) from None
            except runs.Conflict as exc:
                errors[sf.FORM_ERROR] = str(exc)
            else:
                redirect(resp, f"/runs/flow-run/{row['id']}")
                return
        values = sf.echo(fields, form) if fields else {PARAMETERS_JSON: sf.text(form, PARAMETERS_JSON, strip=False)}
        values.update({RUN_NAME: sf.text(form, RUN_NAME), RUN_TAGS: sf.text(form, RUN_TAGS)})
        _run_page(req, resp, dep, fields, values, errors, status=422)


def register(app) -> None:
    app.add_route("/deployments", DeploymentList())
    app.add_route("/deployments/deployment/{deployment_id}", DeploymentPage())
    app.add_route("/deployments/deployment/{deployment_id}/pause", DeploymentPause(True))
    app.add_route("/deployments/deployment/{deployment_id}/resume", DeploymentPause(False))
    app.add_route("/deployments/deployment/{deployment_id}/run", DeploymentRun())
    app.add_route("/deployments/deployment/{deployment_id}/schedule/{schedule_id}/toggle", ScheduleToggle())
