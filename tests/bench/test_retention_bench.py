"""The retention benchmark (bench/retention_bench.py) at a tiny scale: seed, live appliance,
idle W1/W4, the prune under the same load, and its report. The figures of a run this small
mean nothing; the test checks that the harness produces sane, complete output: the seed's old
tenth deleted exactly, no sequential scan of the log table, the load lines valid."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests import support

BENCH = support.REPO / "bench" / "retention_bench.py"
LOADGEN = support.REPO.parent / "shared" / "bench" / "loadgen.py"
RUNS, LOGS = 2000, 40000


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    # ../shared/bench/loadgen.py is beside the checkout here and in CI: fail, not skip, without it.
    assert LOADGEN.exists(), f"no load generator at {LOADGEN}"
    out = tmp_path_factory.mktemp("retention-bench")
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--runs", str(RUNS), "--logs", str(LOGS), "--idle-seconds", "3", "--warmup-seconds", "1",
         "--lead-seconds", "1", "--interval", "0.5", "--settle", "1.5", "--dsn", support.PG_ADMIN_URL,
         "--loadgen", str(LOADGEN), "--out", str(out), "--max-minutes", "3"],
        capture_output=True, text=True, timeout=150)
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()] if (
        out / "results.jsonl").exists() else []
    return {"proc": proc, "lines": {line["bench"]: line for line in lines}, "all": lines, "out": out}


def _bench_databases() -> set[str]:
    rows = support.pg_execute("SELECT datname FROM pg_database WHERE datname LIKE 'bench_retention_%'")
    return {name for (name,) in rows}


def test_the_run_is_ok_and_cleans_up(bench_run):
    proc, lines = bench_run["proc"], bench_run["lines"]
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert set(lines) >= {"retention-seed", "retention-setup", "retention-load", "retention-prune",
                          "retention-seqscan", "retention-latency", "retention-summary"}
    assert lines["retention-summary"]["ok"]
    assert lines["retention-setup"]["database"] not in _bench_databases()  # its database is dropped
    table = (bench_run["out"] / "table.md").read_text()
    assert "| W1 p99 idle -> pruning |" in table and "| W4 p99 idle -> pruning |" in table
    assert table in proc.stdout


def test_the_seed_holds_the_sizes_asked_for(bench_run):
    seed = bench_run["lines"]["retention-seed"]
    assert seed["ok"] and seed["rows"]["flow_run"] == RUNS and seed["rows"]["log"] == LOGS
    assert seed["rows"]["flow_run_state"] >= RUNS  # at least one state per run
    assert seed["rows"]["task_run"] > 0 and seed["rows"]["task_run_state"] >= seed["rows"]["task_run"]
    for table in ("artifact", "artifact_collection", "event", "flow_run_input"):
        assert seed["rows"][table] > 0, table
    assert seed["seconds"] > 0 and seed["db_bytes"] > 0


def test_the_prune_deletes_the_old_tenth_exactly(bench_run):
    prune = bench_run["lines"]["retention-prune"]
    assert prune["ok"] and prune["returncode"] == 0 and not prune["timed_out"]
    assert prune["deleted_matches_expected"] and prune["deleted"]["flow_run"] == RUNS // 10
    assert prune["fraction_of_runs"] == pytest.approx(0.10, abs=0.001)
    assert prune["fraction_of_logs"] == pytest.approx(0.10, abs=0.001)
    for table in ("flow_run_state", "task_run", "task_run_state", "log", "artifact", "event", "flow_run_input"):
        assert prune["deleted"][table] > 0, table
    assert prune["rows_total"] == sum(prune["deleted"].values()) and prune["rows_per_s"] > 0
    assert prune["intervals"] and sum(x["rows_per_s"] for x in prune["intervals"]) > 0


def test_nothing_scanned_the_log_table(bench_run):
    seq = bench_run["lines"]["retention-seqscan"]
    assert seq["ok"]
    assert seq["log_seq_scans_during_prune"] == 0 and seq["seq_scan_prune"]["log"] == 0
    assert seq["seq_scan_idle"]["log"] == 0
    assert seq["prune_statements_explained"] > 0  # auto_explain saw the prune's statements
    assert "log" not in seq["prune_plan_seq_scans"]


def test_the_load_lines_are_valid(bench_run):
    loads = [line for line in bench_run["all"] if line["bench"] == "retention-load"]
    assert {(line["phase"], line["workload"]) for line in loads} == {
        ("idle", "w1"), ("idle", "w4"), ("prune", "w1"), ("prune", "w4")}
    for line in loads:
        assert line["ok"], line
        latency = line["results"]["latency_all"]
        assert latency["n"] > 0 and 0 < latency["p50_ms"] <= latency["p99_ms"]
    for line in (x for x in loads if x["workload"] == "w1"):
        assert line["verify"]["server_completed"] == line["verify"]["expected"] == line["results"]["runs"] > 0
    latency = bench_run["lines"]["retention-latency"]
    for workload in ("w1", "w4"):
        assert latency[workload]["p99_ratio"] > 0
        assert latency[workload]["target_met"] == (latency[workload]["p99_ratio"] <= 2.0)
    assert set(latency["w4"]["per_request"]) == {
        "flow_runs_filter", "flow_runs_filter_name", "flow_runs_filter_state", "flow_runs_filter_name_state",
        "flow_runs_count", "flow_runs_count_state", "task_runs_filter", "task_runs_filter_state"}
    assert set(latency["w1"]["per_request"]) == {"create_flow_run", "set_state"}
