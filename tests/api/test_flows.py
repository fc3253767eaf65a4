"""/flows on both backends: get-or-create, reads, filter, count, paginate, update, delete."""

from __future__ import annotations

import uuid

from db.models import Flow, FlowRun


def make_flow(client, name, **extra):
    resp = client.simulate_post("/api/flows/", json={"name": name, **extra})
    assert resp.status_code in (200, 201), resp.text
    return resp.json


def test_get_or_create_is_201_then_200_with_the_first_row(client):
    first = client.simulate_post("/api/flows/", json={"name": "etl", "tags": ["a"], "labels": {"team": "x"}})
    assert first.status_code == 201
    body = first.json
    assert set(body) == {"id", "created", "updated", "name", "tags", "labels"}
    assert body["name"] == "etl" and body["tags"] == ["a"] and body["labels"] == {"team": "x"}
    assert body["created"].endswith("Z") and len(body["created"]) == 27
    # The real server answers the existing flow unchanged: later tags are not merged in.
    again = client.simulate_post("/api/flows/", json={"name": "etl", "tags": ["b"]})
    assert again.status_code == 200
    assert again.json == body
    assert Flow.select().count() == 1


def test_defaults_of_a_bare_create(client):
    body = client.simulate_post("/api/flows/", json={"name": "bare"}).json
    assert body["tags"] == [] and body["labels"] == {}
    uuid.UUID(body["id"])


def test_read_by_id_and_by_name(client):
    made = make_flow(client, "reader")
    assert client.simulate_get(f"/api/flows/{made['id']}").json == made
    assert client.simulate_get("/api/flows/name/reader").json == made
    # Names are URL-encoded by the client; spaces and unicode survive the path.
    odd = make_flow(client, "my flow ü")
    assert client.simulate_get("/api/flows/name/my%20flow%20%C3%BC").json == odd


def test_unknown_flows_are_404(client):
    assert client.simulate_get(f"/api/flows/{uuid.uuid4()}").json == {"detail": "Flow not found"}
    resp = client.simulate_get("/api/flows/name/nope-nope")
    assert resp.status_code == 404 and resp.json == {"detail": "Flow not found"}
    # A non-UUID where the route wants one does not match the route (as in Prefect).
    resp = client.simulate_get("/api/flows/not-a-uuid")
    assert resp.status_code == 404 and resp.json == {"detail": "Not Found"}
    assert client.simulate_delete(f"/api/flows/{uuid.uuid4()}").status_code == 404
    assert client.simulate_patch(f"/api/flows/{uuid.uuid4()}", json={"tags": []}).status_code == 404


def test_bad_creates_are_422_naming_the_field(client):
    cases = [
        ({"name": ""}, "name"),
        ({"name": "a/b"}, "name"),
        ({"name": "a%b"}, "name"),
        ({"name": 5}, "name"),
        ({"name": "q", "tags": "x"}, "tags"),
        ({"name": "q", "tags": [1]}, "tags"),
        ({"name": "q", "labels": []}, "labels"),
        ({}, "name"),
    ]
    for body, field in cases:
        resp = client.simulate_post("/api/flows/", json=body)
        assert resp.status_code == 422, (body, resp.text)
        assert resp.json["exception_message"] == "Invalid request received."
        assert resp.json["exception_detail"][0]["loc"][:2] == ["body", field]
        assert field in resp.json["detail"]
    assert Flow.select().count() == 0


def test_update_tags_and_labels(client):
    made = make_flow(client, "upd")
    resp = client.simulate_patch(f"/api/flows/{made['id']}", json={"tags": ["new"], "labels": {"k": 1}})
    assert resp.status_code == 204 and resp.content == b""
    after = client.simulate_get(f"/api/flows/{made['id']}").json
    assert after["tags"] == ["new"] and after["labels"] == {"k": 1}
    assert after["updated"] >= made["updated"]
    assert client.simulate_patch(f"/api/flows/{made['id']}", json={}).status_code == 204


