"""Notification domain: policies, notification automations, the outbox and its lifecycle.

- ``enqueue_for_state`` runs inside the state-write transaction (db.runs) so that the
  match and the queue insert commit or roll back with the state (transactional outbox).
- ``claim`` leases due rows to one notifier (PostgreSQL ``FOR UPDATE SKIP LOCKED``;
  SQLite: the short BEGIN IMMEDIATE claim transaction is the only writer). A row whose
  lease expired (notifier killed) is due again.
- ``settle`` records the outcome of one HTTP attempt, guarded by the claim token so a
  notifier whose lease expired cannot overwrite a newer claim.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import string

from db import database as dbmod
from db.fields import new_id, utcnow
from db.models_notifications import Automation, FlowRunNotificationPolicy, Notification

STATUSES = ("pending", "sending", "sent", "failed", "dead")
NOTIFY_CHANNEL = "appliance_notifications"

LEGACY_SUBJECT = "Prefect flow run notification"
LEGACY_KEYS = (
    "flow_run_notification_policy_id",
    "flow_id",
    "flow_name",
    "flow_run_url",
    "flow_run_id",
    "flow_run_name",
    "flow_run_parameters",
    "flow_run_state_type",
    "flow_run_state_name",
    "flow_run_state_timestamp",
    "flow_run_state_message",
)
DEFAULT_MESSAGE_TEMPLATE = (
    "Flow run {flow_name}/{flow_run_name} entered state `{flow_run_state_name}` at {flow_run_state_timestamp}.\n"
    "\n"
    "Flow ID: {flow_id}\n"
    "Flow run ID: {flow_run_id}\n"
    "Flow run URL: {flow_run_url}\n"
    "State message: {flow_run_state_message}"
)
AUTOMATION_SUBJECT = "Prefect automated notification"
AUTOMATION_BODY = (
    "Flow run {{ flow.name }}/{{ flow_run.name }} observed in state `{{ flow_run.state.name }}` at "
    "{{ flow_run.state.timestamp }}.\nFlow ID: {{ flow_run.flow_id }}\nFlow run ID: {{ flow_run.id }}\n"
    "Flow run URL: {{ flow_run|ui_url }}\nState message: {{ flow_run.state.message }}"
)


class NotFound(LookupError):
    pass


class Invalid(ValueError):
    """A request the server refuses: ``field`` names the offending part."""

    def __init__(self, field: str, message: str, value=None):
        super().__init__(message)
        self.field = field
        self.value = value


def _settings():
    from appliance.settings import get_settings

    return get_settings()


# ---------------------------------------------------------------- policies


def validate_message_template(template: str | None) -> None:
    """Prefect's check: formatting with every allowed key set to "test" must succeed."""
    if template is None:
        return
    try:
        template.format(**{key: "test" for key in LEGACY_KEYS})
    except (KeyError, IndexError) as exc:
        raise Invalid("message_template", f"Invalid template: unknown placeholder {exc}", template) from None
    except ValueError as exc:
        raise Invalid("message_template", f"Invalid template: {exc}", template) from None
    for _, name, _, _ in string.Formatter().parse(template):
        if name is not None and name.split(".")[0].split("[")[0] not in LEGACY_KEYS:
            raise Invalid("message_template", f"Invalid template: unknown placeholder {name!r}", template)


def create_policy(values: dict) -> dict:
    validate_message_template(values.get("message_template"))
    row = {"id": new_id(), "created": utcnow(), "updated": utcnow(), **values}
    FlowRunNotificationPolicy.insert(row).execute()
    return read_policy(row["id"])


def read_policy(policy_id: str) -> dict | None:
    return FlowRunNotificationPolicy.select().where(FlowRunNotificationPolicy.id == policy_id).dicts().first()


def update_policy(policy_id: str, changes: dict) -> bool:
    if "message_template" in changes:
        validate_message_template(changes["message_template"])
    query = FlowRunNotificationPolicy.update(**changes, updated=utcnow())
    return bool(query.where(FlowRunNotificationPolicy.id == policy_id).execute())


