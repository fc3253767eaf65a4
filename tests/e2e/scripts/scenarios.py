"""Flows exercised by tests/e2e/test_sdk_runs.py with the real Prefect SDK.

Prints one JSON object mapping scenario names to flow run ids (last line of stdout).
"""

import json
import sys

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_image_artifact,
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.context import get_run_context

RUNS: dict = {}


def remember(name):
    RUNS[name] = str(get_run_context().flow_run.id)


@task
def add(x, y):
    return x + y


@task
def double(x):
    return x * 2


@flow
def sequential():
    remember("sequential")
    a = add(1, 2)
    b = double(a)
    return add(b, 10)


@flow
def fan_out():
    remember("fan_out")
    submitted = [double.submit(i) for i in range(5)]
    mapped = double.map(list(range(20)))
    return sum(f.result() for f in submitted) + sum(mapped.result())


ATTEMPTS = {"flaky": 0}


@task(retries=2, retry_delay_seconds=1, tags=["flaky"])
def flaky():
    ATTEMPTS["flaky"] += 1
    if ATTEMPTS["flaky"] == 1:
        raise ValueError("transient failure")
    return "ok"


@task(retries=1, retry_delay_seconds=0)
def always_fails():
    raise RuntimeError("kaboom")


@flow
def retries():
    remember("retries")
    flaky()
    return always_fails(return_state=True)


FLOW_ATTEMPTS = {"n": 0}


@flow(retries=1, retry_delay_seconds=1)
def flow_retry():
    remember("flow_retry")
    FLOW_ATTEMPTS["n"] += 1
    if FLOW_ATTEMPTS["n"] == 1:
        raise ValueError("first attempt fails")
    return "recovered"


@flow
def child(x):
    remember("child")
    return double(x)


@flow
def parent():
    remember("parent")
    return child(21)


@flow(log_prints=True)
def chatty(n: int = 2000):
    remember("chatty")
    logger = get_run_logger()
    for i in range(n // 2):
        logger.info("line %05d", 2 * i)
        print(f"line {2 * i + 1:05d}")


@flow
def artifacts():
    remember("artifacts")
    create_markdown_artifact(key="e2e-markdown", markdown="# Hello")
    create_table_artifact(key="e2e-table", table=[{"a": 1, "b": 2}, {"a": 3, "b": 4}])
    create_link_artifact(key="e2e-link", link="https://example.com/report")
    progress = create_progress_artifact(progress=10.0, key="e2e-progress")
    update_progress_artifact(artifact_id=progress, progress=100.0)
    create_image_artifact(image_url="https://example.com/p.png", key="e2e-image")


@flow
def failing():
    remember("failing")
    raise RuntimeError("the flow fails")


if __name__ == "__main__":
    sequential()
    fan_out()
    try:
        retries()  # returns the always-failing task's state, so the flow fails
    except RuntimeError:
        pass
    flow_retry()
    parent()
    chatty()
    artifacts()
    try:
        failing()
    except RuntimeError:
        pass
    sys.stdout.flush()
    print(json.dumps(RUNS))
