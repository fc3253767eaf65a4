"""The container image, as far as this machine allows (no Docker engine here): the
Dockerfile passes hadolint at `warning` with the missing-HEALTHCHECK rule on, its
properties are checked on the parsed file, and the image's own entrypoint command runs
outside a container: wait for the database (bounded), migrate, serve, answer the image's
HEALTHCHECK, stop on SIGTERM, writing nothing outside its home and /tmp."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests import support

REPO = support.REPO
HADOLINT = str(Path(sys.executable).parent / "hadolint")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
            for line in joined.splitlines() if line.strip()]


def runtime_stage() -> list[tuple[str, str]]:
    parsed = instructions((REPO / "Dockerfile").read_text())
    starts = [i for i, (op, _) in enumerate(parsed) if op == "FROM"]
    assert len(starts) >= 2, "multi-stage build expected"
    return parsed[starts[-1]:]


def exec_form(stage, op: str) -> list[str]:
    (args,) = [a for o, a in stage if o == op]
    return json.loads(args)


def image_env(stage) -> dict:
    env = {}
    for op, args in stage:
        if op == "ENV":
            for key, value in re.findall(r"(\w+)=(\S+)", args):
                env[key] = value
    return env


def test_hadolint_passes_and_requires_a_healthcheck(tmp_path):
    lint = subprocess.run([HADOLINT, "--config", str(REPO / ".hadolint.yaml"), str(REPO / "Dockerfile")],
                          capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    without = re.sub(r"HEALTHCHECK --[^\n]*\\\n[^\n]*\n", "", (REPO / "Dockerfile").read_text())
    assert "HEALTHCHECK --" not in without
    (tmp_path / "Dockerfile").write_text(without)
    lint = subprocess.run([HADOLINT, "--config", str(REPO / ".hadolint.yaml"), str(tmp_path / "Dockerfile")],
                          capture_output=True, text=True)
    assert lint.returncode != 0 and "DL3057" in lint.stdout


def test_runtime_stage_properties():
    stage = runtime_stage()
    ops = [op for op, _ in stage]
    user = [a for o, a in stage if o == "USER"][-1]
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user), "numeric non-root user"
    assert exec_form(stage, "ENTRYPOINT")[:2] == ["/usr/bin/tini", "--"]
    assert exec_form(stage, "CMD") == ["serve"]
    health = [a for o, a in stage if o == "HEALTHCHECK"][0]
    assert "--start-period=" in health and "/api/health" in health
    labels = " ".join(a for o, a in stage if o == "LABEL")
    for key in ("title", "description", "version", "source", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels
    assert json.loads([a for o, a in stage if o == "VOLUME"][0]) == ["/data"]
    env = image_env(stage)
    assert env["APPLIANCE_HOME"] == "/data" and env["PYTHONDONTWRITEBYTECODE"] == "1"
    runs = " ".join(a for o, a in stage if o == "RUN")
    for compiler in ("gcc", "build-essential", "g++", "make "):
        assert compiler not in runs, f"{compiler} in the runtime stage"
    assert ops.index("USER") > max(i for i, op in enumerate(ops) if op == "RUN"), "nothing runs as root after USER"
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert ignored[1:2] == ["*"] or "*" in ignored, ".dockerignore starts from nothing"


def entrypoint_command() -> list[str]:
    """The image's ENTRYPOINT + CMD without tini (PID 1 here is the test)."""
    stage = runtime_stage()
    command = exec_form(stage, "ENTRYPOINT")[2:] + exec_form(stage, "CMD")
    assert command[0] == "appliance"
    return [support.APPLIANCE_BIN, *command[1:]]


def container_env(home: Path, database_url: str, port: int, **extra) -> dict:
    env = support.appliance_env(database_url, home, **extra)
    env.update({k: v for k, v in image_env(runtime_stage()).items() if k != "APPLIANCE_HOME"})
    env.update(APPLIANCE_HOST="127.0.0.1", APPLIANCE_PORT=str(port), TMPDIR=str(home / "tmp"))
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    return env


def test_entrypoint_waits_for_an_unreachable_database_then_fails_clearly(tmp_path):
    port = support.free_port()
    dead = f"postgresql://postgres@127.0.0.1:{support.free_port()}/nothing"
    env = container_env(tmp_path, dead, port, APPLIANCE_DB_WAIT_SECONDS=2)
    started = time.monotonic()
    result = subprocess.run(entrypoint_command(), env=env, capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    assert "cannot reach the database" in result.stderr
    assert 1.5 <= elapsed < 30, elapsed


@pytest.fixture
def pg_database():
    name, url = support.create_pg_database("appliance_image")
    yield url
    support.drop_pg_database(name)


def test_entrypoint_migrates_serves_passes_healthcheck_and_stops_on_sigterm(tmp_path, pg_database):
    port = support.free_port()
    home = tmp_path / "data"
    workdir = tmp_path / "root"  # stands for the read-only root: nothing may appear here
    home.mkdir()
    workdir.mkdir()
    env = container_env(home, pg_database, port)
    before = {p for p in (REPO / "appliance").rglob("*")} | {p for p in (REPO / "db").rglob("*")}
    proc = subprocess.Popen(entrypoint_command(), env=env, cwd=workdir, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "not ready in 30 s"
            time.sleep(0.1)
        revisions = support.run_cli(["database", "current"], env)
        assert revisions.returncode == 0 and revisions.stdout.strip()
        # The image's HEALTHCHECK command, run as Docker would.
        health = [a for o, a in runtime_stage() if o == "HEALTHCHECK"][0]
        check = json.loads(health.split("CMD", 1)[1].strip())
        assert subprocess.run(check, env=env, timeout=10).returncode == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(20)
    assert code == 0
    assert list(workdir.iterdir()) == []
    after = {p for p in (REPO / "appliance").rglob("*")} | {p for p in (REPO / "db").rglob("*")}
    assert after == before, "wrote into the installed package"


def test_one_image_runs_every_role(tmp_path):
    env = container_env(tmp_path, f"sqlite:///{tmp_path / 'appliance.db'}", support.free_port())
    base = entrypoint_command()[:1]
    for role in (["database", "upgrade", "-y"], ["database", "current"], ["notifier", "--help"], ["secrets", "--help"]):
        result = subprocess.run(base + role, env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, (shlex.join(role), result.stderr)
    assert os.path.exists(tmp_path / "appliance.db")


def test_the_wheel_the_image_installs_carries_the_console(tmp_path):
    """The image installs the project's wheel: it must hold the console's templates and assets
    (package data), not only its Python modules, and the build context must copy ui/."""
    import zipfile

    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
         "--wheel-dir", str(tmp_path), str(REPO)],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = tmp_path.glob("appliance-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("ui/templates/base.html", "ui/static/app.css", "ui/static/app.js", "ui/render.py",
                     "db/data/block_catalogue.json"):
        assert required in names, f"{required} missing from the wheel"
    assert ("COPY", "ui ./ui") in instructions((REPO / "Dockerfile").read_text())
    assert "!ui/" in (REPO / ".dockerignore").read_text().splitlines()
