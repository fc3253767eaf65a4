"""`prefect worker start --type process` against the appliance: pool creation by the CLI,
`from_source(...).deploy()`, the REST heartbeat (the worker channel is refused), runs
started by the worker with labels and infrastructure_pid, cancellation of a running run
through the worker, and two workers on one pool starting every run exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import SCRIPTS, sdk_env, wait_for
from tests.e2e.test_serve import TERMINAL, cli, run_id_of, state_of, wait_state

PREFECT = str(Path(sys.executable).parent / "prefect")
FLOWS = SCRIPTS / "deploy_flows.py"
POOL = "proc-pool"


@pytest.fixture(scope="module")
def env(live_server, tmp_path_factory):
    home = tmp_path_factory.mktemp("worker")
    return sdk_env(live_server.url, home, PREFECT_WORKER_QUERY_SECONDS=1, PREFECT_WORKER_PREFETCH_SECONDS=2,
                   PREFECT_WORKER_HEARTBEAT_SECONDS=2)


def start_worker(env, name):
    return subprocess.Popen([PREFECT, "worker", "start", "--pool", POOL, "--name", name, "--type", "process"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def stop(proc):
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="module")
def deployment(api, env):
    cli(env, "work-pool", "create", POOL, "--type", "process")
    result = subprocess.run([sys.executable, str(FLOWS), "deploy", POOL, str(SCRIPTS)], env=env, cwd=SCRIPTS,
                            capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr[-3000:]
    return api.get("/deployments/name/servable/proc-dep").json()


@pytest.fixture(scope="module")
def workers(api, env, deployment):
    procs = [start_worker(env, "w1"), start_worker(env, "w2")]
    assert wait_for(lambda: len(api.post(f"/work_pools/{POOL}/workers/filter",
                                         json={"workers": {"status": {"any_": ["ONLINE"]}}}).json()) == 2, 40, 0.3)
    yield procs
    for proc in procs:
        stop(proc)


def test_pool_and_deployment_shapes(api, env, deployment):
    pool = api.get(f"/work_pools/{POOL}").json()
    assert pool["type"] == "process" and pool["base_job_template"]["job_configuration"]
    queue = api.get(f"/work_queues/{pool['default_queue_id']}").json()
    assert queue["name"] == "default" and queue["priority"] == 1 and queue["work_pool_name"] == POOL
    assert deployment["work_pool_name"] == POOL and deployment["work_queue_id"] == pool["default_queue_id"]
    assert POOL in cli(env, "work-pool", "ls")
    assert "default_queue_id" in cli(env, "work-pool", "inspect", POOL)


def test_worker_runs_a_deployment_run(api, env, workers, deployment):
    assert api.get(f"/work_pools/{POOL}").json()["status"] == "READY"
    run_id = run_id_of(cli(env, "deployment", "run", "servable/proc-dep", "--param", "name=cli"))
    run = wait_state(api, run_id, TERMINAL, 90)
    assert run and run["state_type"] == "COMPLETED", state_of(api, run_id)
    assert run["parameters"]["name"] == "cli" and run["infrastructure_pid"]
    assert run["labels"]["prefect.work-pool.name"] == POOL and run["labels"]["prefect.worker.type"] == "process"
    assert run["labels"]["prefect.deployment.id"] == deployment["id"]


def test_cancel_running_run_through_the_worker(api, env, workers, deployment):
    run_id = run_id_of(cli(env, "deployment", "run", "servable/proc-dep", "--param", "sleep=60"))
    assert wait_state(api, run_id, ("RUNNING",), 90), state_of(api, run_id)
    cli(env, "flow-run", "cancel", run_id)
    run = wait_state(api, run_id, TERMINAL, 60)
    assert run and run["state_type"] == "CANCELLED", state_of(api, run_id)


def test_two_workers_start_each_run_exactly_once(api, env, workers, deployment):
    ids = []
    for i in range(8):
        body = {"parameters": {"name": f"r{i}"}, "state": {"type": "SCHEDULED"}}
        ids.append(api.post(f"/deployments/{deployment['id']}/create_flow_run", json=body).json()["id"])
    done = wait_for(lambda: all(state_of(api, i)["state_type"] in TERMINAL for i in ids), 150, 1)
    assert done, [state_of(api, i)["state_type"] for i in ids]
    for run_id in ids:
        run = state_of(api, run_id)
        assert run["state_type"] == "COMPLETED" and run["run_count"] == 1
        history = [s["type"] for s in api.get("/flow_run_states/", params={"flow_run_id": run_id}).json()]
        assert history.count("RUNNING") == 1 and history.count("COMPLETED") == 1, history
    assert {state_of(api, i)["labels"]["prefect.worker.name"] for i in ids} <= {"w1", "w2"}


def test_paused_pool_gives_no_runs(api, deployment):
    api.patch(f"/work_pools/{POOL}", json={"is_paused": True})
    try:
        api.post(f"/deployments/{deployment['id']}/create_flow_run", json={"state": {"type": "SCHEDULED"}})
        got = api.post(f"/work_pools/{POOL}/get_scheduled_flow_runs", json={"scheduled_before": "2999-01-01T00:00:00Z"})
        assert got.status_code == 200 and got.json() == []
        assert api.get(f"/work_pools/{POOL}").json()["status"] == "PAUSED"
    finally:
        api.patch(f"/work_pools/{POOL}", json={"is_paused": False})
    assert json.loads(api.get(f"/work_pools/{POOL}").text)["status"] in ("READY", "NOT_READY")
