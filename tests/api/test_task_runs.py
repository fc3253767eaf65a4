"""/task_runs and /task_run_states over raw HTTP, on both backends.

3.8.8 engines report ordinary task runs as events (tests/api/test_events.py); REST is
used for subflow tracking tasks and by older clients. Covered here: create (and the
idempotent create by flow_run_id + task_key + dynamic_key), read, update, delete,
filter/count/paginate/history, set_state under Prefect's CoreTaskPolicy, state reads,
and bad input (4xx naming the field, nothing written).
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from db.models import TaskRun, TaskRunState

PERSISTED = {"storage_key": "/x", "serializer": {"type": "json"}, "prefect_version": "3.8.8",
             "storage_block_id": None, "expiration": None}
TASK_KEYS = {
    "id", "created", "updated", "name", "flow_run_id", "task_key", "dynamic_key", "cache_key", "cache_expiration",
    "task_version", "empirical_policy", "tags", "labels", "state_id", "task_inputs", "state_type", "state_name",
    "run_count", "flow_run_run_count", "expected_start_time", "next_scheduled_start_time", "start_time",
    "end_time", "total_run_time", "estimated_run_time", "estimated_start_time_delta", "state",
}


def iso(value: dt.datetime) -> str:
    return value.isoformat(timespec="microseconds") + "Z"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@pytest.fixture
def flow_run(client):
    flow = client.simulate_post("/api/flows/", json={"name": "parent"}).json
    run = client.simulate_post("/api/flow_runs/", json={"flow_id": flow["id"]}).json
    run["flow"] = flow
    return run


def make_task(client, flow_run=None, **body):
    body = {"task_key": "t-1", "dynamic_key": "0", **body}
    if flow_run is not None:
        body.setdefault("flow_run_id", flow_run["id"])
    resp = client.simulate_post("/api/task_runs/", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json


def set_state(client, task_id, type_, *, expect=None, force=False, **state):
    resp = client.simulate_post(f"/api/task_runs/{task_id}/set_state",
                                json={"state": {"type": type_, **state}, "force": force})
    assert resp.status_code in (200, 201), resp.text
    if expect is not None:
        assert (resp.status_code, resp.json["status"]) == expect, resp.json
    return resp.json


def flow_state(client, flow_run, type_, **state):
    resp = client.simulate_post(f"/api/flow_runs/{flow_run['id']}/set_state",
                                json={"state": {"type": type_, **state}, "force": True})
    assert resp.status_code == 201, resp.text


def read(client, task_id):
    resp = client.simulate_get(f"/api/task_runs/{task_id}")
    assert resp.status_code == 200, resp.text
    return resp.json


def assert_422(resp, field):
    assert resp.status_code == 422, resp.text
    body = resp.json
    assert body["exception_message"] == "Invalid request received."
    assert [str(p) for p in body["exception_detail"][0]["loc"]][: 1 + len(field.split("."))] == ["body", *field.split(".")]
    assert field.split(".")[-1] in body["detail"]


# --- create and read ----------------------------------------------------------------------------


def test_create_as_the_subflow_engine_does(client, flow_run):
    """ex:02#10: the tracking task run of a subflow."""
    body = {
        "state": {"type": "PENDING", "name": "Pending", "message": None, "data": None,
                  "state_details": {"deferred": None, "untrackable_result": False}},
        "name": "child-0", "flow_run_id": flow_run["id"], "task_key": "child-6aed2400", "dynamic_key": "0",
        "cache_key": None, "cache_expiration": None, "task_version": "876fba15",
        "empirical_policy": {"max_retries": 0, "retry_delay_seconds": 0.0, "retries": 0, "retry_delay": 0,
                             "retry_jitter_factor": None},
        "tags": [], "labels": {}, "task_inputs": {"x": []},
    }
    resp = client.simulate_post("/api/task_runs/", json=body)
    assert resp.status_code == 201
    task = resp.json
    assert set(task) == TASK_KEYS
    assert (task["name"], task["task_key"], task["dynamic_key"], task["task_version"]) == (
        "child-0", "child-6aed2400", "0", "876fba15")
    assert task["labels"] == {"prefect.flow.id": flow_run["flow"]["id"], "prefect.flow-run.id": flow_run["id"]}
    assert task["task_inputs"] == {"x": []}
    assert task["empirical_policy"] == body["empirical_policy"]
    assert (task["state_type"], task["state_name"], task["run_count"], task["flow_run_run_count"]) == (
        "PENDING", "Pending", 0, 0)
    state = task["state"]
    assert state["state_details"]["task_run_id"] == task["id"] and state["state_details"]["flow_run_id"] == flow_run["id"]
    assert task["state_id"] == state["id"] and task["expected_start_time"] == state["timestamp"]
    assert isinstance(task["total_run_time"], float) and isinstance(task["estimated_run_time"], float)
    again = read(client, task["id"])
    volatile = {"estimated_start_time_delta"}
    assert {k: v for k, v in again.items() if k not in volatile} == {k: v for k, v in task.items() if k not in volatile}


