#!/usr/bin/env python3
"""retention_bench.py - `just bench-retention`: the retention pruner at scale on PostgreSQL.

1. A fresh database ``bench_retention_<random>``, migrated with ``appliance database upgrade -y``,
   seeded inside PostgreSQL with set-based SQL (``INSERT ... SELECT generate_series``): N flow runs
   (default 1,000,000) over 20 flows, with their state history, task runs (a fifth of the runs,
   3 each) with theirs, M log lines (default 50,000,000; flow- and task-level), artifacts (with
   their collections), flow-run inputs and flow-run events. End times are spread over 100 days with a gap around
   the cut-off: the oldest ``--fraction`` (10 %) of the runs ended 91-100 days ago, the others
   0-89 days ago, so ``--older-than 90d`` deletes exactly them, whatever the minutes between the
   seed and the prune. Logs are written in time order (as a live server receives them): an old
   run's logs sit in the oldest pages. Secondary indexes are dropped before the bulk insert and
   rebuilt after it; then VACUUM ANALYZE of the run tables and ANALYZE of the log table.
2. A live ``appliance serve`` on it (background services on, retention off for the server itself).
   After an unrecorded warm-up of the load, an idle phase measures the W1 and W4 request
   latencies (p50/p99 over all requests, and per request kind); then the same load runs again while
   ``appliance database prune --kind flow_runs --older-than 90d`` deletes the old runs. W1 and W4
   are ../shared/bench/loadgen.py's requests through its own client (loadgen.Api: SDK retries,
   latency of successful calls only), paced at a steady rate and run for as long as each phase
   lasts: W1 the flow-run lifecycle (create SCHEDULED -> PENDING -> RUNNING -> COMPLETED, verified
   COMPLETED on the server afterwards), W4 the eight filter/count reads (checked for shape,
   order and filter semantics; not for exact counts, which the pruning changes on purpose).
3. The prune rate: pg_stat_user_tables.n_tup_del of the tables it deletes from, sampled every
   ``--interval`` seconds: rows/s per interval, and whether the rate holds steady. Deleted rows
   per table, against what the seed formulas say must go.
4. No statement that scans the log table: pg_stat_user_tables.seq_scan of the log table and of the
   other large tables, before/after the idle phase (the control: W1, W4 and the services alone)
   and before/after the prune phase; and every statement of the prune itself is EXPLAINed by
   auto_explain (loaded into the prune's own sessions through PGOPTIONS, plans sent back as
   notices): any "Seq Scan on" a large table is reported with its statement.

Every figure goes to ``<out>/results.jsonl``; a markdown table is printed at the end and saved as
``<out>/table.md``. The database is dropped at the end unless ``--keep``.

  python bench/retention_bench.py                                   # 1M runs, 50M logs (15-30 min)
  python bench/retention_bench.py --runs 100000 --logs 5000000      # medium
  python bench/retention_bench.py --pause 0.01                      # the prune throttled (RETENTION_PAUSE_SECONDS)
  python bench/retention_bench.py --runs 2000 --logs 40000 --idle-seconds 3 --interval 1   # smoke
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import importlib.util
import json
import math
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEFAULT_DSN = os.environ.get("APPLIANCE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
DEFAULT_LOADGEN = Path(os.environ.get("APPLIANCE_LOADGEN", REPO.parent / "shared" / "bench" / "loadgen.py"))
BENCH_KEY = "DMAzKGOlHgt7YT5lFuTYPTC0YlpfTREBekCLJ_wj-zM="  # a Fernet key (32 bytes, base64)
DB_PREFIX = "bench_retention_"

# The seed's shape (see the module docstring).
FLOWS = 20
TASKS_PER_RUN = 3
TASK_EVERY = 5  # runs i % 5 == 0 have task runs
ARTIFACT_EVERY = 20  # runs i % 20 == 0 have a flow-level and a task-level artifact
EVENT_EVERY = 10  # runs i % 10 == 0 have a flow-run event
INPUT_EVERY = 50  # runs i % 50 == 0 have a flow-run input (a paused run's answer)
ARTIFACT_KEYS = 500
OLD_SPAN = ("100 days", "9 days")  # old runs end between 100 and 91 days ago
NEW_SPAN = ("89 days", "1 hour")  # the others between 89 days and 1 hour ago
OLDER_THAN = "90d"
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED", "CRASHED")
PRUNED_TABLES = ("flow_run", "flow_run_state", "task_run", "task_run_state", "log", "artifact", "flow_run_input", "event")
LARGE_TABLES = ("log", "flow_run", "flow_run_state", "task_run", "task_run_state", "artifact", "event")
BULK_TABLES = ("flow_run", "flow_run_state", "task_run", "task_run_state", "log", "artifact", "artifact_collection",
               "event", "flow_run_input")
TARGET_RATIO = 2.0
FLOW_POLICY = {"max_retries": 0, "retry_delay_seconds": 0.0, "retries": None, "retry_delay": None,
               "pause_keys": [], "resuming": False, "retry_type": None}
TASK_POLICY = {"max_retries": 0, "retry_delay_seconds": 0.0, "retries": None, "retry_delay": None,
               "retry_jitter_factor": None}
# loadgen's W4 name words: "amber-fox" (its default like_ filter) matches 1 % of the seeded runs.
ADJ = ["amber", "brisk", "calm", "dusty", "eager", "fuzzy", "gentle", "hazy", "icy", "jolly"]
NOUN = ["fox", "otter", "heron", "lynx", "moth", "newt", "panda", "quail", "raven", "stoat"]


def log(*args) -> None:
    print(f"[{dt.datetime.now(dt.UTC):%H:%M:%S}]", *args, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def db_url(dsn: str, name: str) -> str:
    return f"{dsn.rsplit('/', 1)[0]}/{name}"


def pg_connect(url: str):
    import psycopg2

    conn = psycopg2.connect(url, connect_timeout=10)
    conn.autocommit = True
    return conn


def pg_admin(dsn: str, sql: str) -> None:
    with contextlib.closing(pg_connect(dsn)) as conn, conn.cursor() as cur:
        cur.execute(sql)


def load_loadgen(path: Path):
    spec = importlib.util.spec_from_file_location("loadgen", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- what the seed holds, and what the prune must delete ---------------------------------------


def n_old(runs: int, fraction: float) -> int:
    return max(1, min(runs - 1, round(runs * fraction)))


def expected_deletions(runs: int, logs: int, fraction: float) -> dict[str, int]:
    """Rows of each table that belong to the old runs (indices 0 .. old-1, all terminal)."""
    old = n_old(runs, fraction)
    with_tasks = math.ceil(old / TASK_EVERY)
    with_artifacts = math.ceil(old / ARTIFACT_EVERY)
    return {
        "flow_run": old,
        "flow_run_state": 3 * old,  # PENDING, RUNNING, the terminal state
        "task_run": TASKS_PER_RUN * with_tasks,
        "task_run_state": 3 * TASKS_PER_RUN * with_tasks,
        "log": (old * logs + runs - 1) // runs,  # logs j of run floor(j * runs / logs): ceil(old * logs / runs)
        "artifact": 2 * with_artifacts,
        "flow_run_input": math.ceil(old / INPUT_EVERY),
        "event": math.ceil(old / EVENT_EVERY),
    }


# --- the seed: set-based SQL ---------------------------------------------------------------------


class Seed:
    def __init__(self, runs: int, logs: int, fraction: float, t0: dt.datetime):
        from db.states import STATE_DETAILS_DEFAULTS

        self.n, self.m, self.old = runs, logs, n_old(runs, fraction)
        self.t0 = f"TIMESTAMP '{t0.isoformat(sep=' ', timespec='microseconds')}'"
        self.defaults = json.dumps(STATE_DETAILS_DEFAULTS).replace("'", "''")

    def runs(self, source: str, passthrough: str = "") -> str:
        """Every run attribute from its index ``i`` (``source``: a FROM item with a column i
        and the ``passthrough`` columns, e.g. "j, k,")."""
        n, old, t0 = self.n, self.old, self.t0
        b = "((i * 2654435761) % 4294967296 % 100)"
        terminal = ",".join(f"'{k}'" for k in TERMINAL)
        return f"""(SELECT {passthrough} i, kind, id, flow_no, end_ts, start_ts, expected_ts, dur,
               LEAST(expected_ts, {t0}) - interval '60 seconds' AS created_ts,
               CASE kind WHEN 'SCHEDULED' THEN LEAST(expected_ts, {t0}) - interval '60 seconds'
                         WHEN 'RUNNING' THEN start_ts ELSE end_ts END AS state_ts,
               CASE kind WHEN 'SCHEDULED' THEN 0 WHEN 'RUNNING' THEN 1 ELSE 2 END AS state_k
        FROM (SELECT {passthrough} i, kind, id, flow_no, end_ts, start_ts, dur,
                     CASE WHEN kind = 'SCHEDULED' THEN {t0} + (60 + i % 604800) * interval '1 second'
                          ELSE start_ts - interval '1 second' END AS expected_ts
              FROM (SELECT {passthrough} i, kind, md5('run-' || i)::uuid::text AS id, i % {FLOWS} AS flow_no, dur,
                           CASE WHEN kind IN ({terminal}) THEN endpos END AS end_ts,
                           CASE WHEN kind IN ({terminal}) THEN endpos - dur
                                WHEN kind = 'RUNNING' THEN {t0} - (60 + i % 3600) * interval '1 second' END AS start_ts
                    FROM (SELECT {passthrough} i,
                                 CASE WHEN i >= {old} AND {b} < 3 THEN 'RUNNING'
                                      WHEN i >= {old} AND {b} < 5 THEN 'SCHEDULED'
                                      WHEN {b} < 10 THEN 'FAILED' WHEN {b} = 10 THEN 'CRASHED'
                                      WHEN {b} = 11 THEN 'CANCELLED' ELSE 'COMPLETED' END AS kind,
                                 CASE WHEN i < {old}
                                      THEN {t0} - interval '{OLD_SPAN[0]}' + (i::float8 / {old}) * interval '{OLD_SPAN[1]}'
                                      ELSE {t0} - interval '{NEW_SPAN[0]}'
                                           + ((i - {old})::float8 / {max(n - old, 1)})
                                             * (interval '{NEW_SPAN[0]}' - interval '{NEW_SPAN[1]}') END AS endpos,
                                 (5 + (i * 7919) % 600) * interval '1 second' AS dur
                          FROM {source}) a) b) c) r"""

    @staticmethod
    def iso(expr: str) -> str:
        return f"to_char({expr}, 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

    def details(self, extra: str) -> str:
        return f"('{self.defaults}'::jsonb || {extra})"

    def flows(self) -> str:
        return f"""INSERT INTO flow (id, created, updated, name, tags, labels)
            SELECT md5('flow-' || f)::uuid::text, {self.t0} - interval '200 days', {self.t0} - interval '200 days',
                   'retention-bench-' || f, '[]'::jsonb, NULL FROM generate_series(0, {FLOWS - 1}) f"""

    def flow_runs(self, lo: int, hi: int) -> str:
        adj = "ARRAY[" + ",".join(f"'{a}'" for a in ADJ) + "]"
        noun = "ARRAY[" + ",".join(f"'{a}'" for a in NOUN) + "]"
        state_id = "md5('frs-' || r.i || '-' || r.state_k)::uuid::text"
        details = self.details(
            "jsonb_build_object('flow_run_id', r.id) || CASE WHEN r.kind = 'SCHEDULED' THEN "
            f"jsonb_build_object('scheduled_time', {self.iso('r.expected_ts')}) ELSE '{{}}'::jsonb END")
        return f"""INSERT INTO flow_run (id, created, updated, name, flow_id, deployment_id, deployment_version,
              work_queue_id, work_queue_name, work_pool_id, work_pool_name, flow_version, parameters, idempotency_key,
              context, empirical_policy, tags, labels, parent_task_run_id, state_id, state_type, state_name,
              state_timestamp, state, run_count, expected_start_time, next_scheduled_start_time, start_time, end_time,
              total_run_time, auto_scheduled, infrastructure_document_id, infrastructure_pid, created_by, job_variables)
            SELECT r.id, r.created_ts, r.state_ts,
                   ({adj})[r.i % 10 + 1] || '-' || ({noun})[(r.i / 10) % 10 + 1] || '-' || r.i,
                   md5('flow-' || r.flow_no)::uuid::text, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                   jsonb_build_object('i', r.i), NULL, '{{}}'::jsonb, '{json.dumps(FLOW_POLICY)}'::jsonb,
                   CASE WHEN r.i % 3 = 0 THEN '["nightly"]'::jsonb ELSE '[]'::jsonb END,
                   jsonb_build_object('prefect.flow.id', md5('flow-' || r.flow_no)::uuid::text), NULL,
                   {state_id}, r.kind, initcap(r.kind), r.state_ts,
                   jsonb_build_object('id', {state_id}, 'type', r.kind, 'name', initcap(r.kind),
                                      'timestamp', {self.iso('r.state_ts')}, 'message', NULL, 'data', NULL,
                                      'state_details', {details}),
                   CASE WHEN r.start_ts IS NULL THEN 0 ELSE 1 END, r.expected_ts,
                   CASE WHEN r.kind = 'SCHEDULED' THEN r.expected_ts END, r.start_ts, r.end_ts,
                   COALESCE(extract(epoch FROM r.dur)::real, 0.0) * (r.end_ts IS NOT NULL)::int,
                   false, NULL, NULL, NULL, '{{}}'::jsonb
            FROM {self.runs(f"generate_series({lo}::bigint, {hi - 1}) i")}"""

    def flow_run_states(self, lo: int, hi: int) -> str:
        details = self.details(
            "jsonb_build_object('flow_run_id', r.id) || CASE WHEN s.type = 'SCHEDULED' THEN "
            f"jsonb_build_object('scheduled_time', {self.iso('r.expected_ts')}) ELSE '{{}}'::jsonb END")
        return f"""INSERT INTO flow_run_state (id, created, flow_run_id, type, name, timestamp, message, data,
              state_details)
            SELECT md5('frs-' || r.i || '-' || s.k)::uuid::text, s.ts, r.id, s.type, initcap(s.type), s.ts,
                   CASE s.type WHEN 'FAILED' THEN 'Flow run encountered an exception: RuntimeError: boom'
                               WHEN 'CRASHED' THEN 'Execution was interrupted by an unexpected exception' END,
                   NULL, {details}
            FROM {self.runs(f"generate_series({lo}::bigint, {hi - 1}) i")}
            CROSS JOIN LATERAL (VALUES
                (0, CASE WHEN r.kind = 'SCHEDULED' THEN 'SCHEDULED' ELSE 'PENDING' END,
                    CASE WHEN r.kind = 'SCHEDULED' THEN r.created_ts ELSE r.start_ts - interval '1 second' END),
                (1, 'RUNNING', r.start_ts),
                (2, r.kind, r.end_ts)) AS s(k, type, ts)
            WHERE s.ts IS NOT NULL"""

    def _tasks(self, lo: int, hi: int) -> str:
        """The task runs of runs lo..hi-1: t.* = run columns + k, id, type, t_start, t_end."""
        terminal = ",".join(f"'{k}'" for k in TERMINAL)
        first = lo + (-lo) % TASK_EVERY
        return f"""(SELECT r.*, k.k, md5('task-' || r.i || '-' || k.k)::uuid::text AS task_id,
                   CASE WHEN k.k = {TASKS_PER_RUN - 1} AND r.kind <> 'COMPLETED' THEN r.kind ELSE 'COMPLETED' END
                     AS task_type,
                   r.start_ts + (CASE WHEN r.kind IN ({terminal}) THEN r.dur ELSE interval '60 seconds' END) * k.k
                     / {TASKS_PER_RUN} + interval '100 ms' AS t_start,
                   CASE WHEN k.k = {TASKS_PER_RUN - 1} AND r.kind = 'RUNNING' THEN NULL
                        ELSE r.start_ts + (CASE WHEN r.kind IN ({terminal}) THEN r.dur ELSE interval '60 seconds' END)
                             * (k.k + 1) / {TASKS_PER_RUN} - interval '100 ms' END AS t_end
            FROM {self.runs(f"generate_series({first}::bigint, {hi - 1}, {TASK_EVERY}) i")}
            CROSS JOIN generate_series(0, {TASKS_PER_RUN - 1}) AS k(k)
            WHERE r.kind <> 'SCHEDULED') t"""

    def task_runs(self, lo: int, hi: int) -> str:
        state_id = "md5('trs-' || t.i || '-' || t.k || '-' || CASE WHEN t.t_end IS NULL THEN 1 ELSE 2 END)::uuid::text"
        state_ts = "COALESCE(t.t_end, t.t_start)"
        state_type = "CASE WHEN t.t_end IS NULL THEN 'RUNNING' ELSE t.task_type END"
        details = self.details("jsonb_build_object('flow_run_id', t.id, 'task_run_id', t.task_id)")
        return f"""INSERT INTO task_run (id, created, updated, name, flow_run_id, task_key, dynamic_key, cache_key,
              cache_expiration, task_version, empirical_policy, tags, labels, task_inputs, state_id, state_type,
              state_name, state_timestamp, state, run_count, flow_run_run_count, expected_start_time,
              next_scheduled_start_time, start_time, end_time, total_run_time)
            SELECT t.task_id, t.t_start - interval '50 ms', {state_ts}, 'task-' || t.k || '-' || t.i, t.id,
                   'bench.task_' || t.k || '-' || t.flow_no, '0', NULL, NULL, NULL,
                   '{json.dumps(TASK_POLICY)}'::jsonb, '[]'::jsonb,
                   jsonb_build_object('prefect.flow.id', md5('flow-' || t.flow_no)::uuid::text,
                                      'prefect.flow-run.id', t.id), '{{}}'::jsonb,
                   {state_id}, {state_type}, initcap({state_type}), {state_ts},
                   jsonb_build_object('id', {state_id}, 'type', {state_type}, 'name', initcap({state_type}),
                                      'timestamp', {self.iso(state_ts)}, 'message', NULL, 'data', NULL,
                                      'state_details', {details}),
                   1, 1, t.t_start - interval '50 ms', NULL, t.t_start, t.t_end,
                   COALESCE(extract(epoch FROM t.t_end - t.t_start)::real, 0.0)
            FROM {self._tasks(lo, hi)}"""

    def task_run_states(self, lo: int, hi: int) -> str:
        details = self.details("jsonb_build_object('flow_run_id', t.id, 'task_run_id', t.task_id)")
        return f"""INSERT INTO task_run_state (id, created, task_run_id, type, name, timestamp, message, data,
              state_details)
            SELECT md5('trs-' || t.i || '-' || t.k || '-' || s.k)::uuid::text, s.ts, t.task_id, s.type,
                   initcap(s.type), s.ts, NULL, NULL, {details}
            FROM {self._tasks(lo, hi)}
            CROSS JOIN LATERAL (VALUES (0, 'PENDING', t.t_start - interval '50 ms'), (1, 'RUNNING', t.t_start),
                                       (2, t.task_type, t.t_end)) AS s(k, type, ts)
            WHERE s.ts IS NOT NULL"""

    def artifacts(self, lo: int, hi: int) -> str:
        first = lo + (-lo) % ARTIFACT_EVERY
        when = "COALESCE(r.end_ts, r.start_ts, r.created_ts)"
        return f"""INSERT INTO artifact (id, created, updated, key, type, description, data, metadata_, flow_run_id,
              task_run_id)
            SELECT md5('art-' || r.i)::uuid::text, {when}, {when}, 'report-' || ((r.i / {ARTIFACT_EVERY}) % {ARTIFACT_KEYS}),
                   'markdown', NULL::text, to_jsonb('# Report ' || r.i), NULL::jsonb, r.id, NULL::text
            FROM {self.runs(f"generate_series({first}::bigint, {hi - 1}, {ARTIFACT_EVERY}) i")}
            UNION ALL
            SELECT md5('tart-' || r.i)::uuid::text, {when}, {when}, NULL, 'table', NULL,
                   jsonb_build_array(jsonb_build_object('run', r.i, 'rows', (r.i * 37) % 10000)), NULL, r.id,
                   md5('task-' || r.i || '-0')::uuid::text
            FROM {self.runs(f"generate_series({first}::bigint, {hi - 1}, {ARTIFACT_EVERY}) i")}
            WHERE r.kind <> 'SCHEDULED'"""

    def artifact_collections(self) -> str:
        return """INSERT INTO artifact_collection (id, created, updated, key, latest_id, type, description, data,
              metadata_, flow_run_id, task_run_id)
            SELECT DISTINCT ON (key) md5('collection-' || key)::uuid::text, created, updated, key, id, type,
                   description, data, metadata_, flow_run_id, task_run_id
            FROM artifact WHERE key IS NOT NULL ORDER BY key, created DESC, id DESC"""

    def events(self, lo: int, hi: int) -> str:
        first = lo + (-lo) % EVENT_EVERY
        terminal = ",".join(f"'{k}'" for k in TERMINAL)
        return f"""INSERT INTO event (id, occurred, received, event, resource_id, resource, related, payload, follows)
            SELECT md5('event-' || r.i)::uuid::text, r.end_ts, r.end_ts + interval '1 second',
                   'prefect.flow-run.' || initcap(r.kind), 'prefect.flow-run.' || r.id,
                   jsonb_build_object('prefect.resource.id', 'prefect.flow-run.' || r.id,
                                      'prefect.resource.name', 'run-' || r.i, 'prefect.state-type', r.kind),
                   jsonb_build_array(jsonb_build_object('prefect.resource.id', 'prefect.flow.'
                                     || md5('flow-' || r.flow_no)::uuid::text, 'prefect.resource.role', 'flow')),
                   jsonb_build_object('intended', jsonb_build_object('from', 'RUNNING', 'to', r.kind)), NULL
            FROM {self.runs(f"generate_series({first}::bigint, {hi - 1}, {EVENT_EVERY}) i")}
            WHERE r.kind IN ({terminal})"""

    def flow_run_inputs(self, lo: int, hi: int) -> str:
        first = lo + (-lo) % INPUT_EVERY
        return f"""INSERT INTO flow_run_input (id, created, updated, flow_run_id, key, value, sender)
            SELECT md5('input-' || r.i)::uuid::text, COALESCE(r.start_ts, r.created_ts) + interval '1 second',
                   COALESCE(r.start_ts, r.created_ts) + interval '1 second', r.id, 'paused-1-response',
                   '{{"approved": true, "comment": "ok"}}', NULL
            FROM {self.runs(f"generate_series({first}::bigint, {hi - 1}, {INPUT_EVERY}) i")}"""

    def logs(self, lo: int, hi: int) -> str:
        """Log lines lo..hi-1: line j belongs to run floor(j * n / m), as its k-th line, 100 ms apart;
        two in three lines of a run with task runs are its task runs'. Ids are time-ordered (UUIDv7
        layout), as the server makes them."""
        n, m = self.n, self.m
        source = (f"(SELECT j, j * {n} / {m} AS i, j - ((j * {n} / {m}) * {m} + {n} - 1) / {n} AS k "
                  f"FROM generate_series({lo}::bigint, {hi - 1}) j) src")
        ms = "(extract(epoch FROM l.ts) * 1000)::bigint"
        message = ("CASE l.j % 4 WHEN 0 THEN 'Processed batch ' || l.k || ' (' || (l.j * 37) % 10000 || ' records)' "
                   "WHEN 1 THEN 'Fetching page ' || l.k || ' from upstream API' "
                   "WHEN 2 THEN 'Wrote ' || (l.j * 37) % 10000 || ' rows to warehouse table stage_' || l.k "
                   "ELSE 'Retrying request after transient error (attempt ' || l.k || ')' END")
        return f"""INSERT INTO log (id, created, name, level, message, timestamp, flow_run_id, task_run_id)
            SELECT (lpad(to_hex({ms}), 12, '0') || '7' || substr(md5('log-' || l.j), 1, 3) || '8'
                    || substr(md5('log-' || l.j), 4, 15))::uuid::text,
                   l.ts + interval '200 ms', CASE WHEN l.tid IS NULL THEN 'prefect.flow_runs' ELSE 'prefect.task_runs' END,
                   CASE WHEN l.j % 50 = 0 THEN 40 WHEN l.j % 10 = 1 THEN 30 WHEN l.j % 7 = 0 THEN 10 ELSE 20 END,
                   {message}, l.ts, l.id, l.tid
            FROM (SELECT r.j, r.k, r.id, COALESCE(r.start_ts, r.expected_ts) + r.k * interval '100 ms' AS ts,
                         CASE WHEN r.i % {TASK_EVERY} = 0 AND r.kind <> 'SCHEDULED' AND r.k % 3 <> 0
                              THEN md5('task-' || r.i || '-' || (r.k % {TASKS_PER_RUN}))::uuid::text END AS tid
                  FROM {self.runs(source, "j, k,")}) l"""


def secondary_indexes(cur, tables) -> list[tuple[str, str]]:
    cur.execute(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i JOIN pg_class c ON c.relname = i.indexname "
        "JOIN pg_index x ON x.indexrelid = c.oid WHERE i.schemaname = 'public' AND i.tablename = ANY(%s) "
        "AND NOT x.indisprimary ORDER BY i.tablename, i.indexname", (list(tables),))
    return cur.fetchall()


def seed(url: str, runs: int, logs: int, fraction: float, jobs: int, timeout_s: float = 3600) -> dict:
    """Seed the migrated database ``url``; returns timings and row counts. No statement runs
    longer than ``timeout_s``."""
    t0 = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    plan = Seed(runs, logs, fraction, t0)
    timings: dict[str, float] = {}
    rows: dict[str, int] = {}
    started = time.monotonic()
    session = ["SET synchronous_commit = off", "SET work_mem = '64MB'", "SET session_replication_role = replica",
               "SET jit = off", f"SET statement_timeout = '{max(1, int(timeout_s))}s'"]
    with contextlib.closing(pg_connect(url)) as conn, conn.cursor() as cur:
        indexes = secondary_indexes(cur, BULK_TABLES)
        for name, _sql in indexes:
            cur.execute(f'DROP INDEX "{name}"')
        for sql in session:
            cur.execute(sql)
        cur.execute(plan.flows())

    # Chunks of every table, the log chunks in time order; a pool of connections works through them.
    run_chunk = max(10_000, runs // 20)
    log_chunk = max(50_000, logs // 100)
    work: list[tuple[str, str]] = []
    for lo in range(0, runs, run_chunk):
        hi = min(runs, lo + run_chunk)
        work += [("flow_run", plan.flow_runs(lo, hi)), ("flow_run_state", plan.flow_run_states(lo, hi)),
                 ("task_run", plan.task_runs(lo, hi)), ("task_run_state", plan.task_run_states(lo, hi)),
                 ("artifact", plan.artifacts(lo, hi)), ("event", plan.events(lo, hi)),
                 ("flow_run_input", plan.flow_run_inputs(lo, hi))]
    work += [("log", plan.logs(lo, min(logs, lo + log_chunk))) for lo in range(0, logs, log_chunk)]
    local = threading.local()
    lock = threading.Lock()
    progress = {"log": 0}
    conns = []

    def run(item):
        table, sql = item
        if not hasattr(local, "conn"):
            local.conn = pg_connect(url)
            with lock:
                conns.append(local.conn)
            with local.conn.cursor() as c:
                for statement in session:
                    c.execute(statement)
        began = time.monotonic()
        with local.conn.cursor() as c:
            c.execute(sql)
            count = c.rowcount
        with lock:
            rows[table] = rows.get(table, 0) + count
            timings[f"{table}_s"] = round(timings.get(f"{table}_s", 0) + time.monotonic() - began, 1)
            if table == "log":
                progress["log"] += count
                if progress["log"] * 10 // max(logs, 1) != (progress["log"] - count) * 10 // max(logs, 1):
                    log(f"  seed: {progress['log']:,} / {logs:,} log lines ({time.monotonic() - started:.0f} s)")

    began = time.monotonic()
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for future in [pool.submit(run, item) for item in work]:
                future.result()
    finally:
        for conn in conns:
            conn.close()
    timings["insert_s"] = round(time.monotonic() - began, 1)
    log(f"  seed: rows inserted in {timings['insert_s']} s: {rows}")

    with contextlib.closing(pg_connect(url)) as conn, conn.cursor() as cur:
        cur.execute("SET maintenance_work_mem = '512MB'")
        cur.execute(f"SET statement_timeout = '{max(1, int(timeout_s))}s'")
        cur.execute(plan.artifact_collections())
        rows["artifact_collection"] = cur.rowcount
        began = time.monotonic()
        for name, sql in indexes:  # CREATE INDEX runs parallel workers on the big tables
            t = time.monotonic()
            cur.execute(sql)
            if time.monotonic() - t > 5:
                log(f"  seed: index {name} in {time.monotonic() - t:.0f} s")
        timings["indexes_s"] = round(time.monotonic() - began, 1)
        began = time.monotonic()
        cur.execute(f"VACUUM (ANALYZE) {', '.join(t for t in BULK_TABLES if t != 'log')}, flow")
        cur.execute("ANALYZE log")
        timings["analyze_s"] = round(time.monotonic() - began, 1)
        cur.execute("SELECT pg_database_size(current_database()), pg_total_relation_size('log')")
        size, log_size = cur.fetchone()
    seconds = round(time.monotonic() - started, 1)
    return {"seconds": seconds, "timings": timings, "rows": rows, "db_bytes": size, "log_bytes": log_size,
            "seeded_at": t0.isoformat() + "Z", "old_runs": plan.old}


# --- table statistics -------------------------------------------------------------------------


def table_stats(conn) -> dict[str, dict[str, int]]:
    with conn.cursor() as cur:
        cur.execute("SELECT relname, seq_scan, COALESCE(idx_scan, 0), n_tup_del FROM pg_stat_user_tables "
                    "WHERE schemaname = 'public' AND relname = ANY(%s)", (list(PRUNED_TABLES),))
        return {name: {"seq_scan": s, "idx_scan": i, "n_tup_del": d} for name, s, i, d in cur.fetchall()}


def stats_delta(before: dict, after: dict, key: str) -> dict[str, int]:
    return {t: after.get(t, {}).get(key, 0) - before.get(t, {}).get(key, 0) for t in PRUNED_TABLES}


# --- the live appliance -----------------------------------------------------------------------


class Server:
    def __init__(self, env: dict, logfile: Path):
        self.port = free_port()
        self.env, self.logfile, self.proc = env, logfile, None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self, timeout: float = 180) -> float:
        import httpx

        began = time.monotonic()
        out = open(self.logfile, "ab")  # noqa: SIM115 - the server's output, closed with the process
        self.proc = subprocess.Popen([str(BIN / "appliance"), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                                     env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        while time.monotonic() - began < timeout:
            if self.proc.poll() is not None:
                raise SystemExit(f"the appliance exited at start; see {self.logfile}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return time.monotonic() - began
            time.sleep(0.1)
        raise SystemExit(f"the appliance is not healthy after {timeout} s; see {self.logfile}")

    def stop(self) -> None:
        stop_group(self.proc)


def stop_group(proc: subprocess.Popen | None, grace: float = 20) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


# --- load workers (subprocesses: `retention_bench.py _load w1|w4 ...`) --------------------------


class Paced:
    """A steady rate: the k-th action of a client starts at start + k / rate (no catch-up burst
    when one runs late)."""

    def __init__(self, rate: float):
        self.period = 1.0 / rate if rate > 0 else 0.0
        self.next = time.monotonic()

    async def wait(self) -> None:
        if self.period:
            delay = self.next - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.next = max(self.next + self.period, time.monotonic())


def _should_stop(args, began: float) -> bool:
    if time.monotonic() - began >= args.seconds:
        return True
    return bool(args.stop_file) and Path(args.stop_file).exists()


async def load_w1(lg, args) -> dict:
    """loadgen W1's lifecycle (same requests, same checks), paced, until told to stop."""
    api = lg.Api(args.url, None, conns=max(4, args.clients * 2))
    runid = uuid.uuid4().hex[:8]
    completed = 0
    began = time.monotonic()
    try:
        flow_id = await lg.make_flow(api, f"bench-retention-w1-{runid}")

        async def lifecycle(cid: int, i: int) -> None:
            nonlocal completed
            fr = await api.json("create_flow_run", "POST", "/flow_runs/", {
                "flow_id": flow_id, "name": f"w1-{runid}-{cid}-{i}", "parameters": {"i": i}, "tags": ["bench", "w1"],
                "state": {"type": "SCHEDULED", "name": "Scheduled", "state_details": {"scheduled_time": lg.now_iso()}},
            }, expect=(201,))
            if fr.get("state_type") != "SCHEDULED":
                api.fail("create_flow_run", f"state_type {fr.get('state_type')}")
                raise lg.RequestFailed("create_flow_run")
            for st in ("PENDING", "RUNNING", "COMPLETED"):
                res = await api.json("set_state", "POST", f"/flow_runs/{fr['id']}/set_state",
                                     {"state": {"type": st, "name": st.capitalize()}, "force": False})
                if res.get("status") != "ACCEPT" or res.get("state", {}).get("type") != st:
                    api.fail("set_state", f"{st}: {json.dumps(res)[:300]}")
                    raise lg.RequestFailed("set_state")
            completed += 1

        async def client(cid: int) -> None:
            pace = Paced(args.rate / args.clients if args.rate else 0)
            i = 0
            while not _should_stop(args, began):
                await pace.wait()
                with contextlib.suppress(lg.RequestFailed):
                    await lifecycle(cid, i)
                i += 1

        await asyncio.gather(*(client(c) for c in range(args.clients)))
        wall = time.monotonic() - began
        n_done = await lg.count(api, "/flow_runs/count", {
            "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}, "flows": {"id": {"any_": [flow_id]}}})
        if n_done != completed:
            api.fail("verify", f"server has {n_done} COMPLETED runs of the flow, expected {completed}")
        all_lat = [x for v in api.lat.values() for x in v]
        return {"workload": "w1", "ok": api.errors == 0 and completed > 0, "errors": api.errors,
                "error_samples": api.error_samples, "verify": {"server_completed": n_done, "expected": completed},
                "results": {"runs": completed, "runs_per_s": round(completed / wall, 2), "wall_s": round(wall, 1),
                            "latency_all": lg.summarize(all_lat),
                            "latency_create_flow_run": lg.summarize(api.lat.get("create_flow_run", [])),
                            "latency_set_state": lg.summarize(api.lat.get("set_state", [])),
                            "retries": dict(api.retries)}}
    except lg.RequestFailed:
        return {"workload": "w1", "ok": False, "errors": api.errors, "error_samples": api.error_samples}
    finally:
        await api.close()


async def load_w4(lg, args) -> dict:
    """loadgen W4's eight reads (same bodies), round-robin, paced, until told to stop. Each
    response is checked for shape, sort order and filter semantics; counts only for being
    counts (the prune and W1 change them while this runs)."""
    api = lg.Api(args.url, None, conns=2)
    began = time.monotonic()
    try:
        total_fr = await lg.count(api, "/flow_runs/count", {})
        like, st_any = args.like, {"state": {"type": {"any_": ["FAILED"]}}}
        name_f = {"name": {"like_": like}}

        def fr_check(full: bool, name_sub=None, stype=None):
            def check(rows):
                if not isinstance(rows, list) or len(rows) > 50 or (full and len(rows) != 50):
                    return f"{len(rows) if isinstance(rows, list) else rows!r} rows"
                ts = [r.get("expected_start_time") or "" for r in rows]
                if any(a < b for a, b in zip(ts, ts[1:], strict=False)):
                    return "not sorted by expected_start_time desc"
                for r in rows:
                    if name_sub and name_sub.lower() not in r["name"].lower():
                        return f"name {r['name']} does not match {name_sub}"
                    if stype and r.get("state_type") != stype:
                        return f"state_type {r.get('state_type')} != {stype}"
                return None
            return check

        def is_count(v):
            return None if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else f"count {v!r}"

        base = {"limit": 50, "offset": 0, "sort": "EXPECTED_START_TIME_DESC"}
        full = total_fr >= 10_000  # the seeded database: every unfiltered / state page is full
        queries = [
            ("flow_runs_filter", "/flow_runs/filter", dict(base), fr_check(full)),
            ("flow_runs_filter_name", "/flow_runs/filter", {**base, "flow_runs": name_f}, fr_check(False, like)),
            ("flow_runs_filter_state", "/flow_runs/filter", {**base, "flow_runs": st_any},
             fr_check(full, None, "FAILED")),
            ("flow_runs_filter_name_state", "/flow_runs/filter", {**base, "flow_runs": {**name_f, **st_any}},
             fr_check(False, like, "FAILED")),
            ("flow_runs_count", "/flow_runs/count", {}, is_count),
            ("flow_runs_count_state", "/flow_runs/count", {"flow_runs": st_any}, is_count),
            ("task_runs_filter", "/task_runs/filter", dict(base), fr_check(full)),
            ("task_runs_filter_state", "/task_runs/filter",
             {**base, "task_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}}, fr_check(full, None, "COMPLETED")),
        ]
        for _rep in range(args.warmup):
            for name, path, body, _check in queries:
                await api.json(name, "POST", path, body, expect=(200,), record=False)
        pace = Paced(args.rate)
        reps = 0
        while not _should_stop(args, began) or reps == 0:
            for name, path, body, check in queries:
                await pace.wait()
                try:
                    value = await api.json(name, "POST", path, body, expect=(200,))
                except lg.RequestFailed:
                    continue
                problem = check(value)
                if problem:
                    api.fail(name, problem)
            reps += 1
        all_lat = [x for v in api.lat.values() for x in v]
        results = {name: lg.summarize(api.lat.get(name, [])) for name, *_ in queries}
        results.update(latency_all=lg.summarize(all_lat), rounds=reps, wall_s=round(time.monotonic() - began, 1),
                       retries=dict(api.retries))
        return {"workload": "w4", "ok": api.errors == 0, "errors": api.errors, "error_samples": api.error_samples,
                "verify": {"flow_runs_at_start": total_fr}, "results": results}
    except lg.RequestFailed:
        return {"workload": "w4", "ok": False, "errors": api.errors, "error_samples": api.error_samples}
    finally:
        await api.close()


def load_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="retention_bench.py _load")
    parser.add_argument("workload", choices=("w1", "w4"))
    parser.add_argument("--url", required=True)
    parser.add_argument("--loadgen", type=Path, default=DEFAULT_LOADGEN)
    parser.add_argument("--seconds", type=float, required=True, help="stop after this long at the latest")
    parser.add_argument("--stop-file", help="stop as soon as this file exists")
    parser.add_argument("--rate", type=float, default=4.0, help="W1 lifecycles / W4 requests per second (0: no pause)")
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--like", default="amber-fox")
    args = parser.parse_args(argv)
    lg = load_loadgen(args.loadgen)
    result = asyncio.run(load_w1(lg, args) if args.workload == "w1" else load_w4(lg, args))
    if not result["ok"]:
        result.pop("results", None)
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


# --- the prune, with every statement EXPLAINed (`retention_bench.py _prune OUT -- CLI ARGS`) --------


class PlanCollector:
    """psycopg2's notice list of each prune connection: auto_explain sends every statement's plan
    back as a NOTICE (PGOPTIONS of the prune process); this counts the statements and the
    sequential scans in their plans, per table."""

    SEQ = re.compile(r"Seq Scan on (\w+)")

    def __init__(self):
        self.statements = 0
        self.seq_scans: dict[str, int] = {}
        self.samples: list[str] = []
        self.max_ms = 0.0
        self.slowest = ""
        self.durations: list[float] = []

    def append(self, notice: str) -> None:
        if "plan:" not in notice:
            return
        self.statements += 1
        match = re.search(r"duration: ([\d.]+) ms", notice)
        ms = float(match[1]) if match else 0.0
        self.durations.append(ms)
        if ms > self.max_ms:
            self.max_ms, self.slowest = ms, self.short(notice)
        for table in self.SEQ.findall(notice):
            self.seq_scans[table] = self.seq_scans.get(table, 0) + 1
            if table in LARGE_TABLES and len(self.samples) < 5:
                self.samples.append(self.short(notice))

    @staticmethod
    def short(notice: str) -> str:
        """The statement's first 300 characters (its parent id lists are long) and its whole plan."""
        lines = notice.splitlines()
        start = next((k for k, line in enumerate(lines) if line.startswith("Query Text:")), 0)
        plan = next((k for k in range(start + 1, len(lines)) if "(cost=" in lines[k]), len(lines))
        return "\n".join([lines[0], " ".join(lines[start:plan])[:300] + " ...", *lines[plan:]])[:3000]

    def summary(self) -> dict:
        d = sorted(self.durations)
        pick = (lambda q: round(d[min(len(d) - 1, int(q * len(d)))], 2)) if d else (lambda q: None)
        return {"statements": self.statements, "seq_scans": self.seq_scans,
                "seq_scans_on_large_tables": {t: n for t, n in self.seq_scans.items() if t in LARGE_TABLES},
                "samples": self.samples, "statement_ms": {"p50": pick(0.5), "p99": pick(0.99), "max": pick(1.0)},
                "slowest": self.slowest}


def prune_main(argv: list[str]) -> int:
    out, cli_args = argv[0], argv[argv.index("--") + 1:]
    import psycopg2

    collector = PlanCollector()
    connect = psycopg2.connect

    def connect_collecting(*args, **kwargs):
        conn = connect(*args, **kwargs)
        conn.notices = collector
        return conn

    psycopg2.connect = connect_collecting
    sys.path.insert(0, str(REPO))
    from appliance.cli import main as cli_main

    try:
        return cli_main(cli_args)
    finally:
        Path(out).write_text(json.dumps(collector.summary()))


# --- the benchmark --------------------------------------------------------------------------------


class Bench:
    def __init__(self, args):
        self.args = args
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
        self.out = Path(args.out) if args.out else REPO / ".bench" / f"retention-{stamp}"
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix="retention-bench-"))
        self.name = f"{DB_PREFIX}{uuid.uuid4().hex[:10]}"
        self.url = db_url(args.dsn, self.name)
        self.lines: list[dict] = []
        self.procs: list[subprocess.Popen] = []
        self.deadline = time.monotonic() + args.max_minutes * 60
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLIANCE_", "PREFECT_"))}
        self.env.update(APPLIANCE_DATABASE_URL=self.url, APPLIANCE_HOME=str(self.work / "home"),
                        APPLIANCE_SECRET_KEY=BENCH_KEY, APPLIANCE_RETENTION_FLOW_RUNS="off",
                        APPLIANCE_RETENTION_EVENTS="off", APPLIANCE_RETENTION_NOTIFICATIONS="off",
                        APPLIANCE_RETENTION_WORKERS="off", PYTHONUNBUFFERED="1")
        (self.work / "home").mkdir()

    def emit(self, line: dict) -> dict:
        line = {"bench": line.pop("bench"), **line, "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        self.lines.append(line)
        with open(self.out / "results.jsonl", "a") as fh:
            fh.write(json.dumps(line) + "\n")
        return line

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def check_time(self, what: str) -> None:
        if self.remaining() <= 0:
            raise TimeoutError(f"--max-minutes {self.args.max_minutes} reached before {what}")

    # -- steps --

    def create(self) -> None:
        pg_admin(self.args.dsn, f'CREATE DATABASE "{self.name}"')
        log(f"database {self.name}; migrating")
        proc = subprocess.run([str(BIN / "appliance"), "database", "upgrade", "-y"], env=self.env,
                              capture_output=True, text=True, timeout=300)
        if proc.returncode:
            raise SystemExit(f"migration failed: {proc.stderr[-2000:]}")

    def seed(self) -> dict:
        a = self.args
        log(f"seeding {a.runs:,} flow runs and {a.logs:,} log lines ({a.seed_jobs} connections)")
        result = seed(self.url, a.runs, a.logs, a.fraction, a.seed_jobs, timeout_s=self.remaining())
        log(f"seeded in {result['seconds']} s ({result['db_bytes'] / 2**30:.2f} GiB, log table "
            f"{result['log_bytes'] / 2**30:.2f} GiB): {json.dumps(result['timings'])}")
        return self.emit({"bench": "retention-seed", "ok": True, "runs": a.runs, "logs": a.logs, **result})

    def start_load(self, server: Server, seconds: float, stop_file: Path) -> list[subprocess.Popen]:
        a = self.args
        common = ["--url", server.url, "--loadgen", str(a.loadgen), "--seconds", str(seconds),
                  "--stop-file", str(stop_file)]
        commands = [
            [sys.executable, __file__, "_load", "w1", *common, "--rate", str(a.w1_rate), "--clients", str(a.w1_clients)],
            [sys.executable, __file__, "_load", "w4", *common, "--rate", str(a.w4_rate)],
        ]
        procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=open(self.out / "load.log", "ab"),  # noqa: SIM115
                                  text=True, start_new_session=True) for c in commands]
        self.procs += procs
        return procs

    def finish_load(self, procs, phase: str, timeout: float) -> dict[str, dict]:
        lines = {}
        for workload, proc in zip(("w1", "w4"), procs, strict=True):
            try:
                stdout, _ = proc.communicate(timeout=timeout)
                text = stdout.strip().splitlines()
                line = json.loads(text[-1]) if text else {"ok": False, "error": "no output (see load.log)"}
            except subprocess.TimeoutExpired:
                stop_group(proc)
                line = {"ok": False, "error": "the load worker did not stop"}
            except json.JSONDecodeError as exc:
                line = {"ok": False, "error": f"bad output: {exc}"}
            line.update(workload=workload, phase=phase)
            lines[workload] = self.emit({"bench": "retention-load", **line})
            if not line.get("ok"):
                log(f"  {workload} {phase}: NOT OK: {json.dumps(line)[:600]}")
        return lines

    def warm(self, server: Server) -> None:
        """The same load, not recorded: the server's and the database's caches warm up first."""
        a = self.args
        if a.warmup_seconds <= 0:
            return
        log(f"warm-up: the load for {a.warmup_seconds} s (not recorded)")
        for proc in self.start_load(server, a.warmup_seconds, self.work / "never"):
            try:
                proc.communicate(timeout=a.warmup_seconds + 120)
            except subprocess.TimeoutExpired:
                stop_group(proc)

    def idle(self, server: Server, stats_conn) -> tuple[dict, dict]:
        a = self.args
        log(f"idle phase: W1 at {a.w1_rate}/s ({a.w1_clients} clients) and W4 at {a.w4_rate}/s for {a.idle_seconds} s")
        before = table_stats(stats_conn)
        procs = self.start_load(server, a.idle_seconds, self.work / "never")
        lines = self.finish_load(procs, "idle", a.idle_seconds + 120)
        time.sleep(a.settle)
        after = table_stats(stats_conn)
        return lines, {"seq_scan": stats_delta(before, after, "seq_scan"), "n_tup_del": stats_delta(before, after, "n_tup_del"),
                       "seconds": a.idle_seconds}

    def prune(self, server: Server, stats_conn) -> tuple[dict, dict, dict]:
        a = self.args
        stop_file = self.work / "stop-load"
        before = table_stats(stats_conn)
        budget = max(60.0, self.remaining())
        procs = self.start_load(server, budget, stop_file)
        time.sleep(a.lead_seconds)  # the load is running before the prune starts
        explain_out = self.work / "explain.json"
        env = dict(self.env)
        if a.batch_size:
            env["APPLIANCE_RETENTION_BATCH_SIZE"] = str(a.batch_size)
        if a.child_batch_size:
            env["APPLIANCE_RETENTION_CHILD_BATCH_SIZE"] = str(a.child_batch_size)
        if a.pause is not None:
            env["APPLIANCE_RETENTION_PAUSE_SECONDS"] = str(a.pause)
        if a.explain:
            env["PGOPTIONS"] = " ".join([env.get("PGOPTIONS", ""), "-c session_preload_libraries=auto_explain",
                                         "-c auto_explain.log_min_duration=0", "-c auto_explain.log_level=notice",
                                         "-c client_min_messages=notice"]).strip()
        command = [sys.executable, __file__, "_prune", str(explain_out), "--", "database", "prune", "--kind",
                   "flow_runs", "--older-than", OLDER_THAN, "--json"]
        log(f"prune phase: appliance database prune --kind flow_runs --older-than {OLDER_THAN} under the same load")
        began = time.monotonic()
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        self.procs.append(proc)
        samples = [(0.0, before)]
        next_tick = began + a.interval
        timed_out = False
        while proc.poll() is None:
            time.sleep(max(0.0, min(0.25, next_tick - time.monotonic())))
            if time.monotonic() >= self.deadline:
                timed_out = True
                log("  --max-minutes reached: stopping the prune")
                stop_group(proc)
                break
            if proc.poll() is None and time.monotonic() >= next_tick:
                samples.append((time.monotonic() - began, table_stats(stats_conn)))
                deleted = sum(stats_delta(samples[-2][1], samples[-1][1], "n_tup_del").values())
                log(f"  t={samples[-1][0]:6.1f} s: {deleted / a.interval:,.0f} rows/s")
                next_tick += a.interval
        seconds = time.monotonic() - began
        stdout, stderr = proc.communicate()
        stop_file.touch()
        lines = self.finish_load(procs, "prune", 180)
        time.sleep(a.settle)  # backends report their counters within seconds of going idle
        after = table_stats(stats_conn)
        samples.append((seconds, after))
        try:
            report = json.loads(stdout.strip().splitlines()[-1])
            deleted = report["kinds"]["flow_runs"]["rows"]
        except (IndexError, KeyError, json.JSONDecodeError):
            report, deleted = None, {}
        explain = json.loads(explain_out.read_text()) if explain_out.exists() else None
        prune_line = self.rate_line(samples, seconds, deleted, report, proc.returncode, stderr, timed_out)
        seq = {"seq_scan": stats_delta(before, after, "seq_scan"), "idx_scan": stats_delta(before, after, "idx_scan"),
               "n_tup_del": stats_delta(before, after, "n_tup_del"), "seconds": round(seconds, 1), "explain": explain}
        return lines, prune_line, seq

    def rate_line(self, samples, seconds, deleted, report, returncode, stderr, timed_out) -> dict:
        a = self.args
        intervals = []
        for (t1, s1), (t2, s2) in zip(samples, samples[1:], strict=False):
            if t2 - t1 <= 0:
                continue
            delta = stats_delta(s1, s2, "n_tup_del")
            intervals.append({"t_s": round(t2, 1), "rows_per_s": round(sum(delta.values()) / (t2 - t1)),
                              "runs_per_s": round(delta["flow_run"] / (t2 - t1)),
                              "logs_per_s": round(delta["log"] / (t2 - t1)), "partial": t2 - t1 < 0.9 * a.interval})
        # Steadiness over the whole intervals of the deleting itself: from the first interval that
        # deleted anything (before it: the CLI's start-up) to the last whole one.
        first_active = next((k for k, x in enumerate(intervals) if x["rows_per_s"]), len(intervals))
        full = [x["rows_per_s"] for x in intervals[first_active:] if not x["partial"]]
        startup_s = intervals[first_active - 1]["t_s"] if first_active else 0.0
        expected = expected_deletions(a.runs, a.logs, a.fraction)
        total = sum(deleted.values()) if deleted else 0
        steady = None
        if len(full) >= 4:
            quarter = max(1, len(full) // 4)
            first, last = statistics.fmean(full[:quarter]), statistics.fmean(full[-quarter:])
            steady = {"median_rows_per_s": round(statistics.median(full)), "min_rows_per_s": min(full),
                      "max_rows_per_s": max(full), "first_quarter_rows_per_s": round(first),
                      "last_quarter_rows_per_s": round(last),
                      "last_over_first": round(last / first, 2) if first else None,
                      "cv": round(statistics.pstdev(full) / statistics.fmean(full), 2) if statistics.fmean(full) else None,
                      "whole_intervals": len(full), "steady": bool(first) and last / first >= 0.5}
        matches = bool(deleted) and all(deleted.get(t, 0) == n for t, n in expected.items())
        line = {"bench": "retention-prune", "ok": returncode == 0 and not timed_out and matches,
                "older_than": OLDER_THAN, "seconds": round(seconds, 1), "deleted": deleted, "expected": expected,
                "deleted_matches_expected": matches, "rows_total": total,
                "rows_per_s": round(total / seconds) if seconds else None,
                "runs_per_s": round(deleted.get("flow_run", 0) / seconds, 1) if seconds else None,
                "fraction_of_runs": round(deleted.get("flow_run", 0) / a.runs, 4),
                "fraction_of_logs": round(deleted.get("log", 0) / a.logs, 4) if a.logs else None,
                "interval_s": a.interval, "intervals": intervals, "startup_s": startup_s, "steady": steady,
                "batch_size": a.batch_size or "default", "child_batch_size": a.child_batch_size or "default",
                "pause_s": a.pause if a.pause is not None else "default",
                "returncode": returncode, "timed_out": timed_out, "cutoff": report and report["kinds"]["flow_runs"]["cutoff"]}
        if returncode or not report:
            line["stderr"] = stderr[-2000:]
        return self.emit(line)

    def seq_line(self, idle_seq: dict, prune_seq: dict) -> dict:
        explain = prune_seq.get("explain") or {}
        log_grew = prune_seq["seq_scan"].get("log", 0)
        large_in_plans = explain.get("seq_scans_on_large_tables", {})
        ok = log_grew == 0 and not large_in_plans.get("log") and (not self.args.explain or explain.get("statements", 0) > 0)
        return self.emit({
            "bench": "retention-seqscan", "ok": ok,
            "log_seq_scans_during_prune": log_grew,
            "seq_scan_idle": idle_seq["seq_scan"], "seq_scan_prune": prune_seq["seq_scan"],
            "idx_scan_prune": prune_seq["idx_scan"],
            "idle_seconds": idle_seq["seconds"], "prune_seconds": prune_seq["seconds"],
            "prune_statements_explained": explain.get("statements"),
            "prune_plan_seq_scans": explain.get("seq_scans"),
            "prune_plan_seq_scans_on_large_tables": large_in_plans,
            "prune_plan_samples": explain.get("samples"),
            "prune_statement_ms": explain.get("statement_ms"),
            "prune_slowest_statement": explain.get("slowest"),
        })

    def latency_line(self, idle: dict, prune: dict) -> dict:
        rows = {}
        ok = True
        for workload in ("w1", "w4"):
            i, p = idle[workload], prune[workload]
            if not (i.get("ok") and p.get("ok")):
                ok = False
                rows[workload] = {"idle_ok": bool(i.get("ok")), "prune_ok": bool(p.get("ok"))}
                continue
            li, lp = i["results"]["latency_all"], p["results"]["latency_all"]
            ratio = round(lp["p99_ms"] / li["p99_ms"], 2) if li.get("p99_ms") else None
            per_request = {}  # each request kind on its own (W4: each query; W1: create, set_state)
            for name, idle_lat in i["results"].items():
                prune_lat = p["results"].get(name)
                if name == "latency_all" or not isinstance(idle_lat, dict) or not idle_lat.get("p99_ms") or \
                        not isinstance(prune_lat, dict) or not prune_lat.get("p99_ms"):
                    continue
                per_request[name.removeprefix("latency_")] = {
                    "idle_p99_ms": idle_lat["p99_ms"], "prune_p99_ms": prune_lat["p99_ms"],
                    "p99_ratio": round(prune_lat["p99_ms"] / idle_lat["p99_ms"], 2)}
            worst = max(per_request.items(), key=lambda kv: kv[1]["p99_ratio"], default=(None, {}))
            rows[workload] = {"idle_p50_ms": li["p50_ms"], "idle_p99_ms": li["p99_ms"], "idle_n": li["n"],
                              "prune_p50_ms": lp["p50_ms"], "prune_p99_ms": lp["p99_ms"], "prune_n": lp["n"],
                              "p50_ratio": round(lp["p50_ms"] / li["p50_ms"], 2) if li.get("p50_ms") else None,
                              "p99_ratio": ratio, "target_met": ratio is not None and ratio <= TARGET_RATIO,
                              "per_request": per_request, "worst_request": worst[0],
                              "worst_request_p99_ratio": worst[1].get("p99_ratio")}
        return self.emit({"bench": "retention-latency", "ok": ok, "target_ratio": TARGET_RATIO, **rows,
                          "target_met": ok and all(r.get("target_met") for r in rows.values())})

    def table(self, seed_line, prune_line, seq_line, lat_line) -> str:
        a = self.args
        out = [f"## Retention at scale ({a.runs:,} runs, {a.logs:,} logs, PostgreSQL)", "",
               "| figure | value | target | met |", "| --- | --- | --- | --- |"]

        def row(name, value, target="", met=""):
            out.append(f"| {name} | {value} | {target} | {met} |")

        if seed_line:
            row("seed time", f"{seed_line['seconds']} s ({seed_line['db_bytes'] / 2**30:.2f} GiB)")
        if prune_line:
            d = prune_line["deleted"]
            row("prune: runs deleted", f"{d.get('flow_run', 0):,} ({prune_line['fraction_of_runs']:.1%} of runs)",
                f"{prune_line['expected']['flow_run']:,}", "yes" if prune_line["deleted_matches_expected"] else "NO")
            row("prune: rows deleted", ", ".join(f"{t} {n:,}" for t, n in d.items() if n) or "-")
            row("prune: wall time", f"{prune_line['seconds']} s")
            row("prune: rows/s overall", f"{prune_line['rows_per_s']:,} ({prune_line['runs_per_s']} runs/s)")
            if prune_line["steady"]:
                s = prune_line["steady"]
                row(f"prune: rows/s per {a.interval:g} s (min / median / max)",
                    f"{s['min_rows_per_s']:,} / {s['median_rows_per_s']:,} / {s['max_rows_per_s']:,}")
                row("prune: last quarter / first quarter (variation)", f"{s['last_over_first']} (cv {s['cv']})",
                    ">= 0.5 (steady)", "yes" if s["steady"] else "NO")
            else:
                row(f"prune: rows/s per {a.interval:g} s", ", ".join(f"{x['rows_per_s']:,}" for x in prune_line["intervals"]),
                    "", "too few intervals to judge")
        if seq_line:
            row("seq scans of log during the prune", seq_line["log_seq_scans_during_prune"], "0",
                "yes" if seq_line["log_seq_scans_during_prune"] == 0 else "NO")
            large = seq_line["prune_plan_seq_scans_on_large_tables"]
            if seq_line["prune_statements_explained"] is not None:
                row("prune statements explained / with a seq scan of a large table",
                    f"{seq_line['prune_statements_explained']:,} / {large or 0}", "0",
                    "yes" if not large else "NO")
            for t in ("task_run", "task_run_state", "flow_run_state", "flow_run"):
                row(f"seq_scan {t}: idle phase / prune phase",
                    f"{seq_line['seq_scan_idle'].get(t, 0)} / {seq_line['seq_scan_prune'].get(t, 0)}")
        if lat_line:
            for w in ("w1", "w4"):
                r = lat_line.get(w, {})
                if "p99_ratio" in r:
                    few = " (fewer than 100 requests under pruning: its p99 is about the max)" if r["prune_n"] < 100 else ""
                    row(f"{w.upper()} p99 idle -> pruning", f"{r['idle_p99_ms']} -> {r['prune_p99_ms']} ms "
                        f"(x{r['p99_ratio']}; p50 {r['idle_p50_ms']} -> {r['prune_p50_ms']} ms; "
                        f"{r['idle_n']} / {r['prune_n']} requests){few}",
                        f"<= x{TARGET_RATIO:g}", "yes" if r["target_met"] else "NOT met")
                    if r.get("worst_request"):
                        worst = r["per_request"][r["worst_request"]]
                        row(f"{w.upper()} worst single request kind ({r['worst_request']}) p99",
                            f"{worst['idle_p99_ms']} -> {worst['prune_p99_ms']} ms (x{worst['p99_ratio']})",
                            f"(<= x{TARGET_RATIO:g})", "yes" if worst["p99_ratio"] <= TARGET_RATIO else "no")
                else:
                    row(f"{w.upper()} latency", f"load not ok: {r}", f"<= x{TARGET_RATIO:g}", "NO")
        return "\n".join(out) + "\n"

    def run(self) -> int:
        a = self.args
        seed_line = prune_line = seq_line = lat_line = None
        server = None
        stats_conn = None
        try:
            self.create()
            seed_line = self.seed()
            self.check_time("the server start")
            server = Server(self.env, self.out / "appliance.log")
            log(f"appliance up in {server.start():.1f} s at {server.url}")
            stats_conn = pg_connect(self.url)
            with stats_conn.cursor() as cur:
                cur.execute("SHOW autovacuum")
                autovacuum = cur.fetchone()[0]
            self.emit({"bench": "retention-setup", "ok": True, "autovacuum": autovacuum, "database": self.name,
                       "w1_rate": a.w1_rate, "w1_clients": a.w1_clients, "w4_rate": a.w4_rate,
                       "idle_seconds": a.idle_seconds, "host_cores": os.cpu_count(),
                       "loadavg": [round(x, 2) for x in os.getloadavg()]})
            self.warm(server)
            idle_lines, idle_seq = self.idle(server, stats_conn)
            self.check_time("the prune")
            prune_lines, prune_line, prune_seq = self.prune(server, stats_conn)
            seq_line = self.seq_line(idle_seq, prune_seq)
            lat_line = self.latency_line(idle_lines, prune_lines)
        finally:
            for proc in self.procs:
                stop_group(proc)
            if server:
                server.stop()
            if stats_conn:
                stats_conn.close()
            if a.keep:
                log(f"kept the database {self.name} ({self.url})")
            else:
                with contextlib.suppress(Exception):
                    pg_admin(a.dsn, f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        table = self.table(seed_line, prune_line, seq_line, lat_line)
        (self.out / "table.md").write_text(table)
        print(table)
        ok = all(line and line["ok"] for line in (seed_line, prune_line, seq_line, lat_line))
        self.emit({"bench": "retention-summary", "ok": ok, "latency_target_met": bool(lat_line and lat_line["target_met"]),
                   "out": str(self.out)})
        log(f"results: {self.out / 'results.jsonl'}")
        return 0 if ok else 1


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_load"]:
        return load_main(argv[1:])
    if argv[:1] == ["_prune"]:
        return prune_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1_000_000, help="flow runs to seed (default 1,000,000)")
    parser.add_argument("--logs", type=int, default=50_000_000, help="log lines to seed (default 50,000,000)")
    parser.add_argument("--fraction", type=float, default=0.10, help="share of the runs past the cut-off (0.10)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--out", help="directory for results.jsonl and table.md (default .bench/retention-<stamp>)")
    parser.add_argument("--dsn", default=DEFAULT_DSN,
                        help="PostgreSQL admin URL; the benchmark's database is created beside it")
    parser.add_argument("--loadgen", type=Path, default=DEFAULT_LOADGEN)
    parser.add_argument("--seed-jobs", type=int, default=2, help="connections inserting in parallel")
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="length of the idle (no prune) phase")
    parser.add_argument("--warmup-seconds", type=float, default=20.0, help="unrecorded load before the idle phase")
    parser.add_argument("--lead-seconds", type=float, default=1.0, help="load before the prune starts")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between prune-rate samples")
    parser.add_argument("--settle", type=float, default=11.0,
                        help="wait before reading counters after a phase (idle backends report within 10 s)")
    parser.add_argument("--w1-rate", type=float, default=4.0, help="W1 lifecycles per second (4 requests each)")
    parser.add_argument("--w1-clients", type=int, default=2)
    parser.add_argument("--w4-rate", type=float, default=4.0, help="W4 reads per second")
    parser.add_argument("--batch-size", type=int, help="APPLIANCE_RETENTION_BATCH_SIZE of the prune (default: its own)")
    parser.add_argument("--child-batch-size", type=int, help="APPLIANCE_RETENTION_CHILD_BATCH_SIZE of the prune")
    parser.add_argument("--pause", type=float, help="APPLIANCE_RETENTION_PAUSE_SECONDS of the prune (default: its own)")
    parser.add_argument("--no-explain", dest="explain", action="store_false",
                        help="do not EXPLAIN the prune's statements (auto_explain)")
    parser.add_argument("--max-minutes", type=float, default=90.0, help="stop everything after this long")
    args = parser.parse_args(argv)
    if args.runs < 100 or args.logs < args.runs:
        parser.error("--runs must be at least 100 and --logs at least --runs")
    if not args.loadgen.exists():
        parser.error(f"no load generator at {args.loadgen} (--loadgen or APPLIANCE_LOADGEN)")
    sys.path.insert(0, str(REPO))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up (servers, database) on a plain kill
    return Bench(args).run()


if __name__ == "__main__":
    sys.exit(main())