def delete_policy(policy_id: str) -> bool:
    return bool(FlowRunNotificationPolicy.delete().where(FlowRunNotificationPolicy.id == policy_id).execute())


def filter_policies(is_active: bool | None = None, offset: int = 0, limit: int | None = None) -> list[dict]:
    query = FlowRunNotificationPolicy.select().order_by(FlowRunNotificationPolicy.created)
    if is_active is not None:
        query = query.where(FlowRunNotificationPolicy.is_active == is_active)
    query = query.offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return list(query.dicts())


# ---------------------------------------------------------------- automations

FLOW_RUN_EVENT = "prefect.flow-run."
RELATED_PREFIXES = {"tag": "prefect.tag.", "flow": "prefect.flow.", "deployment": "prefect.deployment."}


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def compile_trigger(trigger: dict) -> dict:
    """The evaluable form of an automation trigger, or Invalid naming the unsupported part.

    Supported: what Prefect produced when it migrated notification policies — a reactive
    event trigger on ``prefect.flow-run.*`` state events, threshold 1, filtered by
    ``expect`` state names and by related tags, flows and deployments.
    """
    if not isinstance(trigger, dict):
        raise Invalid("trigger", "trigger must be an object", trigger)
    if trigger.get("type", "event") != "event":
        raise Invalid("trigger.type", f"unsupported trigger type {trigger.get('type')!r}: only 'event'", trigger.get("type"))
    if trigger.get("posture", "Reactive") != "Reactive":
        raise Invalid("trigger.posture", "only Reactive triggers are evaluated", trigger.get("posture"))
    if int(trigger.get("threshold", 1)) != 1:
        raise Invalid("trigger.threshold", "only threshold 1 is evaluated", trigger.get("threshold"))
    if trigger.get("after"):
        raise Invalid("trigger.after", "'after' events are not evaluated", trigger.get("after"))
    for_each = trigger.get("for_each") or []
    if any(key != "prefect.resource.id" for key in for_each):
        raise Invalid("trigger.for_each", "only for_each prefect.resource.id is evaluated", for_each)
    match = trigger.get("match") or {}
    if set(match) - {"prefect.resource.id"}:
        raise Invalid("trigger.match", "only prefect.resource.id can be matched", match)
    ids = _as_list(match.get("prefect.resource.id", "prefect.flow-run.*"))
    if not ids or any(not (i == "prefect.flow-run.*" or i.startswith(FLOW_RUN_EVENT)) for i in ids):
        raise Invalid("trigger.match", "only flow-run resources (prefect.flow-run.*) are evaluated", match)
    run_ids = [] if "prefect.flow-run.*" in ids else [i[len(FLOW_RUN_EVENT):] for i in ids]
    expect = _as_list(trigger.get("expect")) or ["prefect.flow-run.*"]
    states: list[str] = []
    for name in expect:
        if not isinstance(name, str) or not name.startswith(FLOW_RUN_EVENT):
            raise Invalid("trigger.expect", f"only prefect.flow-run.<State> events are evaluated, not {name!r}", expect)
        states.append(name[len(FLOW_RUN_EVENT):])
    if "*" in states:
        states = []
    related: dict[str, list[str]] = {}
    for i, item in enumerate(_as_list(trigger.get("match_related"))):
        if not isinstance(item, dict) or set(item) - {"prefect.resource.id", "prefect.resource.role"}:
            raise Invalid(f"trigger.match_related.{i}", "only prefect.resource.id/role can be matched", item)
        role = item.get("prefect.resource.role")
        rids = _as_list(item.get("prefect.resource.id"))
        if role is None and rids:
            role = next((r for r, p in RELATED_PREFIXES.items() if str(rids[0]).startswith(p)), None)
        if role not in RELATED_PREFIXES or not rids:
            raise Invalid(f"trigger.match_related.{i}", "only tag, flow and deployment relations are evaluated", item)
        prefix = RELATED_PREFIXES[role]
        if any(not str(r).startswith(prefix) or str(r).endswith("*") for r in rids):
            raise Invalid(f"trigger.match_related.{i}", f"{role} ids must be {prefix}<value>", item)
        related.setdefault(role, []).extend(str(r)[len(prefix):] for r in rids)
    return {"states": states, "run_ids": run_ids, "related": related}