def test_bare_create_defaults(client, flow_run):
    task = make_task(client, flow_run)
    assert task["name"] == "t-1"  # the task key when no name is given
    assert task["empirical_policy"] == {"max_retries": 0, "retry_delay_seconds": 0.0, "retries": None,
                                        "retry_delay": None, "retry_jitter_factor": None}
    assert (task["tags"], task["task_inputs"], task["cache_key"]) == ([], {}, None)
    free = make_task(client, task_key="free")  # a task run outside any flow run
    assert free["flow_run_id"] is None and free["labels"] == {}
    given = str(uuid.uuid4())
    assert make_task(client, flow_run, id=given, dynamic_key="1")["id"] == given
    expires = iso(now() + dt.timedelta(days=1))
    cached = make_task(client, flow_run, dynamic_key="2", cache_key="ck", cache_expiration=expires, tags=["a", "a"])
    assert (cached["cache_key"], cached["cache_expiration"], cached["tags"]) == ("ck", expires, ["a"])


def test_the_natural_key_makes_creates_idempotent(client, flow_run):
    first = make_task(client, flow_run, name="first", dynamic_key="0")
    set_state(client, first["id"], "FAILED")
    resp = client.simulate_post("/api/task_runs/", json={"flow_run_id": flow_run["id"], "task_key": "t-1",
                                                         "dynamic_key": "0", "name": "second", "state": {"type": "RUNNING"}})
    assert resp.status_code == 200
    assert resp.json["id"] == first["id"] and resp.json["name"] == "first" and resp.json["state_type"] == "FAILED"
    assert make_task(client, flow_run, dynamic_key="1")["id"] != first["id"]
    assert make_task(client, flow_run, task_key="t-2")["id"] != first["id"]
    free = make_task(client, task_key="t-1")
    assert client.simulate_post("/api/task_runs/", json={"task_key": "t-1", "dynamic_key": "0"}).json["id"] == free["id"]
    assert TaskRun.select().count() == 4


def test_create_with_a_running_state(client, flow_run):
    flow_state(client, flow_run, "RUNNING")
    task = make_task(client, flow_run, state={"type": "RUNNING"})
    assert task["run_count"] == 1 and task["start_time"] == task["state"]["timestamp"]
    assert task["flow_run_run_count"] == 1  # the parent's attempt


