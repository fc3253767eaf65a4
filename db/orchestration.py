"""Orchestration rules for proposed flow-run and task-run states (Prefect's core policy).

Each rule is a plain function ``rule(ctx) -> Decision | None``: ``None`` lets the
proposal go on to the next rule, a Decision ends orchestration. Rules may adjust the
proposed state or queue empirical-policy changes on the context. The rule lists below
are in Prefect's priority order; ``orchestrate`` runs them. Nothing here touches the
database: db.runs reads the run, calls ``orchestrate`` and writes the outcome.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from dataclasses import dataclass, field

from db.states import TERMINAL, has_persisted_result, new_state, parse_datetime, scheduled_time

ACCEPT, REJECT, ABORT, WAIT = "ACCEPT", "REJECT", "ABORT", "WAIT"


@dataclass
class Decision:
    status: str
    reason: str | None = None
    # REJECT: a replacement state to write; None means "keep the current state".
    state: dict | None = None
    delay_seconds: int | None = None


@dataclass
class Context:
    """What a rule may look at: the run (as a dict of columns), its current and proposed state."""

    run: dict
    current: dict | None
    proposed: dict
    now: dt.datetime
    policy_updates: dict = field(default_factory=dict)
    # Deferred work for after the transition is accepted (e.g. add a pause key).
    after_accept: list = field(default_factory=list)

    @property
    def policy(self) -> dict:
        merged = dict(self.run.get("empirical_policy") or {})
        merged.update(self.policy_updates)
        return merged


def _details(state: dict | None) -> dict:
    return (state or {}).get("state_details") or {}


# --- flow-run rules ---------------------------------------------------------------


def prevent_duplicate_transitions(ctx: Context) -> Decision | None:
    """F1: a retried set_state with the current state's transition_id changes nothing."""
    if ctx.current is None:
        return None
    current_id = _details(ctx.current).get("transition_id")
    proposed_id = _details(ctx.proposed).get("transition_id")
    if current_id is not None and proposed_id is not None and str(current_id) == str(proposed_id):
        return Decision(REJECT, "This run has already made this state transition.")
    return None


def handle_flow_terminal_state_transitions(ctx: Context) -> Decision | None:
    """F2: guard terminal states; leaving one resets pause bookkeeping."""
    current, proposed = ctx.current, ctx.proposed
    if current is None or current["type"] not in TERMINAL:
        return None
    if proposed["type"] in ("CANCELLING", "PAUSED", "CRASHED"):
        return Decision(ABORT, f"Run is already in terminal state {current['type']}.")
    persisted = current["type"] == "COMPLETED" and has_persisted_result(current.get("data"))
    if persisted and proposed["type"] not in TERMINAL:
        return Decision(REJECT, "Run is already COMPLETED.")
    if persisted and proposed["type"] == "COMPLETED" and not has_persisted_result(proposed.get("data")):
        return Decision(
            REJECT,
            "Cannot overwrite a COMPLETED state that carries persisted result data with one that does not.",
        )
    if proposed["type"] == "SCHEDULED" and not ctx.run.get("deployment_id"):
        return Decision(ABORT, "Cannot reschedule a run without an associated deployment.")
    if proposed["type"] not in TERMINAL:
        ctx.policy_updates.update(
            pause_keys=[],
            resuming=False,
            retry_type="reschedule" if proposed["type"] == "SCHEDULED" else None,
        )
    return None


def enforce_cancelling_to_cancelled(ctx: Context) -> Decision | None:
    """F3: a cancelling run may only become cancelled."""
    if ctx.current and ctx.current["type"] == "CANCELLING" and ctx.proposed["type"] != "CANCELLED":
        return Decision(REJECT, "Cannot transition flows that are cancelling to a state other than Cancelled.")
    return None


def bypass_cancelling_runs_with_no_infra(ctx: Context) -> Decision | None:
    """F4: nothing runs yet, so cancelling goes straight to a written Cancelled state."""
    current = ctx.current
    if current is None or ctx.proposed["type"] != "CANCELLING":
        return None
    if (current["type"] == "SCHEDULED" and not ctx.run.get("infrastructure_pid")) or current["name"] == "Resuming":
        return Decision(
            REJECT, "Scheduled flow run has no infrastructure to terminate.", state=new_state("CANCELLED")
        )
    if current["type"] == "PAUSED" and _details(current).get("pause_reschedule"):
        return Decision(
            REJECT, "Suspended flow run has no infrastructure to terminate.", state=new_state("CANCELLED")
        )
    return None


