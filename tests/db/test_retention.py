"""Data retention (db.retention) on both backends: what goes and what stays, bounded
batches, dry-run counts equal to the deletes, the lock, the service, the CLI, and on
PostgreSQL that no statement the pruner sends against the log table plans a scan of it."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest

from appliance import services
from appliance.settings import Settings
from db import artifacts, retention, services_core
from db import database as dbmod
from db import events as events_mod
from db.fields import new_id, utcnow
from db.models import (
    Artifact,
    ArtifactCollection,
    Event,
    Flow,
    FlowRun,
    FlowRunState,
    Log,
    TaskRun,
    TaskRunState,
)
from db.models_deployments import FlowRunInput, Worker
from db.models_notifications import Notification
from tests import support

NOW = utcnow()
OLD = NOW - dt.timedelta(days=40)
RECENT = NOW - dt.timedelta(days=1)


def settings(**values) -> Settings:
    return Settings(database_url="sqlite:///unused.db", **values)


def plan(now=None, **values) -> retention.Plan:
    return retention.Plan.from_settings(settings(**values), now=now)


def seed_run(flow_id, *, state_type="COMPLETED", ended=OLD, tasks=2, logs=3, artifact_key=None) -> dict:
    """A flow run with every kind of child: states, task runs (with states, logs, an
    artifact, an event), its own logs, an artifact, an input and an event."""
    run = FlowRun.create(name=f"run-{new_id()[:8]}", flow_id=flow_id, state_type=state_type,
                         end_time=ended if state_type in ("COMPLETED", "FAILED", "CANCELLED", "CRASHED") else None)
    for i, kind in enumerate(("PENDING", "RUNNING", state_type)):
        FlowRunState.create(flow_run_id=run.id, type=kind, name=kind.title(), timestamp=NOW + dt.timedelta(seconds=i))
    for t in range(tasks):
        task = TaskRun.create(name=f"t{t}", flow_run_id=run.id, task_key="k", dynamic_key=str(t))
        TaskRunState.create(task_run_id=task.id, type="COMPLETED", name="Completed", timestamp=NOW)
        TaskRunState.create(task_run_id=task.id, type="RUNNING", name="Running", timestamp=NOW)
        for j in range(logs):
            Log.create(name="t", level=20, message=f"{j}", timestamp=NOW, flow_run_id=run.id, task_run_id=task.id)
        # A task log without the flow run's id (a client that left it out): found by task run.
        Log.create(name="t", level=20, message="orphan-ish", timestamp=NOW, flow_run_id=None, task_run_id=task.id)
        artifacts.create_artifact({"key": None, "type": "markdown", "data": "x", "task_run_id": task.id})
        Event.create(id=new_id(), occurred=RECENT, event="prefect.task-run.Completed",
                     resource_id=f"prefect.task-run.{task.id}")
    for j in range(logs):
        Log.create(name="f", level=20, message=f"{j}", timestamp=NOW, flow_run_id=run.id)
    artifacts.create_artifact({"key": artifact_key, "type": "table", "data": [1], "flow_run_id": run.id})
    FlowRunInput.create(flow_run_id=run.id, key="answer", value="42")
    Event.create(id=new_id(), occurred=RECENT, event="prefect.flow-run.Completed",
                 resource_id=f"prefect.flow-run.{run.id}")
    # Per run: 3 states, tasks x (2 states, logs + 1 logs, 1 artifact, 1 event), logs, 1 artifact, 1 input, 1 event.
    return {"flow_run": 1, "flow_run_state": 3, "task_run": tasks, "task_run_state": 2 * tasks,
            "log": tasks * (logs + 1) + logs, "artifact": tasks + 1, "flow_run_input": 1, "event": tasks + 1}


def children_of(run_id) -> dict:
    task_ids = [t.id for t in TaskRun.select(TaskRun.id).where(TaskRun.flow_run_id == run_id)]
    return {
        "flow_run": FlowRun.select().where(FlowRun.id == run_id).count(),
        "flow_run_state": FlowRunState.select().where(FlowRunState.flow_run_id == run_id).count(),
        "task_run": len(task_ids),
        "task_run_state": TaskRunState.select().where(TaskRunState.task_run_id.in_(task_ids or [""])).count(),
        "log": Log.select().where((Log.flow_run_id == run_id) | Log.task_run_id.in_(task_ids or [""])).count(),
        "artifact": Artifact.select().where((Artifact.flow_run_id == run_id)
                                            | Artifact.task_run_id.in_(task_ids or [""])).count(),
        "flow_run_input": FlowRunInput.select().where(FlowRunInput.flow_run_id == run_id).count(),
        "event": Event.select().where(Event.resource_id.in_(
            [f"prefect.flow-run.{run_id}", *(f"prefect.task-run.{t}" for t in task_ids)])).count(),
    }


def add(totals: dict, more: dict) -> dict:
    return {k: totals.get(k, 0) + more[k] for k in more}


@pytest.fixture
def flow(migrated):
    return Flow.create(name=f"flow-{new_id()[:8]}", tags=[]).id


def test_old_terminal_runs_and_all_their_children_go(flow):
    expected: dict = {}
    old = []
    for state in ("COMPLETED", "FAILED", "CANCELLED", "CRASHED"):
        run_children = seed_run(flow, state_type=state)
        expected = add(expected, run_children)
        old.append(FlowRun.select().order_by(FlowRun.created.desc()).first().id)
    old_ids = set(FlowRun.select(FlowRun.id).tuples())
    seed_run(flow, ended=RECENT)  # terminal but recent
    seed_run(flow, state_type="RUNNING")  # old, still running
    seed_run(flow, state_type="SCHEDULED")
    kept = {run_id for (run_id,) in FlowRun.select(FlowRun.id).tuples()} - {r for (r,) in old_ids}
    before_kept = {run_id: children_of(run_id) for run_id in kept}

    p = plan(retention_flow_runs="30d", retention_events="off", retention_batch_size=3, retention_child_batch_size=4)
    dry = retention.prune(p, dry_run=True)
    assert dry == {"flow_runs": expected}
    assert retention.prune(p) == dry
    for run_id in old:
        assert children_of(run_id) == dict.fromkeys(expected, 0)
    assert {run_id: children_of(run_id) for run_id in kept} == before_kept
    # No orphan anywhere: every remaining child belongs to a kept run.
    assert Log.select().count() == sum(c["log"] for c in before_kept.values())
    assert TaskRunState.select().count() == sum(c["task_run_state"] for c in before_kept.values())
    assert retention.prune(p) == {"flow_runs": dict.fromkeys(expected, 0)}


def run_steps(p: retention.Plan, dry_run: bool) -> list[tuple[str, object]]:
    """Drive a pass step by step, each write in its own transaction; (kind, result) of every step."""
    counts = retention._empty_counts(p)
    steps = retention._pass(p, dry_run, counts)
    results, result = [], None
    while True:
        try:
            kind, fn = steps.send(result)
        except StopIteration:
            return results
        if kind == retention.WRITE:
            with dbmod.write_tx():
                result = fn()
        else:
            result = fn()
        results.append((kind, result))


def test_batches_are_bounded_and_each_a_transaction(flow):
    for _ in range(5):
        seed_run(flow, tasks=3, logs=4)
    p = plan(retention_flow_runs="30d", retention_events="off", retention_batch_size=2, retention_child_batch_size=3)
    steps = run_steps(p, dry_run=False)
    writes = [n for kind, n in steps if kind == retention.WRITE]
    assert writes and all(0 <= n <= 3 for n in writes)  # child rows <= 3, runs and task runs <= 2
    batches = [r for kind, r in steps if kind == retention.READ and isinstance(r, list) and r and len(r[0]) == 2
               and isinstance(r[0][0], dt.datetime)]
    assert [len(b) for b in batches] == [2, 2, 1]
    assert FlowRun.select().count() == 0 and Log.select().count() == 0


def test_artifact_collections_point_at_the_newest_remaining_version(flow):
    seed_run(flow, artifact_key="report")  # old: goes
    survivor = seed_run(flow, ended=RECENT, artifact_key="report")
    assert survivor
    recent_artifact = Artifact.select().where(Artifact.key == "report").order_by(Artifact.created.desc()).first()
    seed_run(flow, artifact_key="report")  # the newest version, but in an old run: goes
    seed_run(flow, artifact_key="lonely")  # only version of its key: the collection goes too
    assert ArtifactCollection.select().where(ArtifactCollection.key == "report").first().latest_id != recent_artifact.id
    retention.prune(plan(retention_flow_runs="30d"))
    assert ArtifactCollection.get(ArtifactCollection.key == "report").latest_id == recent_artifact.id
    assert ArtifactCollection.select().where(ArtifactCollection.key == "lonely").count() == 0
    assert artifacts.latest_by_key("report")["flow_run_id"] == recent_artifact.flow_run_id


def _event(i, occurred):
    return events_mod.event_row({"id": f"00000000-0000-7000-8000-{i:012d}", "occurred": occurred, "event": "x.y",
                                 "resource": {"prefect.resource.id": "r"}, "related": [], "payload": {}})


def _notification(status, updated):
    Notification.create(source_kind="policy", source_id=new_id(), flow_run_id=new_id(), state_id=new_id(),
                        state_type="FAILED", state_name="Failed", block_document_id=new_id(), template_kind="legacy",
                        body_template="x", status=status, deadline=NOW, idempotency_key=new_id(), updated=updated)


def test_events_notifications_and_workers(migrated):
    events_mod.insert_events([_event(i, OLD if i < 3 else RECENT) for i in range(5)])
    for status in ("sent", "failed", "dead", "pending", "sending"):
        _notification(status, OLD)
    _notification("sent", RECENT)
    pool = new_id()
    Worker.create(name="gone", work_pool_id=pool, last_heartbeat_time=OLD)
    Worker.create(name="never", work_pool_id=pool, last_heartbeat_time=None, created=OLD)
    Worker.create(name="alive", work_pool_id=pool, last_heartbeat_time=RECENT)

    p = plan(retention_notifications="30d", retention_workers="7d", retention_batch_size=2)
    expected = {"events": {"event": 3}, "notifications": {"notification": 3}, "workers": {"worker": 2}}
    assert retention.prune(p, dry_run=True) == expected
    assert retention.prune(p) == expected
    assert Event.select().count() == 2
    assert sorted(n.status for n in Notification.select()) == ["pending", "sending", "sent"]
    assert [w.name for w in Worker.select()] == ["alive"]


def test_flow_runs_do_not_count_events_the_events_kind_deletes(flow):
    seeded = seed_run(flow)
    run_id = FlowRun.select().first().id
    Event.create(id=new_id(), occurred=OLD, event="prefect.flow-run.Running", resource_id=f"prefect.flow-run.{run_id}")
    p = plan(retention_flow_runs="30d")
    dry = retention.prune(p, dry_run=True)
    assert dry == {"events": {"event": 1}, "flow_runs": seeded}
    assert retention.prune(p) == dry


def test_off_by_default_except_events_and_the_old_name_still_works(monkeypatch):
    for key in list(__import__("os").environ):
        if key.startswith("APPLIANCE_RETENTION") or key == "APPLIANCE_EVENTS_RETENTION_DAYS":
            monkeypatch.delenv(key)
    p = retention.Plan.from_settings(Settings(), now=NOW)
    assert p.cutoffs == {"events": NOW - dt.timedelta(days=7)}
    monkeypatch.setenv("APPLIANCE_EVENTS_RETENTION_DAYS", "3")
    assert Settings().retention_events == dt.timedelta(days=3)
    monkeypatch.setenv("APPLIANCE_RETENTION_EVENTS", "12h")
    assert Settings().retention_events == dt.timedelta(hours=12)
    monkeypatch.setenv("APPLIANCE_RETENTION_EVENTS", "off")
    assert not retention.Plan.from_settings(Settings()).enabled
    for text, seconds in (("30d", 30 * 86400), ("12h", 43200), ("90m", 5400), ("3600", 3600), ("2w", 14 * 86400)):
        assert settings(retention_flow_runs=text).retention_flow_runs == dt.timedelta(seconds=seconds)
    for bad in ("30", "soon", "-1d"):
        with pytest.raises(ValueError):
            settings(retention_flow_runs=bad)


def test_one_prune_at_a_time(flow):
    seed_run(flow)
    p = plan(retention_flow_runs="30d")
    holder = retention.RetentionLock()
    assert holder.acquire()
    try:
        with pytest.raises(retention.Busy):
            retention.prune(p)
        assert asyncio.run(retention.prune_async(p)) is None
        assert FlowRun.select().count() == 1
        assert retention.prune(p, dry_run=True)["flow_runs"]["flow_run"] == 1  # a dry run needs no lock
    finally:
        holder.release()
    assert retention.prune(p)["flow_runs"]["flow_run"] == 1


def test_concurrent_service_passes_only_one_runs(flow):
    for _ in range(4):
        seed_run(flow)
    p = plan(retention_flow_runs="30d", retention_batch_size=1, retention_child_batch_size=1)

    async def both():
        return await asyncio.gather(retention.prune_async(p), retention.prune_async(p))

    first, second = asyncio.run(both())
    assert (first is None) != (second is None)
    assert (first or second)["flow_runs"]["flow_run"] == 4


def test_api_writes_go_through_between_batches(flow):
    """The service pass runs every batch as its own run_write: writes submitted meanwhile
    complete while the pass is still going (on SQLite they share the one writer thread)."""
    for _ in range(6):
        seed_run(flow, tasks=2, logs=2)
    p = plan(retention_flow_runs="30d", retention_batch_size=1, retention_child_batch_size=1)

    async def scenario():
        pruning = asyncio.create_task(retention.prune_async(p))
        done_while_pruning = 0
        for i in range(20):
            await dbmod.run_write(lambda i=i: Flow.create(name=f"writer-{i}-{new_id()[:6]}", tags=[]))
            done_while_pruning += not pruning.done()
        return await pruning, done_while_pruning

    counts, done_while_pruning = asyncio.run(scenario())
    assert counts["flow_runs"]["flow_run"] == 6
    assert done_while_pruning >= 10


def test_the_service_is_registered_with_its_own_transactions(migrated, monkeypatch):
    service = next(s for s in services.REGISTRY if s.name == "retention")
    assert service.own_transactions and service.run_once is services_core.retention_pass
    assert not any(s.name == "prune-events" for s in services.REGISTRY)
    events_mod.insert_events([_event(1, NOW - dt.timedelta(days=8)), _event(2, RECENT)])

    async def run_loop():
        runner = services.Runner()
        runner.start([service])
        for _ in range(200):
            await asyncio.sleep(0.02)
            if Event.select().count() == 1:
                break
        await runner.shutdown(5)

    asyncio.run(run_loop())
    assert [e.id for e in Event.select()] == ["00000000-0000-7000-8000-000000000002"]


def test_a_stopped_pass_ends_between_transactions(flow):
    for _ in range(3):
        seed_run(flow)
    p = plan(retention_flow_runs="30d", retention_batch_size=1, retention_child_batch_size=1)
    stop = asyncio.Event()
    stop.set()
    counts = asyncio.run(retention.prune_async(p, stop=stop))
    assert retention.total(counts) == 0 and FlowRun.select().count() == 3


# --- SQLite: incremental vacuum ------------------------------------------------------------------


def test_sqlite_incremental_vacuum_frees_pages_once_switched_on(sqlite_db):
    db = dbmod.database

    def seed():
        flow_id = Flow.create(name=f"f-{new_id()[:6]}", tags=[]).id
        with dbmod.write_tx():
            for _ in range(30):
                seed_run(flow_id, tasks=2, logs=40)

    def pages():
        return db.execute_sql("PRAGMA page_count").fetchone()[0], db.execute_sql("PRAGMA freelist_count").fetchone()[0]

    seed()
    retention.prune(plan(retention_flow_runs="30d"))
    assert pages()[1] > 0  # auto_vacuum=NONE: freed pages stay in the file
    assert retention.enable_incremental_vacuum()["switched"]
    assert db.execute_sql("PRAGMA auto_vacuum").fetchone()[0] == 2
    seed()
    before = pages()[0]
    retention.prune(plan(retention_flow_runs="30d"))
    count, free = pages()
    assert free == 0 and count < before
    assert not retention.enable_incremental_vacuum()["switched"]


# --- PostgreSQL: no scan of the log table -------------------------------------------------------


def seed_generated(runs: int, logs_per_run: int) -> None:
    """Runs (every tenth old and COMPLETED), two task runs each, and their logs, generated in
    the database; then ANALYZE, so that plans are the planner's real choice."""
    db = dbmod.database  # psycopg2 formats every statement: a literal % is written %%
    db.execute_sql("INSERT INTO flow (id, created, updated, name, tags) VALUES ('f', now(), now(), 'gen', '[]')")
    db.execute_sql(f"""
        INSERT INTO flow_run (id, created, updated, name, flow_id, parameters, context, empirical_policy, tags,
                              run_count, total_run_time, auto_scheduled, state_type, end_time, expected_start_time)
        SELECT md5('r' || g)::uuid::text, now(), now(), 'gen-' || g, 'f', '{{}}', '{{}}', '{{}}', '[]', 1, 0, false,
               CASE WHEN g %% 10 = 0 THEN 'COMPLETED' WHEN g %% 3 = 0 THEN 'RUNNING' ELSE 'COMPLETED' END,
               CASE WHEN g %% 10 = 0 THEN now() - interval '40 days' - g * interval '1 second'
                    WHEN g %% 3 = 0 THEN NULL ELSE now() - g * interval '1 second' END,
               now() - g * interval '1 second'
        FROM generate_series(1, {runs}) g""")
    db.execute_sql(f"""
        INSERT INTO task_run (id, created, updated, name, flow_run_id, task_key, dynamic_key, empirical_policy, tags,
                              task_inputs, run_count, flow_run_run_count, total_run_time)
        SELECT md5('t' || g || '-' || k)::uuid::text, now(), now(), 't', md5('r' || g)::uuid::text, 'k', k::text,
               '{{}}', '[]', '{{}}', 1, 1, 0
        FROM generate_series(1, {runs}) g, generate_series(1, 2) k""")
    db.execute_sql(f"""
        INSERT INTO log (id, created, name, level, message, timestamp, flow_run_id, task_run_id)
        SELECT md5('l' || g)::uuid::text, now(), 'gen', 20, 'line ' || g, now(),
               md5('r' || (g %% {runs} + 1))::uuid::text,
               CASE WHEN g %% 2 = 0 THEN md5('t' || (g %% {runs} + 1) || '-1')::uuid::text END
        FROM generate_series(1, {runs * logs_per_run}) g""")
    db.execute_sql("ANALYZE")