TRIGGER_DEFAULTS = {"match": {}, "match_related": {}, "after": [], "expect": [], "for_each": [],
                    "posture": "Reactive", "threshold": 1, "within": 0.0}


def validate_actions(actions: list, field: str = "actions") -> None:
    """Check (and complete with Prefect's defaults, in place) send-notification actions."""
    for i, action in enumerate(actions or []):
        if not isinstance(action, dict) or action.get("type") != "send-notification":
            kind = action.get("type") if isinstance(action, dict) else action
            raise Invalid(f"{field}.{i}.type", f"unsupported action {kind!r}: only send-notification", kind)
        if not action.get("block_document_id"):
            raise Invalid(f"{field}.{i}.block_document_id", "block_document_id is required", action)
        if not isinstance(action.get("body"), str):
            raise Invalid(f"{field}.{i}.body", "body is required (the text of the notification)", action.get("body"))
        if action.get("subject") is None:
            action["subject"] = AUTOMATION_SUBJECT
        for key in ("subject", "body"):
            if action.get(key) is not None:
                from notifier.templates import check_jinja

                problem = check_jinja(action[key])
                if problem:
                    raise Invalid(f"{field}.{i}.{key}", f"invalid template: {problem}", action[key])


def validate_automation(values: dict) -> None:
    compile_trigger(values.get("trigger"))
    # Stored as Prefect's server would answer it (the SDK validates the full shape).
    values["trigger"] = {"id": new_id(), **TRIGGER_DEFAULTS, **values["trigger"]}
    validate_actions(values.get("actions") or [])
    if values.get("actions_on_trigger"):
        validate_actions(values["actions_on_trigger"], "actions_on_trigger")
    if values.get("actions_on_resolve"):
        raise Invalid("actions_on_resolve", "resolve actions are not evaluated (reactive triggers never resolve)")


def create_automation(values: dict) -> dict:
    validate_automation(values)
    row = {"id": new_id(), "created": utcnow(), "updated": utcnow(), **values}
    Automation.insert(row).execute()
    return read_automation(row["id"])


def read_automation(automation_id: str) -> dict | None:
    return Automation.select().where(Automation.id == automation_id).dicts().first()


def replace_automation(automation_id: str, values: dict) -> bool:
    validate_automation(values)
    return bool(Automation.update(**values, updated=utcnow()).where(Automation.id == automation_id).execute())


def set_automation_enabled(automation_id: str, enabled: bool) -> bool:
    query = Automation.update(enabled=enabled, updated=utcnow())
    return bool(query.where(Automation.id == automation_id).execute())


def delete_automation(automation_id: str) -> bool:
    return bool(Automation.delete().where(Automation.id == automation_id).execute())


def delete_owned_automations(resource_id: str) -> int:
    return Automation.delete().where(Automation.owner_resource == resource_id).execute()


def filter_automations(name: str | None = None, offset: int = 0, limit: int | None = None) -> list[dict]:
    query = Automation.select().order_by(Automation.name, Automation.created)
    if name:
        query = query.where(Automation.name == name)
    query = query.offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return list(query.dicts())


def related_automations(resource_id: str) -> list[dict]:
    """Automations owned by the resource or whose trigger names it in match/match_related."""
    out = []
    for row in Automation.select().order_by(Automation.created).dicts():
        if row["owner_resource"] == resource_id or resource_id in str(row["trigger"]):
            out.append(row)
    return out


# ---------------------------------------------------------------- the outbox


def _key(*parts) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:64]


def _automation_matches(compiled: dict, run: dict, flow: dict, state: dict) -> bool:
    if compiled["states"] and state["name"] not in compiled["states"]:
        return False
    if compiled["run_ids"] and run["id"] not in compiled["run_ids"]:
        return False
    related = compiled["related"]
    if "tag" in related and not set(related["tag"]) & set(run.get("tags") or []):
        return False
    if "flow" in related and str(run["flow_id"]) not in related["flow"]:
        return False
    return not ("deployment" in related and str(run.get("deployment_id")) not in related["deployment"])


