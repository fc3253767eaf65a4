"""Orchestration rules (db/orchestration.py) called directly, without a database.

Each rule is a plain function over a Context; the expectations are Prefect 3.8.8's
core_policy.py (checked against the real server where the two could differ) and the
wire spec §2. A rule answers None ("no objection") or a Decision; ``orchestrate`` runs
a rule list in order, the first Decision wins, and after-accept hooks only run on ACCEPT.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from db import orchestration as o
from db.orchestration import ABORT, ACCEPT, REJECT, WAIT, Context, Decision
from db.states import TERMINAL, new_state

NOW = dt.datetime(2026, 11, 21, 12, 0, 0)
PERSISTED = {"storage_key": "/x", "serializer": {"type": "json"}, "prefect_version": "3.8.8",
             "storage_block_id": None, "expiration": None}
NON_TERMINAL = ("SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLING")


def state(type_, name=None, *, data=None, message=None, **details):
    return new_state(type_, name, data=data, message=message, details=details, timestamp=NOW - dt.timedelta(seconds=5))


def ctx(current, proposed, **run):
    """A Context for a flow run (or task run) with the given columns."""
    columns = {"id": str(uuid.uuid4()), "run_count": 0, "empirical_policy": {}, "deployment_id": None,
               "parent_task_run_id": None, "infrastructure_pid": None}
    columns.update(run)
    return Context(run=columns, current=current, proposed=proposed, now=NOW)


def assert_decision(decision, status, reason=None):
    assert isinstance(decision, Decision), decision
    assert decision.status == status, decision
    if reason is not None:
        assert decision.reason == reason


# --- F1 PreventDuplicateTransitions ----------------------------------------------------


def test_same_transition_id_is_rejected_keeping_the_current_state():
    tid = str(uuid.uuid4())
    decision = o.prevent_duplicate_transitions(ctx(state("RUNNING", transition_id=tid), state("RUNNING", transition_id=tid)))
    assert_decision(decision, REJECT, "This run has already made this state transition.")
    assert decision.state is None  # None = answer the current state, write nothing


def test_other_or_missing_transition_ids_pass():
    tid = str(uuid.uuid4())
    for current, proposed in [
        (state("RUNNING", transition_id=tid), state("COMPLETED", transition_id=str(uuid.uuid4()))),
        (state("RUNNING", transition_id=tid), state("COMPLETED")),
        (state("RUNNING"), state("COMPLETED", transition_id=tid)),
        (state("RUNNING"), state("COMPLETED")),  # both None: not a duplicate
        (None, state("PENDING", transition_id=tid)),
    ]:
        assert o.prevent_duplicate_transitions(ctx(current, proposed)) is None


def test_duplicate_transition_wins_over_every_later_rule():
    # A retried COMPLETED -> CRASHED would otherwise ABORT (F2); the dedupe answers first.
    tid = str(uuid.uuid4())
    decision = o.orchestrate(ctx(state("COMPLETED", transition_id=tid), state("CRASHED", transition_id=tid)), o.FLOW_RULES)
    assert_decision(decision, REJECT, "This run has already made this state transition.")


# --- F2 HandleFlowTerminalStateTransitions ---------------------------------------------


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
def test_terminal_runs_cannot_crash_pause_or_start_cancelling(terminal):
    for target in ("CRASHED", "CANCELLING", "PAUSED"):
        decision = o.handle_flow_terminal_state_transitions(ctx(state(terminal), state(target)))
        assert_decision(decision, ABORT, f"Run is already in terminal state {terminal}.")


def test_completed_with_persisted_result_cannot_be_left_or_overwritten_without_one():
    current = state("COMPLETED", data=PERSISTED)
    for target in ("RUNNING", "PENDING", "SCHEDULED"):
        assert_decision(o.handle_flow_terminal_state_transitions(ctx(current, state(target), deployment_id="d")),
                        REJECT, "Run is already COMPLETED.")
    for data in (None, {"type": "unpersisted"}):
        decision = o.handle_flow_terminal_state_transitions(ctx(current, state("COMPLETED", data=data)))
        assert_decision(decision, REJECT,
                        "Cannot overwrite a COMPLETED state that carries persisted result data with one that does not.")
        assert decision.state is None
    # Replacing it with another persisted result, or failing it, is allowed.
    assert o.handle_flow_terminal_state_transitions(ctx(current, state("COMPLETED", data=PERSISTED))) is None
    assert o.handle_flow_terminal_state_transitions(ctx(current, state("FAILED"))) is None


def test_what_counts_as_a_persisted_result():
    # Prefect: a dict whose "type" is not "unpersisted"; null, {} and non-dict data are not.
    for data in (None, {}, {"type": "unpersisted"}, "a string", [1, 2]):
        run = ctx(state("COMPLETED", data=data), state("RUNNING"))
        assert o.handle_flow_terminal_state_transitions(run) is None, data
    for data in (PERSISTED, {"type": "reference"}, {"storage_key": "k"}):
        run = ctx(state("COMPLETED", data=data), state("RUNNING"))
        assert_decision(o.handle_flow_terminal_state_transitions(run), REJECT)


def test_rerunning_a_finished_run_resets_the_pause_bookkeeping():
    policy = {"pause_keys": ["k"], "resuming": True, "retry_type": "in_process", "retries": 2}
    run = ctx(state("FAILED"), state("RUNNING"), empirical_policy=policy)
    assert o.handle_flow_terminal_state_transitions(run) is None
    assert run.policy_updates == {"pause_keys": [], "resuming": False, "retry_type": None}
    assert run.policy["retries"] == 2  # the rest of the policy is kept

    rescheduled = ctx(state("COMPLETED", data={"type": "unpersisted"}), state("SCHEDULED"), deployment_id="dep")
    assert o.handle_flow_terminal_state_transitions(rescheduled) is None
    assert rescheduled.policy_updates["retry_type"] == "reschedule"


def test_terminal_to_terminal_keeps_the_policy_and_runs_without_deployment_cannot_be_rescheduled():
    run = ctx(state("FAILED"), state("COMPLETED"), empirical_policy={"pause_keys": ["k"]})
    assert o.handle_flow_terminal_state_transitions(run) is None
    assert run.policy_updates == {}
    assert_decision(o.handle_flow_terminal_state_transitions(ctx(state("CANCELLED"), state("SCHEDULED"))),
                    ABORT, "Cannot reschedule a run without an associated deployment.")


def test_non_terminal_runs_are_not_this_rules_business():
    for current in (None, *[state(t) for t in NON_TERMINAL]):
        assert o.handle_flow_terminal_state_transitions(ctx(current, state("CRASHED"))) is None


# --- F3 EnforceCancellingToCancelledTransition -----------------------------------------


def test_cancelling_may_only_become_cancelled():
    for target in ("SCHEDULED", "PENDING", "RUNNING", "COMPLETED", "FAILED", "CRASHED", "PAUSED", "CANCELLING"):
        decision = o.enforce_cancelling_to_cancelled(ctx(state("CANCELLING"), state(target)))
        assert_decision(decision, REJECT,
                        "Cannot transition flows that are cancelling to a state other than Cancelled.")
        assert decision.state is None
    assert o.enforce_cancelling_to_cancelled(ctx(state("CANCELLING"), state("CANCELLED"))) is None
    assert o.enforce_cancelling_to_cancelled(ctx(state("RUNNING"), state("COMPLETED"))) is None


# --- F4 BypassCancellingFlowRunsWithNoInfra --------------------------------------------


def test_cancelling_a_run_with_no_infrastructure_writes_cancelled():
    for current, run in [
        (state("SCHEDULED"), {}),
        (state("SCHEDULED", "Late"), {}),
        (state("SCHEDULED", "Resuming"), {"infrastructure_pid": "123"}),  # resuming runs have no infra yet
    ]:
        decision = o.bypass_cancelling_runs_with_no_infra(ctx(current, state("CANCELLING"), **run))
        assert_decision(decision, REJECT, "Scheduled flow run has no infrastructure to terminate.")
        assert (decision.state["type"], decision.state["name"]) == ("CANCELLED", "Cancelled")
    suspended = state("PAUSED", "Suspended", pause_reschedule=True)
    decision = o.bypass_cancelling_runs_with_no_infra(ctx(suspended, state("CANCELLING"), deployment_id="d"))
    assert_decision(decision, REJECT, "Suspended flow run has no infrastructure to terminate.")
    assert decision.state["type"] == "CANCELLED"


def test_cancelling_a_run_with_infrastructure_goes_through_cancelling():
    for current, run in [
        (state("SCHEDULED", "AwaitingRetry"), {"infrastructure_pid": "4242"}),
        (state("PAUSED"), {}),  # an in-process pause keeps its process
        (state("RUNNING"), {}),
        (state("PENDING"), {}),
    ]:
        assert o.bypass_cancelling_runs_with_no_infra(ctx(current, state("CANCELLING"), **run)) is None
    assert o.bypass_cancelling_runs_with_no_infra(ctx(state("SCHEDULED"), state("CANCELLED"))) is None
    assert o.bypass_cancelling_runs_with_no_infra(ctx(None, state("CANCELLING"))) is None


# --- F5 PreventPendingTransitions ------------------------------------------------------


def test_only_one_worker_may_take_a_run_to_pending():
    for current in ("PENDING", "RUNNING", "CANCELLING", "CANCELLED"):
        decision = o.prevent_pending_transitions(ctx(state(current), state("PENDING")))
        assert_decision(decision, ABORT,
                        f"This run is in a {current} state and cannot transition to a PENDING state.")
        assert decision.state is None
    for current in ("SCHEDULED", "COMPLETED", "FAILED", "CRASHED", "PAUSED"):
        assert o.prevent_pending_transitions(ctx(state(current), state("PENDING"))) is None
    assert o.prevent_pending_transitions(ctx(None, state("PENDING"))) is None


def test_renamed_pending_sub_states_pass_and_keep_the_scheduled_time_and_lease():
    when = NOW - dt.timedelta(minutes=1)
    current = state("PENDING", scheduled_time=when, deployment_concurrency_lease_id="lease-1")
    proposed = state("PENDING", "Submitting")
    assert o.prevent_pending_transitions(ctx(current, proposed)) is None
    assert proposed["state_details"]["scheduled_time"] == when
    assert proposed["state_details"]["deployment_concurrency_lease_id"] == "lease-1"
    # Back to the default name, or the same sub-state again: a second worker -> ABORT.
    assert_decision(o.prevent_pending_transitions(ctx(state("PENDING", "Submitting"), state("PENDING"))), ABORT)
    assert_decision(o.prevent_pending_transitions(ctx(state("PENDING", "Submitting"), state("PENDING", "Submitting"))),
                    ABORT)


# --- F6 deployment concurrency (the db layer supplies the locked slot counts) ------------


def slots(**kw):
    taken = []
    out = {"limit": 1, "available": True, "strategy": "ENQUEUE", "lease_alive": True,
           "take": lambda: taken.append(1) or "lease-new", "renew": lambda lease: taken.append(lease)}
    out.update(kw)
    return out, taken


def test_a_free_deployment_slot_admits_the_run_with_a_lease_on_accept():
    s, taken = slots()
    assert o.secure_deployment_concurrency_slots(ctx(state("SCHEDULED"), state("PENDING"), __deployment_slots=s)) is None
    assert taken == []  # only taken once the whole transition is accepted
    run = ctx(state("SCHEDULED"), state("PENDING"), deployment_id="d", __deployment_slots=s)
    assert o.orchestrate(run, [o.secure_deployment_concurrency_slots]).status == ACCEPT
    assert taken == [1] and run.proposed["state_details"]["deployment_concurrency_lease_id"] == "lease-new"


def test_a_full_or_zero_deployment_limit_refuses_pending():
    s, _ = slots(available=False)
    decision = o.secure_deployment_concurrency_slots(ctx(state("SCHEDULED"), state("PENDING"), __deployment_slots=s))
    assert_decision(decision, REJECT, "Deployment concurrency limit reached.")
    assert (decision.state["type"], decision.state["name"]) == ("SCHEDULED", "AwaitingConcurrencySlot")
    assert decision.state["state_details"]["scheduled_time"] == NOW + dt.timedelta(seconds=30)

    s, _ = slots(available=False, strategy="CANCEL_NEW")
    decision = o.secure_deployment_concurrency_slots(ctx(state("SCHEDULED"), state("PENDING"), __deployment_slots=s))
    assert decision.state["type"] == "CANCELLED"

    s, _ = slots(limit=0)
    assert_decision(o.secure_deployment_concurrency_slots(ctx(state("SCHEDULED"), state("PENDING"), __deployment_slots=s)),
                    ABORT, "The deployment concurrency limit is 0. The flow will deadlock if submitted again.")
    # Runs without a limit, and runs that already hold their slot, are not concerned.
    assert o.secure_deployment_concurrency_slots(ctx(state("SCHEDULED"), state("PENDING"))) is None
    s, _ = slots(available=False)
    assert o.secure_deployment_concurrency_slots(ctx(state("RUNNING"), state("PENDING"), __deployment_slots=s)) is None


def test_the_lease_travels_to_running_and_is_renewed_or_retaken():
    s, taken = slots()
    run = ctx(state("PENDING", deployment_concurrency_lease_id="L1"), state("RUNNING"), __deployment_slots=s)
    assert o.orchestrate(run, [o.validate_deployment_lease_at_running]).status == ACCEPT
    assert taken == ["L1"] and run.proposed["state_details"]["deployment_concurrency_lease_id"] == "L1"

    s, taken = slots(lease_alive=False)
    run = ctx(state("PENDING", deployment_concurrency_lease_id="L1"), state("RUNNING"), __deployment_slots=s)
    assert o.orchestrate(run, [o.validate_deployment_lease_at_running]).status == ACCEPT
    assert run.proposed["state_details"]["deployment_concurrency_lease_id"] == "lease-new"

    s, _ = slots(lease_alive=False, available=False)
    run = ctx(state("PENDING", deployment_concurrency_lease_id="L1"), state("RUNNING"), __deployment_slots=s)
    decision = o.validate_deployment_lease_at_running(run)
    assert_decision(decision, REJECT, "Deployment concurrency limit reached after lease expiry.")
    assert decision.state["type"] == "CANCELLED"


# --- F7 EnsureOnlyScheduledFlowsMarkedLate ---------------------------------------------


def test_only_scheduled_runs_are_marked_late_and_only_once():
    assert o.ensure_only_scheduled_flows_marked_late(ctx(state("SCHEDULED"), state("SCHEDULED", "Late"))) is None
    assert o.ensure_only_scheduled_flows_marked_late(ctx(state("SCHEDULED", "AwaitingRetry"), state("SCHEDULED", "Late"))) is None
    assert_decision(o.ensure_only_scheduled_flows_marked_late(ctx(state("SCHEDULED", "Late"), state("SCHEDULED", "Late"))),
                    REJECT, "This flow run is already marked late.")
    for current in ("PENDING", "RUNNING", "COMPLETED", "PAUSED"):
        decision = o.ensure_only_scheduled_flows_marked_late(ctx(state(current), state("SCHEDULED", "Late")))
        assert_decision(decision, REJECT, "Only scheduled flows can be marked late.")
        assert decision.state is None
    # Other scheduled states are not "marking late".
    assert o.ensure_only_scheduled_flows_marked_late(ctx(state("RUNNING"), state("SCHEDULED", "AwaitingRetry"))) is None


# --- F8 HandlePausingFlows ---------------------------------------------------------------


def test_only_running_flows_pause():
    assert_decision(o.handle_pausing_flows(ctx(None, state("PAUSED"))), ABORT, "Cannot pause flows with no state.")
    assert_decision(o.handle_pausing_flows(ctx(None, state("PAUSED", "Suspended"))), ABORT,
                    "Cannot suspend flows with no state.")
    for current in ("PENDING", "SCHEDULED", "PAUSED", "COMPLETED"):
        decision = o.handle_pausing_flows(ctx(state(current), state("PAUSED")))
        assert_decision(decision, REJECT, "Cannot pause flows that are not currently running.")
        assert decision.state is None


def test_a_pause_key_fires_once_and_is_recorded_on_accept():
    run = ctx(state("RUNNING"), state("PAUSED", pause_key="approval"), empirical_policy={"pause_keys": ["old"]})
    assert o.handle_pausing_flows(run) is None
    assert "pause_keys" not in run.policy_updates  # recorded only once the pause is accepted
    assert o.orchestrate(run, [o.handle_pausing_flows]).status == ACCEPT
    assert run.policy_updates["pause_keys"] == ["old", "approval"]

    again = ctx(state("RUNNING"), state("PAUSED", pause_key="approval"), empirical_policy=run.policy)
    assert_decision(o.handle_pausing_flows(again), REJECT, "This pause has already fired.")
    assert_decision(o.handle_pausing_flows(ctx(state("RUNNING"), state("PAUSED", "Suspended", pause_key="approval"),
                                               empirical_policy=run.policy)),
                    REJECT, "This suspend has already fired.")

    keyless = ctx(state("RUNNING"), state("PAUSED"))
    assert o.orchestrate(keyless, [o.handle_pausing_flows]).status == ACCEPT
    (generated,) = keyless.policy_updates["pause_keys"]
    uuid.UUID(generated)  # no key given: a random one, so every keyless pause fires


def test_suspending_needs_a_deployment_and_no_parent():
    suspend = state("PAUSED", "Suspended", pause_reschedule=True)
    assert_decision(o.handle_pausing_flows(ctx(state("RUNNING"), suspend, parent_task_run_id="t", deployment_id="d")),
                    ABORT, "Cannot suspend subflows.")
    assert_decision(o.handle_pausing_flows(ctx(state("RUNNING"), suspend)), ABORT,
                    "Cannot suspend flows without a deployment.")
    assert o.handle_pausing_flows(ctx(state("RUNNING"), suspend, deployment_id="d")) is None
    # An in-process pause of a subflow is fine.
    assert o.handle_pausing_flows(ctx(state("RUNNING"), state("PAUSED"), parent_task_run_id="t")) is None


# --- F9 HandleResumingPausedFlows --------------------------------------------------------


def test_a_paused_run_leaves_only_to_running_scheduled_cancelling_or_final():
    for target in ("PENDING", "PAUSED"):
        decision = o.handle_resuming_paused_flows(ctx(state("PAUSED"), state(target)))
        assert_decision(decision, REJECT, f"This run cannot transition to the {target} state from the PAUSED state.")
        assert decision.state is None
    for target in ("RUNNING", "CANCELLING", "COMPLETED", "FAILED", "CANCELLED", "CRASHED"):
        assert o.handle_resuming_paused_flows(ctx(state("PAUSED"), state(target))) is None, target


def test_resuming_sets_the_resuming_flag_on_accept():
    run = ctx(state("PAUSED", pause_timeout=NOW + dt.timedelta(minutes=1)), state("RUNNING"))
    assert o.handle_resuming_paused_flows(run) is None
    assert "resuming" not in run.policy_updates
    assert o.orchestrate(run, [o.handle_resuming_paused_flows]).status == ACCEPT
    assert run.policy_updates["resuming"] is True


def test_a_timed_out_pause_fails_instead_of_resuming_but_can_still_be_cancelled():
    timed_out = state("PAUSED", pause_timeout=NOW - dt.timedelta(seconds=1))
    decision = o.handle_resuming_paused_flows(ctx(timed_out, state("RUNNING")))
    assert_decision(decision, REJECT, "The flow run pause has timed out and can no longer resume.")
    assert decision.state["type"] == "FAILED"
    assert decision.state["message"] == "The flow was running and never resumed."
    suspended = state("PAUSED", "Suspended", pause_timeout=NOW - dt.timedelta(seconds=1), pause_reschedule=True)
    decision = o.handle_resuming_paused_flows(ctx(suspended, state("SCHEDULED", "Resuming"), deployment_id="d"))
    assert decision.state["message"] == "The flow was resuming and never resumed."
    assert o.handle_resuming_paused_flows(ctx(timed_out, state("CANCELLING"))) is None


def test_a_suspended_run_is_rescheduled_only_with_a_deployment():
    suspended = state("PAUSED", "Suspended", pause_reschedule=True)
    assert_decision(o.handle_resuming_paused_flows(ctx(suspended, state("SCHEDULED", "Resuming"))),
                    REJECT, "Cannot reschedule a resuming flow run without a deployment.")
    assert o.handle_resuming_paused_flows(ctx(suspended, state("SCHEDULED", "Resuming"), deployment_id="d")) is None


# --- F10 CopyScheduledTime / F11 WaitForScheduledTime ----------------------------------


def test_scheduled_to_pending_keeps_the_scheduled_time_unless_one_is_proposed():
    when = NOW + dt.timedelta(minutes=5)
    proposed = state("PENDING")
    assert o.copy_scheduled_time(ctx(state("SCHEDULED", scheduled_time=when), proposed)) is None
    assert proposed["state_details"]["scheduled_time"] == when
    own = NOW + dt.timedelta(minutes=9)
    proposed = state("PENDING", scheduled_time=own)
    o.copy_scheduled_time(ctx(state("SCHEDULED", scheduled_time=when), proposed))
    assert proposed["state_details"]["scheduled_time"] == own
    running = state("RUNNING")
    o.copy_scheduled_time(ctx(state("SCHEDULED", scheduled_time=when), running))
    assert running["state_details"]["scheduled_time"] is None


@pytest.mark.parametrize(
    ("ahead", "delay"),
    [(120, 120), (2.4, 2), (2.6, 3), (0.6, 1), (0.4, None), (0, None), (-30, None)],
)
def test_running_before_the_scheduled_time_waits_the_rounded_seconds(ahead, delay):
    for current_type in ("SCHEDULED", "PENDING"):
        current = state(current_type, scheduled_time=NOW + dt.timedelta(seconds=ahead))
        decision = o.wait_for_scheduled_time(ctx(current, state("RUNNING")))
        if delay is None:
            assert decision is None
        else:
            assert_decision(decision, WAIT, "Scheduled time is in the future")
            assert decision.delay_seconds == delay and decision.state is None


def test_waiting_only_applies_to_scheduled_or_pending_runs_going_to_running():
    future = NOW + dt.timedelta(minutes=1)
    assert o.wait_for_scheduled_time(ctx(state("SCHEDULED", scheduled_time=future), state("PENDING"))) is None
    assert o.wait_for_scheduled_time(ctx(state("PAUSED", scheduled_time=future), state("RUNNING"))) is None
    assert o.wait_for_scheduled_time(ctx(state("PENDING"), state("RUNNING"))) is None  # no scheduled time
    assert o.wait_for_scheduled_time(ctx(None, state("RUNNING"))) is None
    # Datetimes stored as ISO text (the state column) are understood too.
    iso = (NOW + dt.timedelta(seconds=10)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert o.wait_for_scheduled_time(ctx(state("PENDING", scheduled_time=iso), state("RUNNING"))).delay_seconds == 10


# --- F12 RetryFailedFlows ----------------------------------------------------------------


def test_a_failed_flow_with_retries_left_is_rescheduled_as_awaiting_retry():
    policy = {"retries": 2, "retry_delay": 3, "pause_keys": ["p"], "resuming": True}
    current = state("RUNNING", deployment_concurrency_lease_id="L")
    run = ctx(current, state("FAILED", message="Flow run encountered an exception: boom", data=PERSISTED),
              run_count=2, empirical_policy=policy)
    decision = o.retry_failed_flows(run)
    assert_decision(decision, REJECT, "Retrying")
    retry = decision.state
    assert (retry["type"], retry["name"]) == ("SCHEDULED", "AwaitingRetry")
    assert retry["state_details"]["scheduled_time"] == NOW + dt.timedelta(seconds=3)
    assert retry["message"] == "Flow run encountered an exception: boom" and retry["data"] == PERSISTED
    assert retry["state_details"]["deployment_concurrency_lease_id"] == "L"
    assert run.policy_updates == {"resuming": False, "pause_keys": [], "retry_type": "in_process"}


def test_without_retries_left_the_failure_is_accepted_and_retry_type_cleared():
    for policy, run_count in [({"retries": 1, "retry_type": "in_process"}, 2), ({"retries": None}, 1), ({}, 1)]:
        run = ctx(state("RUNNING"), state("FAILED"), run_count=run_count, empirical_policy=policy)
        assert o.retry_failed_flows(run) is None
        assert run.policy_updates == {"retry_type": None}
    # retries=0 is "no retries"; a missing delay means "now".
    assert o.retry_failed_flows(ctx(state("RUNNING"), state("FAILED"), run_count=1, empirical_policy={"retries": 0})) is None
    decision = o.retry_failed_flows(ctx(state("RUNNING"), state("FAILED"), run_count=1, empirical_policy={"retries": 1}))
    assert decision.state["state_details"]["scheduled_time"] == NOW


def test_retries_only_apply_to_running_to_failed():
    policy = {"retries": 5}
    for current, proposed in [("PENDING", "FAILED"), ("RUNNING", "CRASHED"), ("RUNNING", "COMPLETED")]:
        assert o.retry_failed_flows(ctx(state(current), state(proposed), run_count=1, empirical_policy=policy)) is None


def test_the_whole_retry_exchange_of_a_flow():
    """03b: FAILED -> REJECT into AwaitingRetry; RUNNING -> WAIT until its time; then ACCEPT."""
    policy = {"retries": 1, "retry_delay": 3}
    decision = o.orchestrate(ctx(state("RUNNING"), state("FAILED"), run_count=1, empirical_policy=policy), o.FLOW_RULES)
    assert decision.status == REJECT and decision.state["name"] == "AwaitingRetry"
    retry = decision.state
    waiting = o.orchestrate(ctx(retry, state("RUNNING"), run_count=1, empirical_policy=policy), o.FLOW_RULES)
    assert_decision(waiting, WAIT, "Scheduled time is in the future")
    assert waiting.delay_seconds == 3
    later = ctx(retry, state("RUNNING"), run_count=1, empirical_policy=policy)
    later.now = NOW + dt.timedelta(seconds=3)
    assert o.orchestrate(later, o.FLOW_RULES).status == ACCEPT
    assert later.proposed["name"] == "Running"  # flow runs are not renamed on retry
    # The second failure (run_count 2 > retries 1) is final.
    assert o.orchestrate(ctx(state("RUNNING"), state("FAILED"), run_count=2, empirical_policy=policy),
                         o.FLOW_RULES).status == ACCEPT


# --- orchestrate(), rule order, force -------------------------------------------------------


def test_orchestrate_accepts_when_no_rule_objects_and_runs_hooks_only_then():
    fired = []
    run = ctx(state("RUNNING"), state("COMPLETED"))
    run.after_accept.append(lambda: fired.append("hook"))
    assert o.orchestrate(run, o.FLOW_RULES) == Decision(ACCEPT)
    assert fired == ["hook"]

    fired.clear()
    refused = ctx(state("COMPLETED"), state("CRASHED"))
    refused.after_accept.append(lambda: fired.append("hook"))
    assert o.orchestrate(refused, o.FLOW_RULES).status == ABORT
    assert fired == []


def test_the_first_objecting_rule_wins():
    seen = []

    def allow(c):
        seen.append("allow")

    def refuse(c):
        seen.append("refuse")
        return Decision(ABORT, "no")

    def never(c):
        seen.append("never")
        return Decision(REJECT, "late")

    assert o.orchestrate(ctx(None, state("PENDING")), [allow, refuse, never]) == Decision(ABORT, "no")
    assert seen == ["allow", "refuse"]


def test_flow_rules_are_in_prefects_priority_order():
    assert o.FLOW_RULES == [
        o.prevent_duplicate_transitions,
        o.handle_flow_terminal_state_transitions,
        o.enforce_cancelling_to_cancelled,
        o.bypass_cancelling_runs_with_no_infra,
        o.prevent_pending_transitions,
        o.secure_deployment_concurrency_slots,
        o.validate_deployment_lease_at_running,
        o.ensure_only_scheduled_flows_marked_late,
        o.handle_pausing_flows,
        o.handle_resuming_paused_flows,
        o.copy_scheduled_time,
        o.wait_for_scheduled_time,
        o.retry_failed_flows,
    ]


def test_the_full_flow_policy_on_the_transcript_probes():
    """09_probe set-state-rules, outcome by outcome."""
    cases = [
        (state("PENDING"), state("PENDING"), ABORT),
        (state("PENDING"), state("RUNNING"), ACCEPT),
        (state("RUNNING"), state("PAUSED", pause_key="p1"), ACCEPT),
        (state("PAUSED", pause_key="p1"), state("RUNNING"), ACCEPT),
        (state("RUNNING"), state("COMPLETED"), ACCEPT),
        (state("COMPLETED"), state("CRASHED"), ABORT),
        (state("COMPLETED"), state("RUNNING"), ACCEPT),  # result not persisted: rerun allowed
        (state("COMPLETED", data=PERSISTED), state("RUNNING"), REJECT),
        (state("COMPLETED", data=PERSISTED), state("SCHEDULED"), REJECT),
        (state("PENDING", scheduled_time=NOW + dt.timedelta(seconds=120)), state("RUNNING"), WAIT),
        (state("PENDING"), state("CANCELLING"), ACCEPT),
        (state("CANCELLING"), state("COMPLETED"), REJECT),
        (state("SCHEDULED"), state("CANCELLING"), REJECT),
    ]
    for current, proposed, status in cases:
        decision = o.orchestrate(ctx(current, proposed), o.FLOW_RULES)
        assert decision.status == status, (current["type"], proposed["type"], decision)


def test_force_keeps_only_result_protection_and_the_no_infra_cancel():
    forced = [o.protect_persisted_completed, *o.FORCED_FLOW_RULES]
    # What the engine reports on a crash, and the runner's CANCELLED after a kill, go through.
    for current, proposed in [
        (state("COMPLETED"), state("CRASHED")),
        (state("CANCELLING"), state("CANCELLED")),
        (state("CANCELLING"), state("COMPLETED")),
        (state("PENDING"), state("PENDING")),
        (state("FAILED"), state("RUNNING")),
        (state("COMPLETED", data=PERSISTED), state("RUNNING")),
        (state("COMPLETED", data=PERSISTED), state("COMPLETED", data=PERSISTED)),
    ]:
        assert o.orchestrate(ctx(current, proposed), forced).status == ACCEPT, (current["type"], proposed["type"])
    decision = o.orchestrate(ctx(state("COMPLETED", data=PERSISTED), state("COMPLETED")), forced)
    assert_decision(decision, REJECT,
                    "Cannot overwrite a COMPLETED state that carries persisted result data with one that does not.")
    decision = o.orchestrate(ctx(state("SCHEDULED"), state("CANCELLING")), forced)
    assert decision.status == REJECT and decision.state["type"] == "CANCELLED"
    assert o.FORCED_FLOW_RULES == [o.bypass_cancelling_runs_with_no_infra]


def test_protect_persisted_completed_only_guards_completed_over_completed():
    assert o.protect_persisted_completed(ctx(state("COMPLETED", data=PERSISTED), state("FAILED"))) is None
    assert o.protect_persisted_completed(ctx(state("COMPLETED"), state("COMPLETED"))) is None
    assert o.protect_persisted_completed(ctx(state("FAILED", data=PERSISTED), state("COMPLETED"))) is None
    assert o.protect_persisted_completed(ctx(None, state("COMPLETED"))) is None
    assert_decision(o.protect_persisted_completed(ctx(state("COMPLETED", data=PERSISTED),
                                                      state("COMPLETED", data={"type": "unpersisted"}))), REJECT)


# --- task-run rules (REST set_state; CoreTaskPolicy) ----------------------------------------


def flow_run(state_, run_count=1):
    return {"id": str(uuid.uuid4()), "state": state_, "run_count": run_count}


def task_ctx(current, proposed, *, parent=None, **run):
    """A task run whose parent flow run (as db.runs reads it) is ``parent``."""
    columns = {"flow_run_run_count": 1}
    if parent is not None:
        columns["flow_run_id"] = parent["id"]
        columns["__flow_run"] = parent
    columns.update(run)
    return ctx(current, proposed, **columns)


def test_task_rules_are_prefects_core_task_policy():
    # CoreTaskPolicy has neither PreventPendingTransitions nor EnforceCancellingToCancelled
    # (those guard flow runs); cache and tag-concurrency rules are not implemented here.
    assert o.TASK_RULES == [
        o.handle_task_terminal_state_transitions,
        o.prevent_running_tasks_from_stopped_flows,
        o.copy_scheduled_time,
        o.wait_for_scheduled_time,
        o.retry_failed_tasks,
        o.rename_reruns,
    ]
    running = flow_run(state("RUNNING"))
    for current, proposed in [("PENDING", "PENDING"), ("RUNNING", "PENDING"), ("CANCELLING", "COMPLETED")]:
        decision = o.orchestrate(task_ctx(state(current), state(proposed), parent=running), o.TASK_RULES)
        assert decision.status == ACCEPT, (current, proposed, decision)


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
def test_terminal_tasks_cannot_crash_pause_or_start_cancelling(terminal):
    for target in ("CRASHED", "CANCELLING", "PAUSED"):
        decision = o.handle_task_terminal_state_transitions(task_ctx(state(terminal), state(target)))
        assert_decision(decision, ABORT, f"Run is already {terminal}.")


def test_a_task_completed_with_a_persisted_result_stays_completed():
    for target in ("RUNNING", "PENDING", "FAILED", "COMPLETED", "SCHEDULED"):
        decision = o.handle_task_terminal_state_transitions(task_ctx(state("COMPLETED", data=PERSISTED), state(target)))
        assert_decision(decision, REJECT, "This run is already completed.")
        assert decision.state is None
    assert o.handle_task_terminal_state_transitions(task_ctx(state("COMPLETED", data={"type": "unpersisted"}),
                                                             state("FAILED"))) is None


def test_a_task_leaving_a_terminal_state_restarts_its_run_count():
    parent = flow_run(state("RUNNING"), run_count=1)
    run = task_ctx(state("FAILED"), state("RUNNING"), parent=parent, run_count=3, flow_run_run_count=1)
    assert o.orchestrate(run, o.TASK_RULES).status == ACCEPT
    assert run.policy_updates == {"__reset_run_count": True}
    assert run.proposed["name"] == "Running"  # the reset count means this is not a "Rerunning"
    # Terminal -> terminal keeps the count.
    same = task_ctx(state("FAILED"), state("COMPLETED"), run_count=3)
    assert o.handle_task_terminal_state_transitions(same) is None and same.policy_updates == {}


def test_a_finished_task_rerun_by_a_flow_retry_is_named_retrying():
    parent = flow_run(state("RUNNING"), run_count=2)
    run = task_ctx(state("COMPLETED"), state("RUNNING"), parent=parent, run_count=1, flow_run_run_count=1)
    assert o.orchestrate(run, o.TASK_RULES).status == ACCEPT
    assert run.proposed["name"] == "Retrying"


def test_tasks_only_run_inside_a_running_flow():
    for parent_state in (None, state("PENDING"), state("SCHEDULED"), state("COMPLETED"), state("CANCELLING")):
        decision = o.prevent_running_tasks_from_stopped_flows(
            task_ctx(state("PENDING"), state("RUNNING"), parent=flow_run(parent_state)))
        assert_decision(decision, ABORT, "The enclosing flow must be running to begin task execution.")
    assert o.prevent_running_tasks_from_stopped_flows(
        task_ctx(state("PENDING"), state("RUNNING"), parent=flow_run(state("RUNNING")))) is None
    # Tasks without a (known) flow run, and other targets, are not concerned.
    assert o.prevent_running_tasks_from_stopped_flows(task_ctx(state("PENDING"), state("RUNNING"))) is None
    assert o.prevent_running_tasks_from_stopped_flows(
        task_ctx(state("PENDING"), state("COMPLETED"), parent=flow_run(state("PENDING")))) is None


def test_a_task_of_a_paused_flow_is_put_in_a_paused_not_ready_state():
    timeout = NOW + dt.timedelta(minutes=5)
    parent = flow_run(state("PAUSED", pause_timeout=timeout, pause_reschedule=True))
    decision = o.prevent_running_tasks_from_stopped_flows(task_ctx(state("PENDING"), state("RUNNING"), parent=parent))
    assert_decision(decision, REJECT,
                    f"The flow is paused, new tasks can execute after resuming flow run: {parent['id']}.")
    paused = decision.state
    assert (paused["type"], paused["name"]) == ("PAUSED", "NotReady")
    assert paused["state_details"]["pause_timeout"] == timeout
    assert paused["state_details"]["pause_reschedule"] is True


def test_failed_tasks_retry_with_per_attempt_delays():
    policy = {"retries": 2, "retry_delay": [5, 7]}
    for run_count, delay in [(1, 5), (2, 7)]:
        run = task_ctx(state("RUNNING"), state("FAILED", message="m"), run_count=run_count, empirical_policy=policy)
        decision = o.retry_failed_tasks(run)
        assert_decision(decision, REJECT, "Retrying")
        assert (decision.state["type"], decision.state["name"], decision.state["message"]) == (
            "SCHEDULED", "AwaitingRetry", "m")
        assert decision.state["state_details"]["scheduled_time"] == NOW + dt.timedelta(seconds=delay)
    assert o.retry_failed_tasks(task_ctx(state("RUNNING"), state("FAILED"), run_count=3, empirical_policy=policy)) is None
    # A number is one delay for every attempt; a longer list than retries is fine.
    decision = o.retry_failed_tasks(task_ctx(state("RUNNING"), state("FAILED"), run_count=1,
                                             empirical_policy={"retries": 1, "retry_delay": 2}))
    assert decision.state["state_details"]["scheduled_time"] == NOW + dt.timedelta(seconds=2)


def test_task_retries_respect_retriable_and_need_retries():
    policy = {"retries": 2, "retry_delay": 0}
    not_retriable = state("FAILED", retriable=False)
    assert o.retry_failed_tasks(task_ctx(state("RUNNING"), not_retriable, run_count=1, empirical_policy=policy)) is None
    for policy in ({"retries": None}, {"retries": 0}, {}):
        assert o.retry_failed_tasks(task_ctx(state("RUNNING"), state("FAILED"), run_count=1, empirical_policy=policy)) is None
    # Older clients' max_retries still counts.
    assert o.retry_failed_tasks(task_ctx(state("RUNNING"), state("FAILED"), run_count=1,
                                         empirical_policy={"max_retries": 1})).status == REJECT
    assert o.retry_failed_tasks(task_ctx(state("PENDING"), state("FAILED"), run_count=1,
                                         empirical_policy={"retries": 2})) is None


def test_reruns_are_renamed():
    retry = state("SCHEDULED", "AwaitingRetry")
    proposed = state("RUNNING")
    assert o.rename_reruns(task_ctx(retry, proposed, run_count=1)) is None
    assert proposed["name"] == "Retrying"
    for name in ("Running", "Custom"):
        proposed = state("RUNNING", name)
        o.rename_reruns(task_ctx(state("PENDING"), proposed, run_count=1))
        assert proposed["name"] == "Rerunning"
    first = state("RUNNING")
    o.rename_reruns(task_ctx(state("PENDING"), first, run_count=0))
    assert first["name"] == "Running"


def test_a_task_waits_for_its_scheduled_time_and_pending_keeps_it():
    parent = flow_run(state("RUNNING"))
    when = NOW + dt.timedelta(seconds=30)
    pending = state("PENDING")
    assert o.orchestrate(task_ctx(state("SCHEDULED", scheduled_time=when), pending, parent=parent),
                         o.TASK_RULES).status == ACCEPT
    assert pending["state_details"]["scheduled_time"] == when
    decision = o.orchestrate(task_ctx(pending, state("RUNNING"), parent=parent), o.TASK_RULES)
    assert decision.status == WAIT and decision.delay_seconds == 30
