"""/flow_runs and /flow_run_states over raw HTTP, on both backends.

Create/read/update/delete, filter/count/paginate/history, the server-computed fields,
labels and tags, set_state with every orchestration outcome (shapes as in the golden
transcripts 01, 03b and 09), state history reads, server timestamps, subflow mirroring,
and bad input: 4xx JSON naming the field, never a 500, nothing written.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from db.models import FlowRun, FlowRunState, Log, TaskRun, TaskRunState

PERSISTED = {"storage_key": "/x", "serializer": {"type": "json"}, "prefect_version": "3.8.8",
             "storage_block_id": None, "expiration": None}
RUN_KEYS = {
    "id", "created", "updated", "name", "flow_id", "state_id", "deployment_id", "deployment_version",
    "work_queue_id", "work_queue_name", "flow_version", "parameters", "idempotency_key", "context",
    "empirical_policy", "tags", "labels", "parent_task_run_id", "state_type", "state_name", "run_count",
    "expected_start_time", "next_scheduled_start_time", "start_time", "end_time", "total_run_time",
    "estimated_run_time", "estimated_start_time_delta", "auto_scheduled", "infrastructure_document_id",
    "infrastructure_pid", "created_by", "work_pool_id", "work_pool_name", "state", "job_variables",
}
STATE_KEYS = {"id", "type", "name", "timestamp", "message", "data", "state_details"}
DETAIL_KEYS = {
    "flow_run_id", "task_run_id", "child_flow_run_id", "scheduled_time", "cache_key", "cache_expiration",
    "deferred", "untrackable_result", "pause_timeout", "pause_reschedule", "pause_key", "run_input_keyset",
    "refresh_cache", "retriable", "transition_id", "task_parameters_id", "traceparent",
    "deployment_concurrency_lease_id",
}


def parse(ts: str) -> dt.datetime:
    assert ts.endswith("Z") and len(ts) == 27, ts  # always UTC with microseconds
    return dt.datetime.fromisoformat(ts[:-1])


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def iso(value: dt.datetime) -> str:
    return value.isoformat(timespec="microseconds") + "Z"


@pytest.fixture
def flow(client):
    resp = client.simulate_post("/api/flows/", json={"name": f"flow-{uuid.uuid4().hex[:8]}"})
    assert resp.status_code == 201
    return resp.json


def make_run(client, flow, **body):
    resp = client.simulate_post("/api/flow_runs/", json={"flow_id": flow["id"], **body})
    assert resp.status_code == 201, resp.text
    return resp.json


def set_state(client, run_id, type_, *, expect=None, force=False, **state):
    resp = client.simulate_post(
        f"/api/flow_runs/{run_id}/set_state", json={"state": {"type": type_, **state}, "force": force}
    )
    assert resp.status_code in (200, 201), resp.text
    body = resp.json
    if expect is not None:
        assert (resp.status_code, body["status"]) == expect, body
    return body


def read(client, run_id):
    resp = client.simulate_get(f"/api/flow_runs/{run_id}")
    assert resp.status_code == 200, resp.text
    return resp.json


def counts():
    return FlowRun.select().count(), FlowRunState.select().count(), TaskRun.select().count()


def assert_422(resp, field, loc_root="body"):
    assert resp.status_code == 422, resp.text
    body = resp.json
    assert body["exception_message"] == "Invalid request received."
    assert [str(p) for p in body["exception_detail"][0]["loc"][: 1 + len(field.split("."))]] == [
        loc_root, *field.split(".")
    ], body
    assert field.split(".")[-1] in body["detail"], body


# --- create and read -----------------------------------------------------------------------


def test_create_as_the_engine_does_returns_every_server_field(client, flow):
    """ex:01#4: the engine's FlowRunCreate and the FlowRunResponse it gets."""
    body = {
        "state": {"type": "PENDING", "name": "Pending", "message": None, "state_details": {"traceparent": None},
                  "data": None},
        "name": None, "flow_id": flow["id"], "flow_version": "91ae92f3", "parameters": {"a": 3, "b": {"n": None}},
        "context": {}, "parent_task_run_id": None, "empirical_policy": {"retries": 0, "retry_delay": 0}, "tags": [],
    }
    before = now()
    resp = client.simulate_post("/api/flow_runs/", json=body)
    assert resp.status_code == 201
    run = resp.json
    assert set(run) == RUN_KEYS
    uuid.UUID(run["id"])
    assert len(run["name"].split("-")) >= 2  # generated two-word slug
    assert run["flow_id"] == flow["id"] and run["flow_version"] == "91ae92f3"
    assert run["parameters"] == {"a": 3, "b": {"n": None}}  # free JSON round-trips, nested nulls included
    assert run["labels"] == {"prefect.flow.id": flow["id"]}
    assert run["empirical_policy"] == {"max_retries": 0, "retry_delay_seconds": 0.0, "retries": 0, "retry_delay": 0,
                                       "pause_keys": [], "resuming": False, "retry_type": None}
    state = run["state"]
    assert set(state) == STATE_KEYS and set(state["state_details"]) == DETAIL_KEYS
    assert (state["type"], state["name"]) == ("PENDING", "Pending")
    assert state["state_details"]["flow_run_id"] == run["id"]
    assert run["state_id"] == state["id"]
    assert (run["state_type"], run["state_name"], run["run_count"]) == ("PENDING", "Pending", 0)
    assert run["expected_start_time"] == state["timestamp"]
    assert before <= parse(state["timestamp"]) <= now()
    assert run["next_scheduled_start_time"] is None and run["start_time"] is None and run["end_time"] is None
    for key in ("total_run_time", "estimated_run_time", "estimated_start_time_delta"):
        assert isinstance(run[key], float), key
    assert run["total_run_time"] == 0.0 and run["estimated_run_time"] == 0.0
    assert run["auto_scheduled"] is False and run["job_variables"] == {} and run["created_by"] is None
    again = read(client, run["id"])
    volatile = {"estimated_start_time_delta"}  # now - expected start while not started
    assert {k: v for k, v in again.items() if k not in volatile} == {k: v for k, v in run.items() if k not in volatile}