def test_refused_creates_write_nothing(client, flow_run):
    fid = flow_run["id"]
    cases = [
        ({"flow_run_id": fid, "dynamic_key": "0"}, "task_key"),
        ({"flow_run_id": fid, "task_key": "k"}, "dynamic_key"),
        ({"flow_run_id": fid, "task_key": "", "dynamic_key": "0"}, "task_key"),
        ({"flow_run_id": fid, "task_key": 5, "dynamic_key": "0"}, "task_key"),
        ({"flow_run_id": "nope", "task_key": "k", "dynamic_key": "0"}, "flow_run_id"),
        ({"id": "nope", "task_key": "k", "dynamic_key": "0"}, "id"),
        ({"task_key": "k", "dynamic_key": "0", "state": {"type": "X"}}, "state.type"),
        ({"task_key": "k", "dynamic_key": "0", "cache_expiration": "later"}, "cache_expiration"),
        ({"task_key": "k", "dynamic_key": "0", "empirical_policy": {"retry_delay": "x"}}, "empirical_policy.retry_delay"),
        ({"task_key": "k", "dynamic_key": "0", "tags": "x"}, "tags"),
        ({"task_key": "k", "dynamic_key": "0", "task_inputs": []}, "task_inputs"),
        ({"task_key": "k\u0000", "dynamic_key": "0"}, "task_key"),
    ]
    for body, field in cases:
        assert_422(client.simulate_post("/api/task_runs/", json=body), field)
    malformed = client.simulate_post("/api/task_runs/", body=b"{'task_key': 1}", headers={"content-type": "application/json"})
    assert malformed.status_code == 422 and malformed.json["exception_detail"][0]["type"] == "json_invalid"
    assert client.simulate_post("/api/task_runs/", json=["x"]).status_code == 422
    assert (TaskRun.select().count(), TaskRunState.select().count()) == (0, 0)


def test_unknown_ids_are_404(client):
    missing = str(uuid.uuid4())
    for method, path, body in [
        ("GET", f"/api/task_runs/{missing}", None),
        ("PATCH", f"/api/task_runs/{missing}", {"name": "x"}),
        ("DELETE", f"/api/task_runs/{missing}", None),
        ("POST", f"/api/task_runs/{missing}/set_state", {"state": {"type": "RUNNING"}}),
    ]:
        resp = client.simulate_request(method, path, json=body)
        assert resp.status_code == 404 and resp.json == {"detail": "Task run not found"}, (method, path)
    assert client.simulate_get("/api/task_runs/nope").json == {"detail": "Not Found"}
    resp = client.simulate_get(f"/api/task_run_states/{missing}")
    assert resp.status_code == 404 and resp.json == {"detail": "Task run state not found"}


def test_update_and_delete(client, flow_run):
    task = make_task(client, flow_run, name="before")
    set_state(client, task["id"], "RUNNING", force=True)
    resp = client.simulate_patch(f"/api/task_runs/{task['id']}", json={"name": "after"})
    assert resp.status_code == 204 and resp.content == b""
    assert read(client, task["id"])["name"] == "after"
    assert_422(client.simulate_patch(f"/api/task_runs/{task['id']}", json={"name": 5}), "name")
    assert read(client, task["id"])["name"] == "after"
    other = make_task(client, flow_run, dynamic_key="1")
    resp = client.simulate_delete(f"/api/task_runs/{task['id']}")
    assert resp.status_code == 204 and resp.content == b""
    assert client.simulate_get(f"/api/task_runs/{task['id']}").status_code == 404
    assert client.simulate_delete(f"/api/task_runs/{task['id']}").status_code == 404
    assert TaskRunState.select().where(TaskRunState.task_run_id == task["id"]).count() == 0
    assert read(client, other["id"])["state_type"] == "PENDING"
    assert client.simulate_get(f"/api/flow_runs/{flow_run['id']}").status_code == 200


# --- set_state: CoreTaskPolicy over REST -------------------------------------------------------


def test_a_task_only_runs_inside_a_running_flow(client, flow_run):
    task = make_task(client, flow_run)
    pending = read(client, task["id"])["state"]
    abort = set_state(client, task["id"], "RUNNING", expect=(200, "ABORT"))
    assert abort["details"] == {"type": "abort_details",
                                "reason": "The enclosing flow must be running to begin task execution."}
    assert abort["state"] == pending
    flow_state(client, flow_run, "RUNNING")
    accepted = set_state(client, task["id"], "RUNNING", expect=(201, "ACCEPT"))
    assert accepted["details"] == {"type": "accept_details"}
    row = read(client, task["id"])
    assert (row["state_type"], row["run_count"], row["flow_run_run_count"]) == ("RUNNING", 1, 1)
    assert row["start_time"] == accepted["state"]["timestamp"]
    assert accepted["state"]["state_details"]["task_run_id"] == task["id"]
    # A task outside any flow run may always start.
    free = make_task(client, task_key="free")
    set_state(client, free["id"], "RUNNING", expect=(201, "ACCEPT"))


