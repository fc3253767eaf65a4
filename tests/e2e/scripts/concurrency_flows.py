"""Flows for tests/e2e/test_concurrency_sdk.py, run with the real SDK in subprocesses.

    concurrency_flows.py gcl NAME OUT    three critical sections under `concurrency(NAME)`
    concurrency_flows.py tags OUT        three tasks tagged "serial" and three untagged, submitted at once
    concurrency_flows.py variables       Variable.set / get / unset; prints one JSON line

Each section appends `{"who", "start", "end"}` lines to OUT (wall-clock seconds).
"""

from __future__ import annotations

import json
import os
import sys
import time

from prefect import flow, task
from prefect.concurrency.sync import concurrency
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.variables import Variable


def record(out: str, who: str, seconds: float) -> None:
    start = time.time()
    time.sleep(seconds)
    with open(out, "a") as fh:
        fh.write(json.dumps({"who": who, "start": start, "end": time.time()}) + "\n")


@flow
def guarded(name: str, out: str) -> None:
    for i in range(3):
        with concurrency(name, occupy=1):
            record(out, f"{os.getpid()}-{i}", 0.3)


@task(tags=["serial"])
def tagged(out: str, i: int) -> None:
    record(out, f"tagged-{i}", 0.4)


@task
def untagged(out: str, i: int) -> None:
    record(out, f"untagged-{i}", 0.4)


@flow(task_runner=ThreadPoolTaskRunner(max_workers=6))
def fan_out(out: str) -> None:
    futures = [tagged.submit(out, i) for i in range(3)] + [untagged.submit(out, i) for i in range(3)]
    for future in futures:
        future.result()


def variables() -> dict:
    Variable.set("e2e_var", {"answer": 42, "tags": ["x"]}, tags=["sdk"])
    got = Variable.get("e2e_var")
    refused = False
    try:
        Variable.set("e2e_var", "again")
    except ValueError:
        refused = True
    Variable.set("e2e_var", "overwritten", overwrite=True)
    after = Variable.get("e2e_var")
    unset = Variable.unset("e2e_var")
    return {
        "got": got,
        "refused_without_overwrite": refused,
        "after_overwrite": after,
        "unset": unset,
        "default_after_unset": Variable.get("e2e_var", default="fallback"),
    }


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "gcl":
        guarded(sys.argv[2], sys.argv[3])
    elif mode == "tags":
        fan_out(sys.argv[2])
    elif mode == "variables":
        print(json.dumps(variables()))