def test_bare_create_defaults(client, flow):
    run = make_run(client, flow)
    assert (run["state_type"], run["state_name"]) == ("PENDING", "Pending")
    assert run["parameters"] == {} and run["context"] == {} and run["tags"] == []
    assert run["empirical_policy"]["retries"] is None and run["empirical_policy"]["retry_delay"] is None
    named = make_run(client, flow, name="", tags=["a", "b"], labels={"team": "x", "n": 1, "ok": True})
    assert named["name"]  # an empty name is generated too
    assert sorted(named["tags"]) == ["a", "b"]
    assert named["labels"] == {"team": "x", "n": 1, "ok": True, "prefect.flow.id": flow["id"]}


def test_create_with_an_initial_state_applies_the_bookkeeping(client, flow):
    when = (now() + dt.timedelta(hours=1)).replace(microsecond=123456)
    scheduled = make_run(client, flow, state={"type": "SCHEDULED", "state_details": {"scheduled_time": iso(when)}})
    assert scheduled["expected_start_time"] == iso(when) == scheduled["next_scheduled_start_time"]
    assert scheduled["state"]["state_details"]["scheduled_time"] == iso(when)
    # A Scheduled state without a time is due now.
    due = make_run(client, flow, state={"type": "SCHEDULED"})
    assert due["state"]["state_details"]["scheduled_time"] == due["expected_start_time"] == due["next_scheduled_start_time"]
    assert abs(parse(due["expected_start_time"]) - parse(due["state"]["timestamp"])) < dt.timedelta(seconds=1)
    running = make_run(client, flow, state={"type": "RUNNING"})
    assert running["run_count"] == 1 and running["start_time"] == running["state"]["timestamp"]
    # A run that ends without running starts and ends at once (Prefect's SetEndTime).
    done = make_run(client, flow, state={"type": "COMPLETED"})
    assert done["start_time"] == done["end_time"] == done["state"]["timestamp"]
    assert done["run_count"] == 0 and done["total_run_time"] == 0.0


def test_idempotency_key_returns_the_existing_run_untouched(client, flow):
    first = client.simulate_post("/api/flow_runs/", json={"flow_id": flow["id"], "idempotency_key": "k1", "name": "idem"})
    assert first.status_code == 201
    set_state(client, first.json["id"], "RUNNING")
    again = client.simulate_post("/api/flow_runs/", json={"flow_id": flow["id"], "idempotency_key": "k1", "name": "other",
                                                          "state": {"type": "SCHEDULED"}})
    assert again.status_code == 200
    assert again.json["id"] == first.json["id"] and again.json["name"] == "idem"
    assert again.json["state_type"] == "RUNNING"  # its state is not changed by the second create
    other_flow = client.simulate_post("/api/flows/", json={"name": "other-flow"}).json
    assert client.simulate_post("/api/flow_runs/", json={"flow_id": other_flow["id"], "idempotency_key": "k1"}).status_code == 201
    assert FlowRun.select().count() == 2


def test_refused_creates_are_4xx_naming_the_field_and_write_nothing(client, flow):
    fid = flow["id"]
    cases = [
        ({"name": "x"}, "flow_id"),
        ({"flow_id": "not-a-uuid"}, "flow_id"),
        ({"flow_id": 5}, "flow_id"),
        ({"flow_id": fid, "tags": "x"}, "tags"),
        ({"flow_id": fid, "tags": [1]}, "tags.0"),
        ({"flow_id": fid, "parameters": [1]}, "parameters"),
        ({"flow_id": fid, "labels": []}, "labels"),
        ({"flow_id": fid, "state": {"type": "BOGUS"}}, "state.type"),
        ({"flow_id": fid, "state": {"name": "x"}}, "state.type"),
        ({"flow_id": fid, "state": "RUNNING"}, "state"),
        ({"flow_id": fid, "state": {"type": "SCHEDULED", "state_details": {"scheduled_time": "soon"}}}, "state.state_details"),
        ({"flow_id": fid, "empirical_policy": {"retries": "many"}}, "empirical_policy.retries"),
        ({"flow_id": fid, "empirical_policy": {"retry_type": "sometimes"}}, "empirical_policy.retry_type"),
        ({"flow_id": fid, "parent_task_run_id": "nope"}, "parent_task_run_id"),
        ({"flow_id": fid, "name": "x" * 5001}, "name"),
        ({"flow_id": fid, "parameters": {"x": "nul\u0000"}}, "parameters.x"),
    ]
    for body, field in cases:
        assert_422(client.simulate_post("/api/flow_runs/", json=body), field)
    listed = client.simulate_post("/api/flow_runs/", json=[{"flow_id": fid}])
    assert listed.status_code == 422 and listed.json["exception_detail"][0]["loc"] == ["body"]
    malformed = client.simulate_post("/api/flow_runs/", body=b'{"flow_id": ', headers={"content-type": "application/json"})
    assert malformed.status_code == 422 and malformed.json["exception_detail"][0]["type"] == "json_invalid"
    assert "JSON" in malformed.json["detail"]
    empty = client.simulate_post("/api/flow_runs/")
    assert_422(empty, "flow_id")
    unknown = client.simulate_post("/api/flow_runs/", json={"flow_id": str(uuid.uuid4())})
    assert unknown.status_code == 409 and unknown.json["detail"].startswith("Data integrity conflict.")
    pool = client.simulate_post("/api/flow_runs/", json={"flow_id": fid, "work_pool_name": "no-such-pool"})
    assert pool.status_code == 404 and "detail" in pool.json
    assert counts() == (0, 0, 0)


