"""End-to-end fixtures: a live `appliance serve` (2 workers) per backend and the real SDK."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests import support

SCRIPTS = Path(__file__).parent / "scripts"


def sdk_env(api_url: str, home: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "APPLIANCE_"))}
    env.update(
        PREFECT_API_URL=api_url,
        PREFECT_HOME=str(home / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_TO_API_BATCH_INTERVAL="0.5",
        **{k: str(v) for k, v in extra.items()},
    )
    return env


def run_script(script: Path, api_url: str, home: Path, timeout: float = 240, **extra) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(script)],
        env=sdk_env(api_url, home, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def last_json_line(output: str) -> dict:
    for line in reversed(output.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise AssertionError(f"no JSON line in output:\n{output[-3000:]}")


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return value
        time.sleep(interval)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def live_server(request, tmp_path_factory):
    home = tmp_path_factory.mktemp(f"e2e-{request.param}")
    if request.param == "sqlite":
        url, dbname = f"sqlite:///{home / 'appliance.db'}", None
    else:
        dbname, url = support.create_pg_database("appliance_e2e")
    # A short AwaitingConcurrencySlot wait keeps the deployment-concurrency tests quick.
    server = support.LiveServer(url, home, workers=2, APPLIANCE_DEPLOYMENT_SLOT_WAIT_SECONDS=2).start()
    yield server
    code = server.stop()
    if dbname:
        support.drop_pg_database(dbname)
    assert code == 0, server.log()


@pytest.fixture(scope="module")
def api(live_server):
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        yield client
