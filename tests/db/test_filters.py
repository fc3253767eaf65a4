"""The filter grammar of /…/filter, /…/count and /…/paginate bodies (spec §6), on both backends.

Mostly through HTTP (/flow_runs/filter, /task_runs/filter, /flows/filter): operators
any_/not_any_/like_/startswith-free text, before_/after_, is_null_, and_/or_ at every
level, cross-entity (nested) filters, sort enums, explicit nulls and the 200 limit.
A few checks call the builder (db.filters.where_for) directly: the SQL it emits and the
path it names in errors.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from db import database as dbmod
from db import (
    queries,  # noqa: F401  (registers the filterable entities)
    runs,
)
from db.filters import FilterError, where_for
from db.models import Flow, FlowRun, TaskRun

T0 = dt.datetime(2030, 1, 1, 12, 0, 0)


def iso(value: dt.datetime) -> str:
    return value.isoformat(timespec="microseconds") + "Z"


def post(client, path, body=None):
    resp = client.simulate_post(path, json=body)
    assert resp.status_code == 200, (body, resp.text)
    return resp.json


def make_flow(client, name, **extra):
    return post_created(client, "/api/flows/", {"name": name, **extra})


def post_created(client, path, body):
    resp = client.simulate_post(path, json=body)
    assert resp.status_code == 201, resp.text
    return resp.json


def set_state(client, run_id, type_, **state):
    resp = client.simulate_post(f"/api/flow_runs/{run_id}/set_state", json={"state": {"type": type_, **state}, "force": True})
    assert resp.status_code == 201, resp.text


@pytest.fixture
def world(client):
    """Two flows; five flow runs with known names, tags, times and states; task runs."""
    etl = make_flow(client, "etl-daily", tags=["prod"])
    adhoc = make_flow(client, "adhoc")
    dep = post_created(client, "/api/deployments/", {"name": "nightly", "flow_id": etl["id"]})

    def run(name, flow, when, **extra):
        body = {"flow_id": flow["id"], "name": name,
                "state": {"type": "SCHEDULED", "state_details": {"scheduled_time": iso(when)}}, **extra}
        return post_created(client, "/api/flow_runs/", body)

    r = {
        "alpha": run("alpha", etl, T0, tags=["a", "shared"], idempotency_key="k-alpha", deployment_id=dep["id"]),
        "beta": run("beta", etl, T0 + dt.timedelta(hours=1), tags=["b", "shared"], flow_version="v1"),
        "gamma": run("gamma", adhoc, T0 + dt.timedelta(hours=2), tags=[], flow_version="v2"),
        "delta": run("Delta_100%", adhoc, T0 + dt.timedelta(hours=3), tags=["a"], idempotency_key="k-delta"),
        "eps": run("epsilon", adhoc, T0 + dt.timedelta(hours=4), work_queue_name=None),
    }
    set_state(client, r["beta"]["id"], "RUNNING")
    set_state(client, r["gamma"]["id"], "RUNNING")
    set_state(client, r["gamma"]["id"], "COMPLETED")
    set_state(client, r["delta"]["id"], "FAILED", name="Crashed-ish")
    tasks = {
        "t-alpha": post_created(client, "/api/task_runs/", {"flow_run_id": r["alpha"]["id"], "task_key": "load",
                                                            "dynamic_key": "0", "name": "load-0", "tags": ["io"]}),
        "t-gamma": post_created(client, "/api/task_runs/", {"flow_run_id": r["gamma"]["id"], "task_key": "sum",
                                                            "dynamic_key": "0", "name": "sum-0"}),
    }
    return {"flows": {"etl": etl, "adhoc": adhoc}, "deployment": dep, "runs": r, "tasks": tasks}


def run_names(client, body=None, path="/api/flow_runs/filter"):
    return sorted(r["name"] for r in post(client, path, body))


def ids(world, *names):
    return [world["runs"][n]["id"] for n in names]


# --- scalar operators ------------------------------------------------------------------------------


def test_any_and_not_any(client, world):
    a, b = ids(world, "alpha", "beta")
    assert run_names(client, {"flow_runs": {"id": {"any_": [a, b]}}}) == ["alpha", "beta"]
    assert run_names(client, {"flow_runs": {"id": {"not_any_": [a, b]}}}) == ["Delta_100%", "epsilon", "gamma"]
    assert run_names(client, {"flow_runs": {"name": {"any_": ["gamma", "nope"]}}}) == ["gamma"]
    assert run_names(client, {"flow_runs": {"state": {"type": {"any_": ["RUNNING", "COMPLETED"]}}}}) == ["beta", "gamma"]
    assert run_names(client, {"flow_runs": {"state": {"type": {"not_any_": ["SCHEDULED"]}}}}) == [
        "Delta_100%", "beta", "gamma"]
    assert run_names(client, {"flow_runs": {"state": {"name": {"any_": ["Crashed-ish"]}}}}) == ["Delta_100%"]
    assert run_names(client, {"flow_runs": {"state": {"name": {"not_any_": ["Scheduled"]}}}}) == [
        "Delta_100%", "beta", "gamma"]
    assert run_names(client, {"flow_runs": {"flow_version": {"any_": ["v1", "v2"]}}}) == ["beta", "gamma"]
    # An empty any_ matches nothing; an empty not_any_ constrains nothing.
    assert run_names(client, {"flow_runs": {"id": {"any_": []}}}) == []
    assert len(run_names(client, {"flow_runs": {"id": {"not_any_": []}}})) == 5
    # NOT IN on a nullable column leaves the NULL rows out, as Prefect's SQL does.
    assert run_names(client, {"flow_runs": {"idempotency_key": {"not_any_": ["k-alpha"]}}}) == ["Delta_100%"]
    assert run_names(client, {"flow_runs": {"idempotency_key": {"any_": ["k-alpha"]}}}) == ["alpha"]


def test_like_is_a_case_insensitive_substring(client, world):
    assert run_names(client, {"flow_runs": {"name": {"like_": "ALP"}}}) == ["alpha"]
    assert run_names(client, {"flow_runs": {"name": {"like_": "ta"}}}) == ["Delta_100%", "beta"]
    assert run_names(client, {"flow_runs": {"name": {"like_": "delta_1"}}}) == ["Delta_100%"]
    assert run_names(client, {"flow_runs": {"name": {"like_": ""}}}) == run_names(client, {})
    assert run_names(client, {"flow_runs": {"name": {"like_": "zzz"}}}) == []
    # As Prefect's ILIKE, % and _ inside the value are wildcards.
    assert run_names(client, {"flow_runs": {"name": {"like_": "%"}}}) == run_names(client, {})
    assert run_names(client, {"flow_runs": {"name": {"like_": "g_mma"}}}) == ["gamma"]
    assert [f["name"] for f in post(client, "/api/flows/filter", {"flows": {"name": {"like_": "ETL-"}}})] == ["etl-daily"]
    assert [t["name"] for t in post(client, "/api/task_runs/filter", {"task_runs": {"name": {"like_": "SUM"}}})] == ["sum-0"]


def test_like_is_ilike_with_trigram_indexes_on_postgres_and_like_on_sqlite(migrated):
    sql, params = FlowRun.select().where(where_for("flow_runs", {"flow_runs": {"name": {"like_": "ab"}}})).sql()
    assert params == ["%ab%"]
    if dbmod.is_postgres():
        assert " ILIKE " in sql
        rows = dbmod.database.execute_sql(
            "SELECT tablename, indexdef FROM pg_indexes WHERE indexdef LIKE %s ORDER BY tablename", ("%gin_trgm_ops%",)
        ).fetchall()
        assert {"flow", "flow_run", "task_run"} <= {t for t, _ in rows}
        assert all("USING gin (name gin_trgm_ops)" in d for t, d in rows if t in ("flow", "flow_run", "task_run"))
    else:
        assert " LIKE " in sql and "ILIKE" not in sql  # SQLite's LIKE is case-insensitive for ASCII


def test_before_and_after_are_inclusive_and_take_any_datetime_spelling(client, world):
    hour1 = T0 + dt.timedelta(hours=1)
    assert run_names(client, {"flow_runs": {"expected_start_time": {"before_": iso(hour1)}}}) == ["alpha", "beta"]
    assert run_names(client, {"flow_runs": {"expected_start_time": {"after_": iso(T0 + dt.timedelta(hours=3))}}}) == [
        "Delta_100%", "epsilon"]
    between = {"after_": iso(T0 + dt.timedelta(minutes=30)), "before_": iso(T0 + dt.timedelta(hours=2))}
    assert run_names(client, {"flow_runs": {"expected_start_time": between}}) == ["beta", "gamma"]
    for spelling in ("2030-01-01T13:00:00Z", "2030-01-01T13:00:00+00:00", "2030-01-01 13:00:00+00:00",
                     "2030-01-01T13:00:00", "2030-01-01T15:00:00+02:00", "2030-01-01T08:00:00-05:00"):
        assert run_names(client, {"flow_runs": {"expected_start_time": {"before_": spelling}}}) == ["alpha", "beta"], spelling
    assert run_names(client, {"flow_runs": {"next_scheduled_start_time": {"after_": iso(T0)}}}) == [
        "alpha", "epsilon"]  # only runs still SCHEDULED have one
    started = run_names(client, {"flow_runs": {"start_time": {"after_": "2000-01-01T00:00:00Z"}}})
    assert started == ["Delta_100%", "beta", "gamma"]  # Delta ended without running: start = end
    assert run_names(client, {"flow_runs": {"end_time": {"before_": "2999-01-01T00:00:00Z"}}}) == ["Delta_100%", "gamma"]
    tasks = post(client, "/api/task_runs/filter", {"task_runs": {"expected_start_time": {"after_": "2000-01-01T00:00:00Z"}}})
    assert len(tasks) == 2


def test_is_null(client, world):
    assert run_names(client, {"flow_runs": {"start_time": {"is_null_": True}}}) == ["alpha", "epsilon"]
    assert run_names(client, {"flow_runs": {"end_time": {"is_null_": False}}}) == ["Delta_100%", "gamma"]
    assert run_names(client, {"flow_runs": {"deployment_id": {"is_null_": False}}}) == ["alpha"]
    assert run_names(client, {"flow_runs": {"parent_task_run_id": {"is_null_": True}}}) == run_names(client, {})
    assert run_names(client, {"flow_runs": {"work_queue_name": {"is_null_": False}}}) == []
    # On tag arrays is_null_ means empty / non-empty.
    assert run_names(client, {"flow_runs": {"tags": {"is_null_": True}}}) == ["epsilon", "gamma"]
    assert run_names(client, {"flow_runs": {"tags": {"is_null_": False}}}) == ["Delta_100%", "alpha", "beta"]
    assert [f["name"] for f in post(client, "/api/flows/filter", {"flows": {"deployment": {"is_null_": False}}})] == ["etl-daily"]
    assert [f["name"] for f in post(client, "/api/flows/filter", {"flows": {"deployment": {"is_null_": True}}})] == ["adhoc"]
    assert [f["name"] for f in post(client, "/api/flows/filter", {"flows": {"tags": {"is_null_": True}}})] == ["adhoc"]


def test_tags_all_and_any(client, world):
    assert run_names(client, {"flow_runs": {"tags": {"all_": ["shared"]}}}) == ["alpha", "beta"]
    assert run_names(client, {"flow_runs": {"tags": {"all_": ["a", "shared"]}}}) == ["alpha"]
    assert run_names(client, {"flow_runs": {"tags": {"any_": ["a", "b"]}}}) == ["Delta_100%", "alpha", "beta"]
    assert run_names(client, {"flow_runs": {"tags": {"any_": []}}}) == []
    assert len(run_names(client, {"flow_runs": {"tags": {"all_": []}}})) == 5
    assert [t["name"] for t in post(client, "/api/task_runs/filter", {"task_runs": {"tags": {"all_": ["io"]}}})] == ["load-0"]


# --- and_ / or_ --------------------------------------------------------------------------------------


def test_operators_combine_sub_filters(client, world):
    both = {"name": {"any_": ["alpha", "gamma"]}, "tags": {"all_": ["shared"]}}
    assert run_names(client, {"flow_runs": both}) == ["alpha"]
    assert run_names(client, {"flow_runs": {**both, "operator": "and_"}}) == ["alpha"]
    assert run_names(client, {"flow_runs": {**both, "operator": "or_"}}) == ["alpha", "beta", "gamma"]
    # Sub-filters have their own operator.
    tags_or = {"tags": {"operator": "or_", "all_": ["b"], "is_null_": True}}
    assert run_names(client, {"flow_runs": tags_or}) == ["beta", "epsilon", "gamma"]
    state_or = {"state": {"operator": "or_", "type": {"any_": ["RUNNING"]}, "name": {"any_": ["Crashed-ish"]}}}
    assert run_names(client, {"flow_runs": state_or}) == ["Delta_100%", "beta"]
    dep_or = {"deployment_id": {"operator": "or_", "any_": [world["deployment"]["id"]], "is_null_": False}}
    assert run_names(client, {"flow_runs": dep_or}) == ["alpha"]
    # An or_ with nothing in it constrains nothing; separate entity filters are always AND-ed.
    assert len(run_names(client, {"flow_runs": {"operator": "or_"}})) == 5
    assert run_names(client, {"flow_runs": {"tags": {"all_": ["shared"]}}, "flows": {"name": {"any_": ["adhoc"]}}}) == []
    for body, path in [({"flow_runs": {"operator": "xor_"}}, "flow_runs.operator"),
                       ({"flow_runs": {"tags": {"operator": "not_", "all_": ["a"]}}}, "flow_runs.tags.operator")]:
        resp = client.simulate_post("/api/flow_runs/filter", json=body)
        assert resp.status_code == 422 and resp.json["exception_detail"][0]["loc"] == ["body", *path.split(".")]


# --- cross-entity filters ----------------------------------------------------------------------------


def test_flow_runs_through_flows_tasks_deployments_and_pools(client, world):
    assert run_names(client, {"flows": {"name": {"any_": ["adhoc"]}}}) == ["Delta_100%", "epsilon", "gamma"]
    assert run_names(client, {"flows": {"tags": {"all_": ["prod"]}}}) == ["alpha", "beta"]
    assert run_names(client, {"flows": {"id": {"any_": [world["flows"]["etl"]["id"]]}},
                              "flow_runs": {"state": {"type": {"any_": ["RUNNING"]}}}}) == ["beta"]
    assert run_names(client, {"task_runs": {"name": {"any_": ["sum-0"]}}}) == ["gamma"]
    assert run_names(client, {"task_runs": {"tags": {"all_": ["io"]}}}) == ["alpha"]
    assert run_names(client, {"deployments": {"name": {"any_": ["nightly"]}}}) == ["alpha"]
    assert run_names(client, {"deployments": {"id": {"any_": [str(uuid.uuid4())]}}}) == []
    assert run_names(client, {"work_pools": {"name": {"any_": ["nope"]}}}) == []
    assert run_names(client, {"work_pool_queues": {"name": {"any_": ["nope"]}}}) == []
    assert post(client, "/api/flow_runs/count", {"flows": {"name": {"like_": "ETL"}}}) == 2


def test_task_runs_and_flows_through_the_other_entities(client, world):
    def task_names(body):
        return sorted(t["name"] for t in post(client, "/api/task_runs/filter", body))

    assert task_names({"flow_runs": {"name": {"any_": ["alpha"]}}}) == ["load-0"]
    assert task_names({"flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}}) == ["sum-0"]
    assert task_names({"flows": {"name": {"any_": ["adhoc"]}}}) == ["sum-0"]
    assert task_names({"deployments": {"id": {"any_": [world["deployment"]["id"]]}}}) == ["load-0"]
    assert task_names({"deployments": {"id": {"any_": [str(uuid.uuid4())]}}}) == []
    assert post(client, "/api/task_runs/count", {"deployments": {"name": {"any_": ["nightly"]}}}) == 1

    def flow_names(body):
        return [f["name"] for f in post(client, "/api/flows/filter", body)]

    assert flow_names({"flow_runs": {"name": {"any_": ["gamma"]}}}) == ["adhoc"]
    assert flow_names({"flow_runs": {"state": {"type": {"any_": ["RUNNING", "SCHEDULED"]}}}}) == ["adhoc", "etl-daily"]
    assert flow_names({"task_runs": {"tags": {"all_": ["io"]}}}) == ["etl-daily"]
    assert flow_names({"deployments": {"name": {"any_": ["nightly"]}}}) == ["etl-daily"]
    assert flow_names({"flow_runs": {"id": {"any_": []}}}) == []


# --- sorts, nulls, limits -------------------------------------------------------------------------------


def test_flow_run_sorts(client, world):
    def order(sort, body=None):
        return [r["name"] for r in post(client, "/api/flow_runs/filter", {"sort": sort, **(body or {})})]

    by_expected = ["alpha", "beta", "gamma", "Delta_100%", "epsilon"]
    assert order("EXPECTED_START_TIME_ASC") == by_expected
    assert order("EXPECTED_START_TIME_DESC") == by_expected[::-1]
    lowercase = {"flow_runs": {"id": {"not_any_": ids(world, "delta")}}}  # mixed case sorts by collation
    assert order("NAME_ASC", lowercase) == ["alpha", "beta", "epsilon", "gamma"]
    assert order("NAME_DESC", lowercase) == ["gamma", "epsilon", "beta", "alpha"]
    assert order("ID_DESC") == [r["name"] for r in sorted(world["runs"].values(), key=lambda r: r["id"], reverse=True)]
    assert order(None) == order("ID_DESC")
    # START_TIME sorts by when a run started, or is expected to start (Prefect's COALESCE):
    # beta/gamma/Delta started "now" (2026), alpha/epsilon are expected in 2030.
    started = order("START_TIME_ASC")
    assert started[-2:] == ["alpha", "epsilon"] and sorted(started[:3]) == ["Delta_100%", "beta", "gamma"]
    assert order("START_TIME_DESC") == started[::-1]
    next_scheduled = order("NEXT_SCHEDULED_START_TIME_ASC")  # where NULLs go is the database's (as in Prefect)
    assert [n for n in next_scheduled if n in ("alpha", "epsilon")] == ["alpha", "epsilon"]
    assert next_scheduled[:2] == ["alpha", "epsilon"] or next_scheduled[-2:] == ["alpha", "epsilon"]
    assert order("END_TIME_DESC")[:2] == ["Delta_100%", "gamma"]  # unfinished runs last on both databases
    for path, sort in [("/api/flow_runs/filter", "CREATED_DESC"), ("/api/task_runs/filter", "START_TIME_DESC"),
                       ("/api/flows/filter", "ID_DESC"), ("/api/flow_runs/filter", "name_asc")]:
        resp = client.simulate_post(path, json={"sort": sort})
        assert resp.status_code == 422 and resp.json["exception_detail"][0]["loc"] == ["body", "sort"], (path, sort)
    assert [t["name"] for t in post(client, "/api/task_runs/filter", {"sort": "NAME_DESC"})] == ["sum-0", "load-0"]
    assert [f["name"] for f in post(client, "/api/flows/filter", {"sort": "NAME_DESC"})] == ["etl-daily", "adhoc"]


def test_explicit_nulls_mean_no_constraint(client, world):
    everything = run_names(client, {})
    nulls = {"flows": None, "flow_runs": None, "task_runs": None, "deployments": None, "work_pools": None,
             "work_pool_queues": None, "sort": None, "limit": None, "offset": None}
    assert run_names(client, nulls) == everything
    inner = {"flow_runs": {"operator": None, "id": None, "name": {"any_": None, "like_": None}, "tags": None,
                           "state": {"type": None, "name": {"any_": None}}, "start_time": {"before_": None}}}
    assert run_names(client, inner) == everything
    assert post(client, "/api/flow_runs/count", nulls) == 5
    assert len(post(client, "/api/task_runs/filter", {"task_runs": None, "flows": None, "limit": None})) == 2
    assert len(post(client, "/api/flows/filter", {"flows": None, "work_queues": None, "limit": None})) == 2
    # Unknown top-level keys are ignored (as the real server effectively does).
    assert run_names(client, {"bogus": {"x": 1}}) == everything


def test_default_and_maximum_limit_is_200(client, migrated):
    now = dt.datetime(2026, 1, 1)
    Flow.insert_many([{"id": str(uuid.uuid4()), "created": now, "updated": now, "name": f"f{i:03d}", "tags": [],
                       "labels": {}} for i in range(205)]).execute()
    flow_id = Flow.select(Flow.id).where(Flow.name == "f000").scalar()
    with dbmod.database.atomic():
        for i in range(203):
            runs.create_flow_run({"flow_id": flow_id, "name": f"r{i:03d}"})
    for path, total in [("/api/flows/filter", 205), ("/api/flow_runs/filter", 203)]:
        assert len(post(client, path, {})) == 200
        assert len(post(client, path, {"limit": None})) == 200
        assert len(post(client, path, {"limit": 200})) == 200
        assert len(post(client, path, {"offset": 200})) == total - 200
        assert len(post(client, path, {"limit": 0})) == 0
        for limit in (201, 10_000):
            resp = client.simulate_post(path, json={"limit": limit})
            assert resp.status_code == 422 and resp.json["detail"] == "Invalid limit: must be less than or equal to 200."
        for body in ({"limit": -1}, {"offset": -1}, {"limit": "ten"}, {"offset": 1.5}):
            resp = client.simulate_post(path, json=body)
            assert resp.status_code == 422 and resp.json["exception_detail"][0]["loc"] == ["body", next(iter(body))]
    assert post(client, "/api/flow_runs/count", {"limit": 10_000}) == 203
    page = post(client, "/api/flows/paginate", {"page": 2})
    assert (page["count"], page["limit"], page["pages"], len(page["results"])) == (205, 200, 2, 5)
    assert FlowRun.select().count() == 203 and TaskRun.select().count() == 0


# --- errors name the path -------------------------------------------------------------------------------


def test_bad_filters_are_422_naming_the_path(client, world):
    cases = [
        ({"flow_runs": {"id": {"any_": ["not-a-uuid"]}}}, "flow_runs.id.any_.0"),
        ({"flow_runs": {"id": {"any_": "x"}}}, "flow_runs.id.any_"),
        ({"flow_runs": {"name": {"like_": 5}}}, "flow_runs.name.like_"),
        ({"flow_runs": {"state": {"type": {"any_": ["DONE"]}}}}, "flow_runs.state.type.any_.0"),
        ({"flow_runs": {"state": {"colour": {"any_": []}}}}, "flow_runs.state.colour"),
        ({"flow_runs": {"start_time": {"before_": "soon"}}}, "flow_runs.start_time.before_"),
        ({"flow_runs": {"start_time": {"is_null_": "yes"}}}, "flow_runs.start_time.is_null_"),
        ({"flow_runs": {"tags": {"all_": [1]}}}, "flow_runs.tags.all_.0"),
        ({"flow_runs": {"tags": {"contains_": ["a"]}}}, "flow_runs.tags.contains_"),
        ({"flow_runs": {"name": {"sounds_like_": "x"}}}, "flow_runs.name.sounds_like_"),
        ({"flow_runs": {"colour": {"any_": []}}}, "flow_runs.colour"),
        ({"flow_runs": {"name": "alpha"}}, "flow_runs.name"),
        ({"flow_runs": []}, "flow_runs"),
        ({"flows": {"name": {"any_": [None]}}}, "flows.name.any_.0"),
        ({"task_runs": {"subflow_runs": {"exists_": "no"}}}, "task_runs.subflow_runs.exists_"),
        ({"flow_runs": {"parent_flow_run_id": {"any_": ["x"]}}}, "flow_runs.parent_flow_run_id.any_.0"),
    ]
    for body, path in cases:
        for endpoint in ("/api/flow_runs/filter", "/api/flow_runs/count"):
            resp = client.simulate_post(endpoint, json=body)
            assert resp.status_code == 422, (endpoint, body, resp.text)
            detail = resp.json
            assert [str(p) for p in detail["exception_detail"][0]["loc"]] == ["body", *path.split(".")], (body, detail)
            assert detail["detail"].startswith(path), detail
            assert detail["request_body"] == body
    bad = client.simulate_post("/api/task_runs/filter", json={"task_runs": {"flow_run_id": {"any_": [7]}}})
    assert bad.status_code == 422 and "task_runs.flow_run_id.any_.0" in bad.json["detail"]
    bad = client.simulate_post("/api/flows/filter", json={"flows": {"deployment": {"is_null_": 1}}})
    assert bad.status_code == 422 and bad.json["exception_detail"][0]["loc"] == ["body", "flows", "deployment", "is_null_"]
    for raw in (b"[]", b"5", b'"x"'):
        resp = client.simulate_post("/api/flow_runs/filter", body=raw, headers={"content-type": "application/json"})
        assert resp.status_code == 422 and resp.json["exception_detail"][0]["loc"] == ["body"]
    assert client.simulate_post("/api/flow_runs/filter", body=b"null", headers={"content-type": "application/json"}).status_code == 200


def test_the_builder_names_the_path_and_ignores_what_the_endpoint_does_not_take(migrated):
    with pytest.raises(FilterError) as info:
        where_for("flow_runs", {"flow_runs": {"state": {"type": {"not_any_": ["NOPE"]}}}})
    assert info.value.path == "flow_runs.state.type.not_any_.0" and info.value.value == "NOPE"
    with pytest.raises(FilterError) as info:
        where_for("task_runs", {"flows": {"tags": {"all_": "prod"}}})
    assert info.value.path == "flows.tags.all_"
    assert where_for("flow_runs", {}) is None
    assert where_for("flow_runs", {"flow_runs": None, "flows": {}}) is None
    # Keys outside the endpoint's list are not looked at, even when malformed.
    assert where_for("flow_runs", {"artifacts": {"bogus": 1}}, keys={"flow_runs"}) is None
