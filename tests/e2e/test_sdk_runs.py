"""The real Prefect 3.8.8 SDK runs flows against a live appliance (2 workers), on SQLite
and PostgreSQL; everything it reports is read back through the API."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import SCRIPTS, last_json_line, run_script, wait_for


@pytest.fixture(scope="module")
def runs(live_server, tmp_path_factory):
    home = tmp_path_factory.mktemp("sdk")
    result = run_script(SCRIPTS / "scenarios.py", live_server.url, home)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    noisy = [
        line for line in (result.stdout + result.stderr).splitlines()
        if "Traceback" in line or "| ERROR" in line and "the flow fails" not in line and "kaboom" not in line
        and "first attempt fails" not in line
    ]
    assert not [n for n in noisy if "Traceback" not in n], noisy
    return last_json_line(result.stdout)


def task_runs(api, flow_run_id, expected: int | None = None):
    def fetch():
        rows = api.post("/task_runs/filter", json={
            "task_runs": {"flow_run_id": {"any_": [flow_run_id]}}, "sort": "EXPECTED_START_TIME_ASC"}).json()
        terminal = all(r["state_type"] in ("COMPLETED", "FAILED", "CANCELLED", "CRASHED") for r in rows)
        if expected is None or (len(rows) >= expected and terminal):
            return rows
        return None

    return wait_for(fetch) or fetch_anyway(api, flow_run_id)


def fetch_anyway(api, flow_run_id):
    return api.post("/task_runs/filter", json={"task_runs": {"flow_run_id": {"any_": [flow_run_id]}}}).json()


def states_of(api, flow_run_id):
    return [(s["type"], s["name"]) for s in api.get("/flow_run_states/", params={"flow_run_id": flow_run_id}).json()]


def test_sequential_tasks(api, runs):
    run = api.get(f"/flow_runs/{runs['sequential']}").json()
    assert run["state_type"] == "COMPLETED" and run["run_count"] == 1
    assert run["start_time"] and run["end_time"] and run["total_run_time"] > 0
    assert isinstance(run["estimated_run_time"], float)
    tasks = task_runs(api, runs["sequential"], 3)
    assert [t["name"].rsplit("-", 1)[0] for t in tasks] == ["add", "double", "add"]
    assert all(t["state_type"] == "COMPLETED" and t["run_count"] == 1 for t in tasks)
    history = api.get("/task_run_states/", params={"task_run_id": tasks[0]["id"]}).json()
    assert [s["type"] for s in history] == ["PENDING", "RUNNING", "COMPLETED"]
    assert states_of(api, runs["sequential"]) == [("PENDING", "Pending"), ("RUNNING", "Running"), ("COMPLETED", "Completed")]


def test_submit_and_map(api, runs):
    tasks = task_runs(api, runs["fan_out"], 25)
    assert len(tasks) == 25
    assert {t["state_type"] for t in tasks} == {"COMPLETED"}
    count = api.post("/task_runs/count", json={
        "flow_runs": {"id": {"any_": [runs["fan_out"]]}}, "task_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}}).json()
    assert count == 25


def test_task_retries_and_a_task_that_always_fails(api, runs):
    tasks = {t["name"].rsplit("-", 1)[0]: t for t in task_runs(api, runs["retries"], 2)}
    flaky, failing = tasks["flaky"], tasks["always_fails"]
    assert flaky["state_type"] == "COMPLETED" and flaky["run_count"] == 2
    assert flaky["tags"] == ["flaky"]
    names = [s["name"] for s in api.get("/task_run_states/", params={"task_run_id": flaky["id"]}).json()]
    assert names == ["Pending", "Running", "AwaitingRetry", "Retrying", "Completed"]
    assert failing["state_type"] == "FAILED" and failing["run_count"] == 2
    assert failing["state"]["state_details"]["retriable"] is False
    assert api.get(f"/flow_runs/{runs['retries']}").json()["state_type"] == "FAILED"


def test_flow_level_retry(api, runs):
    run = api.get(f"/flow_runs/{runs['flow_retry']}").json()
    assert run["state_type"] == "COMPLETED"
    assert run["run_count"] == 2
    assert run["empirical_policy"]["retries"] == 1
    assert states_of(api, runs["flow_retry"]) == [
        ("PENDING", "Pending"), ("RUNNING", "Running"), ("SCHEDULED", "AwaitingRetry"),
        ("RUNNING", "Running"), ("COMPLETED", "Completed"),
    ]


def test_subflow_links_and_mirrored_states(api, runs):
    child = api.get(f"/flow_runs/{runs['child']}").json()
    tracking_id = child["parent_task_run_id"]
    assert tracking_id
    tracking = api.get(f"/task_runs/{tracking_id}").json()
    assert tracking["flow_run_id"] == runs["parent"]
    assert tracking["state_type"] == "COMPLETED"
    assert tracking["state"]["state_details"]["child_flow_run_id"] == runs["child"]
    mirrored = api.get("/task_run_states/", params={"task_run_id": tracking_id}).json()
    assert [s["type"] for s in mirrored] == ["PENDING", "PENDING", "RUNNING", "COMPLETED"]
    assert child["state"]["state_details"]["task_run_id"] == tracking_id
    by_parent = api.post("/flow_runs/filter", json={"flow_runs": {"parent_flow_run_id": {"any_": [runs["parent"]]}}}).json()
    assert [r["id"] for r in by_parent] == [runs["child"]]


def test_two_thousand_log_lines_in_order(api, runs):
    def read_all():
        lines, offset = [], 0
        while True:
            page = api.post("/logs/filter", json={
                "logs": {"flow_run_id": {"any_": [runs["chatty"]]}, "level": {"ge_": 20}},
                "sort": "TIMESTAMP_ASC", "limit": 200, "offset": offset}).json()
            if not page:
                return lines
            lines.extend(page)
            offset += len(page)

    logs = wait_for(lambda: (lambda got: got if len([g for g in got if g["message"].startswith("line ")]) >= 2000 else None)(read_all()))
    messages = [entry["message"] for entry in (logs or read_all()) if entry["message"].startswith("line ")]
    assert messages == [f"line {i:05d}" for i in range(2000)]


def test_artifacts_of_each_kind(api, runs):
    response = api.post("/artifacts/filter", json={
        "artifacts": {"flow_run_id": {"any_": [runs["artifacts"]]}}, "sort": "KEY_ASC"})
    assert response.status_code == 200, response.text
    artifacts = response.json()
    by_key = {a["key"]: a for a in artifacts}
    assert set(by_key) == {"e2e-markdown", "e2e-table", "e2e-link", "e2e-progress", "e2e-image"}
    assert by_key["e2e-markdown"]["type"] == "markdown" and by_key["e2e-markdown"]["data"] == "# Hello"
    assert by_key["e2e-table"]["type"] == "table"
    assert by_key["e2e-progress"]["type"] == "progress" and by_key["e2e-progress"]["data"] == 100.0
    assert by_key["e2e-image"]["type"] == "image"
    assert "https://example.com/report" in by_key["e2e-link"]["data"]
    # As Prefect's server, /latest answers the key's collection row (its own id) with the
    # newest version's content.
    latest = api.get("/artifacts/e2e-markdown/latest").json()
    assert (latest["key"], latest["data"], latest["flow_run_id"]) == ("e2e-markdown", "# Hello", runs["artifacts"])
    collections = api.post("/artifacts/latest/filter", json={"artifacts": {"key": {"any_": ["e2e-table"]}}}).json()
    assert [c["latest_id"] for c in collections] == [by_key["e2e-table"]["id"]]


def test_failed_flow(api, runs):
    run = api.get(f"/flow_runs/{runs['failing']}").json()
    assert run["state_type"] == "FAILED"
    assert "the flow fails" in run["state"]["message"]


def test_server_log_is_clean(live_server, runs, api):
    task_runs(api, runs["sequential"], 3)
    assert live_server.errors_in_log() == [], live_server.log()[-5000:]
