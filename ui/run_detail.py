"""``/runs/flow-run/<id>`` and ``/runs/task-run/<id>``: one run, at Prefect's URLs (so links
from notifications and the SDK's "View at ..." land here), and the flow run's actions.

A flow run's page: header (state, flow / deployment / work pool links, times, counts,
actions), state history (a strip and the list), parameters, task runs (a server-drawn SVG
timeline, ui.timeline, and a keyset-paged table), subflows, logs (level filter, keyset pages
on (timestamp, id); the newest lines by default) and artifacts (ui.artifacts). While the run
is not terminal its header, states, task runs and logs tail are ``data-live`` blocks that
app.js refreshes with ``?fragment=NAME``; each fragment request reads only what its block
shows. A terminal run's page has no live block, so nothing polls it.

Actions are POST forms (CSRF checked by ui.forms.read_form) answered with a 303 back to the
page and a ``?msg=`` code, or a 409 page when the run's state does not allow them:

- Cancel (SCHEDULED, PENDING, RUNNING, PAUSED): as Prefect's UI, a forced CANCELLING
  proposal; the orchestration rule that still runs when forced
  (db.orchestration.bypass_cancelling_runs_with_no_infra) makes it CANCELLED outright for
  a scheduled run with no infrastructure, a "Resuming" run or a suspended one;
- Retry (a terminal run of a deployment, as Prefect's UI offers it: a worker must pick the
  retry up): a forced SCHEDULED "AwaitingRetry" state, message "Retry from the UI";
- Resume (PAUSED): through db.flow_run_inputs.resume, as ``POST /flow_runs/{id}/resume``, so
  the input is validated against the pause's RunInput schema exactly as the API does. The
  input form is generated from that schema (ui.schema_form); a wrong value re-renders the
  form with its message (422), never a 500.
"""

from __future__ import annotations

import orjson
from markupsafe import escape

from db import console_run_detail as reads
from db import database as db
from db import flow_run_inputs, runs
from db.console_admin import valid_uuid
from db.fields import utcnow
from db.states import TERMINAL, parse_datetime
from ui import artifacts as artifact_views
from ui import schema_form as sf
from ui import timeline
from ui.admin_common import flash, page_url, require_uuid
from ui.errors import PageError
from ui.forms import read_form
from ui.render import pretty_json, redirect, render

MESSAGES = {
    "cancelling": "Cancellation requested: the run is Cancelling until its infrastructure stops it.",
    "cancelled": "The run is cancelled.",
    "retrying": "The run is scheduled again (AwaitingRetry): a worker of its deployment picks it up.",
    "resumed": "The run is resumed.",
    "resume-timed-out": "The pause had timed out: the run could not resume and has failed.",
}
CANCELLABLE = ("SCHEDULED", "PENDING", "RUNNING", "PAUSED")
LIVE_INTERVAL_MS = 3000
FLOW_BLOCKS = ("header", "states", "tasks", "logs")
TASK_BLOCKS = ("header", "states", "logs")
RUN_INPUT_JSON = "run_input_json"  # the one input of a pause whose schema has no usable fields
# What a page of logs shows of each line: long messages (tracebacks) are cut so that a page
# of LOG_PAGE lines stays within the page budget; a line past LOG_BUDGET characters is cut short.
LOG_MESSAGE_CAP = 1500
LOG_BUDGET = 30_000  # bytes of escaped message text on one page of lines
LOG_SHORT_CAP = 160
PARAMETERS_CAP = 10_000


# --- small helpers ----------------------------------------------------------------------------


def encode_cursor(cursor: tuple | None) -> str | None:
    """(timestamp, id) of a log line -> the ``after`` / ``before`` value of a pager link."""
    if cursor is None:
        return None
    moment, log_id = cursor
    return f"{moment.isoformat(timespec='microseconds')}_{log_id}"


