"""/logs on both backends: batch ingest (201, null body), /logs/filter (limit, offset, sort,
level/time/run filters, text search), logs arriving before their runs exist."""

from __future__ import annotations

import uuid

from db.models import Log, TaskRun


def log(message, *, ts="2026-01-01T00:00:00.000000Z", level=20, name="prefect.flow_runs", **ids):
    return {"name": name, "level": level, "message": message, "timestamp": ts, **ids}


def post_logs(client, items):
    resp = client.simulate_post("/api/logs/", json=items)
    assert resp.status_code == 201, resp.text
    return resp


def read_logs(client, body=None):
    resp = client.simulate_post("/api/logs/filter", json=body if body is not None else {})
    assert resp.status_code == 200, resp.text
    return resp.json


def test_batch_is_201_with_a_literal_null_body(client):
    run = str(uuid.uuid4())
    resp = post_logs(client, [log("one", flow_run_id=run), log("two", flow_run_id=run)])
    assert resp.content == b"null"
    assert resp.headers["content-type"].startswith("application/json")
    assert Log.select().count() == 2
    # An empty batch is fine too (the SDK's log worker can flush nothing).
    assert client.simulate_post("/api/logs/", json=[]).content == b"null"


def test_log_shape_round_trips(client):
    run, task = str(uuid.uuid4()), str(uuid.uuid4())
    post_logs(client, [log("hello ü", ts="2026-01-01T00:00:00.000001Z", level=40, flow_run_id=run, task_run_id=task)])
    (row,) = read_logs(client)
    assert set(row) == {"id", "created", "updated", "name", "level", "message", "timestamp", "flow_run_id", "task_run_id"}
    assert row["message"] == "hello ü" and row["level"] == 40 and row["name"] == "prefect.flow_runs"
    assert row["timestamp"] == "2026-01-01T00:00:00.000001Z"
    assert (row["flow_run_id"], row["task_run_id"]) == (run, task)
    uuid.UUID(row["id"])
    assert row["created"].endswith("Z")


def test_timestamp_forms_are_normalised_to_utc(client):
    run = str(uuid.uuid4())
    post_logs(
        client,
        [
            log("z", ts="2026-01-01T00:00:01Z", flow_run_id=run),
            log("offset", ts="2026-01-01 02:00:02+02:00", flow_run_id=run),
            log("naive", ts="2026-01-01T00:00:03", flow_run_id=run),
        ],
    )
    stamps = {r["message"]: r["timestamp"] for r in read_logs(client)}
    assert stamps == {
        "z": "2026-01-01T00:00:01.000000Z",
        "offset": "2026-01-01T00:00:02.000000Z",
        "naive": "2026-01-01T00:00:03.000000Z",
    }


def test_years_before_1000_keep_their_order(client):
    run = str(uuid.uuid4())
    post_logs(client, [log("late", ts="2026-01-01T00:00:00Z", flow_run_id=run),
                       log("early", ts="0999-12-31T23:59:59Z", flow_run_id=run)])
    rows = read_logs(client, {"sort": "TIMESTAMP_ASC"})
    assert [(r["message"], r["timestamp"]) for r in rows] == [
        ("early", "0999-12-31T23:59:59.000000Z"), ("late", "2026-01-01T00:00:00.000000Z")]


def test_lenient_numbers_as_pydantic_accepts_them(client):
    run = str(uuid.uuid4())
    post_logs(
        client,
        [
            log("a", level="30", flow_run_id=run),
            log("b", level=40.0, flow_run_id=run),
            log("epoch", ts=1700000000, flow_run_id=run),
        ],
    )
    rows = {r["message"]: r for r in read_logs(client)}
    assert (rows["a"]["level"], rows["b"]["level"]) == (30, 40)
    assert rows["epoch"]["timestamp"] == "2023-11-14T22:13:20.000000Z"


