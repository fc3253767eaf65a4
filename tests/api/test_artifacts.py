"""/artifacts on both backends: create (each kind the SDK makes), read, filter, count, latest by
key, the latest-per-key collection, update, delete."""

from __future__ import annotations

import uuid

from db.models import Artifact, ArtifactCollection

# What create_*_artifact() of the 3.8.8 SDK sends, one per kind.
KINDS = {
    "markdown": "# Report\n\n*done*",
    "table": [{"a": 1, "b": None}, {"a": 2, "b": "x"}],
    "link": "[docs](https://docs.prefect.io)",
    "progress": 42.5,
    "image": "https://example.com/chart.png",
    "result": '{"storage_key": "abc"}',
}


def make(client, **body):
    resp = client.simulate_post("/api/artifacts/", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json


def test_each_artifact_kind_round_trips(client):
    run, task = str(uuid.uuid4()), str(uuid.uuid4())
    for kind, data in KINDS.items():
        made = make(client, key=f"{kind}-art", type=kind, data=data, description=f"a {kind}",
                    flow_run_id=run, task_run_id=task, metadata_={"k": "v"})
        assert set(made) == {"id", "created", "updated", "key", "type", "description", "data", "metadata_",
                             "flow_run_id", "task_run_id"}
        assert (made["type"], made["data"], made["description"]) == (kind, data, f"a {kind}")
        assert (made["flow_run_id"], made["task_run_id"], made["metadata_"]) == (run, task, {"k": "v"})
        assert client.simulate_get(f"/api/artifacts/{made['id']}").json == made
    assert client.simulate_post("/api/artifacts/count").json == len(KINDS)


def test_bare_artifact_and_defaults(client):
    made = make(client)
    assert {k: made[k] for k in ("key", "type", "description", "data", "metadata_", "flow_run_id", "task_run_id")} == (
        dict.fromkeys(("key", "type", "description", "data", "metadata_", "flow_run_id", "task_run_id"))
    )
    assert ArtifactCollection.select().count() == 0  # no key, no collection


def test_metadata_values_are_truncated_like_prefect(client):
    made = make(client, metadata_={"long": "x" * 600, "short": "y"})
    assert made["metadata_"] == {"long": "x" * 500 + "...", "short": "y"}


def test_reads_of_unknown_artifacts(client):
    assert client.simulate_get(f"/api/artifacts/{uuid.uuid4()}").json == {"detail": "Artifact not found."}
    resp = client.simulate_get("/api/artifacts/not-a-uuid")
    assert resp.status_code == 404 and resp.json == {"detail": "Not Found"}
    resp = client.simulate_get("/api/artifacts/nope/latest")
    assert resp.status_code == 404 and resp.json == {"detail": "Artifact not found."}
    assert client.simulate_patch(f"/api/artifacts/{uuid.uuid4()}", json={"data": 1}).status_code == 404
    assert client.simulate_delete(f"/api/artifacts/{uuid.uuid4()}").status_code == 404


def test_latest_by_key_is_the_collection(client):
    first = make(client, key="my-table", type="table", data=[{"a": 1}], description="d1")
    second = make(client, key="my-table", type="table", data=[{"a": 2}], metadata_={"k": "v"})
    latest = client.simulate_get("/api/artifacts/my-table/latest").json
    # As Prefect: the collection's own id and the first version's `created`, the newest content.
    assert latest["id"] not in (first["id"], second["id"])
    assert "latest_id" not in latest
    assert latest["created"] == first["created"] and latest["updated"] == second["updated"]
    assert (latest["data"], latest["description"], latest["metadata_"]) == ([{"a": 2}], None, {"k": "v"})
    (collection,) = client.simulate_post("/api/artifacts/latest/filter").json
    assert collection["latest_id"] == second["id"]
    assert collection["id"] == latest["id"]


def test_update_changes_data_description_metadata(client):
    made = make(client, key="doc", type="markdown", data="v1", description="old", metadata_={"a": "1"})
    resp = client.simulate_patch(f"/api/artifacts/{made['id']}", json={"data": "v2", "description": "new"})
    assert resp.status_code == 204 and resp.content == b""
    after = client.simulate_get(f"/api/artifacts/{made['id']}").json
    assert (after["data"], after["description"], after["metadata_"]) == ("v2", "new", {"a": "1"})
    assert after["updated"] > made["updated"] and after["created"] == made["created"]
    latest = client.simulate_get("/api/artifacts/doc/latest").json
    assert (latest["data"], latest["description"]) == ("v2", "new")
    assert client.simulate_patch(f"/api/artifacts/{made['id']}", json={"metadata_": {"b": "2"}}).status_code == 204
    assert client.simulate_get(f"/api/artifacts/{made['id']}").json["metadata_"] == {"b": "2"}


def test_updating_an_older_version_leaves_the_collection_alone(client):
    old = make(client, key="k", data="old")
    make(client, key="k", data="new")
    assert client.simulate_patch(f"/api/artifacts/{old['id']}", json={"data": "patched"}).status_code == 204
    assert client.simulate_get("/api/artifacts/k/latest").json["data"] == "new"


def test_delete_repoints_then_removes_the_collection(client):
    first = make(client, key="my-table", data=1)
    second = make(client, key="my-table", data=2)
    assert client.simulate_delete(f"/api/artifacts/{second['id']}").status_code == 204
    latest = client.simulate_get("/api/artifacts/my-table/latest").json
    assert latest["data"] == 1 and latest["updated"] == first["updated"]
    assert client.simulate_post("/api/artifacts/latest/filter").json[0]["latest_id"] == first["id"]
    # Deleting an older version does not touch the collection.
    third = make(client, key="my-table", data=3)
    assert client.simulate_delete(f"/api/artifacts/{first['id']}").status_code == 204
    assert client.simulate_post("/api/artifacts/latest/filter").json[0]["latest_id"] == third["id"]
    assert client.simulate_delete(f"/api/artifacts/{third['id']}").status_code == 204
    assert client.simulate_post("/api/artifacts/latest/filter").json == []
    assert client.simulate_post("/api/artifacts/latest/count").json == 0
    assert client.simulate_get("/api/artifacts/my-table/latest").status_code == 404
    assert client.simulate_delete(f"/api/artifacts/{third['id']}").status_code == 404
    assert Artifact.select().count() == 0


def test_filter_count_and_sorts(client):
    run_a, run_b, task = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    a = make(client, key="alpha", type="table", data=[], flow_run_id=run_a)
    b = make(client, key="beta", type="markdown", data="", flow_run_id=run_b, task_run_id=task)
    c = make(client, type="progress", data=1.0, flow_run_id=run_a)

    def ids(body=None, path="/api/artifacts/filter"):
        resp = client.simulate_post(path, json=body if body is not None else {})
        assert resp.status_code == 200, resp.text
        return [r["id"] for r in resp.json]

    assert set(ids()) == {a["id"], b["id"], c["id"]}
    keyed = {"artifacts": {"key": {"exists_": True}}}  # where NULL keys sort is up to the database
    assert ids({**keyed, "sort": "KEY_ASC"}) == [a["id"], b["id"]]
    assert ids({**keyed, "sort": "KEY_DESC"}) == [b["id"], a["id"]]
    assert ids({"sort": "CREATED_DESC"}) == [c["id"], b["id"], a["id"]]
    assert ids({"artifacts": {"key": {"any_": ["beta"]}}}) == [b["id"]]
    assert ids({"artifacts": {"key": {"like_": "LPH"}}}) == [a["id"]]
    assert ids({"artifacts": {"key": {"exists_": False}}}) == [c["id"]]
    assert set(ids({"artifacts": {"key": {"exists_": True}}})) == {a["id"], b["id"]}
    assert ids({"artifacts": {"type": {"any_": ["table"]}}}) == [a["id"]]
    assert set(ids({"artifacts": {"type": {"not_any_": ["table"]}}})) == {b["id"], c["id"]}
    assert set(ids({"artifacts": {"flow_run_id": {"any_": [run_a]}}})) == {a["id"], c["id"]}
    assert ids({"artifacts": {"task_run_id": {"any_": [task]}}}) == [b["id"]]
    assert ids({"artifacts": {"id": {"any_": [c["id"]]}}}) == [c["id"]]
    assert ids({"limit": 1, "offset": 1, "sort": "CREATED_DESC"}) == [b["id"]]
    nulls = {"artifacts": None, "flow_runs": None, "task_runs": None, "sort": None, "limit": None, "offset": None}
    assert len(ids(nulls)) == 3
    count = client.simulate_post("/api/artifacts/count", json={"artifacts": {"flow_run_id": {"any_": [run_a]}}})
    assert count.json == 2
    # The latest-per-key collection takes the same grammar plus latest_id.
    assert len(ids(path="/api/artifacts/latest/filter")) == 2
    latest_ids = ids({"artifacts": {"latest_id": {"any_": [b["id"]]}}}, "/api/artifacts/latest/filter")
    assert len(latest_ids) == 1
    assert client.simulate_post("/api/artifacts/latest/count", json={"artifacts": {"key": {"any_": ["alpha"]}}}).json == 1
    sorted_keys = [r["key"] for r in client.simulate_post("/api/artifacts/latest/filter", json={"sort": "KEY_DESC"}).json]
    assert sorted_keys == ["beta", "alpha"]


def test_filter_through_flow_runs(client):
    flow = client.simulate_post("/api/flows/", json={"name": "f"}).json
    run = client.simulate_post("/api/flow_runs/", json={"flow_id": flow["id"], "tags": ["nightly"]}).json
    mine = make(client, key="k1", data=1, flow_run_id=run["id"])
    make(client, key="k2", data=2, flow_run_id=str(uuid.uuid4()))
    body = {"flow_runs": {"tags": {"all_": ["nightly"]}}}
    assert [r["id"] for r in client.simulate_post("/api/artifacts/filter", json=body).json] == [mine["id"]]
    assert [r["key"] for r in client.simulate_post("/api/artifacts/latest/filter", json=body).json] == ["k1"]


def test_bad_input_is_422_and_writes_nothing(client):
    for body, field in [
        ({"key": "Bad Key", "data": 1}, "key"),
        ({"key": "under_score"}, "key"),
        ({"metadata_": {"k": 1}}, "metadata_"),
        ({"metadata_": "x"}, "metadata_"),
        ({"flow_run_id": "nope"}, "flow_run_id"),
        ({"task_run_id": 5}, "task_run_id"),
        ({"type": 5}, "type"),
        ({"description": ["x"]}, "description"),
    ]:
        resp = client.simulate_post("/api/artifacts/", json=body)
        assert resp.status_code == 422, (body, resp.text)
        assert resp.json["exception_detail"][0]["loc"][:2] == ["body", field]
        assert field in resp.json["detail"]
    assert Artifact.select().count() == 0 and ArtifactCollection.select().count() == 0
    made = make(client, key="k", data=1)
    resp = client.simulate_patch(f"/api/artifacts/{made['id']}", json={"metadata_": {"k": 1}})
    assert resp.status_code == 422
    for body in ({"sort": "NOPE"}, {"limit": 201}, {"artifacts": {"key": {"exists_": "yes"}}},
                 {"artifacts": {"flow_run_id": {"any_": ["x"]}}}):
        for path in ("/api/artifacts/filter", "/api/artifacts/latest/filter"):
            assert client.simulate_post(path, json=body).status_code == 422, (path, body)
