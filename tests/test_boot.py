"""`appliance serve` as a process: concurrent boots migrate once, SIGTERM exits cleanly,
and SQLite writes from many concurrent clients never answer "database is locked"."""

from __future__ import annotations

import asyncio
import time

import httpx

from db.migrate import all_revisions
from tests import support


def _migration_rows(url: str) -> list[str]:
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url.split("sqlite:///", 1)[1])
        try:
            return [r[0] for r in conn.execute("SELECT name FROM migratehistory ORDER BY id")]
        finally:
            conn.close()
    name = url.rsplit("/", 1)[1]
    return [r[0] for r in support.pg_execute("SELECT name FROM migratehistory ORDER BY id", database=name)]


def test_three_processes_boot_at_once_and_migrate_once(database_url, tmp_home):
    servers = [support.LiveServer(database_url, tmp_home / f"s{i}") for i in range(3)]
    try:
        for server in servers:  # start all three before waiting on any
            server.env["APPLIANCE_HOME"] = str(tmp_home)
            server._log = open(server.log_path, "w")
            import subprocess

            server.proc = subprocess.Popen(
                [support.APPLIANCE_BIN, "serve", "--host", "127.0.0.1", "--port", str(server.port)],
                env=server.env, stdout=server._log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + 60
        for server in servers:
            while True:
                assert server.proc.poll() is None, server.log()
                try:
                    if httpx.get(f"{server.url}/ready", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, server.log()
                time.sleep(0.05)
        assert _migration_rows(database_url) == all_revisions()
        for server in servers:
            assert server.errors_in_log() == [], server.log()
    finally:
        codes = [server.stop() for server in servers]
    assert codes == [0, 0, 0]


def test_sigterm_shuts_down_cleanly(tmp_home):
    server = support.LiveServer(f"sqlite:///{tmp_home / 'a.db'}", tmp_home).start()
    assert httpx.get(f"{server.url}/health").json() is True
    assert server.stop() == 0
    assert server.errors_in_log() == []


def test_serve_waits_for_the_database_then_gives_up_clearly(tmp_home):
    result = support.run_cli(
        ["serve", "--port", str(support.free_port())],
        support.appliance_env("postgresql://postgres@127.0.0.1:1/nowhere", tmp_home, APPLIANCE_DB_WAIT_SECONDS=1),
        timeout=30,
    )
    assert result.returncode == 1
    assert "cannot reach the database" in result.stderr


def test_no_database_locked_under_32_concurrent_writers(tmp_home):
    """32 clients each creating flow runs and walking them through states, at once, on SQLite."""
    server = support.LiveServer(f"sqlite:///{tmp_home / 'busy.db'}", tmp_home).start()
    statuses: list[int] = []

    async def client(i: int, flow_id: str):
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            for _ in range(5):
                r = await http.post("/flow_runs/", json={"flow_id": flow_id, "state": {"type": "SCHEDULED"}})
                statuses.append(r.status_code)
                run_id = r.json()["id"]
                for state in ("PENDING", "RUNNING", "COMPLETED"):
                    r = await http.post(f"/flow_runs/{run_id}/set_state", json={"state": {"type": state}})
                    statuses.append(r.status_code)
                r = await http.post("/logs/", json=[
                    {"name": "t", "level": 20, "message": f"m{i}", "timestamp": "2026-11-24T10:00:00Z",
                     "flow_run_id": run_id}
                ])
                statuses.append(r.status_code)

    async def main():
        async with httpx.AsyncClient(base_url=server.url) as http:
            flow_id = (await http.post("/flows/", json={"name": "busy"})).json()["id"]
        await asyncio.gather(*(client(i, flow_id) for i in range(32)))

    try:
        asyncio.run(main())
        assert len(statuses) == 32 * 5 * 5
        assert set(statuses) == {201}, {s: statuses.count(s) for s in set(statuses)}
        count = httpx.post(f"{server.url}/flow_runs/count", json={
            "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}}).json()
        assert count == 160
        assert "database is locked" not in server.log()
        assert server.errors_in_log() == []
    finally:
        server.stop()


def _children(pid: int) -> list[int]:
    from pathlib import Path

    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if int(text[text.rindex(")") + 2:].split()[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_one_worker_is_one_process_and_sigterm_exits_0(tmp_home):
    """The default (one worker) serves from one uvicorn process: no gunicorn master."""
    server = support.LiveServer(f"sqlite:///{tmp_home / 'one.db'}", tmp_home).start()
    try:
        assert httpx.get(f"{server.url}/health").json() is True
        assert _children(server.proc.pid) == []
        cmdline = open(f"/proc/{server.proc.pid}/cmdline", "rb").read().split(b"\0")
        assert b"appliance.uvicorn_main" in cmdline
        assert "appliance_http_requests_total" in httpx.get(f"{server.url}/metrics").text
    finally:
        code = server.stop()
    assert code == 0
    assert "Application shutdown complete" in server.log()
    assert server.errors_in_log() == []


def test_server_mode_gunicorn_keeps_the_master_for_one_worker(tmp_home):
    server = support.LiveServer(f"sqlite:///{tmp_home / 'g.db'}", tmp_home, APPLIANCE_SERVER_MODE="gunicorn").start()
    try:
        assert httpx.get(f"{server.url}/health").json() is True
        assert len(_children(server.proc.pid)) == 1
    finally:
        assert server.stop() == 0
