"""The console benchmark's harness at a tiny scale (bench/ui_seed.py, bench/ui_bench.py).

- The seeder generates the same rows on SQLite (Python, executemany) and PostgreSQL
  (INSERT ... SELECT generate_series): one seed time, both backends, row by row equal.
- Seeded runs read through the REST API like runs the API made itself (same keys, same
  state shape), and a second seed of the same sizes reuses the database.
- The page timer, run as `bench/ui_bench.py --parts pages` against a live server, reports
  every known page once: timed (p50/p95/max, bytes) or missing with the status it answered,
  so the test does not depend on which console pages exist yet.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import subprocess
import sys
import uuid

import falcon.testing
import psycopg2
import pytest

from tests import support

SEED_NOW = "2026-12-01T12:00:00Z"
RUNS, LOGS = 200, 2000
BENCH = support.REPO / "bench"
JSON_COLUMNS = {
    "flow_run": {"parameters", "context", "empirical_policy", "tags", "labels", "state", "created_by", "job_variables"},
    "flow_run_state": {"data", "state_details"},
    "task_run": {"empirical_policy", "tags", "labels", "task_inputs", "state"},
    "task_run_state": {"data", "state_details"},
    "log": set(),
}


def run_seed(url: str) -> dict:
    proc = subprocess.run(
        [sys.executable, str(BENCH / "ui_seed.py"), "--url-of-existing-db", url, "--runs", str(RUNS),
         "--logs", str(LOGS), "--now", SEED_NOW],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]) | {"stderr": proc.stderr}


def manifest_of(url: str) -> dict:
    sys.path.insert(0, str(BENCH))
    import ui_seed

    return ui_seed.read_marker(url)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """One tiny seed per backend, at the same seed time: {backend: url}."""
    name = f"appliance_uibench_test_{uuid.uuid4().hex[:8]}"
    urls = {
        "sqlite": f"sqlite:///{tmp_path_factory.mktemp('uibench') / 'uibench-test.db'}",
        "postgres": support.pg_url_for(name),
    }
    for url in urls.values():
        run_seed(url)
    yield urls
    support.drop_pg_database(name)


def _rows(url: str, table: str) -> list[dict]:
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.split("sqlite:///", 1)[1])
        conn.row_factory = sqlite3.Row
        rows = [dict(r) for r in conn.execute(f"SELECT * FROM {table}")]
    else:
        conn = psycopg2.connect(url)
        with conn.cursor() as cur:
            cur.execute(f"SELECT * FROM {table}")
            names = [c.name for c in cur.description]
            rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    conn.close()
    return rows


def normalised(url: str, table: str) -> list[str]:
    """The bulk rows of ``table`` as comparable text: times as SQLite writes them, JSON parsed,
    the ids the API chose (flows, deployments, queues, the pool) replaced by their role."""
    manifest = manifest_of(url)
    ids = {manifest["work_pool_id"]: "POOL"}
    ids.update({f: f"FLOW{k}" for k, f in enumerate(manifest["flow_ids"])})
    for k, d in enumerate(manifest["deployments"]):
        ids.update({d["id"]: f"DEPLOYMENT{k}", d["queue_id"]: f"QUEUE-{d['queue']}"})
    made_by_api = {*manifest["failed_run_ids"], manifest["child_run_id"]}
    api_tasks = {r["id"] for r in _rows(url, "task_run") if r["task_key"] == "child-flow"}
    out = []
    for row in _rows(url, table):
        if table == "flow_run" and row["id"] in made_by_api:
            continue
        if table in ("flow_run_state", "log") and row["flow_run_id"] in made_by_api:
            continue
        if row["id"] in api_tasks or row.get("task_run_id") in api_tasks and table == "task_run_state":
            continue
        clean = {}
        for key, value in row.items():
            if isinstance(value, dt.datetime):
                value = value.isoformat(sep=" ", timespec="microseconds")
            elif key in JSON_COLUMNS[table] and isinstance(value, str):
                value = json.loads(value)
            elif isinstance(value, bool):
                value = int(value)
            elif isinstance(value, float):
                value = round(value, 3)
            clean[key] = value
        text = json.dumps(clean, sort_keys=True)
        for real, role in ids.items():
            text = text.replace(real, role)
        out.append(text)
    return sorted(out)


def test_both_backends_hold_the_same_seed(seeded):
    for table in JSON_COLUMNS:
        lite, pg = normalised(seeded["sqlite"], table), normalised(seeded["postgres"], table)
        assert len(lite) == len(pg), table
        differing = [(a, b) for a, b in zip(lite, pg, strict=True) if a != b]
        assert not differing, f"{table}: first difference\nsqlite:   {differing[0][0]}\npostgres: {differing[0][1]}"
    counts = {table: len(normalised(seeded["sqlite"], table)) for table in ("flow_run", "log")}
    assert counts == {"flow_run": RUNS, "log": LOGS}


FREE_FORM = {"parameters", "labels", "context", "job_variables"}  # user data: any keys


def _same_shape(seeded_value, api_value, path="run"):
    if path.rsplit(".", 1)[-1] in FREE_FORM:
        assert isinstance(seeded_value, dict), path
    elif isinstance(api_value, dict):
        assert isinstance(seeded_value, dict), path
        assert set(seeded_value) == set(api_value), f"{path}: {set(seeded_value) ^ set(api_value)}"
        for key in api_value:
            _same_shape(seeded_value[key], api_value[key], f"{path}.{key}")
    elif seeded_value is not None and api_value is not None:
        assert type(seeded_value) is type(api_value) or {type(seeded_value), type(api_value)} == {int, float}, path


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_seeded_runs_read_like_runs_the_api_made(seeded, backend, tmp_path, monkeypatch):
    from api.app import create_app
    from appliance.settings import Settings
    from db import database as dbmod

    url = seeded[backend]
    manifest = manifest_of(url)
    monkeypatch.setenv("APPLIANCE_HOME", str(tmp_path))
    monkeypatch.setenv("APPLIANCE_SECRET_KEY", support.TEST_SECRET_KEY)
    dbmod.init(url)
    try:
        client = falcon.testing.TestClient(create_app(Settings(database_url=url), init_db=False))
        made = client.simulate_get(f"/api/flow_runs/{manifest['failed_run_ids'][0]}").json
        heavy = client.simulate_get(f"/api/flow_runs/{manifest['heavy_run_id']}").json
        _same_shape(heavy, made)
        assert heavy["state"]["type"] == "COMPLETED" and heavy["state_type"] == "COMPLETED"
        assert heavy["state"]["state_details"]["flow_run_id"] == heavy["id"]
        history = client.simulate_get("/api/flow_run_states/", params={"flow_run_id": heavy["id"]}).json
        assert [s["type"] for s in history] == ["SCHEDULED", "PENDING", "RUNNING", "COMPLETED"]
        assert history[-1]["id"] == heavy["state"]["id"]
        failed = client.simulate_post("/api/flow_runs/filter", json={
            "flow_runs": {"state": {"type": {"any_": ["FAILED"]}}}, "limit": 200}).json
        assert len(failed) > len(manifest["failed_run_ids"])
        tasks = client.simulate_post("/api/task_runs/filter", json={
            "task_runs": {"flow_run_id": {"any_": [heavy["id"]]}}, "limit": 200}).json
        assert len(tasks) == 200 and all(t["state"]["type"] == "COMPLETED" for t in tasks)
        logs = client.simulate_post("/api/logs/filter", json={
            "logs": {"flow_run_id": {"any_": [heavy["id"]]}}, "limit": 200}).json
        assert len(logs) == 200
    finally:
        dbmod.close_all()
    again = run_seed(url)  # the same sizes: reused, not seeded again
    assert "reusing the seeded database" in again["stderr"]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_page_timer_reports_every_known_page(seeded, backend, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "ui_bench.py"), "--url-of-existing-db", seeded[backend], "--runs", str(RUNS),
         "--logs", str(LOGS), "--parts", "pages", "--requests", "3", "--warmup", "1", "--no-explain",
         "--pages", "runs,deployments,variables", "--out", str(out)],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    seed_line = next(line for line in lines if line["bench"] == "ui-seed")
    assert seed_line["runs"] == RUNS and seed_line["size_bytes"] > 0
    pages = [line for line in lines if line["bench"] == "ui-page"]
    names = [line["page"] for line in pages]
    assert {"runs", "deployments", "variables", "runs by state FAILED"} <= set(names)
    assert len(names) == len(set(names))
    for line in pages:
        if line["missing"]:
            assert line["why"] and not line["ok"]
            continue
        assert line["ok"], line
        assert 0 < line["p50_ms"] <= line["p95_ms"] <= line["max_ms"]
        assert line["bytes_total"] >= line["bytes_page_wire"] > 0
        assert line["requests"] == 3 and line["target_ms"] == (100.0 if backend == "postgres" else 150.0)
    table = (out / "table.md").read_text()
    assert f"| page ({backend}) |" in table
    for name in names:
        assert f"| {name} |" in table
