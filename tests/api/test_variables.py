"""/variables on both backends: every route, validation, conflicts, filter/sort/count."""

from __future__ import annotations

import uuid

from db.models_variables import Variable


def create(client, name, value, tags=None):
    body = {"name": name, "value": value}
    if tags is not None:
        body["tags"] = tags
    resp = client.simulate_post("/api/variables/", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json


def test_create_read_by_name_and_id(client):
    made = create(client, "my_var", {"x": [1, 2, None]})
    assert set(made) == {"id", "created", "updated", "name", "value", "tags"}
    assert made["tags"] == [] and made["value"] == {"x": [1, 2, None]}
    assert client.simulate_get("/api/variables/name/my_var").json == made
    assert client.simulate_get(f"/api/variables/{made['id']}").json == made


def test_any_json_value_round_trips(client):
    values = ["hello", 3, 2.5, True, None, [1, "a"], {"a": {"b": None}}, "", 0, False]
    for i, value in enumerate(values):
        create(client, f"v{i}", value)
        assert client.simulate_get(f"/api/variables/name/v{i}").json["value"] == value


def test_missing_variable_is_404(client):
    for resp in (
        client.simulate_get("/api/variables/name/nope"),
        client.simulate_get(f"/api/variables/{uuid.uuid4()}"),
        client.simulate_patch("/api/variables/name/nope", json={"value": 1}),
        client.simulate_patch(f"/api/variables/{uuid.uuid4()}", json={"value": 1}),
        client.simulate_delete("/api/variables/name/nope"),
        client.simulate_delete(f"/api/variables/{uuid.uuid4()}"),
    ):
        assert resp.status_code == 404 and resp.json == {"detail": "Variable not found."}
    assert client.simulate_get("/api/variables/not-a-uuid").status_code == 404


def test_duplicate_name_is_409(client):
    create(client, "my_var", 1)
    resp = client.simulate_post("/api/variables/", json={"name": "my_var", "value": 2})
    assert resp.status_code == 409
    assert resp.json == {"detail": "A variable with the name 'my_var' already exists."}
    assert client.simulate_get("/api/variables/name/my_var").json["value"] == 1


BAD_CREATES = [
        ({"name": "Bad Name", "value": 1}, "name"),
        ({"name": "UPPER", "value": 1}, "name"),
        ({"name": "dots.no", "value": 1}, "name"),
        ({"name": "x" * 256, "value": 1}, "name"),
        ({"name": 5, "value": 1}, "name"),
        ({"value": 1}, "name"),
        ({"name": "ok"}, "value"),
        ({"name": "ok", "value": "x" * 5000}, "value"),
        ({"name": "ok", "value": {"k": "x" * 4995}}, "value"),
        ({"name": "ok", "value": 1, "tags": "a"}, "tags"),
        ({"name": "ok", "value": 1, "tags": [1]}, "tags"),
        ({"name": "ok", "value": 1, "unknown": 1}, "unknown"),
]


def test_bad_create_bodies_are_422_and_write_nothing(client):
    for body, field in BAD_CREATES:
        resp = client.simulate_post("/api/variables/", json=body)
        assert resp.status_code == 422, resp.text
        assert field in resp.json["detail"]
        assert resp.json["exception_detail"][0]["loc"][:2] == ["body", field]
    assert Variable.select().count() == 0


def test_limits_of_name_and_value_size(client):
    create(client, "a" * 255, "x" * 4998)  # '"' + 4998 + '"' = 5000 characters: allowed
    assert client.simulate_post("/api/variables/", json={"name": "b", "value": "x" * 4999}).status_code == 422


def test_malformed_and_non_object_bodies(client):
    assert client.simulate_post("/api/variables/", body=b"{nope", headers={"content-type": "application/json"}).status_code == 422
    assert client.simulate_post("/api/variables/", json=[1]).status_code == 422
    assert client.simulate_post("/api/variables/").status_code == 422


def test_patch_by_name_and_id(client):
    made = create(client, "v1", 1, ["a"])
    assert client.simulate_patch("/api/variables/name/v1", json={"value": {"x": [3]}}).status_code == 204
    row = client.simulate_get("/api/variables/name/v1").json
    assert row["value"] == {"x": [3]} and row["tags"] == ["a"] and row["updated"] >= made["updated"]
    assert client.simulate_patch(f"/api/variables/{made['id']}", json={"name": "v2", "tags": ["b"]}).status_code == 204
    row = client.simulate_get("/api/variables/name/v2").json
    assert (row["id"], row["value"], row["tags"]) == (made["id"], {"x": [3]}, ["b"])
    # explicit null value is a value; null name/tags leave them
    assert client.simulate_patch("/api/variables/name/v2", json={"value": None, "name": None, "tags": None}).status_code == 204
    row = client.simulate_get("/api/variables/name/v2").json
    assert (row["name"], row["value"], row["tags"]) == ("v2", None, ["b"])


def test_bad_patches(client):
    create(client, "v1", 1)
    create(client, "taken", 2)
    assert client.simulate_patch("/api/variables/name/v1", json={"name": "taken"}).status_code == 409
    for body in ({"name": "Bad"}, {"value": "x" * 6000}, {"tags": [None]}, {"what": 1}):
        resp = client.simulate_patch("/api/variables/name/v1", json=body)
        assert resp.status_code == 422, body
    row = client.simulate_get("/api/variables/name/v1").json
    assert (row["name"], row["value"]) == ("v1", 1)


def test_delete_by_name_and_id(client):
    a = create(client, "a", 1)
    create(client, "b", 2)
    assert client.simulate_delete("/api/variables/name/b").status_code == 204
    assert client.simulate_delete(f"/api/variables/{a['id']}").status_code == 204
    assert client.simulate_post("/api/variables/count", json={}).json == 0


def test_filter_sort_count(client):
    create(client, "beta", 1, ["x", "y"])
    create(client, "alpha", 2, ["x"])
    gamma = create(client, "gamma", 3)

    def names(body):
        resp = client.simulate_post("/api/variables/filter", json=body)
        assert resp.status_code == 200, resp.text
        return [v["name"] for v in resp.json]

    assert names({}) == ["alpha", "beta", "gamma"]
    assert names({"limit": 100}) == ["alpha", "beta", "gamma"]
    assert names({"sort": "NAME_DESC"}) == ["gamma", "beta", "alpha"]
    assert names({"sort": "CREATED_DESC"}) == ["gamma", "alpha", "beta"]
    assert names({"limit": 1, "offset": 1}) == ["beta"]
    assert names({"limit": None, "offset": None, "variables": None, "sort": None}) == ["alpha", "beta", "gamma"]
    assert names({"variables": {"name": {"like_": "AL"}}}) == ["alpha"]
    assert names({"variables": {"name": {"any_": ["gamma", "beta"]}}}) == ["beta", "gamma"]
    assert names({"variables": {"id": {"any_": [gamma["id"]]}}}) == ["gamma"]
    assert names({"variables": {"tags": {"all_": ["x", "y"]}}}) == ["beta"]
    assert names({"variables": {"tags": {"is_null_": True}}}) == ["gamma"]
    client.simulate_patch("/api/variables/name/alpha", json={"value": 9})
    assert names({"sort": "UPDATED_DESC"})[0] == "alpha"
    count = client.simulate_post("/api/variables/count", json={"variables": {"tags": {"all_": ["x"]}}})
    assert count.json == 2
    assert client.simulate_post("/api/variables/count").json == 3


BAD_FILTERS = [
        {"limit": 201},
        {"limit": -1},
        {"offset": -1},
        {"limit": "ten"},
        {"sort": "SIZE_ASC"},
        {"variables": {"name": {"like_": 5}}},
        {"variables": {"colour": {"any_": ["x"]}}},
        {"variables": {"id": {"any_": ["nope"]}}},
        {"variables": []},
]


def test_bad_filters_are_422(client):
    for body in BAD_FILTERS:
        for route in ("/api/variables/filter", "/api/variables/count"):
            if route.endswith("count") and not body.get("variables"):
                continue
            resp = client.simulate_post(route, json=body)
            assert resp.status_code == 422, (route, body, resp.text)
            assert resp.json["detail"]