def prevent_pending_transitions(ctx: Context) -> Decision | None:
    """F5: only one worker/runner may take a run to PENDING (renamed sub-states pass)."""
    current, proposed = ctx.current, ctx.proposed
    if current is None or proposed["type"] != "PENDING":
        return None
    if current["type"] not in ("PENDING", "CANCELLING", "RUNNING", "CANCELLED"):
        return None
    if current["type"] == "PENDING" and current["name"] != proposed["name"] and proposed["name"] != "Pending":
        details = proposed["state_details"]
        details["scheduled_time"] = _details(current).get("scheduled_time")
        details["deployment_concurrency_lease_id"] = _details(current).get("deployment_concurrency_lease_id")
        return None
    return Decision(ABORT, f"This run is in a {current['type']} state and cannot transition to a PENDING state.")


DEPLOYMENT_SLOT_WAIT_SECONDS = 30


def secure_deployment_concurrency_slots(ctx: Context) -> Decision | None:
    """F6: a deployment with a concurrency limit admits a run to PENDING only while a slot
    of its limit is free; the admitted run holds the slot by a lease (id in the PENDING
    state's details). The caller (db.runs) puts on ``run["__deployment_slots"]`` what
    db.deployment_concurrency read with the limit row locked, and a ``take`` callable."""
    slots = ctx.run.get("__deployment_slots")
    if slots is None or ctx.proposed["type"] != "PENDING":
        return None
    if ctx.current and ctx.current["type"] in ("PENDING", "RUNNING", "CANCELLING"):
        return None
    if slots["limit"] == 0:
        return Decision(ABORT, "The deployment concurrency limit is 0. The flow will deadlock if submitted again.")
    if slots["available"]:
        details = ctx.proposed["state_details"]
        ctx.after_accept.append(lambda: details.__setitem__("deployment_concurrency_lease_id", slots["take"]()))
        return None
    if slots["strategy"] == "CANCEL_NEW":
        return Decision(
            REJECT, "Deployment concurrency limit reached.",
            state=new_state("CANCELLED", message="Deployment concurrency limit reached."),
        )
    wait = ctx.now + dt.timedelta(seconds=slots.get("wait_seconds", DEPLOYMENT_SLOT_WAIT_SECONDS))
    return Decision(
        REJECT, "Deployment concurrency limit reached.",
        state=new_state("SCHEDULED", "AwaitingConcurrencySlot", details={"scheduled_time": wait}),
    )


def validate_deployment_lease_at_running(ctx: Context) -> Decision | None:
    """F6 at PENDING→RUNNING: the lease travels to the RUNNING state and is renewed; a
    lease the sweeper reaped while infrastructure started is re-acquired when a slot is
    free, else the run is cancelled (it cannot go back to waiting once it runs)."""
    slots = ctx.run.get("__deployment_slots")
    if slots is None or ctx.current is None or ctx.current["type"] != "PENDING" or ctx.proposed["type"] != "RUNNING":
        return None
    lease_id = _details(ctx.current).get("deployment_concurrency_lease_id")
    details = ctx.proposed["state_details"]
    details["deployment_concurrency_lease_id"] = lease_id
    if not lease_id:
        return None
    if slots["lease_alive"]:
        ctx.after_accept.append(lambda: slots["renew"](lease_id))
        return None
    if slots["available"]:
        ctx.after_accept.append(lambda: details.__setitem__("deployment_concurrency_lease_id", slots["take"]()))
        return None
    return Decision(
        REJECT, "Deployment concurrency limit reached after lease expiry.",
        state=new_state(
            "CANCELLED",
            message="Deployment concurrency slot lost during provisioning - no slots available to continue execution",
        ),
    )


def ensure_only_scheduled_flows_marked_late(ctx: Context) -> Decision | None:
    """F7"""
    current, proposed = ctx.current, ctx.proposed
    if current is None or not (proposed["type"] == "SCHEDULED" and proposed["name"] == "Late"):
        return None
    if current["type"] != "SCHEDULED":
        return Decision(REJECT, "Only scheduled flows can be marked late.")
    if current["name"] == "Late":
        return Decision(REJECT, "This flow run is already marked late.")
    return None


def handle_pausing_flows(ctx: Context) -> Decision | None:
    """F8: pause only running flows, once per pause key."""
    proposed = ctx.proposed
    if proposed["type"] != "PAUSED":
        return None
    verb = "suspend" if proposed["name"] == "Suspended" else "pause"
    if ctx.current is None:
        return Decision(ABORT, f"Cannot {verb} flows with no state.")
    if ctx.current["type"] != "RUNNING":
        return Decision(REJECT, f"Cannot {verb} flows that are not currently running.")
    key = proposed["state_details"].get("pause_key") or str(uuid.uuid4())
    if key in (ctx.policy.get("pause_keys") or []):
        return Decision(REJECT, f"This {verb} has already fired.")
    if proposed["state_details"].get("pause_reschedule"):
        if ctx.run.get("parent_task_run_id"):
            return Decision(ABORT, f"Cannot {verb} subflows.")
        if not ctx.run.get("deployment_id"):
            return Decision(ABORT, f"Cannot {verb} flows without a deployment.")
    keys = list(ctx.policy.get("pause_keys") or [])
    ctx.after_accept.append(lambda: ctx.policy_updates.update(pause_keys=[*keys, key]))
    return None