def test_unknown_and_malformed_ids(client):
    missing = str(uuid.uuid4())
    for method, path, body in [
        ("GET", f"/api/flow_runs/{missing}", None),
        ("PATCH", f"/api/flow_runs/{missing}", {"name": "x"}),
        ("PATCH", f"/api/flow_runs/{missing}", {}),
        ("DELETE", f"/api/flow_runs/{missing}", None),
        ("PATCH", f"/api/flow_runs/{missing}/labels", {"a": "b"}),
        ("POST", f"/api/flow_runs/{missing}/set_state", {"state": {"type": "RUNNING"}}),
    ]:
        resp = client.simulate_request(method, path, json=body)
        assert resp.status_code == 404 and resp.json == {"detail": "Flow run not found"}, (method, path)
    resp = client.simulate_get("/api/flow_runs/not-a-uuid")
    assert resp.status_code == 404 and resp.json == {"detail": "Not Found"}
    assert client.simulate_post("/api/flow_runs/not-a-uuid/set_state", json={"state": {"type": "RUNNING"}}).status_code == 404


# --- update, labels, delete -----------------------------------------------------------------


def test_patch_updates_only_the_given_fields(client, flow):
    run = make_run(client, flow, name="before", tags=["t"], parameters={"a": 1},
                   empirical_policy={"retries": 2, "retry_delay": 5})
    patch = {"name": "after", "flow_version": "v2", "parameters": {"b": [1, None]}, "tags": ["x", "y"],
             "infrastructure_pid": "4242"}
    resp = client.simulate_patch(f"/api/flow_runs/{run['id']}", json=patch)
    assert resp.status_code == 204 and resp.content == b""
    after = read(client, run["id"])
    for key, value in patch.items():
        assert after[key] == value, key
    assert after["empirical_policy"]["retries"] == 2  # untouched
    assert parse(after["updated"]) >= parse(run["updated"])
    # empirical_policy is replaced as a whole, with the defaults filled in.
    assert client.simulate_patch(f"/api/flow_runs/{run['id']}", json={"empirical_policy": {"retries": 3}}).status_code == 204
    assert read(client, run["id"])["empirical_policy"] == {
        "max_retries": 0, "retry_delay_seconds": 0.0, "retries": 3, "retry_delay": None,
        "pause_keys": [], "resuming": False, "retry_type": None,
    }
    assert client.simulate_patch(f"/api/flow_runs/{run['id']}", json={}).status_code == 204
    assert client.simulate_patch(f"/api/flow_runs/{run['id']}", body=b"", headers={"content-type": "application/json"}).status_code == 204


def test_refused_patches_change_nothing(client, flow):
    run = make_run(client, flow, name="keep", tags=["t"])
    for body, field in [({"tags": 5}, "tags"), ({"parameters": "x"}, "parameters"), ({"name": ["n"]}, "name"),
                        ({"empirical_policy": {"retries": "x"}}, "empirical_policy.retries"),
                        ({"infrastructure_pid": "1\u0000"}, "infrastructure_pid")]:
        assert_422(client.simulate_patch(f"/api/flow_runs/{run['id']}", json=body), field)
    after = read(client, run["id"])
    assert (after["name"], after["tags"], after["updated"]) == ("keep", ["t"], run["updated"])


def test_labels_patch_merges(client, flow):
    run = make_run(client, flow, labels={"a": "1", "b": "2"})
    resp = client.simulate_patch(f"/api/flow_runs/{run['id']}/labels", json={"b": "3", "n": 4, "f": 1.5, "ok": False})
    assert resp.status_code == 204 and resp.content == b""
    assert read(client, run["id"])["labels"] == {"a": "1", "b": "3", "n": 4, "f": 1.5, "ok": False,
                                                 "prefect.flow.id": flow["id"]}
    for body in ([1], "x", {"nested": {"no": 1}}, {"list": [1]}, {"nul": "a\u0000"}):
        resp = client.simulate_patch(f"/api/flow_runs/{run['id']}/labels", json=body)
        assert resp.status_code == 422, body
    bad = client.simulate_patch(f"/api/flow_runs/{run['id']}/labels", json={"nested": {"no": 1}})
    assert bad.json["exception_detail"][0]["loc"] == ["body", "nested"] and "nested" in bad.json["detail"]
    assert read(client, run["id"])["labels"]["b"] == "3"


def test_delete_cascades_to_states_and_task_runs_but_keeps_logs(client, flow):
    run = make_run(client, flow)
    set_state(client, run["id"], "RUNNING")
    task = client.simulate_post("/api/task_runs/", json={"flow_run_id": run["id"], "task_key": "t", "dynamic_key": "0"}).json
    child = make_run(client, flow, parent_task_run_id=task["id"])
    other = make_run(client, flow)
    log = {"name": "l", "level": 20, "message": "m", "timestamp": iso(now()), "flow_run_id": run["id"]}
    assert client.simulate_post("/api/logs/", json=[log]).status_code == 201
    resp = client.simulate_delete(f"/api/flow_runs/{run['id']}")
    assert resp.status_code == 204 and resp.content == b""
    assert client.simulate_get(f"/api/flow_runs/{run['id']}").status_code == 404
    assert client.simulate_delete(f"/api/flow_runs/{run['id']}").status_code == 404
    assert FlowRunState.select().where(FlowRunState.flow_run_id == run["id"]).count() == 0
    assert TaskRun.select().count() == 0 and TaskRunState.select().count() == 0
    assert read(client, child["id"])["parent_task_run_id"] is None  # the subflow survives, unlinked
    assert read(client, other["id"])["state_type"] == "PENDING"
    assert Log.select().count() == 1


# --- set_state: the OrchestrationResult ---------------------------------------------------------