def test_no_statement_scans_the_log_table(pg_db):
    seed_generated(runs=3000, logs_per_run=15)  # 45,000 log lines, 10% of the runs old
    captured: list[tuple[str, tuple]] = []
    db = dbmod.database.obj
    db.query_hooks.append(lambda event: captured.append((event.sql, tuple(event.params or ()))))
    try:
        p = plan(retention_flow_runs="30d", retention_batch_size=100, retention_child_batch_size=500)
        dry = retention.prune(p, dry_run=True)
        deleted = retention.prune(p)
    finally:
        db.query_hooks.clear()
    assert dry == deleted and deleted["flow_runs"]["flow_run"] == 300 and deleted["flow_runs"]["log"] == 4500
    # One of each distinct statement (its parameters may hold lists: keyed by their repr).
    on_log = list({(sql, repr(params)): (sql, params) for sql, params in captured if '"log"' in sql}.values())
    assert len({sql for sql, _ in on_log}) >= 4  # count and delete, by flow run and by task run
    for sql, params in on_log:
        assert "NOT EXISTS" not in sql.upper()
        plan_text = "\n".join(row[0] for row in db.execute_sql(f"EXPLAIN {sql}", params).fetchall())
        assert "Seq Scan on log" not in plan_text, plan_text


# --- the CLI ------------------------------------------------------------------------------------