def test_a_task_of_a_paused_flow_is_parked_in_not_ready(client, flow_run):
    flow_state(client, flow_run, "RUNNING")
    timeout = iso(now() + dt.timedelta(minutes=5))
    flow_state(client, flow_run, "PAUSED", state_details={"pause_timeout": timeout, "pause_key": "k"})
    task = make_task(client, flow_run)
    result = set_state(client, task["id"], "RUNNING", expect=(201, "REJECT"))
    assert result["details"]["reason"] == (
        f"The flow is paused, new tasks can execute after resuming flow run: {flow_run['id']}.")
    assert (result["state"]["type"], result["state"]["name"]) == ("PAUSED", "NotReady")
    assert result["state"]["state_details"]["pause_timeout"] == timeout
    assert read(client, task["id"])["state_name"] == "NotReady"


def test_task_transitions_that_only_flow_runs_forbid(client, flow_run):
    """CoreTaskPolicy has no PreventPendingTransitions / EnforceCancellingToCancelled."""
    flow_state(client, flow_run, "RUNNING")
    task = make_task(client, flow_run)
    set_state(client, task["id"], "PENDING", expect=(201, "ACCEPT"))
    set_state(client, task["id"], "RUNNING", expect=(201, "ACCEPT"))
    set_state(client, task["id"], "PENDING", expect=(201, "ACCEPT"))
    set_state(client, task["id"], "CANCELLING", expect=(201, "ACCEPT"))
    set_state(client, task["id"], "COMPLETED", expect=(201, "ACCEPT"))


def test_terminal_task_states(client, flow_run):
    flow_state(client, flow_run, "RUNNING")
    task = make_task(client, flow_run)
    set_state(client, task["id"], "RUNNING")
    done = set_state(client, task["id"], "COMPLETED", expect=(201, "ACCEPT"))
    for target in ("CRASHED", "CANCELLING", "PAUSED"):
        abort = set_state(client, task["id"], target, expect=(200, "ABORT"))
        assert abort["details"]["reason"] == "Run is already COMPLETED."
        assert abort["state"] == done["state"]
    # Unpersisted result: it may run again; the run count restarts.
    rerun = set_state(client, task["id"], "RUNNING", expect=(201, "ACCEPT"))
    assert rerun["state"]["name"] == "Running"
    row = read(client, task["id"])
    assert row["run_count"] == 1 and row["end_time"] is None
    set_state(client, task["id"], "COMPLETED", data=PERSISTED, expect=(201, "ACCEPT"))
    for target in ("RUNNING", "FAILED", "COMPLETED"):
        refused = set_state(client, task["id"], target, expect=(200, "REJECT"))
        assert refused["details"]["reason"] == "This run is already completed."
        assert refused["state"]["data"] == PERSISTED
    # force=true bypasses every task rule.
    set_state(client, task["id"], "CRASHED", force=True, expect=(201, "ACCEPT"))


def test_a_finished_task_rerun_by_a_flow_retry_is_retrying(client, flow_run):
    flow_state(client, flow_run, "RUNNING")
    task = make_task(client, flow_run)
    set_state(client, task["id"], "RUNNING")
    set_state(client, task["id"], "COMPLETED")
    flow_state(client, flow_run, "RUNNING")  # the flow's second attempt
    rerun = set_state(client, task["id"], "RUNNING", expect=(201, "ACCEPT"))
    assert rerun["state"]["name"] == "Retrying"
    assert read(client, task["id"])["flow_run_run_count"] == 2


