"""/deployments, schedules, runs from a deployment, automations stubs, flow-run inputs and resume."""

from __future__ import annotations

import pytest

SCHEMA = {"title": "Parameters", "type": "object", "properties": {"x": {"type": "integer", "position": 0}},
          "required": ["x"]}


@pytest.fixture
def flow(client):
    return client.simulate_post("/api/flows/", json={"name": "f"}).json


def create(client, flow, **extra):
    body = {"name": "d", "flow_id": flow["id"], "parameters": {"x": 1}, "parameter_openapi_schema": SCHEMA,
            "schedules": [{"schedule": {"interval": 3600.0, "anchor_date": "2026-01-01T00:00:00Z", "timezone": "UTC"},
                           "active": True, "max_scheduled_runs": None, "parameters": {}, "slug": None,
                           "replaces": None}],
            "description": "None", "tags": ["a"]}
    body.update(extra)
    return client.simulate_post("/api/deployments/", json=body)


def test_upsert_201_then_200_replaces(client, flow):
    first = create(client, flow)
    assert first.status_code == 201
    dep = first.json
    assert dep["status"] == "NOT_READY" and dep["labels"] == {"prefect.flow.id": flow["id"]}
    assert dep["schedules"][0]["deployment_id"] == dep["id"] and dep["pull_steps"] == []
    again = client.simulate_post("/api/deployments/", json={"name": "d", "flow_id": flow["id"]})
    assert again.status_code == 200
    assert again.json["id"] == dep["id"] and again.json["schedules"] == [] and again.json["tags"] == []
    by_name = client.simulate_get("/api/deployments/name/f/d")
    assert by_name.status_code == 200 and by_name.json["id"] == dep["id"]
    assert client.simulate_get("/api/deployments/name/f/nope").json == {"detail": "Deployment not found"}


def test_create_flow_run_merges_and_enforces_schema(client, flow):
    dep = create(client, flow).json
    url = f"/api/deployments/{dep['id']}/create_flow_run"
    run = client.simulate_post(url, json={"parameters": {"y": 2}, "tags": ["b"], "idempotency_key": "k"})
    assert run.status_code == 201
    assert run.json["parameters"] == {"x": 1, "y": 2} and run.json["tags"] == ["a", "b"]
    assert run.json["state"]["type"] == "SCHEDULED" and run.json["deployment_id"] == dep["id"]
    again = client.simulate_post(url, json={"idempotency_key": "k"})
    assert again.status_code == 200 and again.json["id"] == run.json["id"]
    bad = client.simulate_post(url, json={"parameters": {"x": "nope"}})
    assert bad.status_code == 409 and bad.json["detail"].startswith("Error creating flow run: ")
    ok = client.simulate_post(url, json={"parameters": {"x": "nope"}, "enforce_parameter_schema": False})
    assert ok.status_code == 201
    bulk = client.simulate_post(url + "/bulk", json=[{}, {"parameters": {"x": 3}}])
    assert bulk.status_code == 201 and [r["parameters"]["x"] for r in bulk.json] == [1, 3]


def test_runner_poll_marks_ready(client, flow):
    dep = create(client, flow).json
    client.simulate_post(f"/api/deployments/{dep['id']}/create_flow_run", json={})
    got = client.simulate_post("/api/deployments/get_scheduled_flow_runs",
                               json={"deployment_ids": [dep["id"]], "scheduled_before": "2999-01-01 00:00:00+00:00"})
    assert got.status_code == 200 and len(got.json) == 1 and got.json[0]["state"]["type"] == "SCHEDULED"
    dep = client.simulate_get(f"/api/deployments/{dep['id']}").json
    assert dep["status"] == "READY" and dep["last_polled"]