def test_logs_before_their_task_run_and_after_their_flow_run_is_gone(client):
    """No foreign keys on logs: engines flush logs before task-run events land and after the run ended."""
    flow = client.simulate_post("/api/flows/", json={"name": "f"}).json
    run = client.simulate_post("/api/flow_runs/", json={"flow_id": flow["id"]}).json
    task_run_id = str(uuid.uuid4())
    post_logs(client, [log("early", flow_run_id=run["id"], task_run_id=task_run_id)])
    assert TaskRun.select().count() == 0
    assert client.simulate_delete(f"/api/flow_runs/{run['id']}").status_code == 204
    post_logs(client, [log("late", ts="2026-01-01T00:00:09Z", flow_run_id=run["id"])])
    rows = read_logs(client, {"logs": {"flow_run_id": {"any_": [run["id"]]}}})
    assert [r["message"] for r in rows] == ["early", "late"]
    assert rows[0]["task_run_id"] == task_run_id


def test_filter_limit_offset_and_sort(client):
    run = str(uuid.uuid4())
    post_logs(client, [log(f"m{i}", ts=f"2026-01-01T00:00:{i:02d}Z", flow_run_id=run) for i in (3, 1, 4, 0, 2)])
    assert [r["message"] for r in read_logs(client)] == ["m0", "m1", "m2", "m3", "m4"]  # TIMESTAMP_ASC default
    assert [r["message"] for r in read_logs(client, {"sort": "TIMESTAMP_DESC"})] == ["m4", "m3", "m2", "m1", "m0"]
    assert [r["message"] for r in read_logs(client, {"limit": 2, "offset": 1})] == ["m1", "m2"]
    assert [r["message"] for r in read_logs(client, {"limit": 2, "offset": 4})] == ["m4"]
    assert read_logs(client, {"limit": 2, "offset": 5}) == []
    assert read_logs(client, {"limit": 0}) == []
    # `prefect flow-run logs` pages with explicit nulls, then limit/offset until an empty page.
    paged, offset = [], 0
    while True:
        page = read_logs(client, {"logs": {"flow_run_id": {"any_": [run]}}, "sort": "TIMESTAMP_ASC",
                                  "limit": 2, "offset": offset})
        if not page:
            break
        paged += [r["message"] for r in page]
        offset += len(page)
    assert paged == ["m0", "m1", "m2", "m3", "m4"]
    assert len(read_logs(client, {"logs": None, "limit": None, "offset": None, "sort": None})) == 5


def test_equal_timestamps_keep_insertion_order(client):
    run = str(uuid.uuid4())
    post_logs(client, [log(f"line {i:04d}", flow_run_id=run) for i in range(300)])
    first = read_logs(client, {"limit": 200})
    second = read_logs(client, {"limit": 200, "offset": 200})
    assert [r["message"] for r in first + second] == [f"line {i:04d}" for i in range(300)]


def test_filter_by_level_time_and_ids(client):
    run_a, run_b, task = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    post_logs(
        client,
        [
            log("debug", level=10, ts="2026-01-01T00:00:00Z", flow_run_id=run_a),
            log("info", level=20, ts="2026-01-01T00:00:01Z", flow_run_id=run_a, task_run_id=task),
            log("error", level=40, ts="2026-01-01T00:00:02Z", flow_run_id=run_b),
            log("orphan", level=30, ts="2026-01-01T00:00:03Z"),
        ],
    )

    def messages(logs_filter):
        return [r["message"] for r in read_logs(client, {"logs": logs_filter})]

    assert messages({"level": {"ge_": 20}}) == ["info", "error", "orphan"]
    assert messages({"level": {"le_": 20}}) == ["debug", "info"]
    assert messages({"level": {"ge_": 20, "le_": 30}}) == ["info", "orphan"]
    assert messages({"timestamp": {"after_": "2026-01-01T00:00:01Z"}}) == ["info", "error", "orphan"]
    assert messages({"timestamp": {"before_": "2026-01-01T00:00:01Z"}}) == ["debug", "info"]
    assert messages({"flow_run_id": {"any_": [run_a]}}) == ["debug", "info"]
    assert messages({"flow_run_id": {"any_": []}}) == []
    assert messages({"task_run_id": {"any_": [task]}}) == ["info"]
    assert messages({"task_run_id": {"is_null_": True}, "flow_run_id": {"any_": [run_a, run_b]}}) == ["debug", "error"]
    assert messages({"task_run_id": {"is_null_": False}}) == ["info"]