def test_accepted_state_shape_and_run_row(client, flow):
    run = make_run(client, flow)
    tid = str(uuid.uuid4())
    resp = client.simulate_post(f"/api/flow_runs/{run['id']}/set_state", json={
        "state": {"type": "RUNNING", "name": "Running", "message": None, "data": None,
                  "state_details": {"transition_id": tid, "deferred": None, "flow_run_id": str(uuid.uuid4())}},
        "force": False})
    assert resp.status_code == 201
    body = resp.json
    assert set(body) == {"state", "status", "details"}
    assert body["status"] == "ACCEPT" and body["details"] == {"type": "accept_details"}
    state = body["state"]
    assert set(state) == STATE_KEYS and set(state["state_details"]) == DETAIL_KEYS
    assert state["id"] != run["state"]["id"]
    assert state["state_details"]["transition_id"] == tid
    assert state["state_details"]["flow_run_id"] == run["id"]  # the server's id wins
    assert state["state_details"]["deferred"] is None  # what the client sent is echoed
    after = read(client, run["id"])
    assert after["state"] == state and after["state_id"] == state["id"]
    assert (after["state_type"], after["state_name"], after["run_count"]) == ("RUNNING", "Running", 1)
    assert after["start_time"] == state["timestamp"] and after["end_time"] is None
    assert after["estimated_run_time"] >= 0.0


def test_the_probe_sequence_of_transcript_09(client, flow):
    """09_probe set-state-rules: each outcome with its status code and reason."""
    rid = make_run(client, flow)["id"]
    pending = read(client, rid)["state"]
    abort = set_state(client, rid, "PENDING", expect=(200, "ABORT"))
    assert abort["details"] == {"type": "abort_details",
                                "reason": "This run is in a PENDING state and cannot transition to a PENDING state."}
    assert abort["state"] == pending  # nothing written: the current state comes back
    set_state(client, rid, "RUNNING", expect=(201, "ACCEPT"))
    timeout = iso(now() + dt.timedelta(seconds=30))
    paused = set_state(client, rid, "PAUSED", name="Paused", state_details={"pause_key": "p1", "pause_timeout": timeout},
                       expect=(201, "ACCEPT"))
    assert paused["state"]["state_details"]["pause_timeout"] == timeout
    assert read(client, rid)["empirical_policy"]["pause_keys"] == ["p1"]
    resumed = set_state(client, rid, "RUNNING", expect=(201, "ACCEPT"))
    again = set_state(client, rid, "PAUSED", name="Paused", state_details={"pause_key": "p1"}, expect=(200, "REJECT"))
    assert again["details"] == {"type": "reject_details", "reason": "This pause has already fired."}
    assert again["state"] == resumed["state"]
    set_state(client, rid, "COMPLETED", expect=(201, "ACCEPT"))
    crashed = set_state(client, rid, "CRASHED", expect=(200, "ABORT"))
    assert crashed["details"]["reason"] == "Run is already in terminal state COMPLETED."
    set_state(client, rid, "RUNNING", expect=(201, "ACCEPT"))  # unpersisted result: rerun allowed
    set_state(client, rid, "COMPLETED", data=PERSISTED, expect=(201, "ACCEPT"))
    for target in ("RUNNING", "SCHEDULED"):
        refused = set_state(client, rid, target, expect=(200, "REJECT"))
        assert refused["details"]["reason"] == "Run is already COMPLETED."
        assert refused["state"]["data"] == PERSISTED
    set_state(client, rid, "RUNNING", force=True, expect=(201, "ACCEPT"))
    tid = "11111111-1111-1111-1111-111111111111"
    first = set_state(client, rid, "RUNNING", name="Again", state_details={"transition_id": tid}, expect=(201, "ACCEPT"))
    dup = set_state(client, rid, "RUNNING", name="Again", state_details={"transition_id": tid}, expect=(200, "REJECT"))
    assert dup["details"]["reason"] == "This run has already made this state transition."
    assert dup["state"] == first["state"]
    history = client.simulate_get("/api/flow_run_states/", params={"flow_run_id": rid}).json
    assert [(s["type"], s["name"]) for s in history] == [
        ("PENDING", "Pending"), ("RUNNING", "Running"), ("PAUSED", "Paused"), ("RUNNING", "Running"),
        ("COMPLETED", "Completed"), ("RUNNING", "Running"), ("COMPLETED", "Completed"), ("RUNNING", "Running"),
        ("RUNNING", "Again"),
    ]


def test_wait_before_the_scheduled_time_then_cancel(client, flow):
    """09 scheduled-wait: PENDING keeps the scheduled time; RUNNING early -> 200 WAIT."""
    when = now() + dt.timedelta(seconds=120)
    rid = make_run(client, flow, state={"type": "SCHEDULED", "state_details": {"scheduled_time": iso(when)}})["id"]
    pending = set_state(client, rid, "PENDING", expect=(201, "ACCEPT"))
    assert pending["state"]["state_details"]["scheduled_time"] == iso(when)
    assert read(client, rid)["next_scheduled_start_time"] is None  # left SCHEDULED
    wait = set_state(client, rid, "RUNNING", expect=(200, "WAIT"))
    assert wait["details"]["type"] == "wait_details"
    assert wait["details"]["reason"] == "Scheduled time is in the future"
    assert 110 <= wait["details"]["delay_seconds"] <= 120 and isinstance(wait["details"]["delay_seconds"], int)
    assert wait["state"] == pending["state"]
    set_state(client, rid, "CANCELLING", expect=(201, "ACCEPT"))
    refused = set_state(client, rid, "COMPLETED", expect=(200, "REJECT"))
    assert refused["details"]["reason"] == "Cannot transition flows that are cancelling to a state other than Cancelled."
    cancelled = set_state(client, rid, "CANCELLED", expect=(201, "ACCEPT"))
    run = read(client, rid)
    assert run["end_time"] == cancelled["state"]["timestamp"] == run["start_time"]  # never ran
    assert run["run_count"] == 0 and run["total_run_time"] == 0.0


