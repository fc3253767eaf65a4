"""The console's run-list queries (db.console_runs) are planned as index ranges on SQLite:
no whole-table sort per page, whatever page of the list and whichever flow or deployment.
(The pages' results are tested through the pages, tests/ui/test_runs.py; the timings on
100k runs are bench/ui_bench.py's.)"""

from __future__ import annotations

import datetime as dt

from db import console_run_detail, console_runs
from db import database as dbmod
from db.fields import new_id
from db.models import Flow, FlowRun


def plans_of(fn, *args, **kwargs) -> list[tuple[str, str]]:
    """(sql, EXPLAIN QUERY PLAN) of every flow_run statement ``fn`` runs."""
    db = dbmod.database.obj
    captured: list[tuple[str, tuple]] = []
    db.query_hooks.append(lambda event: captured.append((event.sql, tuple(event.params or ()))))
    try:
        fn(*args, **kwargs)
    finally:
        db.query_hooks.clear()
    return [(sql, "\n".join(str(row[-1]) for row in db.execute_sql(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()))
            for sql, params in captured if '"flow_run"' in sql]


def test_pages_of_the_list_and_of_one_flow_are_index_ranges(sqlite_db):
    flow = Flow.create(name="f", tags=[]).id
    now = dt.datetime(2026, 12, 1)
    with dbmod.write_tx():
        for i in range(120):
            FlowRun.create(name=f"r{i}", flow_id=flow, deployment_id=new_id(), expected_start_time=now - dt.timedelta(minutes=i))
    first = console_runs.runs_page(console_runs.RunFilter())
    for flt, after in [(console_runs.RunFilter(), first["next"]),
                       (console_runs.RunFilter(flow_id=flow), first["next"]),
                       (console_runs.RunFilter(name="r1"), None)]:
        plans = plans_of(console_runs.runs_page, flt, after=after)
        assert plans
        for sql, plan in plans:
            assert "TEMP B-TREE" not in plan and "MULTI-INDEX OR" not in plan, (sql, plan)
            assert "USING INDEX ix_flow_run_" in plan or "USING COVERING INDEX ix_flow_run_" in plan, (sql, plan)
    flow_plans = plans_of(console_runs.runs_page, console_runs.RunFilter(flow_id=flow))
    assert any("ix_flow_run_flow_expected" in plan for _, plan in flow_plans)


def test_subflows_start_from_the_runs_task_runs(sqlite_db):
    plans = plans_of(console_run_detail.subflow_runs, new_id())
    (sql, plan), = plans
    assert plan.splitlines()[0].startswith("SEARCH t2 USING INDEX taskrun_flow_run_id"), plan
    assert "flowrun_parent_task_run_id" in plan and "SCAN" not in plan, plan
