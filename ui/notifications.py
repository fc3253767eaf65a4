"""``/notifications``: flow-run notification policies (create, edit, toggle, delete; the
block is one of the saved notification blocks), notification automations (listed,
enabled / disabled as ``PATCH /automations/{id}`` does) and the delivery log of the
``appliance notifier`` (status filter, keyset pages, Retry of failed and dead rows with
the same function as ``appliance notifications retry``)."""

from __future__ import annotations

from db import console_admin as reads
from db import database as db
from db import notifications as notes
from ui import schema_form as sf
from ui.admin_common import flash, page_url, pager_urls, require_uuid
from ui.errors import PageError
from ui.forms import read_form, values
from ui.render import redirect, render

# The state names a policy is usually about (Prefect's console offers these).
STATE_NAMES = ["Scheduled", "Late", "Pending", "Running", "Retrying", "AwaitingRetry", "Paused", "Suspended",
               "Cancelling", "Cancelled", "Completed", "Failed", "Crashed", "TimedOut"]
MESSAGES = {
    "created": "Notification policy created.", "saved": "Notification policy saved.",
    "deleted": "Notification policy deleted.", "activated": "Policy activated.", "deactivated": "Policy paused.",
    "automation-enabled": "Automation enabled.", "automation-disabled": "Automation disabled.",
    "retried": "Notification queued again.",
}
LIST_CAP = 50  # policies and automations shown (with the log, the page stays under 150 KB)
EMPTY_POLICY = {"state_names": ["Failed", "Crashed"], "tags": "", "block_document_id": "", "message_template": "",
                "is_active": True}


def read_policy_form(form: dict, allowed_blocks: set[str]) -> tuple[dict, dict, dict]:
    """(values for db.notifications, errors, echo) of the policy form."""
    raw = {"tags": sf.text(form, "tags"), "block_document_id": sf.text(form, "block_document_id"),
           "message_template": sf.text(form, "message_template", strip=False)}
    states = values(form, "state_names")
    errors: dict[str, str] = {}
    sf.no_nul({**raw, "state_names": "".join(states)}, errors)
    if not raw["block_document_id"]:
        errors["block_document_id"] = "Choose the notification block to send with."
    elif raw["block_document_id"] not in allowed_blocks:
        errors["block_document_id"] = "Choose one of the saved notification blocks."
    template = raw["message_template"] if raw["message_template"].strip() else None
    if template is not None and "message_template" not in errors:
        try:
            notes.validate_message_template(template)
        except notes.Invalid as exc:
            errors["message_template"] = str(exc)
    active = sf.text(form, "is_active") in ("true", "on")
    policy = {"state_names": list(dict.fromkeys(states)), "tags": sf.tags_list(raw["tags"]),
              "block_document_id": raw["block_document_id"], "message_template": template, "is_active": active}
    return policy, errors, {**raw, "state_names": states, "is_active": active}


async def _blocks() -> list[dict]:
    return await db.run(reads.notification_blocks)


def _state_choices(selected: list[str]) -> list[str]:
    return STATE_NAMES + [s for s in selected if s not in STATE_NAMES]


async def _page(req, resp, *, errors=None, policy_values=None, status=200):
    log_status = req.get_param("status") or ""
    if log_status and log_status not in notes.STATUSES:
        raise PageError(400, f"Unknown delivery status {log_status!r}: one of {', '.join(notes.STATUSES)}.")
    after, before = req.get_param("after"), req.get_param("before")
    for cursor in (after, before):
        if cursor:
            require_uuid(cursor, "notification")

    def read():
        policies = reads.policies(LIST_CAP)
        automations = reads.automations(LIST_CAP)
        log = reads.delivery_log(log_status or None, after, before)
        block_ids = [p["block_document_id"] for p in policies] + [r["block_document_id"] for r in log["rows"]]
        return {
            "policies": policies, "automations": automations, "log": log,
            "blocks_by_id": reads.block_names(block_ids),
            "run_names": reads.run_names([r["flow_run_id"] for r in log["rows"]]),
            "counts": reads.status_counts(),
            "notification_blocks": reads.notification_blocks(),
        }

    data = await db.run(read)
    next_url, prev_url = pager_urls("/notifications", data["log"], status=log_status)
    policy_values = policy_values or dict(EMPTY_POLICY)
    render(
        req, resp, "notifications.html", status=status, **data, log_status=log_status, statuses=notes.STATUSES,
        next_url=next_url and next_url + "#log", prev_url=prev_url and prev_url + "#log",
        errors=errors or {}, values=policy_values, state_choices=_state_choices(policy_values["state_names"]),
        cap=LIST_CAP, message=flash(req, MESSAGES), automation_summary=automation_summary,
    )