def handle_resuming_paused_flows(ctx: Context) -> Decision | None:
    """F9: leave PAUSED only to running/scheduled/cancelling/final, within the timeout."""
    current, proposed = ctx.current, ctx.proposed
    if current is None or current["type"] != "PAUSED":
        return None
    if proposed["type"] not in ("RUNNING", "SCHEDULED", "CANCELLING") and proposed["type"] not in TERMINAL:
        return Decision(
            REJECT, f"This run cannot transition to the {proposed['type']} state from the {current['type']} state."
        )
    verb = "suspend" if proposed["name"] == "Suspended" else "pause"
    shown = (proposed["name"] or proposed["type"]).lower()
    if _details(current).get("pause_reschedule") and not ctx.run.get("deployment_id"):
        return Decision(REJECT, f"Cannot reschedule a {shown} flow run without a deployment.")
    if proposed["type"] == "CANCELLING":
        return None
    timeout = parse_datetime(_details(current).get("pause_timeout"))
    if timeout and timeout < ctx.now:
        return Decision(
            REJECT,
            f"The flow run {verb} has timed out and can no longer resume.",
            state=new_state("FAILED", message=f"The flow was {shown} and never resumed."),
        )
    ctx.after_accept.append(lambda: ctx.policy_updates.update(resuming=True))
    return None


def copy_scheduled_time(ctx: Context) -> Decision | None:
    """F10: SCHEDULED -> PENDING keeps the scheduled time."""
    if ctx.current and ctx.current["type"] == "SCHEDULED" and ctx.proposed["type"] == "PENDING":
        details = ctx.proposed["state_details"]
        if not details.get("scheduled_time"):
            details["scheduled_time"] = _details(ctx.current).get("scheduled_time")
    return None


def wait_for_scheduled_time(ctx: Context) -> Decision | None:
    """F11: a run may not start before its scheduled time: WAIT the remaining seconds."""
    current = ctx.current
    if current is None or current["type"] not in ("SCHEDULED", "PENDING") or ctx.proposed["type"] != "RUNNING":
        return None
    when = scheduled_time(current)
    if not when:
        return None
    delay = when - ctx.now
    delay_seconds = math.floor(delay.total_seconds()) + round(delay.microseconds / 1e6)
    if delay_seconds > 0:
        return Decision(WAIT, "Scheduled time is in the future", delay_seconds=delay_seconds)
    return None


def retry_failed_flows(ctx: Context) -> Decision | None:
    """F12: RUNNING -> FAILED with retries left becomes a written AwaitingRetry."""
    if not ctx.current or ctx.current["type"] != "RUNNING" or ctx.proposed["type"] != "FAILED":
        return None
    policy = ctx.policy
    retries = policy.get("retries")
    if retries is None or ctx.run.get("run_count", 0) > retries:
        ctx.policy_updates["retry_type"] = None
        return None
    delay = policy.get("retry_delay") or 0
    if isinstance(delay, list):  # flows take a number; be lenient with a list
        delay = delay[0] if delay else 0
    when = ctx.now + dt.timedelta(seconds=float(delay or 0))
    ctx.policy_updates.update(resuming=False, pause_keys=[], retry_type="in_process")
    retry = new_state(
        "SCHEDULED",
        "AwaitingRetry",
        message=ctx.proposed.get("message"),
        data=ctx.proposed.get("data"),
        details={
            "scheduled_time": when,
            "deployment_concurrency_lease_id": _details(ctx.current).get("deployment_concurrency_lease_id"),
        },
    )
    return Decision(REJECT, "Retrying", state=retry)


FLOW_RULES = [
    prevent_duplicate_transitions,
    handle_flow_terminal_state_transitions,
    enforce_cancelling_to_cancelled,
    bypass_cancelling_runs_with_no_infra,
    prevent_pending_transitions,
    secure_deployment_concurrency_slots,
    validate_deployment_lease_at_running,
    ensure_only_scheduled_flows_marked_late,
    handle_pausing_flows,
    handle_resuming_paused_flows,
    copy_scheduled_time,
    wait_for_scheduled_time,
    retry_failed_flows,
]

# With force=true only these guards still run (spec §1.5).
FORCED_FLOW_RULES = [bypass_cancelling_runs_with_no_infra]