def test_cancelling_a_scheduled_run_writes_cancelled(client, flow):
    rid = make_run(client, flow, state={"type": "SCHEDULED"})["id"]
    result = set_state(client, rid, "CANCELLING", expect=(201, "REJECT"))
    assert result["details"] == {"type": "reject_details", "reason": "Scheduled flow run has no infrastructure to terminate."}
    assert (result["state"]["type"], result["state"]["name"]) == ("CANCELLED", "Cancelled")
    run = read(client, rid)
    assert run["state_type"] == "CANCELLED" and run["end_time"] is not None and run["next_scheduled_start_time"] is None
    # Even forced (the UI's cancel), and with infrastructure it goes through CANCELLING.
    forced = make_run(client, flow, state={"type": "SCHEDULED"})["id"]
    assert set_state(client, forced, "CANCELLING", force=True, expect=(201, "REJECT"))["state"]["type"] == "CANCELLED"
    with_pid = make_run(client, flow, state={"type": "SCHEDULED"})["id"]
    client.simulate_patch(f"/api/flow_runs/{with_pid}", json={"infrastructure_pid": "77"})
    assert set_state(client, with_pid, "CANCELLING", expect=(201, "ACCEPT"))["state"]["type"] == "CANCELLING"


def test_flow_retries_go_through_awaiting_retry(client, flow):
    """03b: FAILED with retries left -> 201 REJECT into AwaitingRetry; RUNNING early -> WAIT."""
    rid = make_run(client, flow, empirical_policy={"retries": 1, "retry_delay": 3})["id"]
    set_state(client, rid, "RUNNING", expect=(201, "ACCEPT"))
    before = now()
    retry = set_state(client, rid, "FAILED", message="Flow run encountered an exception: ValueError: x",
                      data=PERSISTED, expect=(201, "REJECT"))
    assert retry["details"] == {"type": "reject_details", "reason": "Retrying"}
    state = retry["state"]
    assert (state["type"], state["name"]) == ("SCHEDULED", "AwaitingRetry")
    assert state["message"] == "Flow run encountered an exception: ValueError: x" and state["data"] == PERSISTED
    scheduled = parse(state["state_details"]["scheduled_time"])
    assert before + dt.timedelta(seconds=3) <= scheduled <= now() + dt.timedelta(seconds=3)
    run = read(client, rid)
    assert run["state_name"] == "AwaitingRetry" and run["next_scheduled_start_time"] == iso(scheduled)
    assert run["empirical_policy"]["retry_type"] == "in_process"
    assert run["end_time"] is None  # the failure was not written
    wait = set_state(client, rid, "RUNNING", expect=(200, "WAIT"))
    assert 1 <= wait["details"]["delay_seconds"] <= 3 and wait["state"]["name"] == "AwaitingRetry"


def test_a_retried_flow_reruns_and_its_last_failure_is_final(client, flow):
    rid = make_run(client, flow, empirical_policy={"retries": 1, "retry_delay": 0})["id"]
    set_state(client, rid, "RUNNING", expect=(201, "ACCEPT"))
    assert set_state(client, rid, "FAILED", expect=(201, "REJECT"))["state"]["name"] == "AwaitingRetry"
    rerun = set_state(client, rid, "RUNNING", expect=(201, "ACCEPT"))
    assert rerun["state"]["name"] == "Running"  # flows are not renamed
    assert read(client, rid)["run_count"] == 2
    final = set_state(client, rid, "FAILED", message="again", expect=(201, "ACCEPT"))
    run = read(client, rid)
    assert (run["state_type"], run["end_time"]) == ("FAILED", final["state"]["timestamp"])
    assert run["empirical_policy"]["retry_type"] is None
    # Older clients' deprecated max_retries/retry_delay_seconds mean the same (Prefect copies them).
    old = make_run(client, flow, empirical_policy={"max_retries": 1, "retry_delay_seconds": 0})
    assert (old["empirical_policy"]["retries"], old["empirical_policy"]["retry_delay"]) == (1, None)  # 0 is "unset"
    set_state(client, old["id"], "RUNNING")
    assert set_state(client, old["id"], "FAILED", expect=(201, "REJECT"))["state"]["name"] == "AwaitingRetry"


def test_rescheduling_a_finished_run_needs_a_deployment(client, flow):
    plain = make_run(client, flow)["id"]
    set_state(client, plain, "COMPLETED")
    abort = set_state(client, plain, "SCHEDULED", expect=(200, "ABORT"))
    assert abort["details"]["reason"] == "Cannot reschedule a run without an associated deployment."
    deployed = make_run(client, flow, deployment_id=str(uuid.uuid4()))
    assert deployed["labels"]["prefect.deployment.id"] == deployed["deployment_id"]
    set_state(client, deployed["id"], "RUNNING")
    set_state(client, deployed["id"], "COMPLETED")
    set_state(client, deployed["id"], "SCHEDULED", expect=(201, "ACCEPT"))
    run = read(client, deployed["id"])
    assert run["empirical_policy"]["retry_type"] == "reschedule" and run["end_time"] is None
    assert run["next_scheduled_start_time"] == run["state"]["state_details"]["scheduled_time"]


def test_force_bypasses_the_rules_but_not_result_protection(client, flow):
    rid = make_run(client, flow)["id"]
    set_state(client, rid, "RUNNING")
    completed = set_state(client, rid, "COMPLETED", data=PERSISTED)
    crashed = set_state(client, rid, "CRASHED", force=True, message="Execution was aborted by an interrupt signal.",
                        expect=(201, "ACCEPT"))
    run = read(client, rid)
    assert run["state_type"] == "CRASHED"
    assert run["end_time"] == completed["state"]["timestamp"]  # terminal -> terminal keeps the first end
    set_state(client, rid, "COMPLETED", data=PERSISTED, force=True, expect=(201, "ACCEPT"))
    refused = set_state(client, rid, "COMPLETED", force=True, expect=(200, "REJECT"))
    assert refused["details"]["reason"] == (
        "Cannot overwrite a COMPLETED state that carries persisted result data with one that does not.")
    assert crashed["state"]["message"] == "Execution was aborted by an interrupt signal."
    set_state(client, rid, "PENDING", force=True, expect=(201, "ACCEPT"))
    assert set_state(client, rid, "PENDING", force=True, expect=(201, "ACCEPT"))["state"]["type"] == "PENDING"
    assert read(client, rid)["end_time"] is None  # left the terminal states


