"""Test helpers: throw-away databases on both backends and live `appliance serve` processes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg2

PG_ADMIN_URL = os.environ.get("APPLIANCE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
APPLIANCE_BIN = str(Path(sys.executable).parent / "appliance")
REPO = Path(__file__).resolve().parent.parent
# A fixed Fernet key for live servers: PostgreSQL start-up requires APPLIANCE_SECRET_KEY
# (several processes must share one key). Tests of key handling override or drop it.
TEST_SECRET_KEY = "dGVzdC1rZXktdGhlLWFwcGxpYW5jZS10ZXN0LXN1aXQ="


def pg_available() -> str | None:
    """None when the test PostgreSQL answers, else why not."""
    try:
        psycopg2.connect(PG_ADMIN_URL, connect_timeout=3).close()
        return None
    except psycopg2.Error as exc:
        return str(exc).strip()


def _admin():
    conn = psycopg2.connect(PG_ADMIN_URL, connect_timeout=5)
    conn.autocommit = True
    return conn


def pg_url_for(name: str, user: str = "postgres") -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    if user != "postgres":
        base = base.replace("postgres@", f"{user}@", 1)
    return f"{base}/{name}"


def create_pg_database(prefix: str = "appliance_test") -> tuple[str, str]:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with contextlib.closing(_admin()) as conn, conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    return name, pg_url_for(name)


def drop_pg_database(name: str) -> None:
    with contextlib.closing(_admin()) as conn, conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_execute(sql: str, params=None, database: str | None = None):
    url = pg_url_for(database) if database else PG_ADMIN_URL
    conn = psycopg2.connect(url, connect_timeout=5)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            try:
                return cur.fetchall()
            except psycopg2.ProgrammingError:
                return None
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def appliance_env(database_url: str, home: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLIANCE_", "PREFECT_"))}
    env.update(
        APPLIANCE_HOME=str(home),
        APPLIANCE_DATABASE_URL=database_url,
        APPLIANCE_LOG_LEVEL="info",
        APPLIANCE_SECRET_KEY=TEST_SECRET_KEY,
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_cli(args: list[str], env: dict, timeout: float = 60, stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:
    return subprocess.run(
        [APPLIANCE_BIN, *args], env=env, capture_output=True, text=True, timeout=timeout, stdin=stdin
    )


class LiveServer:
    """An `appliance serve` subprocess; ``stop()`` sends SIGTERM and returns its exit code."""

    def __init__(self, database_url: str, home: Path, workers: int = 1, **env):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.home = home
        self.log_path = home / f"server-{self.port}.log"
        home.mkdir(parents=True, exist_ok=True)
        self.env = appliance_env(database_url, home, APPLIANCE_WORKERS=workers, **env)
        self.proc: subprocess.Popen | None = None

    def start(self, wait: float = 30.0) -> LiveServer:
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [APPLIANCE_BIN, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not become healthy:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def errors_in_log(self) -> list[str]:
        return [
            line
            for line in self.log().splitlines()
            if " ERROR " in line or "Traceback" in line or "[ERROR]" in line
        ]

    def stop(self, timeout: float = 25.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        return self.proc.returncode
