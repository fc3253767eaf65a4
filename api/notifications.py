"""/appliance/notifications: the delivery log (the appliance's own API, not Prefect's)."""

from __future__ import annotations

from api.errors import invalid, not_found
from api.http import send
from db import database as db
from db import notifications as notes
from db.states import iso

TIMES = ("created", "updated", "next_attempt_at", "deadline", "lease_until", "sent_at")
HIDDEN = ("claim_token", "subject_template", "body_template")


def shape(row: dict) -> dict:
    out = {k: v for k, v in row.items() if k not in HIDDEN}
    for key in TIMES:
        out[key] = iso(row[key]) if row.get(key) else None
    return out


class NotificationLog:
    async def on_get(self, req, resp):
        status = req.get_param("status")
        if status and status not in notes.STATUSES:
            raise invalid("status", f"status must be one of {', '.join(notes.STATUSES)}", status, loc_root="query")
        source = req.get_param("policy_id") or req.get_param("automation_id")
        limit = req.get_param_as_int("limit", min_value=1, max_value=1000) or 100
        offset = req.get_param_as_int("offset", min_value=0) or 0
        rows = await db.run(notes.list_notifications, status, source, req.get_param("flow_run_id"), offset, limit)
        send(resp, [shape(r) for r in rows])


class NotificationRetry:
    async def on_post(self, req, resp, notification_id):
        if not await db.run_write(notes.retry, str(notification_id)):
            raise not_found("No failed or dead notification with that id")
        send(resp, {"retried": 1})


def register(app, prefix: str) -> None:
    app.add_route(f"{prefix}/appliance/notifications", NotificationLog())
    app.add_route(f"{prefix}/appliance/notifications/{{notification_id:uuid}}/retry", NotificationRetry())