def test_refused_set_states_write_nothing(client, flow):
    run = make_run(client, flow)
    before = counts()
    path = f"/api/flow_runs/{run['id']}/set_state"
    for body, field in [
        ({}, "state"),
        ({"state": {"type": "BOGUS"}}, "state.type"),
        ({"state": {"type": "running"}}, "state.type"),
        ({"state": {"type": None}}, "state.type"),
        ({"state": {"type": "RUNNING"}, "force": "maybe"}, "force"),
        ({"state": {"type": "RUNNING", "state_details": []}}, "state.state_details"),
        ({"state": {"type": "PAUSED", "state_details": {"pause_timeout": "later"}}}, "state.state_details"),
        ({"state": {"type": "RUNNING", "message": 5}}, "state.message"),
        ({"state": {"type": "RUNNING", "message": "nul\u0000"}}, "state.message"),
    ]:
        assert_422(client.simulate_post(path, json=body), field)
    assert client.simulate_post(path, body=b"{", headers={"content-type": "application/json"}).status_code == 422
    assert counts() == before
    assert read(client, run["id"])["state"] == run["state"]


# --- server-computed fields --------------------------------------------------------------------


def test_server_timestamps_are_unique_increasing_and_ignore_the_client(client, flow):
    rid = make_run(client, flow)["id"]
    for i in range(25):
        set_state(client, rid, "RUNNING", name=f"R{i}", force=True, timestamp="2000-01-01T00:00:00Z")
    states = client.simulate_get("/api/flow_run_states/", params={"flow_run_id": rid}).json
    stamps = [parse(s["timestamp"]) for s in states]
    assert len(stamps) == 26 and stamps == sorted(stamps) and len(set(stamps)) == 26
    assert stamps[1] > dt.datetime(2020, 1, 1)  # the proposed timestamp is not used
    assert [s["name"] for s in states][1:] == [f"R{i}" for i in range(25)]
    run = read(client, rid)
    assert run["state"]["timestamp"] == states[-1]["timestamp"]
    assert run["run_count"] == 25


def test_run_times_are_float_seconds(client, flow):
    rid = make_run(client, flow)["id"]
    started = set_state(client, rid, "RUNNING")["state"]
    while_running = read(client, rid)
    assert while_running["total_run_time"] == 0.0
    assert while_running["estimated_run_time"] > 0.0  # now - the RUNNING timestamp
    done = set_state(client, rid, "COMPLETED")["state"]
    run = read(client, rid)
    elapsed = (parse(done["timestamp"]) - parse(started["timestamp"])).total_seconds()
    assert run["total_run_time"] == pytest.approx(elapsed, abs=1e-6) and run["total_run_time"] > 0
    assert run["estimated_run_time"] == run["total_run_time"]
    assert (run["start_time"], run["end_time"]) == (started["timestamp"], done["timestamp"])
    delta = (parse(run["start_time"]) - parse(run["expected_start_time"])).total_seconds()
    assert run["estimated_start_time_delta"] == pytest.approx(delta, abs=1e-6)
    # A second run through RUNNING adds to the total.
    set_state(client, rid, "RUNNING")
    set_state(client, rid, "COMPLETED")
    assert read(client, rid)["total_run_time"] > run["total_run_time"]
    # Lateness of a run that should have started and has not.
    late = make_run(client, flow, state={"type": "SCHEDULED", "state_details": {
        "scheduled_time": iso(now() - dt.timedelta(minutes=10))}})
    assert 590 <= late["estimated_start_time_delta"] <= 700


# --- state reads --------------------------------------------------------------------------------


def test_flow_run_state_reads(client, flow):
    rid = make_run(client, flow)["id"]
    running = set_state(client, rid, "RUNNING")["state"]
    set_state(client, rid, "COMPLETED", message="done")
    for path in ("/api/flow_run_states/", "/api/flow_run_states"):
        states = client.simulate_get(path, params={"flow_run_id": rid}).json
        assert [s["type"] for s in states] == ["PENDING", "RUNNING", "COMPLETED"]
        assert all(set(s) == STATE_KEYS for s in states) and states[2]["message"] == "done"
    one = client.simulate_get(f"/api/flow_run_states/{running['id']}")
    assert one.status_code == 200 and one.json == running
    assert client.simulate_get("/api/flow_run_states/", params={"flow_run_id": str(uuid.uuid4())}).json == []
    missing = client.simulate_get(f"/api/flow_run_states/{uuid.uuid4()}")
    assert missing.status_code == 404 and missing.json == {"detail": "Flow run state not found"}
    assert client.simulate_get("/api/flow_run_states/nope").status_code == 404
    assert_422(client.simulate_get("/api/flow_run_states/"), "flow_run_id", loc_root="query")
    assert_422(client.simulate_get("/api/flow_run_states/", params={"flow_run_id": "nope"}), "flow_run_id",
               loc_root="query")


# --- subflows -------------------------------------------------------------------------------------