def test_text_search(client):
    """Prefect's grammar: terms OR'd, -term / !term excluded, +term required, "quoted phrases",
    case-insensitive over message and logger name, wildcards taken literally."""
    post_logs(
        client,
        [
            log("Connection timeout on db", name="prefect.task_runs", ts="2026-01-01T00:00:00Z"),
            log("retrying the request", name="prefect.task_runs", ts="2026-01-01T00:00:01Z"),
            log("all good", name="my.logger", ts="2026-01-01T00:00:02Z"),
            log("100% done_ok", name="prefect.flow_runs", ts="2026-01-01T00:00:03Z"),
        ],
    )

    def search(query):
        return [r["message"] for r in read_logs(client, {"logs": {"text": {"query": query}}})]

    assert search("timeout") == ["Connection timeout on db"]
    assert search("TIMEOUT retrying") == ["Connection timeout on db", "retrying the request"]
    assert search('"connection timeout"') == ["Connection timeout on db"]
    assert search('"timeout connection"') == []
    assert search("task_runs -retrying") == ["Connection timeout on db"]
    assert search("task_runs !retrying") == ["Connection timeout on db"]
    assert search("my.logger") == ["all good"]  # the logger name is searched too
    assert search("+prefect +done") == ["100% done_ok"]
    assert search("0%") == ["100% done_ok"]
    assert search("don_") == []  # "_" is not a wildcard (it would match "done")
    assert search("done_") == ["100% done_ok"]
    assert search("-good") == ["Connection timeout on db", "retrying the request", "100% done_ok"]
    assert len(search("")) == 4


def test_bad_batches_are_422_and_write_nothing(client):
    run = str(uuid.uuid4())
    good = log("fine", flow_run_id=run)
    cases = [
        ({}, []),
        ("x", []),
        ([{"name": "a", "level": "x", "message": "m", "timestamp": "2026-01-01T00:00:00Z"}], [0, "level"]),
        ([{"name": "a", "level": 20, "message": "m"}], [0, "timestamp"]),
        ([good, log("m", ts="bad")], [1, "timestamp"]),
        ([good, log("m", flow_run_id="zz")], [1, "flow_run_id"]),
        ([good, log("m", task_run_id=5)], [1, "task_run_id"]),
        ([good, {"level": 20, "message": "m", "timestamp": "2026-01-01T00:00:00Z"}], [1, "name"]),
        ([good, log(None)], [1, "message"]),
        ([good, log("m", level=True)], [1, "level"]),
        ([good, log("m", level=20.5)], [1, "level"]),
        ([good, 7], [1]),
        ([good, log("nul \x00 inside")], [1, "message"]),  # PostgreSQL cannot store NUL
        ([good, log("m", name="a\x00b")], [1, "name"]),
    ]
    for body, loc in cases:
        resp = client.simulate_post("/api/logs/", json=body)
        assert resp.status_code == 422, (body, resp.text)
        assert resp.json["exception_message"] == "Invalid request received."
        assert resp.json["exception_detail"][0]["loc"] == ["body", *loc], resp.json
        assert isinstance(resp.json["detail"], str) and resp.json["detail"]
    assert Log.select().count() == 0


def test_bad_filters_are_422(client):
    for body, field in [
        ({"sort": "NOPE"}, "sort"),
        ({"limit": 201}, "limit"),
        ({"limit": -1}, "limit"),
        ({"offset": -1}, "offset"),
        ({"logs": {"level": {"ge_": "x"}}}, "logs.level.ge_"),
        ({"logs": {"flow_run_id": {"any_": ["nope"]}}}, "logs.flow_run_id.any_.0"),
        ({"logs": {"timestamp": {"after_": "yesterday"}}}, "logs.timestamp.after_"),
        ({"logs": {"bogus": {}}}, "logs.bogus"),
        ({"logs": []}, "logs"),
    ]:
        resp = client.simulate_post("/api/logs/filter", json=body)
        assert resp.status_code == 422, (body, resp.text)
        assert field in resp.json["detail"], resp.json
    assert client.simulate_post("/api/logs/filter", json={"limit": 201}).json["detail"] == (
        "Invalid limit: must be less than or equal to 200."
    )