def test_patch_pause_delete_and_listing(client, flow):
    dep = create(client, flow).json
    assert client.simulate_patch(f"/api/deployments/{dep['id']}", json={"paused": True}).status_code == 204
    assert client.simulate_get(f"/api/deployments/{dep['id']}").json["paused"] is True
    assert client.simulate_post(f"/api/deployments/{dep['id']}/resume_deployment").json is None
    assert client.simulate_post("/api/deployments/count", json={}).json == 1
    assert client.simulate_post("/api/deployments/filter", json={"deployments": {"name": {"any_": ["d"]}}}).json[0][
        "id"] == dep["id"]
    page = client.simulate_post("/api/deployments/paginate", json={"limit": 1}).json
    assert page["count"] == 1 and page["pages"] == 1
    runs = client.simulate_post("/api/flow_runs/count", json={"deployments": {"id": {"any_": [dep["id"]]}}}).json
    assert runs == 0
    client.simulate_post(f"/api/deployments/{dep['id']}/create_flow_run", json={})
    assert client.simulate_delete(f"/api/deployments/{dep['id']}").status_code == 204
    assert client.simulate_post("/api/flow_runs/count", json={}).json == 0
    assert client.simulate_get(f"/api/deployments/{dep['id']}").status_code == 404


def test_schedule_sub_resources_and_slugs(client, flow):
    dep = create(client, flow, schedules=[{"schedule": {"interval": 60}, "slug": "a"}]).json
    url = f"/api/deployments/{dep['id']}/schedules"
    made = client.simulate_post(url, json=[{"schedule": {"cron": "0 9 * * *", "timezone": "Europe/Berlin"},
                                            "slug": "b"}])
    assert made.status_code == 201 and made.json[0]["schedule"]["day_or"] is True
    assert len(client.simulate_get(url).json) == 2
    no_slug = client.simulate_patch(f"/api/deployments/{dep['id']}", json={"schedules": [{"schedule": {"interval": 5}}]})
    assert no_slug.status_code == 422
    by_slug = client.simulate_patch(f"/api/deployments/{dep['id']}",
                                    json={"schedules": [{"schedule": {"interval": 120}, "slug": "a"}]})
    assert by_slug.status_code == 204
    left = client.simulate_get(url).json
    assert [(s["slug"], s["schedule"]["interval"]) for s in left] == [("a", 120.0)]
    sid = left[0]["id"]
    assert client.simulate_patch(f"{url}/{sid}", json={"active": False}).status_code == 204
    assert client.simulate_get(url).json[0]["active"] is False
    assert client.simulate_delete(f"{url}/{sid}").status_code == 204
    assert client.simulate_delete(f"{url}/{sid}").status_code == 404


@pytest.mark.parametrize(
    "schedule",
    [
        {"cron": "* * * * * *"},
        {"cron": "0 9 * * *", "timezone": "Nowhere/City"},
        {"interval": -1},
        {"rrule": "FREQ=DAILY;" + "BYHOUR=1;" * 1000},
        {"rrule": "RRULE:FREQ=NEVER"},
        {"every": "day"},
    ],
)
def test_bad_schedules_are_422_and_nothing_written(client, flow, schedule):
    resp = create(client, flow, schedules=[{"schedule": schedule}])
    assert resp.status_code == 422 and "schedules.0.schedule" in resp.json["detail"]
    assert client.simulate_post("/api/deployments/count", json={}).json == 0


def test_bad_input_elsewhere(client, flow):
    assert create(client, flow, work_pool_name="nope").status_code == 404
    assert client.simulate_post("/api/deployments/", json={"name": "d"}).status_code == 422
    missing_flow = client.simulate_post("/api/deployments/", json={"name": "d",
                                                                  "flow_id": "00000000-0000-0000-0000-000000000000"})
    assert missing_flow.status_code == 409
    unknown = "/api/deployments/00000000-0000-0000-0000-000000000000"
    assert client.simulate_post(unknown + "/create_flow_run", json={}).status_code == 404
    assert client.simulate_patch(unknown, json={"paused": True}).status_code == 404
    assert client.simulate_post(unknown + "/pause_deployment").status_code == 404
    assert client.simulate_post("/api/deployments/get_scheduled_flow_runs", json={}).status_code == 422
    assert client.simulate_post("/api/flow_runs/", json={"flow_id": flow["id"], "work_pool_name": "nope"}
                                ).status_code == 404


