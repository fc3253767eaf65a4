"""No over-admission, proven against live servers (issue 7, item 6).

Fifty clients, each on its own connection, race `increment-with-lease` at a limit of 5
on a live `appliance serve` (2 workers) over SQLite and over PostgreSQL. Two observers
check at every moment: the clients' own count of held leases, and the server's
`active_slots` polled all the time. Then a holder process takes every slot and is
SIGKILLed: the slots come back once its leases expire (minimum lease 60 s, as Prefect),
and the race runs meanwhile on another limit, so both backends wait only once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import httpx
import pytest

from tests import support

LIMIT = 5
CLIENTS = 50
CYCLES = 3
HOLD_S = 0.03


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    home = tmp_path_factory.mktemp("leases")
    dbname, pg_url = support.create_pg_database("appliance_leases")
    started = []
    try:
        for name, url in (("sqlite", f"sqlite:///{home / 'appliance.db'}"), ("postgres", pg_url)):
            started.append((name, support.LiveServer(url, home / name, workers=2).start()))
        yield dict(started)
    finally:
        codes = {name: server.stop() for name, server in started}
        support.drop_pg_database(dbname)
    assert all(code == 0 for code in codes.values()), codes


def create_limit(url: str, name: str, limit: int = LIMIT) -> None:
    resp = httpx.post(f"{url}/v2/concurrency_limits/", json={"name": name, "limit": limit}, timeout=10)
    assert resp.status_code == 201, resp.text


def active_slots(url: str, name: str) -> int:
    return httpx.get(f"{url}/v2/concurrency_limits/{name}", timeout=10).json()["active_slots"]


class Race:
    """CLIENTS threads doing CYCLES acquire/hold/release each; observers record the peaks."""

    def __init__(self, url: str, name: str):
        self.url, self.name = url, name
        self.lock = threading.Lock()
        self.held = self.peak_held = self.peak_server = 0
        self.statuses: dict[int, int] = {}
        self.errors: list[str] = []
        self.done = threading.Event()

    def count(self, status: int) -> None:
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def client(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as http:
            for _ in range(CYCLES):
                deadline = time.monotonic() + 90
                while True:
                    resp = http.post(
                        "/v2/concurrency_limits/increment-with-lease",
                        json={"names": [self.name], "slots": 1, "lease_duration": 60},
                    )
                    self.count(resp.status_code)
                    if resp.status_code == 200:
                        break
                    if resp.status_code != 423 or time.monotonic() > deadline:
                        self.errors.append(f"{resp.status_code} {resp.text[:200]}")
                        return
                    # Honour Retry-After, capped so the test stays short.
                    time.sleep(min(float(resp.headers["Retry-After"]), 0.2))
                with self.lock:
                    self.held += 1
                    self.peak_held = max(self.peak_held, self.held)
                time.sleep(HOLD_S)
                with self.lock:
                    self.held -= 1
                release = http.post(
                    "/v2/concurrency_limits/decrement-with-lease", json={"lease_id": resp.json()["lease_id"]}
                )
                self.count(release.status_code)

    def observer(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while not self.done.is_set():
                seen = http.get(f"/v2/concurrency_limits/{self.name}").json()["active_slots"]
                self.peak_server = max(self.peak_server, seen)
                time.sleep(0.005)

    def run(self) -> Race:
        watcher = threading.Thread(target=self.observer)
        watcher.start()
        threads = [threading.Thread(target=self.client) for _ in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.done.set()
        watcher.join()
        return self


HOLDER = textwrap.dedent(
    """
    import sys, time, httpx
    url, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    for _ in range(count):
        resp = httpx.post(f"{url}/v2/concurrency_limits/increment-with-lease",
                          json={"names": [name], "slots": 1, "lease_duration": 60}, timeout=10)
        assert resp.status_code == 200, resp.text
    print("holding", flush=True)
    time.sleep(3600)
    """
)


def kill_a_holder(url: str, name: str) -> float:
    """Start a process that takes every slot of `name`, SIGKILL it; return the kill time."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, url, name, str(LIMIT)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "holding"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return time.monotonic()


def test_fifty_clients_never_over_admit_and_dead_holders_free_their_slots(servers):
    killed_at = {}
    for backend, server in servers.items():
        create_limit(server.url, "held-by-the-dead")
        killed_at[backend] = kill_a_holder(server.url, "held-by-the-dead")
        assert active_slots(server.url, "held-by-the-dead") == LIMIT
        refused = httpx.post(
            f"{server.url}/v2/concurrency_limits/increment-with-lease",
            json={"names": ["held-by-the-dead"], "slots": 1},
            timeout=10,
        )
        assert refused.status_code == 423

    # While the dead holder's leases run out, the race on both backends at once.
    races = {}
    for server in servers.values():
        create_limit(server.url, "raced")
    threads = [
        threading.Thread(target=lambda b=b, s=s: races.__setitem__(b, Race(s.url, "raced").run()))
        for b, s in servers.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for backend, race in races.items():
        assert not race.errors, (backend, race.errors[:5])
        assert race.statuses.get(200, 0) == CLIENTS * CYCLES, (backend, race.statuses)
        assert set(race.statuses) <= {200, 204, 423}, (backend, race.statuses)  # no 5xx, no 503
        assert race.peak_held <= LIMIT, (backend, race.peak_held)
        assert race.peak_server <= LIMIT, (backend, race.peak_server)
        assert race.peak_held >= 2, (backend, race.peak_held)  # the race did contend
        assert active_slots(servers[backend].url, "raced") == 0, backend

    # The dead holder's slots come back after its 60 s leases expire (sweeper or admission).
    for backend, server in servers.items():
        deadline = killed_at[backend] + 60 + 30
        while True:
            resp = httpx.post(
                f"{server.url}/v2/concurrency_limits/increment-with-lease",
                json={"names": ["held-by-the-dead"], "slots": LIMIT},
                timeout=10,
            )
            if resp.status_code == 200:
                break
            assert resp.status_code == 423, resp.text
            assert time.monotonic() < deadline, f"{backend}: slots not freed 90 s after the holder died"
            time.sleep(1)
        assert time.monotonic() - killed_at[backend] >= 55, backend  # not before the lease ran out
        assert active_slots(server.url, "held-by-the-dead") == LIMIT
        httpx.post(
            f"{server.url}/v2/concurrency_limits/decrement-with-lease",
            json={"lease_id": resp.json()["lease_id"]},
            timeout=10,
        )
        assert active_slots(server.url, "held-by-the-dead") == 0
        assert not server.errors_in_log(), server.errors_in_log()
