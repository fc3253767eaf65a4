"""Variables and concurrency limits with the real SDK and CLI (issue 7, item 7).

`prefect gcl create NAME --limit 1` and two flow processes using `with concurrency(NAME)`:
their critical sections never overlap. `prefect concurrency-limit create serial 1` and
three tagged tasks submitted at once: they never overlap while the untagged ones do.
Variables through the SDK, the CLI and HTTP.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import SCRIPTS, last_json_line, sdk_env

PREFECT = str(Path(sys.executable).parent / "prefect")
FLOWS = SCRIPTS / "concurrency_flows.py"


def cli(env, *args, ok=True, timeout=90):
    result = subprocess.run([PREFECT, *args], env=env, capture_output=True, text=True, timeout=timeout)
    if ok:
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def sections(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def overlapping(intervals: list[dict]) -> list[tuple[str, str]]:
    ordered = sorted(intervals, key=lambda s: s["start"])
    return [(a["who"], b["who"]) for a, b in zip(ordered, ordered[1:], strict=False) if b["start"] < a["end"]]


@pytest.fixture(scope="module")
def env(live_server, tmp_path_factory):
    return sdk_env(live_server.url, tmp_path_factory.mktemp("concurrency-sdk"), PREFECT_CLI_PROMPT="false", COLUMNS=250)


def test_global_limit_serialises_two_flow_processes(api, env, tmp_path):
    cli(env, "gcl", "create", "one-at-a-time", "--limit", "1")
    out = tmp_path / "gcl.jsonl"
    procs = [
        subprocess.Popen(
            [sys.executable, str(FLOWS), "gcl", "one-at-a-time", str(out)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=180)[0] for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), outputs
    seen = sections(out)
    assert len(seen) == 6 and len({s["who"].split("-")[0] for s in seen}) == 2
    assert overlapping(seen) == []

    limit = api.get("/v2/concurrency_limits/one-at-a-time").json()
    assert limit["active_slots"] == 0
    listed = cli(env, "gcl", "ls").stdout
    assert "one-at-a-time" in listed
    inspected = cli(env, "gcl", "inspect", "one-at-a-time", "--output", "json").stdout
    assert json.loads(inspected)["limit"] == 1
    cli(env, "gcl", "delete", "one-at-a-time")
    assert api.get("/v2/concurrency_limits/one-at-a-time").status_code == 404


def test_tag_limit_serialises_tagged_tasks_only(api, env, tmp_path):
    cli(env, "concurrency-limit", "create", "serial", "1")
    out = tmp_path / "tags.jsonl"
    result = subprocess.run(
        [sys.executable, str(FLOWS), "tags", str(out)], env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    seen = sections(out)
    tagged = [s for s in seen if s["who"].startswith("tagged")]
    untagged = [s for s in seen if s["who"].startswith("untagged")]
    assert len(tagged) == 3 and len(untagged) == 3
    assert overlapping(tagged) == []
    assert overlapping(untagged), "untagged tasks ran one by one: the limit leaked onto them"

    view = api.get("/concurrency_limits/tag/serial").json()
    assert view["concurrency_limit"] == 1 and view["active_slots"] == []
    assert "serial" in cli(env, "concurrency-limit", "ls").stdout
    assert "serial" in cli(env, "concurrency-limit", "inspect", "serial").stdout
    cli(env, "concurrency-limit", "delete", "serial")
    assert api.get("/concurrency_limits/tag/serial").status_code == 404


def test_variables_through_sdk_cli_and_http(api, env):
    result = subprocess.run(
        [sys.executable, str(FLOWS), "variables"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sdk = last_json_line(result.stdout)
    assert sdk == {
        "got": {"answer": 42, "tags": ["x"]},
        "refused_without_overwrite": True,
        "after_overwrite": "overwritten",
        "unset": True,
        "default_after_unset": "fallback",
    }

    cli(env, "variable", "set", "cli_var", "hello", "--tag", "ops")
    assert cli(env, "variable", "get", "cli_var").stdout.strip() == '"hello"'  # the CLI prints JSON
    refused = cli(env, "variable", "set", "cli_var", "again", ok=False)
    assert refused.returncode != 0
    cli(env, "variable", "set", "cli_var", "again", "--overwrite", "--tag", "ops2")
    assert "cli_var" in cli(env, "variable", "ls").stdout
    over_http = api.get("/variables/name/cli_var").json()
    assert over_http["value"] == "again" and over_http["tags"] == ["ops2"]
    cli(env, "variable", "unset", "cli_var")
    assert api.get("/variables/name/cli_var").status_code == 404
    assert cli(env, "variable", "get", "cli_var", ok=False).returncode != 0
