"""`flow.serve()`, `prefect deployment run`, `run_deployment`, cancellation (scheduled and
running), pause/resume with input, `to_deployment(interval=...).apply()` with a CLI cron
schedule and the server-side scheduler, and the CLI reads — all with the real SDK/CLI."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import SCRIPTS, last_json_line, sdk_env, wait_for

PREFECT = str(Path(sys.executable).parent / "prefect")
FLOWS = SCRIPTS / "deploy_flows.py"
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED", "CRASHED")


def cli(env, *args, timeout=90):
    result = subprocess.run([PREFECT, *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def run_id_of(output: str) -> str:
    return re.search(r"UUID: ([0-9a-f-]{36})", output).group(1)


def state_of(api, run_id):
    return api.get(f"/flow_runs/{run_id}").json()


def wait_state(api, run_id, types, timeout=60):
    return wait_for(lambda: state_of(api, run_id)["state_type"] in types and state_of(api, run_id), timeout, 0.3)


@pytest.fixture(scope="module")
def env(live_server, tmp_path_factory):
    home = tmp_path_factory.mktemp("serve")
    return sdk_env(live_server.url, home, PREFECT_RUNNER_POLL_FREQUENCY=1)


@pytest.fixture(scope="module")
def served(api, env):
    proc = subprocess.Popen([sys.executable, str(FLOWS), "serve"], env=env, cwd=SCRIPTS,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    dep = wait_for(lambda: api.get("/deployments/name/servable/serve-dep").status_code == 200
                   and api.get("/deployments/name/servable/serve-dep").json(), 60, 0.3)
    assert dep, proc.stdout.read() if proc.poll() is not None else "serve did not register"
    yield dep
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_serve_registers_deployment_and_runs_cli_trigger(api, env, served):
    assert served["parameters"] == {"name": "served"} and served["tags"] == ["demo"]
    assert served["schedules"][0]["schedule"]["interval"] == 3600.0
    run_id = run_id_of(cli(env, "deployment", "run", "servable/serve-dep", "--param", "name=cli"))
    run = wait_state(api, run_id, TERMINAL)
    assert run and run["state_type"] == "COMPLETED", run
    assert run["parameters"]["name"] == "cli"
    dep = api.get(f"/deployments/{served['id']}").json()
    assert dep["status"] == "READY" and dep["last_polled"]


def test_run_deployment_from_the_sdk(api, env, served):
    result = subprocess.run([sys.executable, str(FLOWS), "run_deployment", "servable/serve-dep", '{"name": "sdk"}'],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    out = last_json_line(result.stdout)
    assert out["state"] == "COMPLETED" and out["parameters"]["name"] == "sdk"


def test_cancel_scheduled_and_running_runs(api, env, served):
    later = run_id_of(cli(env, "deployment", "run", "servable/serve-dep", "--start-in", "1 hour"))
    cli(env, "flow-run", "cancel", later)
    assert state_of(api, later)["state_type"] == "CANCELLED"

    running = run_id_of(cli(env, "deployment", "run", "servable/serve-dep", "--param", "sleep=60"))
    assert wait_state(api, running, ("RUNNING",), 60), state_of(api, running)
    cli(env, "flow-run", "cancel", running)
    run = wait_state(api, running, TERMINAL, 60)
    assert run and run["state_type"] == "CANCELLED", state_of(api, running)


def test_pause_and_resume_with_input(api, env):
    proc = subprocess.Popen([sys.executable, str(FLOWS), "pause"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "RUNID" in line:
            break
    run_id = line.split("RUNID", 1)[1].split()[0]
    assert wait_state(api, run_id, ("PAUSED",), 30)
    result = subprocess.run([sys.executable, str(FLOWS), "resume", run_id], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    out, _ = proc.communicate(timeout=60)
    assert json.loads(out.strip().splitlines()[-1]) == {"approved": True, "note": "ok"}
    run = state_of(api, run_id)
    # Resuming in process enters RUNNING again, which counts (the real server: examples/06 #25).
    assert run["state_type"] == "COMPLETED" and run["run_count"] == 2
    stored = api.get(f"/flow_runs/{run_id}/input/paused-approval-response")
    assert stored.status_code == 200 and json.loads(stored.text) == {"approved": True, "note": "ok"}


def test_suspend_and_resume_a_deployment_run(api, env):
    proc = subprocess.Popen([sys.executable, str(FLOWS), "serve_suspender"], env=env, cwd=SCRIPTS,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        assert wait_for(lambda: api.get("/deployments/name/suspender/susp").status_code == 200, 60, 0.3)
        run_id = run_id_of(cli(env, "deployment", "run", "suspender/susp"))
        run = wait_state(api, run_id, ("PAUSED",), 60)
        assert run and run["state_name"] == "Suspended", state_of(api, run_id)
        result = subprocess.run([sys.executable, str(FLOWS), "resume", run_id, "no-input"], env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr[-3000:]
        run = wait_state(api, run_id, TERMINAL, 60)
        assert run and run["state_type"] == "COMPLETED" and run["run_count"] == 1, state_of(api, run_id)
        names = [s["name"] for s in api.get("/flow_run_states/", params={"flow_run_id": run_id}).json()]
        assert "Resuming" in names and names[-1] == "Completed"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_apply_interval_deployment_then_cli_cron_schedule(api, env):
    result = subprocess.run([sys.executable, str(FLOWS), "apply"], env=env, cwd=SCRIPTS, capture_output=True,
                            text=True, timeout=90)
    assert result.returncode == 0, result.stderr[-3000:]
    cli(env, "deployment", "schedule", "create", "servable/interval-dep", "--cron", "0 9 * * *",
        "--timezone", "Europe/Berlin")
    dep = api.get("/deployments/name/servable/interval-dep").json()
    assert len(dep["schedules"]) == 2

    def scheduled():
        runs = api.post("/flow_runs/filter", json={"deployments": {"id": {"any_": [dep["id"]]}},
                                                   "sort": "EXPECTED_START_TIME_ASC"}).json()
        kinds = {r["created_by"]["display_value"] for r in runs if r["auto_scheduled"]}
        return runs if kinds == {"IntervalSchedule", "CronSchedule"} else None

    runs = wait_for(scheduled, 30, 0.5)
    assert runs, "the scheduler did not materialise both schedules"
    cron_runs = [r for r in runs if r["created_by"]["display_value"] == "CronSchedule"]
    assert all(r["expected_start_time"][11:16] in ("08:00", "07:00") for r in cron_runs)
    keys = [r["idempotency_key"] for r in runs]
    assert len(keys) == len(set(keys)) and all(k.startswith("scheduled ") for k in keys)
    assert all("auto-scheduled" in r["tags"] for r in runs)


def test_cli_reads(api, env, served):
    assert "servable/serve-dep" in cli(env, "deployment", "ls")
    inspected = json.loads(cli(env, "deployment", "inspect", "servable/serve-dep", "-o", "json"))
    assert inspected["id"] == served["id"] and inspected["automations"] == []
    assert "Flow Runs" in cli(env, "flow-run", "ls")
    runs = api.post("/flow_runs/filter", json={"deployments": {"id": {"any_": [served["id"]]}},
                                               "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}}).json()
    cli(env, "flow-run", "inspect", runs[0]["id"])
    assert "hello" in cli(env, "flow-run", "logs", runs[0]["id"])


def test_deployment_concurrency_limit_serialises_served_runs(api, env, served):
    """Limit 1 on the served deployment: the runner's two runs hold the slot by lease one
    after the other (the second waits in AwaitingConcurrencySlot), both complete."""
    url = f"/deployments/{served['id']}"
    assert api.patch(url, json={"concurrency_limit": 1}).status_code == 204
    try:
        ids = [run_id_of(cli(env, "deployment", "run", "servable/serve-dep", "--param", "sleep=2")) for _ in range(2)]
        runs = [wait_state(api, run_id, TERMINAL, 90) for run_id in ids]
        assert all(run and run["state_type"] == "COMPLETED" for run in runs), [state_of(api, i) for i in ids]
        first, second = sorted(runs, key=lambda r: r["start_time"])
        assert second["start_time"] >= first["end_time"]
        history = api.get("/flow_run_states/", params={"flow_run_id": second["id"]}).json()
        assert "AwaitingConcurrencySlot" in [s["name"] for s in history]
        leases = {s["state_details"].get("deployment_concurrency_lease_id") for s in history if s["type"] == "RUNNING"}
        assert len(leases) == 1 and None not in leases
        assert api.get(url).json()["global_concurrency_limit"]["active_slots"] == 0
    finally:
        api.patch(url, json={"concurrency_limit": None})
