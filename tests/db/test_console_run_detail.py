"""Read queries of the run pages (db/console_run_detail.py) on both backends: keyset pages
of logs (ties on the timestamp included), the level filter, task-run pages and counts,
subflows and the parent run, state histories, artifacts and a pause's input schema; and on
PostgreSQL, with enough rows for the planner to choose, that every log query is an index
scan of (flow_run_id, timestamp) — never a scan of the log table."""

from __future__ import annotations

import datetime as dt

import orjson

from db import console_run_detail as reads
from db import database as dbmod
from db import flow_run_inputs, logs, runs
from db.artifacts import create_artifact
from db.models import FlowRunState

T0 = dt.datetime(2026, 11, 1, 12, 0, 0)


def write(fn, *args, **kwargs):
    with dbmod.database.atomic():
        return fn(*args, **kwargs)


def flow_run(flow_name="etl", **data) -> dict:
    flow, _ = write(runs.get_or_create_flow, flow_name, [], None)
    run, _ = write(runs.create_flow_run, {"flow_id": flow["id"], **data})
    return run


def task_run(run_id: str, key: str, state: str = "COMPLETED") -> dict:
    task, _ = write(runs.create_task_run, {"flow_run_id": run_id, "task_key": key, "dynamic_key": "0",
                                           "name": key, "state": {"type": state}})
    return task


def add_logs(run_id: str, count: int, *, task_run_id=None, level=lambda i: 20, tie_every: int = 0) -> None:
    """``count`` lines one millisecond apart; with ``tie_every``, that many share each timestamp."""
    items = []
    for i in range(count):
        step = i // tie_every if tie_every else i
        items.append({"name": "test", "level": level(i), "message": f"line {i}", "flow_run_id": run_id,
                      "task_run_id": task_run_id, "timestamp": (T0 + dt.timedelta(milliseconds=step)).isoformat()})
    write(logs.insert_logs, logs.validate_logs(items))


def ordered_ids(run_id: str) -> list[str]:
    return [r["id"] for r in reads.logs(flow_run_id=run_id, from_start=True, limit=100_000)["rows"]]


def test_log_pages_walk_forward_and_back_over_ties(migrated):
    run = flow_run()
    add_logs(run["id"], 257, tie_every=7)  # runs of seven lines on one timestamp straddle the pages
    everything = ordered_ids(run["id"])
    assert len(everything) == 257 and len(set(everything)) == 257

    seen, page = [], reads.logs(flow_run_id=run["id"], from_start=True, limit=50)
    assert page["prev"] is None
    while True:
        seen += [r["id"] for r in page["rows"]]
        if page["next"] is None:
            break
        page = reads.logs(flow_run_id=run["id"], after=page["next"], limit=50)
    assert seen == everything and page["tail"]

    tail = reads.logs(flow_run_id=run["id"], limit=50)  # no cursor: the newest lines
    assert [r["id"] for r in tail["rows"]] == everything[-50:]
    assert tail["tail"] and tail["next"] is None and tail["prev"] is not None
    back, page = [], tail
    while page["prev"] is not None:
        page = reads.logs(flow_run_id=run["id"], before=page["prev"], limit=50)
        back = [r["id"] for r in page["rows"]] + back
    assert back == everything[:-50]


def test_level_filter_and_task_run_logs(migrated):
    run = flow_run()
    task = task_run(run["id"], "extract")
    add_logs(run["id"], 60, level=lambda i: (10, 20, 30, 40, 50)[i % 5])
    add_logs(run["id"], 6, task_run_id=task["id"], level=lambda i: 40)
    errors = reads.logs(flow_run_id=run["id"], min_level=reads.level_number("error"), limit=100)["rows"]
    assert len(errors) == 24 + 6 and {r["level_name"] for r in errors} == {"ERROR", "CRITICAL"}
    assert len(reads.logs(flow_run_id=run["id"], min_level=reads.level_number("WARNING"))["rows"]) == 36 + 6
    assert reads.level_number("nonsense") == 0 and reads.level_name(25) == "Level 25"
    own = reads.logs(task_run_id=task["id"])["rows"]
    assert len(own) == 6 and {r["task_run_id"] for r in own} == {task["id"]}