def protect_persisted_completed(ctx: Context) -> Decision | None:
    """A COMPLETED state with a persisted result is never overwritten by one without (even forced)."""
    current, proposed = ctx.current, ctx.proposed
    if (
        current
        and current["type"] == "COMPLETED"
        and proposed["type"] == "COMPLETED"
        and has_persisted_result(current.get("data"))
        and not has_persisted_result(proposed.get("data"))
    ):
        return Decision(
            REJECT,
            "Cannot overwrite a COMPLETED state that carries persisted result data with one that does not.",
        )
    return None


# --- task-run rules (REST set_state only; 3.8.8 engines orchestrate tasks client-side) ---
# Prefect's CoreTaskPolicy. db.runs puts the parent flow run (id, state, run_count) on
# ``run["__flow_run"]`` when a task proposes RUNNING. Not implemented: cache retrieval and
# insertion, tag concurrency slots, retry jitter.


def _task_run_count(ctx: Context) -> int:
    """The run count the rules see: 0 once the task is leaving a terminal state."""
    return 0 if ctx.policy_updates.get("__reset_run_count") else ctx.run.get("run_count", 0)


def handle_task_terminal_state_transitions(ctx: Context) -> Decision | None:
    current, proposed = ctx.current, ctx.proposed
    if current is None or current["type"] not in TERMINAL:
        return None
    if proposed["type"] in ("CANCELLING", "PAUSED", "CRASHED"):
        return Decision(ABORT, f"Run is already {current['type']}.")
    if current["type"] == "COMPLETED" and has_persisted_result(current.get("data")):
        return Decision(REJECT, "This run is already completed.")
    if proposed["type"] not in TERMINAL:
        ctx.policy_updates["__reset_run_count"] = True  # restart the task's retries
    flow_run = ctx.run.get("__flow_run")
    if proposed["type"] == "RUNNING" and flow_run is not None:
        if (ctx.run.get("flow_run_run_count") or 0) < (flow_run.get("run_count") or 0):
            proposed["name"] = "Retrying"  # rerun by a retry of its flow
    return None


def prevent_running_tasks_from_stopped_flows(ctx: Context) -> Decision | None:
    """A task may only start while its flow run is running (a paused flow parks it)."""
    flow_run = ctx.run.get("__flow_run")
    if ctx.proposed["type"] != "RUNNING" or flow_run is None:
        return None
    flow_state = flow_run.get("state")
    if flow_state is not None and flow_state["type"] == "PAUSED":
        details = _details(flow_state)
        paused = new_state(
            "PAUSED",
            "NotReady",
            details={"pause_timeout": details.get("pause_timeout"), "pause_reschedule": bool(details.get("pause_reschedule"))},
        )
        return Decision(
            REJECT, f"The flow is paused, new tasks can execute after resuming flow run: {flow_run['id']}.", state=paused
        )
    if flow_state is None or flow_state["type"] != "RUNNING":
        return Decision(ABORT, "The enclosing flow must be running to begin task execution.")
    return None


def retry_failed_tasks(ctx: Context) -> Decision | None:
    if not ctx.current or ctx.current["type"] != "RUNNING" or ctx.proposed["type"] != "FAILED":
        return None
    if _details(ctx.proposed).get("retriable") is False:
        return None
    policy = ctx.policy
    retries = policy.get("retries") or policy.get("max_retries") or 0
    run_count = ctx.run.get("run_count", 0)
    if run_count > retries:
        return None
    delay = policy.get("retry_delay")
    if delay is None:
        delay = policy.get("retry_delay_seconds") or 0
    if isinstance(delay, list):
        delay = delay[min(run_count - 1, len(delay) - 1)] if delay else 0
    when = ctx.now + dt.timedelta(seconds=float(delay or 0))
    retry = new_state(
        "SCHEDULED",
        "AwaitingRetry",
        message=ctx.proposed.get("message"),
        data=ctx.proposed.get("data"),
        details={"scheduled_time": when},
    )
    return Decision(REJECT, "Retrying", state=retry)


def rename_reruns(ctx: Context) -> Decision | None:
    if ctx.current and ctx.proposed["type"] == "RUNNING" and _task_run_count(ctx) > 0:
        ctx.proposed["name"] = "Retrying" if ctx.current["name"] == "AwaitingRetry" else "Rerunning"
    return None


TASK_RULES = [
    handle_task_terminal_state_transitions,
    prevent_running_tasks_from_stopped_flows,
    copy_scheduled_time,
    wait_for_scheduled_time,
    retry_failed_tasks,
    rename_reruns,
]


def orchestrate(ctx: Context, rules) -> Decision:
    """Run ``rules`` in order; the first Decision wins, else ACCEPT (after-accept hooks run)."""
    for rule in rules:
        decision = rule(ctx)
        if decision is not None:
            return decision
    for hook in ctx.after_accept:
        hook()
    return Decision(ACCEPT)