# One raw round trip for both sources: this runs in every flow-run state write.
_SOURCES_SQL = (
    "SELECT 'p', id, CAST(state_names AS TEXT), CAST(tags AS TEXT), CAST(block_document_id AS TEXT), "
    "message_template FROM flow_run_notification_policy WHERE is_active UNION ALL "
    "SELECT 'a', id, CAST(trigger AS TEXT), CAST(actions AS TEXT), CAST(actions_on_trigger AS TEXT), NULL "
    "FROM automation WHERE enabled"
)


def _json(value):
    import orjson

    if value is None or not isinstance(value, str | bytes):
        return value
    return orjson.loads(value)


def _active_sources() -> tuple[list[dict], list[dict]]:
    policies, automations = [], []
    for kind, id_, a, b, c, d in dbmod.database.execute_sql(_SOURCES_SQL).fetchall():
        if kind == "p":
            policies.append({"id": id_, "state_names": _json(a), "tags": _json(b), "block_document_id": c,
                             "message_template": d})
        else:
            automations.append({"id": id_, "trigger": _json(a), "actions": _json(b), "actions_on_trigger": _json(c)})
    return policies, automations


def enqueue_for_state(run: dict, flow: dict | None, state: dict) -> int:
    """Queue one row per matching policy / automation action. Call inside the state write."""
    policies, automations = _active_sources()
    if not policies and not automations:
        return 0
    run_tags = set(run.get("tags") or [])
    now = utcnow()
    settings = _settings()
    deadline = now + dt.timedelta(hours=settings.notifier_deadline_hours)
    common = {
        "created": now,
        "updated": now,
        "flow_run_id": run["id"],
        "flow_id": str(run["flow_id"]) if run.get("flow_id") else None,
        "state_id": state["id"],
        "state_type": state["type"],
        "state_name": state["name"],
        "status": "pending",
        "attempts": 0,
        "rate_limited": 0,
        "next_attempt_at": now,
        "deadline": deadline,
    }
    rows = []
    for p in policies:
        if p["state_names"] and state["name"] not in p["state_names"]:
            continue
        if p["tags"] and not run_tags & set(p["tags"]):
            continue
        rows.append({
            **common,
            "id": new_id(),
            "source_kind": "policy",
            "source_id": p["id"],
            "block_document_id": p["block_document_id"],
            "template_kind": "legacy",
            "subject_template": LEGACY_SUBJECT,
            "body_template": p["message_template"] or DEFAULT_MESSAGE_TEMPLATE,
            "idempotency_key": _key(p["id"], run["id"], state["id"], p["block_document_id"]),
        })
    for a in automations:
        try:
            compiled = compile_trigger(a["trigger"])
        except Invalid:
            continue
        if not _automation_matches(compiled, run, flow or {}, state):
            continue
        for i, action in enumerate([*(a["actions"] or []), *(a["actions_on_trigger"] or [])]):
            rows.append({
                **common,
                "id": new_id(),
                "source_kind": "automation",
                "source_id": a["id"],
                "block_document_id": action["block_document_id"],
                "template_kind": "jinja",
                "subject_template": action.get("subject") or AUTOMATION_SUBJECT,
                "body_template": action.get("body") or AUTOMATION_BODY,
                "idempotency_key": _key(a["id"], i, run["id"], state["id"], action["block_document_id"]),
            })
    if not rows:
        return 0
    Notification.insert_many(rows).on_conflict_ignore().execute()
    if dbmod.is_postgres():
        # Delivered at commit only: a rolled-back state write wakes nobody.
        dbmod.database.execute_sql(f"NOTIFY {NOTIFY_CHANNEL}")
    return len(rows)