def test_subflow_states_are_mirrored_onto_the_parents_tracking_task(client, flow):
    """ex:02: the child's states are copied (forced) onto the tracking task run."""
    parent = make_run(client, flow)
    set_state(client, parent["id"], "RUNNING")
    task = client.simulate_post("/api/task_runs/", json={
        "flow_run_id": parent["id"], "task_key": "child-6aed2400", "dynamic_key": "0", "name": "child-0",
        "task_inputs": {"x": []}, "empirical_policy": {"retries": 0, "retry_delay": 0}}).json
    found = client.simulate_post("/api/flow_runs/filter", json={
        "flow_runs": {"parent_task_run_id": {"any_": [task["id"]]}}, "sort": "EXPECTED_START_TIME_DESC",
        "limit": 1, "offset": 0, "flows": None, "task_runs": None, "deployments": None}).json
    assert found == []  # the engine's reuse check: nothing yet
    child = make_run(client, flow, parent_task_run_id=task["id"], name="child")
    assert child["state"]["state_details"]["task_run_id"] == task["id"]
    set_state(client, child["id"], "RUNNING")
    set_state(client, child["id"], "COMPLETED", data=PERSISTED)
    tracked = client.simulate_get(f"/api/task_runs/{task['id']}").json
    assert (tracked["state_type"], tracked["run_count"]) == ("COMPLETED", 1)
    assert tracked["start_time"] is not None and tracked["end_time"] is not None
    history = client.simulate_get("/api/task_run_states/", params={"task_run_id": task["id"]}).json
    assert [s["type"] for s in history] == ["PENDING", "PENDING", "RUNNING", "COMPLETED"]
    assert [s["state_details"]["child_flow_run_id"] for s in history[1:]] == [child["id"]] * 3
    assert all(s["state_details"]["task_run_id"] == task["id"] for s in history)
    assert history[-1]["data"] == PERSISTED
    child_states = client.simulate_get("/api/flow_run_states/", params={"flow_run_id": child["id"]}).json
    assert all(s["state_details"]["task_run_id"] == task["id"] for s in child_states)
    assert {s["id"] for s in child_states}.isdisjoint(s["id"] for s in history)  # copies, not the same rows
    reuse = client.simulate_post("/api/flow_runs/filter", json={"flow_runs": {"parent_task_run_id": {"any_": [task["id"]]}}})
    assert [r["id"] for r in reuse.json] == [child["id"]]
    by_parent = client.simulate_post("/api/flow_runs/filter", json={"flow_runs": {"parent_flow_run_id": {"any_": [parent["id"]]}}})
    assert [r["id"] for r in by_parent.json] == [child["id"]]


# --- listing -------------------------------------------------------------------------------------


def test_filter_count_and_paginate(client, flow):
    other = client.simulate_post("/api/flows/", json={"name": "other"}).json
    runs = [make_run(client, flow, name=f"run-{i}", tags=["even"] if i % 2 == 0 else ["odd"]) for i in range(5)]
    foreign = make_run(client, other, name="foreign")
    set_state(client, runs[1]["id"], "RUNNING")

    def names(body=None):
        resp = client.simulate_post("/api/flow_runs/filter", json=body)
        assert resp.status_code == 200, resp.text
        return [r["name"] for r in resp.json]

    assert names() == [r["name"] for r in sorted([*runs, foreign], key=lambda r: r["id"], reverse=True)]  # ID_DESC
    assert names({"sort": "NAME_ASC", "flows": {"id": {"any_": [flow["id"]]}}}) == [f"run-{i}" for i in range(5)]
    assert names({"sort": "NAME_DESC", "limit": 2, "offset": 1}) == ["run-3", "run-2"]
    assert names({"flow_runs": {"state": {"type": {"any_": ["RUNNING"]}}}}) == ["run-1"]
    assert names({"flow_runs": {"tags": {"all_": ["even"]}}, "sort": "NAME_ASC"}) == ["run-0", "run-2", "run-4"]
    assert names({"flows": {"name": {"any_": ["other"]}}}) == ["foreign"]
    full = client.simulate_post("/api/flow_runs/filter", json={"flow_runs": {"name": {"any_": ["run-1"]}}}).json
    assert set(full[0]) == RUN_KEYS and full[0]["state_type"] == "RUNNING"
    # What `prefect flow-run ls` sends.
    cli = {"flows": None, "flow_runs": None, "task_runs": None, "deployments": None, "work_pools": None,
           "work_pool_queues": None, "sort": "EXPECTED_START_TIME_DESC", "limit": None, "offset": None}
    assert len(names(cli)) == 6

    def count(body=None):
        resp = client.simulate_post("/api/flow_runs/count", json=body)
        assert resp.status_code == 200
        return resp.json

    assert count() == 6 and count({}) == 6 and count({"limit": 500}) == 6  # count ignores paging
    assert count({"flow_runs": {"tags": {"all_": ["odd"]}}}) == 2
    assert count({"flows": {"id": {"any_": [other["id"]]}}}) == 1
    page = client.simulate_post("/api/flow_runs/paginate", json={"limit": 4, "page": 2, "sort": "NAME_ASC"}).json
    assert {k: v for k, v in page.items() if k != "results"} == {"count": 6, "limit": 4, "pages": 2, "page": 2}
    assert [r["name"] for r in page["results"]] == ["run-3", "run-4"]
    default = client.simulate_post("/api/flow_runs/paginate").json
    assert (default["limit"], default["page"], default["pages"], len(default["results"])) == (200, 1, 1, 6)
    for path in ("/api/flow_runs/filter", "/api/flow_runs/paginate"):
        too_many = client.simulate_post(path, json={"limit": 201})
        assert too_many.status_code == 422
        assert too_many.json["detail"] == "Invalid limit: must be less than or equal to 200."
    assert client.simulate_post("/api/flow_runs/filter", json={"limit": 200}).status_code == 200
    assert_422(client.simulate_post("/api/flow_runs/paginate", json={"page": 0}), "page")
    assert_422(client.simulate_post("/api/flow_runs/filter", json={"sort": "SIDEWAYS"}), "sort")
    assert_422(client.simulate_post("/api/flow_runs/filter", json={"flow_runs": {"id": {"any_": ["x"]}}}),
               "flow_runs.id.any_.0")


