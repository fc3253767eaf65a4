"""Flow-run inputs (key/value strings behind pause/resume ``wait_for_input`` and
``send_input``/``receive_input``) and resuming a paused run."""

from __future__ import annotations

import orjson
import peewee as pw

from db import database as dbmod
from db import runs
from db.fields import new_id, utcnow
from db.models import FlowRun
from db.models_deployments import FlowRunInput
from db.orchestration import ABORT, REJECT


def create(flow_run_id: str, key: str, value: str, sender: str | None) -> dict:
    if FlowRun.select(FlowRun.id).where(FlowRun.id == flow_run_id).first() is None:
        raise runs.NotFound("Flow run not found")
    now = utcnow()
    row = {"id": new_id(), "created": now, "updated": now, "flow_run_id": flow_run_id, "key": key,
           "value": value, "sender": sender}
    try:
        with dbmod.database.atomic():
            FlowRunInput.insert(row).execute()
    except pw.IntegrityError:
        raise runs.Conflict("A flow run input with this key already exists.") from None
    return row


def read(flow_run_id: str, key: str) -> dict | None:
    return FlowRunInput.select().where((FlowRunInput.flow_run_id == flow_run_id) & (FlowRunInput.key == key)).dicts().first()


def filter_inputs(flow_run_id: str, prefix: str, limit: int, exclude_keys: list[str]) -> list[dict]:
    query = FlowRunInput.select().where(
        (FlowRunInput.flow_run_id == flow_run_id) & FlowRunInput.key.startswith(prefix)
    )
    if exclude_keys:
        query = query.where(FlowRunInput.key.not_in(exclude_keys))
    return list(query.order_by(FlowRunInput.created, FlowRunInput.id).limit(limit).dicts())


def delete(flow_run_id: str, key: str) -> None:
    if not FlowRunInput.delete().where((FlowRunInput.flow_run_id == flow_run_id) & (FlowRunInput.key == key)).execute():
        raise runs.NotFound("Flow run input not found")


def _result(state, status, reason):
    kind = "abort_details" if status == ABORT else "reject_details"
    return {"state": state, "status": status, "details": {"type": kind, "reason": reason}}


def resume(flow_run_id: str, run_input: dict | None) -> tuple[bool, dict]:
    """POST /flow_runs/{id}/resume: validate ``run_input`` against the pause's keyset schema,
    propose RUNNING (or SCHEDULED "Resuming" for a suspended deployment run), store the input."""
    run = runs.read_flow_run(flow_run_id)
    if run is None:
        raise runs.NotFound("Flow run not found")
    state = run["state"]
    if state is None or state["type"] != "PAUSED":
        return False, {"state": None, "status": ABORT,
                       "details": {"type": "abort_details", "reason": "Cannot resume a flow run that is not paused."}}
    details = state.get("state_details") or {}
    keyset = details.get("run_input_keyset")
    if keyset:
        run_input = run_input or {}
        schema_row = read(flow_run_id, keyset["schema"])
        if schema_row is None:
            return False, _result(state, REJECT, "Run input schema not found.")
        try:
            schema = orjson.loads(schema_row["value"])
        except orjson.JSONDecodeError:
            return False, _result(state, REJECT, "Run input schema is not valid JSON.")
        problem = _validate(run_input, schema)
        if problem:
            return False, _result(state, REJECT, f"Reason: {problem}")
    if details.get("pause_reschedule"):
        proposal = {"type": "SCHEDULED", "name": "Resuming", "state_details": {"scheduled_time": utcnow()}}
    else:
        proposal = {"type": "RUNNING", "name": "Running"}
    written, result = runs.set_flow_run_state(flow_run_id, proposal)
    if keyset and run_input and result["status"] == "ACCEPT":
        create(flow_run_id, keyset["response"], orjson.dumps(run_input).decode(), None)
    return written, result


def _validate(value, schema) -> str | None:
    import jsonschema

    try:
        validator_cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        errors = sorted(validator_cls(schema).iter_errors(value), key=lambda e: list(e.path))
    except (jsonschema.exceptions.SchemaError, RecursionError):
        return "Invalid schema."
    if not errors:
        return None
    err = errors[0]
    where = ".".join(str(p) for p in err.path) or "run_input"
    return f"Validation failed for field '{where}'. Failure reason: {err.message}"