def claim(worker: str, limit: int, lease_seconds: float) -> list[dict]:
    """Lease up to ``limit`` due rows (pending and due, or sending with an expired lease)."""
    now = utcnow()
    lease = now + dt.timedelta(seconds=lease_seconds)
    token = new_id()
    due = (
        ((Notification.status == "pending") & (Notification.next_attempt_at <= now))
        | ((Notification.status == "sending") & (Notification.lease_until < now))
    )
    with dbmod.database.atomic():
        query = Notification.select(Notification.id).where(due).order_by(Notification.next_attempt_at).limit(limit)
        if dbmod.is_postgres():
            query = query.for_update("FOR UPDATE SKIP LOCKED")
        ids = [r.id for r in query]
        if not ids:
            return []
        Notification.update(status="sending", lease_until=lease, claim_token=token, updated=now).where(
            Notification.id.in_(ids)
        ).execute()
        rows = list(Notification.select().where(Notification.id.in_(ids)).dicts())
    return rows


def settle(row: dict, outcome: str, *, status_code: int | None = None, error: str | None = None,
           retry_after: float | None = None, rate_limited: bool = False, subject: str | None = None,
           body: str | None = None, channel: str | None = None) -> str:
    """Record one attempt's outcome ('sent', 'retry', 'failed'); returns the new status."""
    settings = _settings()
    now = utcnow()
    changes: dict = {"updated": now, "lease_until": None, "claim_token": None, "last_status_code": status_code}
    if subject is not None or body is not None:
        changes.update(subject=subject, body=body)
    if channel:
        changes["channel"] = channel
    if error is not None:
        changes["last_error"] = error[:2000]
    attempts = row["attempts"] + (0 if rate_limited else 1)
    changes["attempts"] = attempts
    if rate_limited:
        changes["rate_limited"] = row["rate_limited"] + 1
    if outcome == "sent":
        changes.update(status="sent", sent_at=now, last_error=None)
    elif outcome == "failed":
        changes["status"] = "failed"
    else:
        delay = retry_after if retry_after is not None else backoff(attempts)
        when = now + dt.timedelta(seconds=delay)
        if attempts >= settings.notifier_max_attempts or when > row["deadline"]:
            changes["status"] = "dead"
        else:
            changes.update(status="pending", next_attempt_at=when)
    Notification.update(changes).where(
        (Notification.id == row["id"]) & (Notification.claim_token == row["claim_token"])
    ).execute()
    return changes["status"]


def backoff(attempts: int) -> float:
    """Exponential backoff with full jitter: base * 6^(n-1) capped, uniformly in [base/2, cap]."""
    import random

    settings = _settings()
    base = settings.notifier_backoff_base_seconds
    cap = min(base * (6 ** max(attempts - 1, 0)), 3600.0)
    return random.uniform(min(base, cap) / 2, cap)


def release(rows: list[dict]) -> None:
    """Hand claimed rows back untouched (SIGTERM before they were sent)."""
    for row in rows:
        Notification.update(status="pending", lease_until=None, claim_token=None, updated=utcnow()).where(
            (Notification.id == row["id"]) & (Notification.claim_token == row["claim_token"])
        ).execute()


def list_notifications(status: str | None = None, source_id: str | None = None, flow_run_id: str | None = None,
                       offset: int = 0, limit: int = 100) -> list[dict]:
    query = Notification.select().order_by(Notification.created.desc())
    if status:
        query = query.where(Notification.status == status)
    if source_id:
        query = query.where(Notification.source_id == source_id)
    if flow_run_id:
        query = query.where(Notification.flow_run_id == flow_run_id)
    return list(query.offset(offset).limit(limit).dicts())


def retry(notification_id: str | None = None, *, dead: bool = False) -> int:
    """Put a failed/dead row (or every dead row) back to pending with a fresh budget."""
    now = utcnow()
    deadline = now + dt.timedelta(hours=_settings().notifier_deadline_hours)
    query = Notification.update(status="pending", attempts=0, rate_limited=0, next_attempt_at=now,
                                deadline=deadline, updated=now)
    if dead:
        return query.where(Notification.status == "dead").execute()
    return query.where((Notification.id == notification_id) & Notification.status.in_(["failed", "dead"])).execute()