def test_task_retries_with_per_attempt_delays(client, flow_run):
    flow_state(client, flow_run, "RUNNING")
    task = make_task(client, flow_run, empirical_policy={"retries": 2, "retry_delay": [0, 60]})
    set_state(client, task["id"], "RUNNING")
    first = set_state(client, task["id"], "FAILED", message="boom", expect=(201, "REJECT"))
    assert first["details"] == {"type": "reject_details", "reason": "Retrying"}
    assert (first["state"]["type"], first["state"]["name"], first["state"]["message"]) == ("SCHEDULED", "AwaitingRetry", "boom")
    retrying = set_state(client, task["id"], "RUNNING", expect=(201, "ACCEPT"))
    assert retrying["state"]["name"] == "Retrying"
    assert read(client, task["id"])["run_count"] == 2
    second = set_state(client, task["id"], "FAILED", expect=(201, "REJECT"))
    scheduled = dt.datetime.fromisoformat(second["state"]["state_details"]["scheduled_time"][:-1])
    assert 50 <= (scheduled - now()).total_seconds() <= 60
    wait = set_state(client, task["id"], "RUNNING", expect=(200, "WAIT"))
    assert 50 <= wait["details"]["delay_seconds"] <= 60 and wait["details"]["type"] == "wait_details"
    set_state(client, task["id"], "RUNNING", force=True)
    final = set_state(client, task["id"], "FAILED", expect=(201, "ACCEPT"))
    assert read(client, task["id"])["end_time"] == final["state"]["timestamp"]
    # retriable=false (retry_condition_fn said no) fails at once.
    other = make_task(client, flow_run, dynamic_key="1", empirical_policy={"retries": 3})
    set_state(client, other["id"], "RUNNING")
    set_state(client, other["id"], "FAILED", state_details={"retriable": False}, expect=(201, "ACCEPT"))


def test_refused_set_states_write_nothing(client, flow_run):
    task = make_task(client, flow_run)
    path = f"/api/task_runs/{task['id']}/set_state"
    for body, field in [({}, "state"), ({"state": {"type": "DONE"}}, "state.type"),
                        ({"state": {"type": "RUNNING"}, "force": []}, "force"),
                        ({"state": {"type": "SCHEDULED", "state_details": {"scheduled_time": 5}}}, "state.state_details")]:
        assert_422(client.simulate_post(path, json=body), field)
    assert client.simulate_post(path, body=b"nope", headers={"content-type": "application/json"}).status_code == 422
    assert TaskRunState.select().count() == 1
    assert read(client, task["id"])["state"] == task["state"]


# --- state reads and listing ----------------------------------------------------------------------


def test_task_run_state_reads(client, flow_run):
    task = make_task(client, flow_run)
    running = set_state(client, task["id"], "RUNNING", force=True)["state"]
    set_state(client, task["id"], "COMPLETED", force=True)
    for path in ("/api/task_run_states/", "/api/task_run_states"):
        states = client.simulate_get(path, params={"task_run_id": task["id"]}).json
        assert [s["type"] for s in states] == ["PENDING", "RUNNING", "COMPLETED"]
    assert client.simulate_get(f"/api/task_run_states/{running['id']}").json == running
    assert client.simulate_get("/api/task_run_states/", params={"task_run_id": str(uuid.uuid4())}).json == []
    missing = client.simulate_get("/api/task_run_states/")
    assert missing.status_code == 422 and missing.json["exception_detail"][0]["loc"] == ["query", "task_run_id"]
    bad = client.simulate_get("/api/task_run_states/", params={"task_run_id": "x"})
    assert bad.status_code == 422 and "task_run_id" in bad.json["detail"]