def test_filter_by_id_name_tags_and_sorts(client):
    a = make_flow(client, "alpha", tags=["x", "y"])
    b = make_flow(client, "beta", tags=["y"])
    c = make_flow(client, "gamma")

    def names(body):
        resp = client.simulate_post("/api/flows/filter", json=body)
        assert resp.status_code == 200, resp.text
        return [f["name"] for f in resp.json]

    assert names({}) == ["alpha", "beta", "gamma"]  # default NAME_ASC
    assert names({"sort": "NAME_DESC"}) == ["gamma", "beta", "alpha"]
    assert names({"sort": "CREATED_DESC"}) == ["gamma", "beta", "alpha"]
    assert names({"flows": {"id": {"any_": [a["id"], c["id"]]}}}) == ["alpha", "gamma"]
    assert names({"flows": {"id": {"not_any_": [a["id"]]}}}) == ["beta", "gamma"]
    assert names({"flows": {"name": {"any_": ["beta"]}}}) == ["beta"]
    assert names({"flows": {"name": {"like_": "MM"}}}) == ["gamma"]
    assert names({"flows": {"tags": {"all_": ["y"]}}}) == ["alpha", "beta"]
    assert names({"flows": {"tags": {"all_": ["x", "y"]}}}) == ["alpha"]
    assert names({"flows": {"tags": {"is_null_": True}}}) == ["gamma"]
    assert names({"flows": {"tags": {"is_null_": False}}}) == ["alpha", "beta"]
    # What `prefect flow ls` sends: explicit nulls everywhere.
    cli = {"flows": None, "flow_runs": None, "task_runs": None, "deployments": None, "work_pools": None,
           "work_queues": None, "sort": "CREATED_DESC", "limit": 15, "offset": 0}
    assert names(cli) == ["gamma", "beta", "alpha"]
    assert names({"limit": 1, "offset": 1}) == ["beta"]
    assert b["id"] in {f["id"] for f in client.simulate_post("/api/flows/filter").json}


def test_filter_flows_through_their_runs(client):
    a = make_flow(client, "with-run")
    make_flow(client, "without-run")
    run = client.simulate_post("/api/flow_runs/", json={"flow_id": a["id"], "tags": ["t"]})
    assert run.status_code == 201
    body = {"flow_runs": {"tags": {"all_": ["t"]}}}
    assert [f["name"] for f in client.simulate_post("/api/flows/filter", json=body).json] == ["with-run"]
    assert client.simulate_post("/api/flows/count", json=body).json == 1


def test_count(client):
    for name in ("a", "b", "c"):
        make_flow(client, name, tags=["even"] if name != "b" else [])
    assert client.simulate_post("/api/flows/count").json == 3
    assert client.simulate_post("/api/flows/count", json={}).json == 3
    assert client.simulate_post("/api/flows/count", json={"flows": {"tags": {"all_": ["even"]}}}).json == 2
    assert client.simulate_post("/api/flows/count", json={"flows": {"name": {"any_": []}}}).json == 0


def test_paginate(client):
    for i in range(5):
        make_flow(client, f"flow-{i}")
    page = client.simulate_post("/api/flows/paginate", json={"limit": 2, "page": 3}).json
    assert page == {
        "results": [page["results"][0]],
        "count": 5,
        "limit": 2,
        "pages": 3,
        "page": 3,
    }
    assert page["results"][0]["name"] == "flow-4"
    first = client.simulate_post("/api/flows/paginate", json={}).json
    assert (first["count"], first["limit"], first["pages"], first["page"]) == (5, 200, 1, 1)
    assert [f["name"] for f in first["results"]] == [f"flow-{i}" for i in range(5)]
    filtered = client.simulate_post(
        "/api/flows/paginate", json={"flows": {"name": {"any_": ["flow-1"]}}, "limit": 1}
    ).json
    assert filtered["count"] == 1 and filtered["pages"] == 1
    for bad in ({"page": 0}, {"page": "x"}, {"limit": 201}):
        assert client.simulate_post("/api/flows/paginate", json=bad).status_code == 422


def test_delete_cascades_to_runs(client):
    flow = make_flow(client, "doomed")
    keep = make_flow(client, "kept")
    for f in (flow, keep):
        assert client.simulate_post("/api/flow_runs/", json={"flow_id": f["id"]}).status_code == 201
    resp = client.simulate_delete(f"/api/flows/{flow['id']}")
    assert resp.status_code == 204 and resp.content == b""
    assert client.simulate_get(f"/api/flows/{flow['id']}").status_code == 404
    assert client.simulate_delete(f"/api/flows/{flow['id']}").status_code == 404
    assert FlowRun.select().where(FlowRun.flow_id == flow["id"]).count() == 0
    assert FlowRun.select().where(FlowRun.flow_id == keep["id"]).count() == 1
    # The name is free again: a new create is a 201 with a new id.
    again = client.simulate_post("/api/flows/", json={"name": "doomed"})
    assert again.status_code == 201 and again.json["id"] != flow["id"]


def test_delete_a_flow_with_a_deployment(client):
    flow = make_flow(client, "deployed")
    dep = client.simulate_post("/api/deployments/", json={"name": "d", "flow_id": flow["id"]})
    assert dep.status_code == 201, dep.text
    assert client.simulate_delete(f"/api/flows/{flow['id']}").status_code == 204
    assert client.simulate_get(f"/api/deployments/{dep.json['id']}").status_code == 404