def test_task_run_pages_count_and_subflows(migrated):
    run = flow_run()
    tasks = [task_run(run["id"], f"t{i:02d}") for i in range(7)]
    first = reads.task_runs(run["id"], limit=5)
    assert [r["id"] for r in first["rows"]] == [t["id"] for t in tasks[:5]] and first["next"] == tasks[4]["id"]
    second = reads.task_runs(run["id"], first["next"], limit=5)
    assert [r["id"] for r in second["rows"]] == [t["id"] for t in tasks[5:]] and second["next"] is None
    assert reads.task_run_count(run["id"]) == 7

    child = flow_run("child", parent_task_run_id=tasks[3]["id"], name="the-child")
    flow_run("unrelated")
    assert [r["id"] for r in reads.subflow_runs(run["id"])] == [child["id"]]
    shown = reads.flow_run(child["id"])
    assert shown["parent"] == {"id": run["id"], "name": run["name"]} and shown["flow_name"] == "child"
    assert reads.flow_run(run["id"])["parent"] is None
    assert reads.flow_run("00000000-0000-0000-0000-000000000000") is None
    task = reads.task_run(tasks[0]["id"])
    assert task["flow_run"]["id"] == run["id"] and task["flow_run"]["name"] == run["name"]


def test_state_history_keeps_the_newest(migrated):
    run = flow_run()  # PENDING
    write(runs.set_flow_run_state, run["id"], {"type": "RUNNING"})
    history = reads.flow_run_states(run["id"])
    assert [s["type"] for s in history["rows"]] == ["PENDING", "RUNNING"] and not history["more"]
    base = dt.datetime(2030, 1, 1)
    rows = [{"flow_run_id": run["id"], "type": "RUNNING", "name": f"n{i}", "timestamp": base + dt.timedelta(seconds=i),
             "state_details": {}} for i in range(reads.STATE_CAP + 5)]
    with dbmod.database.atomic():
        FlowRunState.insert_many(rows).execute()
    history = reads.flow_run_states(run["id"])
    assert history["more"] and len(history["rows"]) == reads.STATE_CAP
    assert history["rows"][-1]["name"] == f"n{reads.STATE_CAP + 4}" and history["rows"][0]["name"] == "n5"


def test_artifact_pages(migrated):
    run = flow_run()
    task = task_run(run["id"], "load")
    made = [write(create_artifact, {"key": f"a{i}", "type": "markdown", "data": f"# {i}", "flow_run_id": run["id"],
                                    "task_run_id": task["id"] if i == 0 else None}) for i in range(7)]
    first = reads.artifacts(flow_run_id=run["id"])
    assert [r["key"] for r in first["rows"]] == ["a0", "a1", "a2", "a3", "a4"]
    rest = reads.artifacts(flow_run_id=run["id"], after=first["next"])
    assert [r["key"] for r in rest["rows"]] == ["a5", "a6"] and rest["next"] is None
    assert [r["id"] for r in reads.artifacts(task_run_id=task["id"])["rows"]] == [made[0]["id"]]


def test_resume_input_reads_the_pause_schema(migrated):
    run = flow_run()
    write(runs.set_flow_run_state, run["id"], {"type": "RUNNING"})
    schema = {"type": "object", "properties": {"approver": {"type": "string"}}, "required": ["approver"]}
    write(flow_run_inputs.create, run["id"], "paused-1-schema", orjson.dumps(schema).decode(), None)
    write(flow_run_inputs.create, run["id"], "paused-1-description", orjson.dumps("Who **approves**?").decode(), None)
    keyset = {"schema": "paused-1-schema", "response": "paused-1-response", "description": "paused-1-description"}
    assert reads.resume_input(reads.flow_run(run["id"])) is None  # not paused
    write(runs.set_flow_run_state, run["id"], {"type": "PAUSED", "state_details": {
        "pause_key": "1", "run_input_keyset": keyset, "pause_timeout": "2099-01-01T00:00:00Z"}})
    found = reads.resume_input(reads.flow_run(run["id"]))
    assert found == {"schema": schema, "description": "Who **approves**?"}