def test_filter_count_paginate_and_history(client, flow_run):
    flow_state(client, flow_run, "RUNNING")
    other_flow = client.simulate_post("/api/flows/", json={"name": "other"}).json
    other_run = client.simulate_post("/api/flow_runs/", json={"flow_id": other_flow["id"]}).json
    a = make_task(client, flow_run, name="alpha", task_key="a", tags=["x"])
    b = make_task(client, flow_run, name="beta", task_key="b", tags=["x", "y"])
    c = make_task(client, other_run, name="gamma", task_key="c")
    set_state(client, b["id"], "RUNNING")
    child = client.simulate_post("/api/flow_runs/", json={"flow_id": other_flow["id"], "parent_task_run_id": a["id"]})
    assert child.status_code == 201

    def names(body=None):
        resp = client.simulate_post("/api/task_runs/filter", json=body)
        assert resp.status_code == 200, resp.text
        return [t["name"] for t in resp.json]

    assert names() == [t["name"] for t in sorted([a, b, c], key=lambda t: t["id"], reverse=True)]  # ID_DESC
    assert names({"sort": "NAME_ASC"}) == ["alpha", "beta", "gamma"]
    assert names({"sort": "NAME_DESC", "limit": 1, "offset": 1}) == ["beta"]
    assert names({"task_runs": {"flow_run_id": {"any_": [flow_run["id"]]}}, "sort": "NAME_ASC"}) == ["alpha", "beta"]
    assert names({"task_runs": {"state": {"type": {"any_": ["RUNNING"]}}}}) == ["beta"]
    assert names({"task_runs": {"name": {"like_": "AMM"}}}) == ["gamma"]
    assert names({"task_runs": {"tags": {"all_": ["x", "y"]}}}) == ["beta"]
    assert names({"task_runs": {"subflow_runs": {"exists_": True}}}) == ["alpha"]
    assert names({"task_runs": {"subflow_runs": {"exists_": False}}, "sort": "NAME_ASC"}) == ["beta", "gamma"]
    assert names({"flows": {"name": {"any_": ["other"]}}}) == ["gamma"]
    assert names({"flow_runs": {"state": {"type": {"any_": ["RUNNING"]}}}, "sort": "NAME_ASC"}) == ["alpha", "beta"]
    cli = {"task_runs": {"operator": "and_", "id": None, "name": None, "tags": None, "state": None, "start_time": None,
                         "subflow_runs": None, "flow_run_id": None}, "flows": None, "flow_runs": None,
           "deployments": None, "sort": "EXPECTED_START_TIME_DESC", "limit": 15, "offset": 0}
    assert names(cli) == ["gamma", "beta", "alpha"]  # `prefect task-run ls`
    full = client.simulate_post("/api/task_runs/filter", json={"task_runs": {"id": {"any_": [b["id"]]}}}).json
    assert set(full[0]) == TASK_KEYS
    assert client.simulate_post("/api/task_runs/count").json == 3
    assert client.simulate_post("/api/task_runs/count", json={"task_runs": {"tags": {"all_": ["x"]}}}).json == 2
    page = client.simulate_post("/api/task_runs/paginate", json={"limit": 2, "page": 2, "sort": "NAME_ASC"}).json
    assert [t["name"] for t in page["results"]] == ["gamma"]
    assert (page["count"], page["limit"], page["pages"], page["page"]) == (3, 2, 2, 2)
    too_many = client.simulate_post("/api/task_runs/filter", json={"limit": 201})
    assert too_many.status_code == 422 and too_many.json["detail"] == "Invalid limit: must be less than or equal to 200."
    assert_422(client.simulate_post("/api/task_runs/filter", json={"sort": "START_TIME_ASC"}), "sort")  # not a task sort
    start = now() - dt.timedelta(minutes=30)
    history = client.simulate_post("/api/task_runs/history", json={
        "history_start": iso(start), "history_end": iso(start + dt.timedelta(hours=1)),
        "history_interval_seconds": 3600}).json
    assert len(history) == 1
    assert sorted((s["state_type"], s["count_runs"]) for s in history[0]["states"]) == [("PENDING", 2), ("RUNNING", 1)]
    assert_422(client.simulate_post("/api/task_runs/history", json={"history_start": iso(start)}), "history_end")