def test_history(client, flow):
    start = now().replace(microsecond=0) - dt.timedelta(hours=1)
    for minutes, final in [(5, "COMPLETED"), (10, "COMPLETED"), (40, "FAILED")]:
        when = iso(start + dt.timedelta(minutes=minutes))
        run = make_run(client, flow, state={"type": "SCHEDULED", "state_details": {"scheduled_time": when}})
        set_state(client, run["id"], "RUNNING")
        set_state(client, run["id"], final)
    body = {"history_start": iso(start), "history_end": iso(start + dt.timedelta(hours=1)),
            "history_interval_seconds": 1800}
    resp = client.simulate_post("/api/flow_runs/history", json=body)
    assert resp.status_code == 200
    intervals = resp.json
    # ceil(1 h / 30 min) = 2 intervals, as in Prefect (an exact multiple adds no empty one).
    assert [(i["interval_start"], i["interval_end"]) for i in intervals] == [
        (iso(start), iso(start + dt.timedelta(minutes=30))),
        (iso(start + dt.timedelta(minutes=30)), iso(start + dt.timedelta(hours=1))),
    ]
    (first,) = intervals[0]["states"]
    assert (first["state_type"], first["state_name"], first["count_runs"]) == ("COMPLETED", "Completed", 2)
    assert isinstance(first["sum_estimated_run_time"], float) and isinstance(first["sum_estimated_lateness"], float)
    assert first["sum_estimated_lateness"] >= 2 * 1800  # started ~50 min late
    assert [(s["state_type"], s["count_runs"]) for s in intervals[1]["states"]] == [("FAILED", 1)]
    filtered = client.simulate_post("/api/flow_runs/history", json={
        **body, "history_interval_seconds": 3600, "flow_runs": {"state": {"type": {"any_": ["FAILED"]}}}}).json
    assert len(filtered) == 1 and [s["count_runs"] for s in filtered[0]["states"]] == [1]
    assert len(client.simulate_post("/api/flow_runs/history", json={**body, "history_interval_seconds": 1500}).json) == 3
    iso_duration = client.simulate_post("/api/flow_runs/history", json={
        "history_start": body["history_start"], "history_end": body["history_end"], "history_interval": "PT30M"})
    assert iso_duration.status_code == 200 and len(iso_duration.json) == 2
    empty = {**body, "history_end": body["history_start"]}
    assert client.simulate_post("/api/flow_runs/history", json=empty).json == []
    assert_422(client.simulate_post("/api/flow_runs/history", json={**body, "history_interval_seconds": 0.5}),
               "history_interval_seconds")
    assert_422(client.simulate_post("/api/flow_runs/history", json={**body, "history_interval_seconds": 1e300}),
               "history_interval_seconds")
    assert_422(client.simulate_post("/api/flow_runs/history", json={**body, "history_start": "yesterday"}),
               "history_start")
    no_interval = {k: v for k, v in body.items() if k != "history_interval_seconds"}
    assert_422(client.simulate_post("/api/flow_runs/history", json=no_interval), "history_interval_seconds")


def test_extreme_datetimes_round_trip(client, flow):
    """Years < 1000 keep four digits (and SQLite's text ordering); out-of-range offsets are 422."""
    early = make_run(client, flow, state={"type": "SCHEDULED", "state_details": {"scheduled_time": "0001-01-01T00:00:00-05:00"}})
    assert early["expected_start_time"] == "0001-01-01T05:00:00.000000Z"
    late = make_run(client, flow, state={"type": "SCHEDULED", "state_details": {"scheduled_time": "9999-12-31T23:59:59.999999Z"}})
    assert read(client, late["id"])["next_scheduled_start_time"] == "9999-12-31T23:59:59.999999Z"
    names = [r["id"] for r in client.simulate_post("/api/flow_runs/filter", json={"sort": "EXPECTED_START_TIME_ASC"}).json]
    assert names == [early["id"], late["id"]]
    for when in ("0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"):
        bad = client.simulate_post("/api/flow_runs/", json={"flow_id": flow["id"], "state": {
            "type": "SCHEDULED", "state_details": {"scheduled_time": when}}})
        assert_422(bad, "state.state_details")
        assert_422(client.simulate_post("/api/flow_runs/filter", json={"flow_runs": {"start_time": {"after_": when}}}),
                   "flow_runs.start_time.after_")
    assert FlowRun.select().count() == 2


def test_garbage_never_gets_a_500(client, flow):
    run = make_run(client, flow)
    paths = ["/api/flow_runs/", "/api/flow_runs/filter", "/api/flow_runs/count", "/api/flow_runs/paginate",
             "/api/flow_runs/history", f"/api/flow_runs/{run['id']}/set_state"]
    bodies = [b"", b"null", b"[]", b"123", b'"x"', b"{", b'{"limit": {}}', b'{"sort": 1}', b'{"flow_runs": []}',
              b'{"flows": {"name": {"like_": 5}}}', b'{"state": []}', b'{"offset": -1}', b'{"flow_id": null}',
              b'{"history_start": null}', b"{\"name\": \"\\u0000\"}", b"\xff\xfe"]
    for path in paths:
        for raw in bodies:
            resp = client.simulate_post(path, body=raw, headers={"content-type": "application/json"})
            assert resp.status_code < 500, (path, raw, resp.text)
            if resp.status_code >= 400:
                assert "detail" in resp.json or "exception_detail" in resp.json, (path, raw, resp.text)
    patch = f"/api/flow_runs/{run['id']}"
    for raw in bodies:
        assert client.simulate_patch(patch, body=raw, headers={"content-type": "application/json"}).status_code < 500
        assert client.simulate_patch(f"{patch}/labels", body=raw, headers={"content-type": "application/json"}).status_code < 500
    assert FlowRun.select().count() == 1