# --- PostgreSQL plans ---------------------------------------------------------------------------


def seed_bulk(runs_count: int, logs_per_run: int, heavy_logs: int = 0) -> str:
    """Runs with a task run each and their logs generated in the database, plus (with
    ``heavy_logs``) run number 1 with that many more lines; then ANALYZE, so that plans are
    the planner's real choice. Returns run 1's id."""
    db = dbmod.database
    db.execute_sql("INSERT INTO flow (id, created, updated, name, tags) VALUES ('f', now(), now(), 'gen', '[]')")
    db.execute_sql(f"""
        INSERT INTO flow_run (id, created, updated, name, flow_id, parameters, context, empirical_policy, tags,
                              run_count, total_run_time, auto_scheduled, state_type, expected_start_time)
        SELECT md5('r' || g)::uuid::text, now(), now(), 'gen-' || g, 'f', '{{}}', '{{}}', '{{}}', '[]', 1, 0, false,
               'COMPLETED', now() - g * interval '1 second'
        FROM generate_series(1, {runs_count}) g""")
    db.execute_sql(f"""
        INSERT INTO task_run (id, created, updated, name, flow_run_id, task_key, dynamic_key, empirical_policy, tags,
                              task_inputs, run_count, flow_run_run_count, total_run_time)
        SELECT md5('t' || g)::uuid::text, now(), now(), 't', md5('r' || g)::uuid::text, 'k', '0',
               '{{}}', '[]', '{{}}', 1, 1, 0
        FROM generate_series(1, {runs_count}) g""")
    db.execute_sql(f"""
        INSERT INTO log (id, created, name, level, message, timestamp, flow_run_id, task_run_id)
        SELECT md5('l' || g)::uuid::text, now(), 'gen', (mod(g, 5) + 1) * 10, 'line ' || g,
               now() - (g / {runs_count}) * interval '1 millisecond',
               md5('r' || (mod(g, {runs_count}) + 1))::uuid::text,
               CASE WHEN mod(g, 2) = 0 THEN md5('t' || (mod(g, {runs_count}) + 1))::uuid::text END
        FROM generate_series(1, {runs_count * logs_per_run}) g""")
    db.execute_sql(f"""
        INSERT INTO flow_run_state (id, created, flow_run_id, type, name, timestamp, state_details)
        SELECT md5('s' || g || '-' || k)::uuid::text, now(), md5('r' || g)::uuid::text, 'RUNNING', 'Running',
               now() - g * interval '1 second' + k * interval '1 millisecond', '{{}}'
        FROM generate_series(1, {runs_count}) g, generate_series(1, 3) k""")
    db.execute_sql(f"""
        INSERT INTO task_run_state (id, created, task_run_id, type, name, timestamp, state_details)
        SELECT md5('ts' || g || '-' || k)::uuid::text, now(), md5('t' || g)::uuid::text, 'RUNNING', 'Running',
               now() - g * interval '1 second' + k * interval '1 millisecond', '{{}}'
        FROM generate_series(1, {runs_count}) g, generate_series(1, 3) k""")
    db.execute_sql(f"""
        INSERT INTO artifact (id, created, updated, type, data, flow_run_id, task_run_id)
        SELECT md5('a' || g)::uuid::text, now(), now(), 'markdown', '"# hi"', md5('r' || g)::uuid::text,
               CASE WHEN mod(g, 2) = 0 THEN md5('t' || g)::uuid::text END
        FROM generate_series(1, {runs_count}) g""")
    if heavy_logs:
        db.execute_sql(f"""
            INSERT INTO log (id, created, name, level, message, timestamp, flow_run_id, task_run_id)
            SELECT md5('h' || g)::uuid::text, now(), 'gen', (mod(g, 5) + 1) * 10, 'heavy line ' || g,
                   now() - g * interval '1 millisecond', md5('r1')::uuid::text, NULL
            FROM generate_series(1, {heavy_logs}) g""")
    db.execute_sql("ANALYZE")
    return db.execute_sql("SELECT md5('r1')::uuid::text").fetchone()[0]


