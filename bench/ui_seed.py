#!/usr/bin/env python3
"""ui_seed.py - a large, realistic database for the console benchmark (bench/ui_bench.py).

The few rows a person makes by hand (flows, deployments with schedules, a work pool with
queues and workers, variables, blocks, concurrency limits, notification policies,
artifacts, a subflow) go through the real REST app in-process (falcon.testing), so they
are exactly what the API writes. The bulk - N flow runs with their whole state history,
task runs for a tenth of them, M log lines - is generated inside the database: one
``INSERT ... SELECT generate_series`` per table on PostgreSQL, ``executemany`` in one
transaction on SQLite. Both compute every value from the run's index with the same
formulas (``Plan`` below is the Python side, ``_pg_functions`` the SQL side; the smoke test
seeds both backends and compares them), so the two backends hold the same data:

- runs over the last 30 days (deployment runs SCHEDULED -> PENDING -> RUNNING -> end,
  ad-hoc runs from PENDING), mostly COMPLETED, some FAILED, CRASHED, CANCELLED, RUNNING,
  PENDING, PAUSED, SCHEDULED in the next 3 days and Late; the state columns denormalised
  on flow_run and the ``state`` JSON as db.runs writes them;
- one "heavy" run (recent, COMPLETED) with 200 task runs, 20,000 log lines (or a tenth of
  M), artifacts of each kind and a subflow: the run page's worst case.

Secondary indexes of the bulk tables are dropped before the bulk insert and rebuilt after
it, in the same transaction (faster than maintaining them row by row, and a crash leaves
nothing half-done); then VACUUM ANALYZE (PostgreSQL) / ANALYZE (SQLite), as a database that
has lived with autovacuum would be.

The database is kept and reused: a variable ``uibench_seed`` records what was seeded
(sizes, the time it was seeded at, the ids the benchmark needs). Seeding again with the same
sizes does nothing; other sizes, ``--fresh``, or a seed that did not finish start over.

  python bench/ui_seed.py --backend postgres --runs 1000000 --logs 10000000   # database appliance_uibench
  python bench/ui_seed.py --backend sqlite                                    # .bench/uibench.db
  python bench/ui_seed.py --url-of-existing-db postgresql://postgres@127.0.0.1:5432/mydb --runs 20000
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import orjson  # noqa: E402
import psycopg2  # noqa: E402

PG_ADMIN = os.environ.get("APPLIANCE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
BENCH_KEY = "dWliZW5jaC1rZXktb2YtdGhlLWFwcGxpYW5jZS11aSE="  # a Fernet key (32 bytes, base64): the block documents
DEFAULT_DB_NAME = "appliance_uibench"
DEFAULT_SQLITE = REPO / ".bench" / "uibench.db"
MARKER = "uibench_seed"
SEED_VERSION = 1
DEFAULTS = {"postgres": (1_000_000, 10_000_000), "sqlite": (100_000, 1_000_000)}

DAY_MS = 86_400_000
WINDOW_MS = 30 * DAY_MS
# State mix: bucket (0..999) below the bound -> kind.
KINDS = [
    (850, "COMPLETED"), (920, "FAILED"), (925, "CRASHED"), (935, "CANCELLED"), (940, "RUNNING"),
    (943, "PENDING"), (975, "SCHEDULED"), (990, "LATE"), (991, "PAUSED"), (1000, "COMPLETED"),
]
TERMINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
STARTED = (*TERMINAL, "RUNNING", "PAUSED")
FLOW_NAMES = [
    "etl-orders", "etl-customers", "sync-inventory", "nightly-report", "ml-train", "ml-score",
    "ingest-clickstream", "backup-warehouse", "dbt-run", "refresh-dashboards", "send-invoices",
    "reconcile-payments", "scrape-prices", "export-crm", "geo-enrich", "image-resize",
    "audit-logs", "cleanup-tmp", "forecast-demand", "healthcheck",
]
TAGS = ["prod", "staging", "etl", "ml", "critical", "hourly", "nightly", "finance", "marketing", "eu"]
REGIONS = ["eu-west-1", "us-east-1", "ap-south-1"]
QUEUES = ["default", "high", "low", "gpu"]
TASKS = ["extract", "validate", "transform", "load", "notify"]
TASKS_PER_RUN = 5
HEAVY_TASKS = 200
LOG_PRIME = 1_000_003
MESSAGES = [
    "Processed batch {k} ({n} records)",
    "Fetching page {k} from upstream API",
    "Wrote {n} rows to warehouse table stage_{k}",
    "Retrying request after transient error (attempt {k})",
]
FLOW_POLICY = {"max_retries": 0, "retry_delay_seconds": 0.0, "retries": None, "retry_delay": None,
               "pause_keys": [], "resuming": False, "retry_type": None}
TASK_POLICY = {"max_retries": 0, "retry_delay_seconds": 0.0, "retries": None, "retry_delay": None,
               "retry_jitter_factor": None}
BULK_TABLES = ("flow_run", "flow_run_state", "task_run", "task_run_state", "log")


def log(*args):
    print(*args, file=sys.stderr, flush=True)


# --- ids -----------------------------------------------------------------------------


def uid(seed: str) -> str:
    """A version-4-shaped UUID derived from ``seed`` (same text as the SQL pg_temp.uid)."""
    h = hashlib.md5(seed.encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) % 4]}{h[17:20]}-{h[20:32]}"


def uid7(ms: int, seed: str) -> str:
    """A version-7-shaped UUID: ``ms`` (Unix milliseconds) then bits derived from ``seed``."""
    h = hashlib.md5(seed.encode()).hexdigest()
    t = f"{ms:012x}"
    return f"{t[:8]}-{t[8:12]}-7{h[:3]}-{'89ab'[int(h[3], 16) % 4]}{h[4:7]}-{h[7:19]}"


# --- the plan: every value from the run index ------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What run ``i`` of ``n`` looks like; times are milliseconds relative to the seed time."""

    n: int
    flows: int = len(FLOW_NAMES)

    def bucket(self, i: int) -> int:
        return (i * 2654435761) % 4294967296 % 1000

    def kind(self, i: int) -> str:
        b = self.bucket(i)
        return next(k for bound, k in KINDS if b < bound)

    def has_deployment(self, i: int) -> bool:
        return i % 5 != 0

    def flow(self, i: int) -> int:
        return i % self.flows

    def deployment(self, i: int) -> int:
        """Deployment index: deployments d and d + flows belong to flow d."""
        return self.flow(i) + self.flows * ((i // self.flows) % 2)

    def expected(self, i: int) -> int:
        kind = self.kind(i)
        if kind in TERMINAL:
            return -WINDOW_MS + ((WINDOW_MS - 3_600_000) * i) // self.n
        if kind == "RUNNING":
            return -(60_000 + (i * 31) % 3_600_000)
        if kind == "PENDING":
            return -(30_000 + (i * 17) % 600_000)
        if kind == "SCHEDULED":
            return 60_000 + (i * 97) % (3 * DAY_MS)
        if kind == "LATE":
            return -(300_000 + (i * 53) % DAY_MS)
        return -(600_000 + (i * 29) % 7_200_000)  # PAUSED

    def start(self, i: int) -> int | None:
        if self.kind(i) not in STARTED:
            return None
        return self.expected(i) + 1000 + 1000 * (self.bucket(i) % 30) + (i * 7) % 1000

    def duration(self, i: int) -> int:
        return 5000 + (i * 7919) % 600_000

    def end(self, i: int) -> int | None:
        return self.start(i) + self.duration(i) if self.kind(i) in TERMINAL else None

    def created(self, i: int) -> int:
        return min(self.expected(i), 0) - (3_600_000 if self.has_deployment(i) else 1000)

    def name(self, i: int) -> str:
        from db.names import ADJECTIVES, ANIMALS

        return f"{ADJECTIVES[(i * 31 + 7) % len(ADJECTIVES)]}-{ANIMALS[(i * 17 + 3) % len(ANIMALS)]}"

    def tags(self, i: int) -> list[str]:
        picks = [TAGS[(i * 7) % 10], TAGS[(i * 7 + 3) % 10], TAGS[(i * 7 + 6) % 10]]
        return picks[: (i * 13) % 4]

    def has_tasks(self, i: int) -> bool:
        return i % 10 == 3 and self.kind(i) in STARTED

    def states(self, i: int) -> list[tuple[str, str, int, str | None]]:
        """(type, name, timestamp, message) of the run's history, oldest first."""
        kind, dep, expected = self.kind(i), self.has_deployment(i), self.expected(i)
        start = self.start(i)
        out = []
        if dep or kind in ("SCHEDULED", "LATE"):
            out.append(("SCHEDULED", "Scheduled", self.created(i), None))
        if kind == "LATE":
            out.append(("SCHEDULED", "Late", expected + 15_000, None))
        if kind in (*STARTED, "PENDING"):
            if not dep:
                pending = expected
            else:
                pending = start - 500 if start is not None else expected + 500
            out.append(("PENDING", "Pending", pending, None))
        if start is not None:
            out.append(("RUNNING", "Running", start, None))
        if kind in TERMINAL:
            message = {
                "COMPLETED": None,
                "FAILED": "Flow run encountered an exception: RuntimeError: upstream returned 503",
                "CRASHED": "Execution was interrupted by an unexpected exception: KeyboardInterrupt",
                "CANCELLED": "The parent flow run was cancelled.",
            }[kind]
            out.append((kind, kind.capitalize(), self.end(i), message))
        if kind == "PAUSED":
            out.append(("PAUSED", "Paused", start + 60_000, None))
        return out

    def task_type(self, i: int, k: int) -> str:
        kind = self.kind(i)
        if k == TASKS_PER_RUN - 1 and kind in ("FAILED", "CRASHED", "CANCELLED", "RUNNING"):
            return kind
        return "COMPLETED"

    def task_span(self, i: int, k: int) -> tuple[int, int | None]:
        start = self.start(i)
        duration = self.duration(i) if self.kind(i) in TERMINAL else 60_000
        t_start = start + (duration * k) // TASKS_PER_RUN + 100
        t_end = start + (duration * (k + 1)) // TASKS_PER_RUN - 100
        return t_start, (None if self.task_type(i, k) == "RUNNING" else t_end)

    def heavy(self) -> int:
        """The run page's worst case: the most recent COMPLETED deployment run without
        regular task runs."""
        for i in range(self.n - 1, -1, -1):
            if self.kind(i) == "COMPLETED" and self.has_deployment(i) and i % 10 != 3:
                return i
        raise ValueError("no run can be the heavy one")


# --- shared JSON pieces ------------------------------------------------------------------


def details(extra: dict) -> dict:
    from db.states import details_with_defaults

    return details_with_defaults(extra)


def iso(t0: dt.datetime, ms: int | None) -> str | None:
    return None if ms is None else (t0 + dt.timedelta(milliseconds=ms)).isoformat(timespec="microseconds") + "Z"


def sqlts(t0: dt.datetime, ms: int | None) -> str | None:
    return None if ms is None else (t0 + dt.timedelta(milliseconds=ms)).isoformat(sep=" ", timespec="microseconds")


def dumps(value) -> str:
    return orjson.dumps(value).decode()


# --- database helpers --------------------------------------------------------------------


def resolve_url(backend: str, url: str | None, db_name: str, sqlite_path: Path) -> str:
    if url:
        return url
    if backend == "postgres":
        return PG_ADMIN.rsplit("/", 1)[0] + f"/{db_name}"
    return f"sqlite:///{sqlite_path}"


def is_bench_database(url: str) -> bool:
    """Only the benchmark's own databases are ever dropped."""
    if url.startswith("postgres"):
        return url.rsplit("/", 1)[1].split("?")[0].startswith(DEFAULT_DB_NAME)
    path = Path(url.split("sqlite:///", 1)[1]).resolve()
    return (REPO / ".bench") in path.parents or path.name.startswith("uibench")


def ensure_database(url: str) -> None:
    if not url.startswith("postgres"):
        return
    name = url.rsplit("/", 1)[1].split("?")[0]
    conn = psycopg2.connect(PG_ADMIN)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()


def drop_database(url: str) -> None:
    if url.startswith("postgres"):
        name = url.rsplit("/", 1)[1].split("?")[0]
        conn = psycopg2.connect(PG_ADMIN)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()
    else:
        path = Path(url.split("sqlite:///", 1)[1])
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)


def read_marker(url: str) -> dict | None:
    """The manifest of a finished seed, or None (no database, no schema, no marker)."""
    try:
        if url.startswith("postgres"):
            conn = psycopg2.connect(url, connect_timeout=5)
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT to_regclass('variable') IS NOT NULL")
                    if not cur.fetchone()[0]:
                        return None
                    cur.execute("SELECT value::text FROM variable WHERE name = %s", (MARKER,))
                    row = cur.fetchone()
            finally:
                conn.close()
        else:
            import sqlite3

            path = url.split("sqlite:///", 1)[1]
            if not Path(path).exists():
                return None
            conn = sqlite3.connect(path)
            try:
                if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'variable'").fetchone():
                    return None
                row = conn.execute("SELECT value FROM variable WHERE name = ?", (MARKER,)).fetchone()
            finally:
                conn.close()
    except psycopg2.OperationalError:
        return None
    return json.loads(row[0]) if row and row[0] else None


# --- the seed ----------------------------------------------------------------------------


def seed(url: str, runs: int, logs: int, *, fresh: bool = False, now: dt.datetime | None = None) -> dict:
    """Seed ``url`` (or reuse it when it already holds this seed); returns the manifest."""
    marker = None if fresh else read_marker(url)
    if marker and marker.get("runs") == runs and marker.get("logs") == logs and marker.get("version") == SEED_VERSION:
        log(f"reusing the seeded database ({runs:,} runs, {logs:,} logs, seeded {marker['seeded_at']})")
        return marker
    if not is_bench_database(url):
        raise SystemExit(f"{url} holds no finished seed of these sizes, and it is not a benchmark database "
                         f"(named {DEFAULT_DB_NAME}* or under .bench/): refusing to drop it")
    drop_database(url)  # a different, unfinished or unwanted seed: start over
    ensure_database(url)
    os.environ["APPLIANCE_SECRET_KEY"] = BENCH_KEY  # the live appliance of ui_bench.py uses the same
    home = Path(tempfile.mkdtemp(prefix="uibench-seed-"))
    os.environ["APPLIANCE_HOME"] = str(home)

    from db import database as dbmod
    from db import migrate

    started = time.monotonic()
    dbmod.init(url, pool_size=2)
    migrate.upgrade()
    t0 = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(tzinfo=None, microsecond=0)
    plan = Plan(runs)
    api = _api_client(url)
    manifest = {"version": SEED_VERSION, "runs": runs, "logs": logs, "seeded_at": t0.isoformat() + "Z",
                "backend": "postgres" if dbmod.is_postgres() else "sqlite"}
    manifest.update(_seed_by_hand(api, plan))
    heavy_logs = min(20_000, logs // 10)
    manifest.update(heavy_index=plan.heavy(), heavy_run_id=uid(f"run-{plan.heavy()}"), heavy_logs=heavy_logs,
                    heavy_task_runs=HEAVY_TASKS, search_name=plan.name(plan.heavy()), tag="critical")
    timings = {}
    if dbmod.is_postgres():
        timings = _bulk_postgres(dbmod.database, plan, manifest, t0, logs, heavy_logs)
    else:
        timings = _bulk_sqlite(dbmod.database, plan, manifest, t0, logs, heavy_logs)
    manifest.update(_seed_after_bulk(api, manifest))
    began = time.monotonic()
    _analyze(url, dbmod)
    timings["analyze_s"] = round(time.monotonic() - began, 1)
    manifest["timings"] = timings
    manifest["seed_seconds"] = round(time.monotonic() - started, 1)
    from db.models_variables import Variable

    with dbmod.write_tx():
        Variable.insert(name=MARKER, value=manifest, tags=["uibench"]).execute()
    dbmod.close_all()
    log(f"seeded in {manifest['seed_seconds']} s: {json.dumps(timings)}")
    return manifest


def _api_client(url: str):
    import falcon.testing

    from api.app import create_app
    from appliance.boot import prepare_blocks
    from appliance.settings import Settings

    settings = Settings(database_url=url, services_enabled=False, ui_enabled=False)
    prepare_blocks(settings)  # the built-in block types, as `serve` registers them at start-up
    return falcon.testing.TestClient(create_app(settings, init_db=False))


def _ok(result, what: str):
    if result.status_code >= 300:
        raise SystemExit(f"seeding {what}: HTTP {result.status_code} {result.text[:300]}")
    return result.json if result.text else None


def _seed_by_hand(api, plan: Plan) -> dict:
    """What people make by hand, through the REST app: flows, deployments, the work pool..."""
    post = lambda path, body, what=None: _ok(api.simulate_post(f"/api{path}", json=body), what or path)  # noqa: E731
    pool = "uib-pool"
    post("/work_pools/", {"name": pool, "type": "process", "description": "The benchmark's process pool"})
    for queue in QUEUES[1:]:
        post(f"/work_pools/{pool}/queues", {"name": queue, "priority": QUEUES.index(queue) + 1})
    for w in range(8):
        post(f"/work_pools/{pool}/workers/heartbeat", {"name": f"worker-{w}", "heartbeat_interval_seconds": 30})
    queues = {q["name"]: q for q in post(f"/work_pools/{pool}/queues/filter", {})}
    flows = [post("/flows/", {"name": name, "tags": []})["id"] for name in FLOW_NAMES[: plan.flows]]
    schema = {"title": "Parameters", "type": "object", "required": ["region"], "properties": {
        "n": {"title": "n", "type": "integer", "default": 10, "position": 0},
        "region": {"title": "region", "type": "string", "enum": REGIONS, "position": 1},
        "dry_run": {"title": "dry_run", "type": "boolean", "default": False, "position": 2}}}
    deployments = []
    for d in range(2 * plan.flows):
        queue = QUEUES[d % len(QUEUES)]
        body = {"name": "nightly" if d < plan.flows else "hourly", "flow_id": flows[d % plan.flows],
                "work_pool_name": pool, "work_queue_name": queue, "parameter_openapi_schema": schema,
                "parameters": {"region": REGIONS[d % 3]}, "tags": [TAGS[d % len(TAGS)]],
                "entrypoint": f"flows/{FLOW_NAMES[d % plan.flows].replace('-', '_')}.py:main",
                "paused": d in (1, 2)}
        if d < 3:  # a few schedules (the scheduler keeps a handful of runs ahead for them)
            body["schedules"] = [{"schedule": {"cron": f"{d * 10} 3 * * *", "timezone": "Europe/Paris"},
                                  "active": True}]
        dep = post("/deployments/", body)
        deployments.append({"id": dep["id"], "queue_id": queues[queue]["id"], "queue": queue})
    for v in range(30):
        post("/variables/", {"name": f"setting_{v:02d}", "value": {"threshold": v, "enabled": v % 2 == 0},
                             "tags": [TAGS[v % 10]]})
    blocks = _seed_blocks(api, post)
    for c in range(5):
        post("/v2/concurrency_limits/", {"name": f"db-pool-{c}", "limit": 5 + c})
    for tag in ("critical", "finance"):
        post("/concurrency_limits/", {"tag": tag, "concurrency_limit": 3})
    post("/flow_run_notification_policies/", {"state_names": ["Failed", "Crashed"], "tags": ["prod"],
                                              "block_document_id": blocks["slack"],
                                              "message_template": "{flow_name}/{flow_run_name} is {flow_run_state_name}"})
    post("/flow_run_notification_policies/", {"state_names": ["Failed"], "tags": [],
                                              "block_document_id": blocks["webhook"]})
    pool_row = _ok(api.simulate_get(f"/api/work_pools/{pool}"), "pool")
    return {"flow_ids": flows, "deployments": deployments, "work_pool": pool, "work_pool_id": pool_row["id"],
            "blocks": blocks}


def _seed_blocks(api, post) -> dict:
    def schema_of(slug):
        block_type = _ok(api.simulate_get(f"/api/block_types/slug/{slug}"), slug)
        schemas = post("/block_schemas/filter", {"block_schemas": {"block_type_id": {"any_": [block_type["id"]]}}})
        return block_type["id"], schemas[0]["id"]

    out = {}
    for key, slug, name, data in (
        ("secret", "secret", "warehouse-password", {"value": "s3cr3t-warehouse"}),
        ("slack", "slack-webhook", "ops-alerts", {"url": "https://hooks.slack.com/services/T000/B000/XXXX"}),
        ("webhook", "webhook", "pager", {"url": "https://example.com/hook", "method": "POST"}),
    ):
        type_id, schema_id = schema_of(slug)
        doc = post("/block_documents/", {"name": name, "data": data, "block_type_id": type_id,
                                         "block_schema_id": schema_id}, slug)
        out[key] = doc["id"]
    return out


def _seed_after_bulk(api, manifest: dict) -> dict:
    """Artifacts of the heavy run, a subflow under it, and a few failed runs whose
    notifications are queued (the dashboard's and the delivery log's content)."""
    post = lambda path, body: _ok(api.simulate_post(f"/api{path}", json=body), path)  # noqa: E731
    heavy = manifest["heavy_run_id"]
    post("/artifacts/", {"key": "daily-summary", "type": "markdown", "flow_run_id": heavy,
                         "data": "# Daily summary\n\n* **orders**: 12,345\n* revenue: 67,890 EUR\n"})
    post("/artifacts/", {"key": "row-counts", "type": "table", "flow_run_id": heavy,
                         "data": json.dumps([{"table": f"stage_{k}", "rows": 1000 * k} for k in range(20)])})
    post("/artifacts/", {"type": "link", "flow_run_id": heavy, "data": "https://example.com/report/latest"})
    post("/artifacts/", {"type": "progress", "flow_run_id": heavy, "data": 100.0})
    for k in range(50):
        post("/artifacts/", {"key": f"report-{k % 10}", "type": "markdown",
                             "flow_run_id": uid(f"run-{(k * 7919) % manifest['runs']}"), "data": f"Report {k}"})
    parent_task = post("/task_runs/", {"flow_run_id": heavy, "task_key": "child-flow", "dynamic_key": "0",
                                       "name": "child-flow-0", "state": {"type": "RUNNING"}})
    child = post("/flow_runs/", {"flow_id": manifest["flow_ids"][0], "name": "heavy-child",
                                 "parent_task_run_id": parent_task["id"], "state": {"type": "RUNNING"}})
    post(f"/flow_runs/{child['id']}/set_state", {"state": {"type": "COMPLETED"}})
    failed = []
    for k in range(5):
        run = post("/flow_runs/", {"flow_id": manifest["flow_ids"][k], "tags": ["prod"], "state": {"type": "RUNNING"}})
        post(f"/flow_runs/{run['id']}/set_state", {"state": {"type": "FAILED", "message": "boom"}})
        failed.append(run["id"])
    return {"child_run_id": child["id"], "failed_run_ids": failed}


# --- bulk: SQLite --------------------------------------------------------------------------


def _secondary_indexes(db, tables, postgres: bool) -> list[tuple[str, str]]:
    """(name, CREATE statement) of the secondary indexes of ``tables`` (not the primary keys)."""
    if postgres:
        rows = db.execute_sql(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i JOIN pg_class c ON c.relname = i.indexname "
            "JOIN pg_index x ON x.indexrelid = c.oid WHERE i.schemaname = 'public' AND i.tablename = ANY(%s) "
            "AND NOT x.indisprimary", (list(tables),)).fetchall()
    else:
        marks = ",".join("?" for _ in tables)
        rows = db.execute_sql(
            f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND tbl_name IN ({marks})",
            tuple(tables)).fetchall()
    return [(name, sql) for name, sql in rows]


def _bulk_sqlite(db, plan: Plan, manifest: dict, t0: dt.datetime, logs: int, heavy_logs: int) -> dict:
    timings = {}
    db.execute_sql("PRAGMA foreign_keys = OFF")  # rows are consistent by construction
    db.execute_sql("PRAGMA synchronous = OFF")
    db.execute_sql("PRAGMA cache_size = -262144")
    indexes = _secondary_indexes(db, BULK_TABLES, postgres=False)
    conn = db.connection()
    with db.atomic():
        for name, _sql in indexes:
            db.execute_sql(f'DROP INDEX "{name}"')
        for table, sql, rows in _sqlite_rows(plan, manifest, t0, logs, heavy_logs):
            began = time.monotonic()
            count = 0
            batch = []
            for row in rows:
                batch.append(row)
                if len(batch) >= 20_000:
                    conn.executemany(sql, batch)
                    count += len(batch)
                    batch = []
            conn.executemany(sql, batch)
            count += len(batch)
            timings[f"{table}_s"] = round(time.monotonic() - began, 1)
            log(f"  {table}: {count:,} rows in {timings[f'{table}_s']} s")
        began = time.monotonic()
        for _name, sql in indexes:
            db.execute_sql(sql)
        timings["indexes_s"] = round(time.monotonic() - began, 1)
    db.execute_sql("PRAGMA foreign_keys = ON")
    db.execute_sql("PRAGMA synchronous = NORMAL")
    return timings


def _insert_sql(table: str, columns: list[str]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"


RUN_COLUMNS = ["id", "created", "updated", "name", "flow_id", "deployment_id", "deployment_version",
               "work_queue_id", "work_queue_name", "work_pool_id", "work_pool_name", "flow_version", "parameters",
               "idempotency_key", "context", "empirical_policy", "tags", "labels", "parent_task_run_id",
               "state_id", "state_type", "state_name", "state_timestamp", "state", "run_count",
               "expected_start_time", "next_scheduled_start_time", "start_time", "end_time", "total_run_time",
               "auto_scheduled", "infrastructure_document_id", "infrastructure_pid", "created_by", "job_variables"]
STATE_COLUMNS = ["id", "created", "flow_run_id", "type", "name", "timestamp", "message", "data", "state_details"]
TASK_COLUMNS = ["id", "created", "updated", "name", "flow_run_id", "task_key", "dynamic_key", "cache_key",
                "cache_expiration", "task_version", "empirical_policy", "tags", "labels", "task_inputs", "state_id",
                "state_type", "state_name", "state_timestamp", "state", "run_count", "flow_run_run_count",
                "expected_start_time", "next_scheduled_start_time", "start_time", "end_time", "total_run_time"]
TASK_STATE_COLUMNS = ["id", "created", "task_run_id", "type", "name", "timestamp", "message", "data",
                      "state_details"]
LOG_COLUMNS = ["id", "created", "name", "level", "message", "timestamp", "flow_run_id", "task_run_id"]


def _epoch_ms(t0: dt.datetime, ms: int) -> int:
    return int((t0 - dt.datetime(1970, 1, 1)).total_seconds() * 1000) + ms


def flow_run_state_details(plan: Plan, i: int, run_id: str, state_type: str, ts: int, t0) -> dict:
    extra = {"flow_run_id": run_id}
    if state_type == "SCHEDULED" or (state_type == "PENDING" and plan.has_deployment(i)):
        extra["scheduled_time"] = iso(t0, plan.expected(i))
    if state_type == "PAUSED":
        extra.update(pause_timeout=iso(t0, ts + 3_600_000), pause_key="1")
    return details(extra)


def run_row(plan: Plan, manifest: dict, i: int, t0: dt.datetime) -> tuple:
    """One flow_run row (SQLite values) - the Python twin of the PostgreSQL INSERT."""
    run_id = uid(f"run-{i}")
    kind, dep = plan.kind(i), plan.has_deployment(i)
    states = plan.states(i)
    k = len(states) - 1
    s_type, s_name, s_ts, s_msg = states[-1]
    state_id = uid7(_epoch_ms(t0, s_ts), f"frs-{i}-{k}")
    state = {"id": state_id, "type": s_type, "name": s_name, "timestamp": iso(t0, s_ts), "message": s_msg,
             "data": None, "state_details": flow_run_state_details(plan, i, run_id, s_type, s_ts, t0)}
    flow_id = manifest["flow_ids"][plan.flow(i)]
    deployment = manifest["deployments"][plan.deployment(i)] if dep else None
    labels = {"prefect.flow.id": flow_id}
    if dep:
        labels["prefect.deployment.id"] = deployment["id"]
    start, end = plan.start(i), plan.end(i)
    policy = dict(FLOW_POLICY, pause_keys=["1"]) if kind == "PAUSED" else FLOW_POLICY
    total = (end - start) / 1000 if end is not None else (60.0 if kind == "PAUSED" else 0.0)
    scheduled_now = s_type == "SCHEDULED"
    return (
        run_id, sqlts(t0, plan.created(i)), sqlts(t0, s_ts), plan.name(i), flow_id,
        deployment["id"] if dep else None, None, deployment["queue_id"] if dep else None,
        deployment["queue"] if dep else None, manifest["work_pool_id"] if dep else None,
        manifest["work_pool"] if dep else None, None,
        dumps({"n": i % 100, "region": REGIONS[i % 3]} if dep else {}), None, "{}", dumps(policy),
        dumps(plan.tags(i)), dumps(labels), None, state_id, s_type, s_name, sqlts(t0, s_ts), dumps(state),
        1 if start is not None else 0, sqlts(t0, plan.expected(i)),
        sqlts(t0, plan.expected(i)) if scheduled_now else None, sqlts(t0, start), sqlts(t0, end), total,
        0, None, None, None, "{}",
    )


def _sqlite_rows(plan: Plan, manifest: dict, t0: dt.datetime, logs: int, heavy_logs: int):
    n = plan.n

    def runs():
        for i in range(n):
            yield run_row(plan, manifest, i, t0)

    def states():
        for i in range(n):
            run_id = uid(f"run-{i}")
            for k, (s_type, s_name, ts, msg) in enumerate(plan.states(i)):
                yield (uid7(_epoch_ms(t0, ts), f"frs-{i}-{k}"), sqlts(t0, ts), run_id, s_type, s_name,
                       sqlts(t0, ts), msg, None, dumps(flow_run_state_details(plan, i, run_id, s_type, ts, t0)))

    def task_specs():
        """(task id, run index, flow run id, name, task_key, dynamic_key, type, start, end)."""
        heavy = manifest["heavy_index"]
        for i in range(n):
            if plan.has_tasks(i):
                for k in range(TASKS_PER_RUN):
                    t_start, t_end = plan.task_span(i, k)
                    yield (uid(f"task-{i}-{k}"), i, f"{TASKS[k]}-{k}", f"{TASKS[k]}-{plan.flow(i):04x}", "0",
                           plan.task_type(i, k), t_start, t_end)
            if i == heavy:
                start, duration = plan.start(i), plan.duration(i)
                for k in range(HEAVY_TASKS):
                    t_start = start + (duration * k) // HEAVY_TASKS
                    t_end = start + (duration * (k + 1)) // HEAVY_TASKS - 1
                    yield (uid(f"heavy-task-{k}"), i, f"step-{k}", "step-heavy", str(k), "COMPLETED", t_start, t_end)

    def task_state(spec):
        task_id, i, _name, _key, _dyn, t_type, t_start, t_end = spec
        ts = t_end if t_end is not None else t_start
        state_id = uid7(_epoch_ms(t0, ts), f"trs-{task_id}")
        state = {"id": state_id, "type": t_type, "name": t_type.capitalize(), "timestamp": iso(t0, ts),
                 "message": None, "data": None,
                 "state_details": details({"flow_run_id": uid(f"run-{i}"), "task_run_id": task_id})}
        return state_id, ts, state

    def tasks():
        for spec in task_specs():
            task_id, i, name, key, dyn, t_type, t_start, t_end = spec
            state_id, ts, state = task_state(spec)
            labels = {"prefect.flow.id": manifest["flow_ids"][plan.flow(i)], "prefect.flow-run.id": uid(f"run-{i}")}
            total = (t_end - t_start) / 1000 if t_end is not None else 0.0
            yield (task_id, sqlts(t0, t_start - 50), sqlts(t0, ts), name, uid(f"run-{i}"), key, dyn, None, None,
                   None, dumps(TASK_POLICY), "[]", dumps(labels), "{}", state_id, t_type, t_type.capitalize(),
                   sqlts(t0, ts), dumps(state), 1, 1, sqlts(t0, t_start - 50), None, sqlts(t0, t_start),
                   sqlts(t0, t_end), total)

    def task_states():
        for spec in task_specs():
            task_id = spec[0]
            state_id, ts, state = task_state(spec)
            yield (state_id, sqlts(t0, ts), task_id, state["type"], state["name"], sqlts(t0, ts), None, None,
                   dumps(state["state_details"]))

    def log_lines():
        for j in range(logs - heavy_logs):
            yield log_row(plan, t0, j)
        for j in range(heavy_logs):
            yield heavy_log_row(plan, manifest, t0, j, heavy_logs)

    yield "flow_run", _insert_sql("flow_run", RUN_COLUMNS), runs()
    yield "flow_run_state", _insert_sql("flow_run_state", STATE_COLUMNS), states()
    yield "task_run", _insert_sql("task_run", TASK_COLUMNS), tasks()
    yield "task_run_state", _insert_sql("task_run_state", TASK_STATE_COLUMNS), task_states()
    yield "log", _insert_sql("log", LOG_COLUMNS), log_lines()


def log_level(j: int) -> int:
    if j % 50 == 0:
        return 40
    if j % 10 == 1:
        return 30
    if j % 7 == 0:
        return 10
    return 20


def log_row(plan: Plan, t0: dt.datetime, j: int) -> tuple:
    """Log line j of the spread: run (j * prime) mod n, its k-th line, 250 ms apart."""
    r = (j * LOG_PRIME) % plan.n
    k = j // plan.n
    start = plan.start(r)
    ts = (start if start is not None else plan.expected(r)) + 250 * k
    task_id = uid(f"task-{r}-{k % TASKS_PER_RUN}") if plan.has_tasks(r) and k % 3 == 1 else None
    message = MESSAGES[j % 4].format(k=k, n=(j * 37) % 10_000)
    return (uid7(_epoch_ms(t0, ts + 200), f"log-{j}"), sqlts(t0, ts + 200),
            "prefect.task_runs" if task_id else "prefect.flow_runs", log_level(j), message, sqlts(t0, ts),
            uid(f"run-{r}"), task_id)


def heavy_log_row(plan: Plan, manifest: dict, t0: dt.datetime, j: int, heavy_logs: int) -> tuple:
    i = manifest["heavy_index"]
    ts = plan.start(i) + (plan.duration(i) * j) // heavy_logs
    task_id = uid(f"heavy-task-{(j * HEAVY_TASKS) // heavy_logs}") if j % 2 == 1 else None
    message = MESSAGES[j % 4].format(k=j, n=(j * 37) % 10_000)
    return (uid7(_epoch_ms(t0, ts + 200), f"heavy-log-{j}"), sqlts(t0, ts + 200),
            "prefect.task_runs" if task_id else "prefect.flow_runs", log_level(j), message, sqlts(t0, ts),
            uid(f"run-{i}"), task_id)


# --- bulk: PostgreSQL ------------------------------------------------------------------------


def _pg_functions(plan: Plan) -> str:
    """pg_temp twins of Plan's methods (inlined by the planner: plain SQL expressions)."""
    from db.names import ADJECTIVES, ANIMALS

    n = plan.n
    kind_case = " ".join(f"WHEN pg_temp.bucket(i) < {bound} THEN '{kind}'" for bound, kind in KINDS)
    terminal = ",".join(f"'{k}'" for k in TERMINAL)
    started = ",".join(f"'{k}'" for k in STARTED)
    adjectives = "ARRAY[" + ",".join(f"'{a}'" for a in ADJECTIVES) + "]"
    animals = "ARRAY[" + ",".join(f"'{a}'" for a in ANIMALS) + "]"
    tags = "ARRAY[" + ",".join(f"'{t}'" for t in TAGS) + "]"
    return f"""
CREATE FUNCTION pg_temp.uid(seed text) RETURNS text IMMUTABLE LANGUAGE sql AS $$
  SELECT substr(md5(seed),1,8)||'-'||substr(md5(seed),9,4)||'-4'||substr(md5(seed),14,3)||'-'
         ||substr('89ab', ((('x'||substr(md5(seed),17,1))::bit(4)::int) % 4) + 1, 1)||substr(md5(seed),18,3)
         ||'-'||substr(md5(seed),21,12) $$;
CREATE FUNCTION pg_temp.uid7(ms bigint, seed text) RETURNS text IMMUTABLE LANGUAGE sql AS $$
  SELECT substr(lpad(to_hex(ms), 12, '0'),1,8)||'-'||substr(lpad(to_hex(ms), 12, '0'),9,4)||'-7'||substr(md5(seed),1,3)
         ||'-'||substr('89ab', ((('x'||substr(md5(seed),4,1))::bit(4)::int) % 4) + 1, 1)||substr(md5(seed),5,3)
         ||'-'||substr(md5(seed),8,12) $$;
CREATE FUNCTION pg_temp.bucket(i bigint) RETURNS int IMMUTABLE LANGUAGE sql AS $$
  SELECT ((i * 2654435761) % 4294967296 % 1000)::int $$;
CREATE FUNCTION pg_temp.kind(i bigint) RETURNS text IMMUTABLE LANGUAGE sql AS $$
  SELECT CASE {kind_case} END $$;
CREATE FUNCTION pg_temp.expected(i bigint) RETURNS bigint IMMUTABLE LANGUAGE sql AS $$
  SELECT CASE
    WHEN pg_temp.kind(i) IN ({terminal}) THEN -{WINDOW_MS}::bigint + (({WINDOW_MS}::bigint - 3600000) * i) / {n}
    WHEN pg_temp.kind(i) = 'RUNNING' THEN -(60000 + (i * 31) % 3600000)
    WHEN pg_temp.kind(i) = 'PENDING' THEN -(30000 + (i * 17) % 600000)
    WHEN pg_temp.kind(i) = 'SCHEDULED' THEN 60000 + (i * 97) % (3 * {DAY_MS}::bigint)
    WHEN pg_temp.kind(i) = 'LATE' THEN -(300000 + (i * 53) % {DAY_MS})
    ELSE -(600000 + (i * 29) % 7200000) END $$;
CREATE FUNCTION pg_temp.start(i bigint) RETURNS bigint IMMUTABLE LANGUAGE sql AS $$
  SELECT CASE WHEN pg_temp.kind(i) IN ({started})
    THEN pg_temp.expected(i) + 1000 + 1000 * (pg_temp.bucket(i) % 30) + (i * 7) % 1000 END $$;
CREATE FUNCTION pg_temp.duration(i bigint) RETURNS bigint IMMUTABLE LANGUAGE sql AS $$
  SELECT 5000 + (i * 7919) % 600000 $$;
CREATE FUNCTION pg_temp.has_dep(i bigint) RETURNS boolean IMMUTABLE LANGUAGE sql AS $$ SELECT i % 5 <> 0 $$;
CREATE FUNCTION pg_temp.has_tasks(i bigint) RETURNS boolean IMMUTABLE LANGUAGE sql AS $$
  SELECT i % 10 = 3 AND pg_temp.kind(i) IN ({started}) $$;
CREATE FUNCTION pg_temp.created(i bigint) RETURNS bigint IMMUTABLE LANGUAGE sql AS $$
  SELECT LEAST(pg_temp.expected(i), 0) - CASE WHEN pg_temp.has_dep(i) THEN 3600000 ELSE 1000 END $$;
CREATE FUNCTION pg_temp.run_name(i bigint) RETURNS text IMMUTABLE LANGUAGE sql AS $$
  SELECT ({adjectives})[(i * 31 + 7) % {len(ADJECTIVES)} + 1] || '-' || ({animals})[(i * 17 + 3) % {len(ANIMALS)} + 1] $$;
CREATE FUNCTION pg_temp.run_tags(i bigint) RETURNS jsonb IMMUTABLE LANGUAGE sql AS $$
  SELECT COALESCE(to_jsonb((ARRAY[({tags})[(i * 7) % 10 + 1], ({tags})[(i * 7 + 3) % 10 + 1],
                                  ({tags})[(i * 7 + 6) % 10 + 1]])[1:(i * 13) % 4]), '[]'::jsonb) $$;
CREATE FUNCTION pg_temp.details(extra jsonb) RETURNS jsonb IMMUTABLE LANGUAGE sql AS $$
  SELECT DETAILS_DEFAULTS::jsonb || extra $$;
"""


def _bulk_postgres(db, plan: Plan, manifest: dict, t0: dt.datetime, logs: int, heavy_logs: int) -> dict:
    from db.states import STATE_DETAILS_DEFAULTS

    timings = {}
    n = plan.n
    flows = "ARRAY[" + ",".join(f"'{f}'" for f in manifest["flow_ids"]) + "]"
    deps = manifest["deployments"]
    dep_ids = "ARRAY[" + ",".join(f"'{d['id']}'" for d in deps) + "]"
    dep_queue_ids = "ARRAY[" + ",".join(f"'{d['queue_id']}'" for d in deps) + "]"
    dep_queues = "ARRAY[" + ",".join(f"'{d['queue']}'" for d in deps) + "]"
    regions = "ARRAY[" + ",".join(f"'{r}'" for r in REGIONS) + "]"
    tasks = "ARRAY[" + ",".join(f"'{t}'" for t in TASKS) + "]"
    messages = "ARRAY[" + ",".join(_pg_literal(m) for m in MESSAGES) + "]"
    heavy = manifest["heavy_index"]
    t0_sql = f"TIMESTAMP '{t0.isoformat(sep=' ')}'"
    t0_epoch_ms = _epoch_ms(t0, 0)
    ts = lambda ms: f"({t0_sql} + ({ms}) * INTERVAL '1 millisecond')"  # noqa: E731
    isots = lambda ms: f"to_char({ts(ms)}, 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"  # noqa: E731
    policy = dumps(FLOW_POLICY)
    paused_policy = dumps(dict(FLOW_POLICY, pause_keys=["1"]))
    flow_messages = {
        "FAILED": "Flow run encountered an exception: RuntimeError: upstream returned 503",
        "CRASHED": "Execution was interrupted by an unexpected exception: KeyboardInterrupt",
        "CANCELLED": "The parent flow run was cancelled.",
    }
    msg_case = "CASE " + " ".join(f"WHEN s.type = '{k}' THEN '{v}'" for k, v in flow_messages.items()) + " END"
    ep = lambda ms: f"({t0_epoch_ms}::bigint + ({ms}))"  # noqa: E731

    # The state history of run i, one row per state: (k, type, name, ms), as Plan.states.
    history = f"""
      SELECT i, row_number() OVER (PARTITION BY i ORDER BY ord) - 1 AS k,
             count(*) OVER (PARTITION BY i) AS states, type, name, ms
      FROM (
        SELECT i, 0 AS ord, 'SCHEDULED' AS type, 'Scheduled' AS name, pg_temp.created(i) AS ms FROM r
          WHERE pg_temp.has_dep(i) OR pg_temp.kind(i) IN ('SCHEDULED', 'LATE')
        UNION ALL SELECT i, 1, 'SCHEDULED', 'Late', pg_temp.expected(i) + 15000 FROM r WHERE pg_temp.kind(i) = 'LATE'
        UNION ALL SELECT i, 2, 'PENDING', 'Pending', CASE WHEN NOT pg_temp.has_dep(i) THEN pg_temp.expected(i)
                      WHEN pg_temp.start(i) IS NOT NULL THEN pg_temp.start(i) - 500 ELSE pg_temp.expected(i) + 500 END
          FROM r WHERE pg_temp.kind(i) IN ({",".join(f"'{k}'" for k in (*STARTED, "PENDING"))})
        UNION ALL SELECT i, 3, 'RUNNING', 'Running', pg_temp.start(i) FROM r WHERE pg_temp.start(i) IS NOT NULL
        UNION ALL SELECT i, 4, pg_temp.kind(i), initcap(pg_temp.kind(i)), pg_temp.start(i) + pg_temp.duration(i)
          FROM r WHERE pg_temp.kind(i) IN ({",".join(f"'{k}'" for k in TERMINAL)})
        UNION ALL SELECT i, 5, 'PAUSED', 'Paused', pg_temp.start(i) + 60000 FROM r WHERE pg_temp.kind(i) = 'PAUSED'
      ) h"""
    details_sql = f"""pg_temp.details(jsonb_build_object('flow_run_id', pg_temp.uid('run-' || s.i))
        || CASE WHEN s.type = 'SCHEDULED' OR (s.type = 'PENDING' AND pg_temp.has_dep(s.i))
                THEN jsonb_build_object('scheduled_time', {isots('pg_temp.expected(s.i)')}) ELSE '{{}}'::jsonb END
        || CASE WHEN s.type = 'PAUSED' THEN jsonb_build_object('pause_timeout', {isots('s.ms + 3600000')},
                'pause_key', '1') ELSE '{{}}'::jsonb END)"""
    statements = [
        ("flow_run_state", f"""
    WITH r AS (SELECT i FROM generate_series(0, {n - 1}) i)
    INSERT INTO flow_run_state (id, created, flow_run_id, type, name, timestamp, message, data, state_details)
    SELECT pg_temp.uid7({ep('s.ms')}, 'frs-' || s.i || '-' || s.k), {ts('s.ms')}, pg_temp.uid('run-' || s.i),
           s.type, s.name, {ts('s.ms')}, {msg_case}, NULL, {details_sql}
    FROM ({history}) s"""),
        ("flow_run", f"""
    WITH r AS (SELECT i FROM generate_series(0, {n - 1}) i),
    s AS (SELECT * FROM ({history}) h WHERE k = states - 1),
    c AS (SELECT s.*, pg_temp.uid7({ep('s.ms')}, 'frs-' || s.i || '-' || s.k) AS state_id,
                 pg_temp.has_dep(s.i) AS dep, pg_temp.start(s.i) AS st,
                 CASE WHEN pg_temp.kind(s.i) IN ({",".join(f"'{k}'" for k in TERMINAL)})
                      THEN pg_temp.start(s.i) + pg_temp.duration(s.i) END AS en,
                 (s.i % {len(manifest['flow_ids'])}) + 1 AS f,
                 (s.i % {len(manifest['flow_ids'])}) + {len(manifest['flow_ids'])} * ((s.i / {len(manifest['flow_ids'])}) % 2) + 1 AS d
          FROM s)
    INSERT INTO flow_run ({", ".join(RUN_COLUMNS)})
    SELECT pg_temp.uid('run-' || c.i), {ts('pg_temp.created(c.i)')}, {ts('c.ms')}, pg_temp.run_name(c.i),
           ({flows})[c.f], CASE WHEN c.dep THEN ({dep_ids})[c.d] END, NULL,
           CASE WHEN c.dep THEN ({dep_queue_ids})[c.d] END, CASE WHEN c.dep THEN ({dep_queues})[c.d] END,
           CASE WHEN c.dep THEN '{manifest['work_pool_id']}' END, CASE WHEN c.dep THEN '{manifest['work_pool']}' END,
           NULL,
           CASE WHEN c.dep THEN jsonb_build_object('n', c.i % 100, 'region', ({regions})[c.i % 3 + 1])
                ELSE '{{}}'::jsonb END,
           NULL, '{{}}'::jsonb,
           CASE WHEN c.type = 'PAUSED' THEN '{paused_policy}'::jsonb ELSE '{policy}'::jsonb END,
           pg_temp.run_tags(c.i),
           jsonb_build_object('prefect.flow.id', ({flows})[c.f])
             || CASE WHEN c.dep THEN jsonb_build_object('prefect.deployment.id', ({dep_ids})[c.d]) ELSE '{{}}'::jsonb END,
           NULL, c.state_id, c.type, c.name, {ts('c.ms')},
           jsonb_build_object('id', c.state_id, 'type', c.type, 'name', c.name, 'timestamp', {isots('c.ms')},
                              'message', {msg_case.replace('s.type', 'c.type')}, 'data', NULL,
                              'state_details', {details_sql.replace('s.', 'c.')}),
           CASE WHEN c.st IS NOT NULL THEN 1 ELSE 0 END, {ts('pg_temp.expected(c.i)')},
           CASE WHEN c.type = 'SCHEDULED' THEN {ts('pg_temp.expected(c.i)')} END,
           CASE WHEN c.st IS NOT NULL THEN {ts('c.st')} END, CASE WHEN c.en IS NOT NULL THEN {ts('c.en')} END,
           CASE WHEN c.en IS NOT NULL THEN (c.en - c.st) / 1000.0 WHEN c.type = 'PAUSED' THEN 60.0 ELSE 0.0 END,
           false, NULL, NULL, NULL, '{{}}'::jsonb
    FROM c"""),
    ]
    # Task runs: (task id, run index, name, key, dynamic key, type, start, end) as Plan's task_specs.
    specs = f"""
      SELECT pg_temp.uid('task-' || i || '-' || k) AS id, i, ({tasks})[k + 1] || '-' || k AS name,
             ({tasks})[k + 1] || '-' || lpad(to_hex((i % {plan.flows})::int), 4, '0') AS key, '0' AS dyn,
             CASE WHEN k = {TASKS_PER_RUN - 1} AND pg_temp.kind(i) IN ('FAILED', 'CRASHED', 'CANCELLED', 'RUNNING')
                  THEN pg_temp.kind(i) ELSE 'COMPLETED' END AS type,
             pg_temp.start(i) + (dur * k) / {TASKS_PER_RUN} + 100 AS t_start,
             CASE WHEN k = {TASKS_PER_RUN - 1} AND pg_temp.kind(i) = 'RUNNING' THEN NULL
                  ELSE pg_temp.start(i) + (dur * (k + 1)) / {TASKS_PER_RUN} - 100 END AS t_end
      FROM (SELECT i, k, CASE WHEN pg_temp.kind(i) IN ({",".join(f"'{k}'" for k in TERMINAL)})
                              THEN pg_temp.duration(i) ELSE 60000 END AS dur
            FROM generate_series(3, {n - 1}, 10) i, generate_series(0, {TASKS_PER_RUN - 1}) k
            WHERE pg_temp.has_tasks(i)) t
      UNION ALL
      SELECT pg_temp.uid('heavy-task-' || k), {heavy}, 'step-' || k, 'step-heavy', k::text, 'COMPLETED',
             pg_temp.start({heavy}) + (pg_temp.duration({heavy}) * k) / {HEAVY_TASKS},
             pg_temp.start({heavy}) + (pg_temp.duration({heavy}) * (k + 1)) / {HEAVY_TASKS} - 1
      FROM generate_series(0, {HEAVY_TASKS - 1}) k"""
    task_state = f"""pg_temp.uid7({ep('COALESCE(t.t_end, t.t_start)')}, 'trs-' || t.id)"""
    task_state_details = "pg_temp.details(jsonb_build_object('flow_run_id', pg_temp.uid('run-' || t.i), 'task_run_id', t.id))"
    task_policy = dumps(TASK_POLICY)
    statements += [
        ("task_run", f"""
    INSERT INTO task_run ({", ".join(TASK_COLUMNS)})
    SELECT t.id, {ts('t.t_start - 50')}, {ts('COALESCE(t.t_end, t.t_start)')}, t.name, pg_temp.uid('run-' || t.i),
           t.key, t.dyn, NULL, NULL, NULL, '{task_policy}'::jsonb, '[]'::jsonb,
           jsonb_build_object('prefect.flow.id', ({flows})[t.i % {plan.flows} + 1], 'prefect.flow-run.id',
                              pg_temp.uid('run-' || t.i)),
           '{{}}'::jsonb, {task_state}, t.type, initcap(t.type), {ts('COALESCE(t.t_end, t.t_start)')},
           jsonb_build_object('id', {task_state}, 'type', t.type, 'name', initcap(t.type),
                              'timestamp', {isots('COALESCE(t.t_end, t.t_start)')}, 'message', NULL, 'data', NULL,
                              'state_details', {task_state_details}),
           1, 1, {ts('t.t_start - 50')}, NULL, {ts('t.t_start')}, CASE WHEN t.t_end IS NOT NULL THEN {ts('t.t_end')} END,
           CASE WHEN t.t_end IS NOT NULL THEN (t.t_end - t.t_start) / 1000.0 ELSE 0.0 END
    FROM ({specs}) t"""),
        ("task_run_state", f"""
    INSERT INTO task_run_state ({", ".join(TASK_STATE_COLUMNS)})
    SELECT {task_state}, {ts('COALESCE(t.t_end, t.t_start)')}, t.id, t.type, initcap(t.type),
           {ts('COALESCE(t.t_end, t.t_start)')}, NULL, NULL, {task_state_details}
    FROM ({specs}) t"""),
    ]
    level = "CASE WHEN j % 50 = 0 THEN 40 WHEN j % 10 = 1 THEN 30 WHEN j % 7 = 0 THEN 10 ELSE 20 END"
    message = (f"replace(replace(({messages})[j % 4 + 1], '{{k}}', kk::text), '{{n}}', ((j * 37) % 10000)::text)")
    statements.append(("log", f"""
    INSERT INTO log ({", ".join(LOG_COLUMNS)})
    SELECT pg_temp.uid7({ep('t + 200')}, 'log-' || j), {ts('t + 200')},
           CASE WHEN tid IS NULL THEN 'prefect.flow_runs' ELSE 'prefect.task_runs' END, {level},
           {message.replace('kk', 'k')}, {ts('t')}, pg_temp.uid('run-' || r), tid
    FROM (SELECT j, r, k, COALESCE(pg_temp.start(r), pg_temp.expected(r)) + 250 * k AS t,
                 CASE WHEN pg_temp.has_tasks(r) AND k % 3 = 1 THEN pg_temp.uid('task-' || r || '-' || (k % {TASKS_PER_RUN})) END AS tid
          FROM (SELECT j, (j * {LOG_PRIME}) % {n} AS r, j / {n} AS k
                FROM generate_series(0::bigint, {logs - heavy_logs - 1}) j) x) y
    UNION ALL
    SELECT pg_temp.uid7({ep('t + 200')}, 'heavy-log-' || j), {ts('t + 200')},
           CASE WHEN tid IS NULL THEN 'prefect.flow_runs' ELSE 'prefect.task_runs' END, {level},
           {message.replace('kk', 'j')}, {ts('t')}, pg_temp.uid('run-{heavy}'), tid
    FROM (SELECT j, pg_temp.start({heavy}) + (pg_temp.duration({heavy}) * j) / {heavy_logs} AS t,
                 CASE WHEN j % 2 = 1 THEN pg_temp.uid('heavy-task-' || (j * {HEAVY_TASKS}) / {heavy_logs}) END AS tid
          FROM generate_series(0::bigint, {heavy_logs - 1}) j) z"""))

    db.execute_sql("SET synchronous_commit = off")
    db.execute_sql("SET maintenance_work_mem = '1GB'")
    db.execute_sql("SET work_mem = '256MB'")
    with db.atomic():
        db.execute_sql("SET LOCAL session_replication_role = replica")  # no FK triggers: consistent by construction
        db.cursor().execute(_pg_functions(plan).replace("DETAILS_DEFAULTS", _pg_literal(dumps(STATE_DETAILS_DEFAULTS))))
        indexes = _secondary_indexes(db, BULK_TABLES, postgres=True)
        cur = db.cursor()  # psycopg2 without parameters: no %-formatting of the SQL
        for name, _sql in indexes:
            cur.execute(f'DROP INDEX "{name}"')
        for table, sql in statements:
            began = time.monotonic()
            cur.execute(sql)
            timings[f"{table}_s"] = round(time.monotonic() - began, 1)
            log(f"  {table}: {cur.rowcount:,} rows in {timings[f'{table}_s']} s")
        began = time.monotonic()
        for _name, sql in indexes:
            cur.execute(sql)
        timings["indexes_s"] = round(time.monotonic() - began, 1)
    return timings


def _pg_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _analyze(url: str, dbmod) -> None:
    if url.startswith("postgres"):
        dbmod.close_all()
        conn = psycopg2.connect(url)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SET maintenance_work_mem = '1GB'")
            cur.execute("VACUUM (ANALYZE)")
        conn.close()
        dbmod.init(url, pool_size=2)
    else:
        dbmod.database.execute_sql("ANALYZE")


def database_size(url: str) -> int:
    if url.startswith("postgres"):
        conn = psycopg2.connect(url)
        with conn.cursor() as cur:
            cur.execute("SELECT pg_database_size(current_database())")
            size = cur.fetchone()[0]
        conn.close()
        return size
    path = Path(url.split("sqlite:///", 1)[1])
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    url, runs, logs = settle(args)
    manifest = seed(url, runs, logs, fresh=args.fresh, now=parse_now(args.now))
    print(json.dumps({"url": url, "size_bytes": database_size(url),
                      **{k: manifest[k] for k in ("runs", "logs", "seeded_at", "seed_seconds", "heavy_run_id")}}))
    return 0


def add_arguments(parser) -> None:
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--runs", type=int, help="flow runs (default 1,000,000 on PostgreSQL, 100,000 on SQLite)")
    parser.add_argument("--logs", type=int, help="log lines (default 10,000,000 on PostgreSQL, 1,000,000 on SQLite)")
    parser.add_argument("--url-of-existing-db", dest="db_url",
                        help="seed (or reuse) this database instead of appliance_uibench / .bench/uibench.db")
    parser.add_argument("--db-name", default=DEFAULT_DB_NAME, help="PostgreSQL database name")
    parser.add_argument("--sqlite-path", type=Path, default=DEFAULT_SQLITE)
    parser.add_argument("--fresh", action="store_true", help="drop and seed again even if the sizes match")
    parser.add_argument("--now", help="seed as if it were this UTC time (ISO 8601; default: now), for reproducible seeds")


def parse_now(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.astimezone(dt.UTC) if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def settle(args) -> tuple[str, int, int]:
    backend = args.backend
    if args.db_url:
        backend = "postgres" if args.db_url.startswith("postgres") else "sqlite"
    runs = args.runs or DEFAULTS[backend][0]
    logs = args.logs if args.logs is not None else DEFAULTS[backend][1]
    if runs < 100:
        raise SystemExit("--runs must be at least 100")
    return resolve_url(backend, args.db_url, args.db_name, args.sqlite_path), runs, logs


if __name__ == "__main__":
    sys.exit(main())