def decode_cursor(text: str | None) -> tuple | None:
    """The (timestamp, id) of a pager link's cursor; a 400 page when it is not one."""
    if not text:
        return None
    moment, _, log_id = text.rpartition("_")
    try:
        parsed = parse_datetime(moment)
    except ValueError:
        parsed = None
    log_id = valid_uuid(log_id)
    if parsed is None or log_id is None:
        raise PageError(400, "The log page's position in the link is not valid.")
    return parsed, log_id


def trim_logs(rows: list[dict]) -> None:
    """Cut long messages in place (``cut`` = characters not shown): each to LOG_MESSAGE_CAP,
    and once the page holds LOG_BUDGET bytes of (escaped) text, the rest to LOG_SHORT_CAP."""
    used = 0
    for row in rows:
        cap = LOG_MESSAGE_CAP if used < LOG_BUDGET else LOG_SHORT_CAP
        message = row["message"]
        row["cut"] = max(len(message) - cap, 0)
        if row["cut"]:
            row["message"] = message[:cap]
        used += len(escape(row["message"]))


def log_time(moment) -> str:
    return moment.strftime("%H:%M:%S.%f")[:-3] if moment else ""


def clipped_json(value, cap: int = PARAMETERS_CAP) -> str:
    text = pretty_json(value)
    return text if len(text) <= cap else text[:cap] + "\n… (cut: the rest is in the API's answer)"


def count_text(count: int) -> str:
    return f"{reads.COUNT_CAP}+" if count > reads.COUNT_CAP else str(count)


def _live(row: dict) -> bool:
    return (row.get("state_type") or "") not in TERMINAL


def _wanted(req, blocks: tuple[str, ...]) -> set[str]:
    """The sections to read: the one block of a ``?fragment=`` refresh, else all of them."""
    fragment = req.get_param("fragment")
    return {fragment} if fragment in blocks else {*blocks, "static"}


class LogQuery:
    """The logs part of a run page's URL: ``level``, and ``after`` / ``before`` cursors
    (``after=start`` is the first page)."""

    def __init__(self, req):
        self.level = (req.get_param("level") or "").strip().upper()
        if self.level not in reads.LEVELS:
            self.level = ""
        after, before = req.get_param("after"), req.get_param("before")
        self.from_start = after == "start"
        self.after = None if self.from_start else decode_cursor(after)
        self.before = decode_cursor(before) if not after else None

    @property
    def paged(self) -> bool:
        return self.from_start or self.after is not None or self.before is not None

    def read(self, **owner) -> dict:
        page = reads.logs(min_level=reads.level_number(self.level), after=self.after, before=self.before,
                          from_start=self.from_start, **owner)
        trim_logs(page["rows"])
        return page

    def urls(self, path: str, page: dict) -> dict:
        level = self.level or None
        return {
            "next": page_url(path, level=level, after=encode_cursor(page["next"])) + "#logs"
            if page["next"] else None,
            "prev": page_url(path, level=level, before=encode_cursor(page["prev"])) + "#logs"
            if page["prev"] else None,
            "start": page_url(path, level=level, after="start") + "#logs" if page["prev"] else None,
            "newest": page_url(path, level=level) + "#logs" if not page["tail"] or self.paged else None,
        }


def _artifact_page(owner: dict, after: str | None) -> dict:
    page = reads.artifacts(after=after, **owner)
    page["views"] = [artifact_views.view(r) for r in page["rows"]]
    return page


# --- the flow run page ------------------------------------------------------------------------