def test_automation_stubs(client):
    assert client.simulate_delete("/api/automations/owned-by/prefect.deployment.x").status_code == 202
    assert client.simulate_get("/api/automations/related-to/prefect.deployment.x").json == []


def test_flow_run_inputs_and_resume(client, flow):
    run = client.simulate_post("/api/flow_runs/", json={"flow_id": flow["id"], "state": {"type": "RUNNING"}}).json
    base = f"/api/flow_runs/{run['id']}"
    assert client.simulate_post(base + "/input", json={"key": "a-1", "value": "\"v\""}).status_code == 201
    assert client.simulate_post(base + "/input", json={"key": "a-1", "value": "x"}).status_code == 409
    client.simulate_post(base + "/input", json={"key": "a-2", "value": "2", "sender": "s"})
    assert client.simulate_get(base + "/input/a-1").text == "\"v\""
    listed = client.simulate_post(base + "/input/filter", json={"prefix": "a-", "limit": 5, "exclude_keys": ["a-1"]})
    assert [i["key"] for i in listed.json] == ["a-2"]
    assert client.simulate_delete(base + "/input/a-2").status_code == 204
    assert client.simulate_get(base + "/input/a-2").status_code == 404

    not_paused = client.simulate_post(base + "/resume", json={"run_input": None})
    assert not_paused.json["status"] == "ABORT"
    schema = '{"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}'
    client.simulate_post(base + "/input", json={"key": "k-schema", "value": schema})
    keyset = {"description": "k-description", "response": "k-response", "schema": "k-schema"}
    paused = client.simulate_post(base + "/set_state", json={"state": {"type": "PAUSED", "state_details": {
        "pause_key": "k", "run_input_keyset": keyset, "pause_timeout": "2999-01-01T00:00:00Z"}}})
    assert paused.json["status"] == "ACCEPT"
    rejected = client.simulate_post(base + "/resume", json={"run_input": {"ok": "maybe"}})
    assert rejected.json["status"] == "REJECT" and rejected.json["details"]["reason"].startswith("Reason: ")
    resumed = client.simulate_post(base + "/resume", json={"run_input": {"ok": True}})
    assert resumed.status_code == 201 and resumed.json["status"] == "ACCEPT"
    assert resumed.json["state"]["type"] == "RUNNING"
    assert client.simulate_get(base + "/input/k-response").text == '{"ok":true}'
    # As the real 3.8.8 server (examples/06 #25): resuming a pause enters RUNNING again and
    # counts it; `resuming` stays set until the next RUNNING or final state.
    resumed_run = client.simulate_get(base).json
    assert resumed_run["run_count"] == 2 and resumed_run["empirical_policy"]["resuming"] is True


@pytest.mark.parametrize("strategy", ["ENQUEUE", "CANCEL_NEW"])
def test_deployment_concurrency_limit(client, flow, strategy):
    dep = create(client, flow, concurrency_limit=1,
                 concurrency_options={"collision_strategy": strategy}).json
    url = f"/api/deployments/{dep['id']}/create_flow_run"
    first, second = (client.simulate_post(url, json={}).json for _ in range(2))

    def propose(run, type_, force=False):
        return client.simulate_post(f"/api/flow_runs/{run['id']}/set_state",
                                    json={"state": {"type": type_}, "force": force}).json

    assert propose(first, "PENDING")["status"] == "ACCEPT"
    blocked = propose(second, "PENDING")
    assert blocked["status"] == "REJECT" and blocked["details"]["reason"] == "Deployment concurrency limit reached."
    if strategy == "ENQUEUE":
        assert blocked["state"]["type"] == "SCHEDULED" and blocked["state"]["name"] == "AwaitingConcurrencySlot"
        assert propose(first, "RUNNING")["status"] == "ACCEPT"
        assert propose(first, "COMPLETED")["status"] == "ACCEPT"
        assert propose(second, "PENDING")["status"] == "ACCEPT"
    else:
        assert blocked["state"]["type"] == "CANCELLED"