def plans_of(fn) -> list[str]:
    """EXPLAIN of every statement ``fn`` runs."""
    captured: list[tuple[str, tuple]] = []
    db = dbmod.database.obj
    db.query_hooks.append(lambda event: captured.append((event.sql, tuple(event.params or ()))))
    try:
        fn()
    finally:
        db.query_hooks.clear()
    return ["\n".join(r[0] for r in db.execute_sql(f"EXPLAIN {sql}", params).fetchall()) for sql, params in captured]


def log_reads(run_id: str, middle: tuple):
    """The log queries of a run page: the tail, the first page, pages before / after a line,
    with and without the level filter."""
    def read():
        reads.logs(flow_run_id=run_id, limit=reads.LOG_PAGE)
        reads.logs(flow_run_id=run_id, from_start=True, limit=reads.LOG_PAGE)
        reads.logs(flow_run_id=run_id, before=middle, limit=reads.LOG_PAGE)
        reads.logs(flow_run_id=run_id, after=middle, limit=reads.LOG_PAGE)
        reads.logs(flow_run_id=run_id, min_level=40, limit=reads.LOG_PAGE)
        reads.logs(flow_run_id=run_id, min_level=40, after=middle, limit=reads.LOG_PAGE)
    return read


def test_every_log_query_is_an_index_scan(pg_db):
    # 200,000 lines over 2,000 runs, and a run with 30,000 more (the run page's worst case).
    heavy = seed_bulk(runs_count=2000, logs_per_run=100, heavy_logs=30_000)
    middle_row = reads.logs(flow_run_id=heavy, from_start=True, limit=15_000)["rows"][-1]
    plans = plans_of(log_reads(heavy, (middle_row["timestamp"], middle_row["id"])))
    assert len(plans) == 9  # a page after / before a cursor: its timestamp's ties, then the lines beyond
    for plan in plans:
        # An ordered walk of the index that stops after a page: no scan of the table, no bitmap
        # of the run's whole log, no sort of it (an incremental sort only orders equal timestamps).
        assert "Seq Scan" not in plan and "Bitmap" not in plan, plan
        assert "Index Scan" in plan and "log_flow_run_id_timestamp" in plan, plan
        assert "Limit" in plan.splitlines()[0], plan
        if any(line.strip().startswith("->  Sort ") for line in plan.splitlines()):
            assert '"timestamp" = ' in plan, plan  # only the lines of one instant are sorted
    bounded = [p for p in plans if '"timestamp"' in p.split("Index Cond:")[1].splitlines()[0]]
    assert len(bounded) == 6  # the cursor's time bounds the index range itself

    small = dbmod.database.execute_sql("SELECT md5('r' || 7)::uuid::text").fetchone()[0]
    row = reads.logs(flow_run_id=small, from_start=True, limit=50)["rows"][-1]
    for plan in plans_of(log_reads(small, (row["timestamp"], row["id"]))):
        assert "Seq Scan" not in plan and "log_flow_run_id_timestamp" in plan, plan

    task_id = dbmod.database.execute_sql("SELECT md5('t' || 7)::uuid::text").fetchone()[0]
    for plan in plans_of(lambda: reads.logs(task_run_id=task_id, limit=20)):
        assert "Seq Scan" not in plan and "ix_log_task_run_id" in plan, plan


def test_the_run_page_reads_use_indexes(pg_db):
    run_id = seed_bulk(runs_count=5000, logs_per_run=4)
    task_id = dbmod.database.execute_sql("SELECT md5('t' || 7)::uuid::text").fetchone()[0]

    def read_page():
        reads.flow_run(run_id)
        reads.flow_run_states(run_id)
        reads.task_runs(run_id, limit=reads.TIMELINE_ROWS)
        reads.task_runs(run_id, task_id)
        reads.task_run_count(run_id)
        reads.subflow_runs(run_id)
        reads.artifacts(flow_run_id=run_id)
        reads.task_run(task_id)
        reads.task_run_states(task_id)
        reads.artifacts(task_run_id=task_id)

    plans = plans_of(read_page)
    assert len(plans) >= 10
    for plan in plans:
        for table in ("flow_run", "task_run", "log", "flow_run_state", "task_run_state", "artifact"):
            assert f"Seq Scan on {table} " not in plan + " ", plan