def _flow_run_view(run_id: str, wanted: set[str], logs: LogQuery, tasks_after: str | None,
                   artifacts_after: str | None) -> dict | None:
    run = reads.flow_run(run_id)
    if run is None:
        return None
    now = utcnow()
    view = {"run": run, "now": now, "live": _live(run)}
    if "header" in wanted:
        view["task_count"] = reads.task_run_count(run_id)
        view["duration"] = reads.elapsed(run, now)
    if "states" in wanted:
        view["states"] = reads.flow_run_states(run_id)
        view["strip"] = timeline.state_strip(view["states"]["rows"], run.get("end_time"), now)
    if "tasks" in wanted:
        if tasks_after:
            view["tasks"] = reads.task_runs(run_id, tasks_after)
            first = reads.task_runs(run_id, None, reads.TIMELINE_ROWS)["rows"]
        else:
            first = reads.task_runs(run_id, None, reads.TIMELINE_ROWS)["rows"]
            shown = first[:reads.TASK_PAGE]
            more = len(first) > reads.TASK_PAGE
            view["tasks"] = {"rows": shown, "next": shown[-1]["id"] if shown and more else None}
        count = view.get("task_count")
        if count is None:
            count = reads.task_run_count(run_id)
        view["task_total"] = count
        view["timeline"] = timeline.task_bars(first, now, total=min(count, reads.COUNT_CAP))
        for row in view["tasks"]["rows"]:
            row["duration"] = reads.elapsed(row, now)
    if "logs" in wanted:
        view["logs"] = logs.read(flow_run_id=run_id)
    if "static" in wanted:
        view["subflows"] = reads.subflow_runs(run_id)
        view["artifacts"] = _artifact_page({"flow_run_id": run_id}, artifacts_after)
        view["resume"] = reads.resume_input(run)
    return view


def actions_for(run: dict) -> dict:
    state = run.get("state") or {}
    paused = run.get("state_type") == "PAUSED"
    keyset = (state.get("state_details") or {}).get("run_input_keyset")
    return {
        "cancel": run.get("state_type") in CANCELLABLE,
        "retry": run.get("state_type") in TERMINAL and bool(run.get("deployment_id")),
        "resume": paused,
        "resume_input": paused and isinstance(keyset, dict) and bool(keyset.get("schema")),
    }


def resume_fields(resume: dict | None) -> list[sf.Field]:
    if not resume or not resume.get("schema"):
        return []
    try:
        return sf.build(resume["schema"])
    except (TypeError, ValueError, AttributeError):
        return []  # a schema we cannot make a form of: the input is typed as JSON instead


def _resume_context(resume: dict | None, values: dict | None = None, errors: dict | None = None) -> dict:
    fields = resume_fields(resume)
    if values is None:
        values = sf.display(fields, {}) if fields else {RUN_INPUT_JSON: "{}"}
    description = None
    if resume and resume.get("description"):
        description = artifact_views.markdown_html(resume["description"], 4000)[0]
    return {"resume": resume, "resume_fields": fields, "resume_values": values, "resume_errors": errors or {},
            "resume_description": description, "run_input_json": RUN_INPUT_JSON}


class FlowRunPage:
    async def on_get(self, req, resp, run_id):
        run_id = require_uuid(run_id, "flow run")
        logs = LogQuery(req)
        tasks_after = req.get_param("tasks_after")
        artifacts_after = req.get_param("artifacts_after")
        for cursor, what in ((tasks_after, "task run"), (artifacts_after, "artifact")):
            if cursor:
                require_uuid(cursor, what)
        view = await db.run(_flow_run_view, run_id, _wanted(req, FLOW_BLOCKS), logs, tasks_after, artifacts_after)
        if view is None:
            raise PageError(404, "Flow run not found.")
        path = f"/runs/flow-run/{run_id}"
        extra = {}
        if "artifacts" in view:
            art = view["artifacts"]
            extra["artifacts_next"] = page_url(path, artifacts_after=art["next"]) + "#artifacts" if art["next"] else None
            extra.update(_resume_context(view.pop("resume")))
        if "tasks" in view:
            nxt = view["tasks"]["next"]
            extra["tasks_next"] = page_url(path, tasks_after=nxt) + "#task-runs" if nxt else None
            extra["tasks_first"] = path + "#task-runs" if tasks_after else None
        if "logs" in view:
            extra["log_urls"] = logs.urls(path, view["logs"])
        render(req, resp, "flow_run.html", **view, **extra, path=path, actions=actions_for(view["run"]),
               log_level=logs.level, logs_paged=logs.paged, levels=list(reads.LEVELS),
               message=flash(req, MESSAGES), interval=LIVE_INTERVAL_MS, count_text=count_text,
               log_time=log_time, clipped_json=clipped_json)


