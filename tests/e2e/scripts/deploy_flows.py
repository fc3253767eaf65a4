"""Flows for the deployment e2e tests (serve, worker, pause/resume).

``python deploy_flows.py serve`` serves ``servable`` as "serve-dep";
``python deploy_flows.py deploy <pool> <dir>`` registers ``servable`` from source on a pool;
``python deploy_flows.py run_deployment <name> <json params>`` runs a deployment and prints its state;
``python deploy_flows.py pause`` runs ``waits`` (pauses for input); ``resume <id>`` resumes it.
"""

import json
import sys
import time

from prefect import flow, pause_flow_run, suspend_flow_run
from prefect.context import get_run_context
from prefect.input import RunInput


class Approval(RunInput):
    approved: bool
    note: str = ""


@flow(log_prints=True)
def servable(name: str = "world", sleep: float = 0):
    print(f"hello {name}")
    time.sleep(sleep)
    return name


@flow
def waits():
    print("RUNID", get_run_context().flow_run.id, flush=True)
    result = pause_flow_run(wait_for_input=Approval, timeout=60, key="approval")
    return {"approved": result.approved, "note": result.note}


@flow(log_prints=True, persist_result=True)
def suspender():
    print("before")
    suspend_flow_run(timeout=120, key="s1")
    print("after-resume")
    return "done"


def main(argv):
    cmd = argv[1]
    if cmd == "serve":
        servable.serve(name="serve-dep", parameters={"name": "served"}, interval=3600, tags=["demo"])
    elif cmd == "serve_suspender":
        suspender.serve(name="susp")
    elif cmd == "deploy":
        pool, source = argv[2], argv[3]
        flow.from_source(source=source, entrypoint="deploy_flows.py:servable").deploy(
            name="proc-dep", work_pool_name=pool, parameters={"name": "worker"}
        )
    elif cmd == "apply":
        servable.to_deployment(name="interval-dep", interval=60).apply()
    elif cmd == "run_deployment":
        from prefect.deployments import run_deployment

        run = run_deployment(argv[2], parameters=json.loads(argv[3]), timeout=60)
        print(json.dumps({"id": str(run.id), "state": run.state.type.value, "parameters": run.parameters}))
    elif cmd == "pause":
        print(json.dumps(waits()))
    elif cmd == "resume":
        from prefect.flow_runs import resume_flow_run

        resume_flow_run(argv[2], run_input={"approved": True, "note": "ok"} if len(argv) < 4 else None)


if __name__ == "__main__":
    main(sys.argv)