def automation_summary(row: dict) -> str:
    """One line: which states and relations trigger it (as far as the server evaluates it)."""
    try:
        compiled = notes.compile_trigger(row["trigger"])
    except notes.Invalid as exc:
        return f"not evaluated: {exc}"
    parts = [("states " + ", ".join(compiled["states"])) if compiled["states"] else "any state"]
    for role, ids in compiled["related"].items():
        parts.append(f"{role} {', '.join(ids)}")
    if compiled["run_ids"]:
        parts.append(f"{len(compiled['run_ids'])} specific run(s)")
    return "; ".join(parts)


class NotificationsPage:
    async def on_get(self, req, resp):
        await _page(req, resp)


class Policies:
    async def on_post(self, req, resp):
        form = await read_form(req)
        allowed = {b["id"] for b in await _blocks()}
        policy, errors, raw = read_policy_form(form, allowed)
        if not errors:
            try:
                await db.run_write(notes.create_policy, policy)
            except notes.Invalid as exc:
                errors[exc.field] = str(exc)
        if errors:
            await _page(req, resp, errors=errors, policy_values=raw, status=422)
            return
        redirect(resp, "/notifications?msg=created")


async def _policy(policy_id: str) -> dict:
    row = await db.run(notes.read_policy, require_uuid(policy_id, "notification policy"))
    if row is None:
        raise PageError(404, "Notification policy not found.")
    return row


async def _edit_page(req, resp, row, values_, errors, status=200):
    blocks = await _blocks()
    render(req, resp, "_admin_policy_edit.html", status=status, policy=row, values=values_, errors=errors,
           notification_blocks=blocks, state_choices=_state_choices(values_["state_names"]))


class PolicyEdit:
    async def on_get(self, req, resp, policy_id):
        row = await _policy(policy_id)
        values_ = {"state_names": row["state_names"] or [], "tags": ", ".join(row["tags"] or []),
                   "block_document_id": row["block_document_id"], "message_template": row["message_template"] or "",
                   "is_active": row["is_active"]}
        await _edit_page(req, resp, row, values_, {})

    async def on_post(self, req, resp, policy_id):
        row = await _policy(policy_id)
        form = await read_form(req)
        allowed = {b["id"] for b in await _blocks()} | {row["block_document_id"]}
        policy, errors, raw = read_policy_form(form, allowed)
        if not errors:
            try:
                if not await db.run_write(notes.update_policy, row["id"], policy):
                    raise PageError(404, "Notification policy not found.")
            except notes.Invalid as exc:
                errors[exc.field] = str(exc)
        if errors:
            await _edit_page(req, resp, row, raw, errors, status=422)
            return
        redirect(resp, "/notifications?msg=saved")


class PolicyAction:
    def __init__(self, action: str):
        self.action = action

    async def on_post(self, req, resp, policy_id):
        await read_form(req)
        row = await _policy(policy_id)
        if self.action == "toggle":
            await db.run_write(notes.update_policy, row["id"], {"is_active": not row["is_active"]})
            code = "deactivated" if row["is_active"] else "activated"
        else:
            await db.run_write(notes.delete_policy, row["id"])
            code = "deleted"
        redirect(resp, f"/notifications?msg={code}")


class AutomationToggle:
    async def on_post(self, req, resp, automation_id):
        await read_form(req)
        row = await db.run(notes.read_automation, require_uuid(automation_id, "automation"))
        if row is None:
            raise PageError(404, "Automation not found.")
        await db.run_write(notes.set_automation_enabled, row["id"], not row["enabled"])
        redirect(resp, f"/notifications?msg=automation-{'disabled' if row['enabled'] else 'enabled'}#automations")


class NotificationRetry:
    async def on_post(self, req, resp, notification_id):
        form = await read_form(req)
        if not await db.run_write(notes.retry, require_uuid(notification_id, "notification")):
            raise PageError(409, "Only a failed or dead notification can be retried (this one is not, or is gone).")
        back = sf.text(form, "status")
        redirect(resp, page_url("/notifications", msg="retried", status=back if back in notes.STATUSES else "")
                 + "#log")


def register(app) -> None:
    app.add_route("/notifications", NotificationsPage())
    app.add_route("/notifications/policies", Policies())
    app.add_route("/notifications/policy/{policy_id}/edit", PolicyEdit())
    for action in ("toggle", "delete"):
        app.add_route(f"/notifications/policy/{{policy_id}}/{action}", PolicyAction(action))
    app.add_route("/notifications/automation/{automation_id}/toggle", AutomationToggle())
    app.add_route("/notifications/notification/{notification_id}/retry", NotificationRetry())