# --- the task run page ------------------------------------------------------------------------


def _task_run_view(task_run_id: str, wanted: set[str], logs: LogQuery, artifacts_after: str | None) -> dict | None:
    task = reads.task_run(task_run_id)
    if task is None:
        return None
    now = utcnow()
    view = {"task": task, "now": now, "live": _live(task), "duration": reads.elapsed(task, now)}
    if "states" in wanted:
        view["states"] = reads.task_run_states(task_run_id)
        view["strip"] = timeline.state_strip(view["states"]["rows"], task.get("end_time"), now)
    if "logs" in wanted:
        view["logs"] = logs.read(task_run_id=task_run_id)
    if "static" in wanted:
        view["artifacts"] = _artifact_page({"task_run_id": task_run_id}, artifacts_after)
    return view


class TaskRunPage:
    async def on_get(self, req, resp, task_run_id):
        task_run_id = require_uuid(task_run_id, "task run")
        logs = LogQuery(req)
        artifacts_after = req.get_param("artifacts_after")
        if artifacts_after:
            require_uuid(artifacts_after, "artifact")
        view = await db.run(_task_run_view, task_run_id, _wanted(req, TASK_BLOCKS), logs, artifacts_after)
        if view is None:
            raise PageError(404, "Task run not found.")
        path = f"/runs/task-run/{task_run_id}"
        extra = {}
        if "artifacts" in view:
            art = view["artifacts"]
            extra["artifacts_next"] = page_url(path, artifacts_after=art["next"]) + "#artifacts" if art["next"] else None
        if "logs" in view:
            extra["log_urls"] = logs.urls(path, view["logs"])
        render(req, resp, "task_run.html", **view, **extra, path=path, log_level=logs.level, logs_paged=logs.paged,
               levels=list(reads.LEVELS), interval=LIVE_INTERVAL_MS, log_time=log_time, clipped_json=clipped_json)


# --- actions ----------------------------------------------------------------------------------


async def _run_for_action(run_id: str) -> dict:
    run = await db.run(runs.read_flow_run, require_uuid(run_id, "flow run"))
    if run is None:
        raise PageError(404, "Flow run not found.")
    return run


def _refused(run: dict, what: str) -> PageError:
    state = run.get("state_name") or run.get("state_type") or "no state"
    return PageError(409, f"The flow run {run['name']} is {state}: it cannot be {what}.")


def _reason(result: dict) -> str:
    return (result.get("details") or {}).get("reason") or "The server refused the change."


class FlowRunCancel:
    async def on_post(self, req, resp, run_id):
        await read_form(req)
        run = await _run_for_action(run_id)
        if run.get("state_type") not in CANCELLABLE:
            raise _refused(run, "cancelled")
        proposal = {"type": "CANCELLING", "name": "Cancelling"}
        try:
            written, result = await db.run_write(runs.set_flow_run_state, run["id"], proposal, True)
        except runs.NotFound:
            raise PageError(404, "Flow run not found.") from None
        if not written:
            raise PageError(409, _reason(result))
        code = "cancelled" if result["state"]["type"] == "CANCELLED" else "cancelling"
        redirect(resp, f"/runs/flow-run/{run['id']}?msg={code}")


