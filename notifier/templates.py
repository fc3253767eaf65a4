"""Rendering of notification subjects and bodies (notifications.md §1).

Legacy policies use ``str.format`` with the eleven keys of Prefect's old service;
automations use Jinja in an immutable sandbox with Prefect's limits (``range`` <= 100,
at most 10 ``for`` loops, loop nesting <= 2).
"""

from __future__ import annotations

import jinja2
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_RANGE = 100
MAX_LOOPS = 10
MAX_NESTING = 2


def _safe_range(*args):
    r = range(*args)
    if len(r) > MAX_RANGE:
        raise jinja2.exceptions.SecurityError(f"range too big (max {MAX_RANGE})")
    return r


def _environment(ui_url: str | None) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(undefined=jinja2.ChainableUndefined, autoescape=False)
    env.globals["range"] = _safe_range

    def ui_url_filter(obj):
        if not ui_url or not isinstance(obj, dict) or "id" not in obj:
            return ""
        kind = "flow-run" if "flow_id" in obj else "flow"
        return f"{ui_url.rstrip('/')}/runs/{kind}/{obj['id']}"

    env.filters["ui_url"] = ui_url_filter
    env.filters["ui_resource_events_url"] = lambda obj: ""
    env.filters["flow_run_id"] = lambda obj: obj.get("id") if isinstance(obj, dict) else None
    return env


def _check_limits(tree) -> None:
    loops = list(tree.find_all(nodes.For))
    if len(loops) > MAX_LOOPS:
        raise jinja2.exceptions.SecurityError(f"too many for loops (max {MAX_LOOPS})")
    for loop in loops:
        depth = sum(1 for _ in loop.find_all(nodes.For))
        if depth + 1 > MAX_NESTING:
            raise jinja2.exceptions.SecurityError(f"loops nested too deep (max {MAX_NESTING})")


def check_jinja(template: str) -> str | None:
    """None if the template compiles within the limits, else the problem."""
    try:
        env = _environment(None)
        _check_limits(env.parse(template))
    except (jinja2.TemplateError, jinja2.exceptions.SecurityError) as exc:
        return str(exc)
    return None


def render_jinja(template: str, context: dict, ui_url: str | None) -> str:
    env = _environment(ui_url)
    _check_limits(env.parse(template))
    return env.from_string(template).render(**context)


def legacy_values(policy_id: str, flow: dict, run: dict, state: dict, ui_url: str | None) -> dict:
    return {
        "flow_run_notification_policy_id": policy_id,
        "flow_id": run.get("flow_id"),
        "flow_name": flow.get("name"),
        "flow_run_url": f"{ui_url.rstrip('/')}/runs/flow-run/{run['id']}" if ui_url else "",
        "flow_run_id": run["id"],
        "flow_run_name": run.get("name"),
        "flow_run_parameters": run.get("parameters"),
        "flow_run_state_type": state.get("type"),
        "flow_run_state_name": state.get("name"),
        "flow_run_state_timestamp": state.get("timestamp"),
        "flow_run_state_message": state.get("message"),
    }


def render_legacy(template: str, values: dict) -> str:
    text = template.format(**values)
    if not values.get("flow_run_url"):
        # No public UI URL configured: drop the useless link line instead of an empty one.
        text = "\n".join(line for line in text.split("\n") if line.strip() != "Flow run URL:")
    return text


def render(row: dict, flow: dict, run: dict, state: dict, ui_url: str | None) -> tuple[str | None, str]:
    """(subject, body) for an outbox row."""
    if row["template_kind"] == "legacy":
        values = legacy_values(row["source_id"], flow, run, state, ui_url)
        return row["subject_template"], render_legacy(row["body_template"], values)
    flow_run = {**run, "state": state}
    context = {"flow": flow, "flow_run": flow_run, "event": {"id": row["state_id"]}, "automation": {"id": row["source_id"]}}
    subject = render_jinja(row["subject_template"], context, ui_url) if row["subject_template"] else None
    return subject, render_jinja(row["body_template"], context, ui_url)
