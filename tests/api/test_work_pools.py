"""/work_pools, queues, workers, get_scheduled_flow_runs, /work_queues."""

from __future__ import annotations


def test_pool_lifecycle_and_statuses(client):
    made = client.simulate_post("/api/work_pools/", json={"name": "p", "type": "process"})
    assert made.status_code == 201 and made.json["status"] == "NOT_READY" and made.json["default_queue_id"]
    assert client.simulate_post("/api/work_pools/", json={"name": "p"}).status_code == 409
    reserved = client.simulate_post("/api/work_pools/", json={"name": "Prefect-x"})
    assert reserved.status_code == 403 and "reserved" in reserved.json["detail"]
    assert client.simulate_get("/api/work_pools/nope").json == {"detail": 'Work pool "nope" not found.'}
    assert client.simulate_post("/api/work_pools/p/workers/heartbeat",
                                json={"name": "w", "heartbeat_interval_seconds": 30}).status_code == 204
    assert client.simulate_get("/api/work_pools/p").json["status"] == "READY"
    client.simulate_patch("/api/work_pools/p", json={"is_paused": True})
    assert client.simulate_get("/api/work_pools/p").json["status"] == "PAUSED"
    client.simulate_patch("/api/work_pools/p", json={"is_paused": False})
    assert client.simulate_get("/api/work_pools/p").json["status"] == "READY"
    workers = client.simulate_post("/api/work_pools/p/workers/filter",
                                   json={"workers": {"status": {"any_": ["ONLINE"]}}, "offset": None, "limit": None})
    assert [w["name"] for w in workers.json] == ["w"] and workers.json[0]["status"] == "ONLINE"
    agent = client.simulate_post("/api/work_pools/", json={"name": "legacy"}).json
    assert agent["type"] == "prefect-agent" and agent["status"] is None
    assert client.simulate_post("/api/work_pools/count", json={}).json == 2
    assert client.simulate_delete("/api/work_pools/p/workers/w").status_code == 204
    assert client.simulate_delete("/api/work_pools/p").status_code == 204
    assert client.simulate_get("/api/work_pools/p").status_code == 404


def test_queue_priorities_stay_unique(client):
    client.simulate_post("/api/work_pools/", json={"name": "p", "type": "process"})
    q = lambda body: client.simulate_post("/api/work_pools/p/queues", json=body)  # noqa: E731
    assert q({"name": "b"}).json["priority"] == 2
    assert q({"name": "a", "priority": 1}).json["priority"] == 1
    assert q({"name": "a"}).status_code == 409
    listed = client.simulate_post("/api/work_pools/p/queues/filter",
                                  json={"work_queues": None, "limit": None, "offset": None}).json
    assert [(x["name"], x["priority"]) for x in listed] == [("a", 1), ("default", 2), ("b", 3)]
    assert client.simulate_patch("/api/work_pools/p/queues/b", json={"priority": 1}).status_code == 204
    prios = [x["priority"] for x in client.simulate_post("/api/work_pools/p/queues/filter", json={}).json]
    assert len(prios) == len(set(prios))
    default = client.simulate_get("/api/work_pools/p/queues/default").json
    assert client.simulate_get(f"/api/work_queues/{default['id']}").json["work_pool_name"] == "p"
    assert client.simulate_delete("/api/work_pools/p/queues/default").status_code == 403
    assert client.simulate_delete("/api/work_pools/p/queues/b").status_code == 204
    assert client.simulate_get("/api/work_pools/p/queues/b").status_code == 404
    assert client.simulate_post("/api/work_pools/nope/queues", json={"name": "x"}).status_code == 404


def test_worker_polling(client):
    client.simulate_post("/api/work_pools/", json={"name": "p", "type": "process"})
    flow = client.simulate_post("/api/flows/", json={"name": "f"}).json
    run = client.simulate_post("/api/flow_runs/", json={"flow_id": flow["id"], "work_pool_name": "p",
                                                        "state": {"type": "SCHEDULED"}}).json
    assert run["work_queue_name"] == "default"
    got = client.simulate_post("/api/work_pools/p/get_scheduled_flow_runs",
                               json={"work_queue_names": [], "scheduled_before": "2999-01-01 00:00:00+00:00"})
    assert got.status_code == 200 and got.json[0]["flow_run"]["id"] == run["id"]
    assert set(got.json[0]) == {"work_pool_id", "work_queue_id", "flow_run"}
    queue = client.simulate_get("/api/work_pools/p/queues/default").json
    assert queue["status"] == "READY" and queue["last_polled"]
    assert client.simulate_post("/api/work_pools/p/get_scheduled_flow_runs",
                                json={"work_queue_names": ["nope"]}).status_code == 404
    assert client.simulate_post("/api/work_pools/nope/get_scheduled_flow_runs", json={}).status_code == 404
    assert client.simulate_post("/api/work_pools/p/get_scheduled_flow_runs", json={"limit": -1}).status_code == 422
    assert client.simulate_get("/api/work_pools/p/workers/connect").status_code == 404