class FlowRunRetry:
    async def on_post(self, req, resp, run_id):
        await read_form(req)
        run = await _run_for_action(run_id)
        if run.get("state_type") not in TERMINAL:
            raise _refused(run, "retried")
        if not run.get("deployment_id"):
            raise PageError(409, f"The flow run {run['name']} was not started from a deployment: only a "
                                 "deployment's runs can be retried here (a worker picks the retry up).")
        proposal = {"type": "SCHEDULED", "name": "AwaitingRetry", "message": "Retry from the UI"}
        try:
            written, result = await db.run_write(runs.set_flow_run_state, run["id"], proposal, True)
        except runs.NotFound:
            raise PageError(404, "Flow run not found.") from None
        if not written or result["state"]["type"] != "SCHEDULED":
            raise PageError(409, _reason(result))
        redirect(resp, f"/runs/flow-run/{run['id']}?msg=retrying")


def read_resume_form(fields: list[sf.Field], resume: dict, form: dict) -> tuple[dict, dict]:
    """(run input, errors by field path) of a submitted resume form."""
    if fields:
        value, errors = sf.parse(fields, form)
        if not errors:
            errors = sf.validate(resume["schema"], value, fields)
        return value, errors
    text = sf.text(form, RUN_INPUT_JSON) or "{}"
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return {}, {RUN_INPUT_JSON: f"Must be valid JSON ({exc.args[0].split(':')[0]})."}
    if not isinstance(value, dict):
        return {}, {RUN_INPUT_JSON: "Must be a JSON object."}
    return value, {}


class FlowRunResume:
    """GET: the resume form of a paused run (the run page shows it too); POST: resume."""

    async def _paused(self, run_id: str) -> tuple[dict, dict | None]:
        def read():
            run = reads.flow_run(require_uuid(run_id, "flow run"))
            return run, (reads.resume_input(run) if run else None)

        run, resume = await db.run(read)
        if run is None:
            raise PageError(404, "Flow run not found.")
        if run.get("state_type") != "PAUSED":
            raise _refused(run, "resumed")
        return run, resume

    def _page(self, req, resp, run, resume, values=None, errors=None, status=200):
        render(req, resp, "flow_run_resume.html", status=status, run=run,
               **_resume_context(resume, values, errors))

    async def on_get(self, req, resp, run_id):
        run, resume = await self._paused(run_id)
        self._page(req, resp, run, resume)

    async def on_post(self, req, resp, run_id):
        form = await read_form(req)
        run, resume = await self._paused(run_id)
        run_input, errors, values = None, {}, None
        if resume is not None:
            if resume.get("schema") is None:
                raise PageError(409, "The pause's input schema cannot be read: resume it through the API.")
            fields = resume_fields(resume)
            run_input, errors = read_resume_form(fields, resume, form)
            values = sf.echo(fields, form) if fields else {RUN_INPUT_JSON: sf.text(form, RUN_INPUT_JSON, strip=False)}
        if not errors:
            try:
                written, result = await db.run_write(flow_run_inputs.resume, run["id"], run_input)
            except runs.NotFound:
                raise PageError(404, "Flow run not found.") from None
            except runs.Conflict as exc:  # the input was already sent (another tab, the API)
                raise PageError(409, str(exc)) from None
            if result["status"] == "ACCEPT":
                redirect(resp, f"/runs/flow-run/{run['id']}?msg=resumed")
                return
            if written:  # the pause had timed out: the rules wrote FAILED instead
                redirect(resp, f"/runs/flow-run/{run['id']}?msg=resume-timed-out")
                return
            if result["status"] != "REJECT" or resume is None:
                raise PageError(409, _reason(result))
            errors = {sf.FORM_ERROR: _reason(result)}
        self._page(req, resp, run, resume, values, errors, status=422)


def register(app) -> None:
    app.add_route("/runs/flow-run/{run_id}", FlowRunPage())
    app.add_route("/runs/flow-run/{run_id}/cancel", FlowRunCancel())
    app.add_route("/runs/flow-run/{run_id}/retry", FlowRunRetry())
    app.add_route("/runs/flow-run/{run_id}/resume", FlowRunResume())
    app.add_route("/runs/task-run/{task_run_id}", TaskRunPage())