def cli(args, url, home, **env):
    return support.run_cli(["database", "prune", *args], support.appliance_env(url, home, **env))


def test_cli_dry_run_then_prune(flow, migrated, tmp_home):
    seeded = seed_run(flow)
    seed_run(flow, ended=RECENT)
    dbmod.close_all()  # the CLI is another process
    env = {"APPLIANCE_RETENTION_FLOW_RUNS": "30d"}
    dry = cli(["--dry-run", "--json"], migrated, tmp_home, **env)
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert report["dry_run"] and report["kinds"]["flow_runs"]["rows"] == seeded
    assert report["kinds"]["flow_runs"]["retention"] == "30d"
    assert report["kinds"]["notifications"] == {"retention": "off", "cutoff": None, "rows": {}}
    table = cli(["--dry-run"], migrated, tmp_home, **env)
    assert "would delete" in table.stdout and "flow_run " in table.stdout and "notifications  off" in table.stdout
    done = cli(["--json"], migrated, tmp_home, **env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["kinds"]["flow_runs"]["rows"] == seeded
    again = cli(["--kind", "flow_runs", "--json"], migrated, tmp_home, **env)
    assert set(json.loads(again.stdout)["kinds"]) == {"flow_runs"}
    assert json.loads(again.stdout)["kinds"]["flow_runs"]["rows"]["flow_run"] == 0
    dbmod.init(migrated)
    assert FlowRun.select().count() == 1


def test_cli_older_than_lock_and_bad_input(flow, migrated, tmp_home):
    seed_run(flow, ended=NOW - dt.timedelta(days=3))
    holder = retention.RetentionLock()
    assert holder.acquire()
    try:
        busy = cli(["--older-than", "2d", "--kind", "flow_runs"], migrated, tmp_home)
        assert busy.returncode == 1 and "another prune" in busy.stderr
    finally:
        holder.release()
    dbmod.close_all()
    done = cli(["--older-than", "2d", "--kind", "flow_runs", "--json"], migrated, tmp_home)
    assert json.loads(done.stdout)["kinds"]["flow_runs"]["rows"]["flow_run"] == 1
    short = cli(["--older-than", "30"], migrated, tmp_home)
    assert short.returncode != 0 and "minimum of 1h" in short.stderr
    bad = cli(["--dry-run"], migrated, tmp_home, APPLIANCE_RETENTION_FLOW_RUNS="soon")
    assert bad.returncode == 2 and "APPLIANCE_RETENTION_FLOW_RUNS" in bad.stderr
    vacuum = cli(["--vacuum"], migrated, tmp_home)
    if migrated.startswith("sqlite"):
        assert vacuum.returncode == 0 and "auto_vacuum=INCREMENTAL" in vacuum.stdout
    else:
        assert vacuum.returncode != 0 and "pg_repack" in vacuum.stderr
