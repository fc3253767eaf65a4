#!/usr/bin/env python3
"""run.py - `just bench`: the appliance and the real Prefect 3.8.8 server, side by side in one
run, on the same machine, under the same load generators.

Starts both servers on fresh databases (SQLite files, or fresh PostgreSQL databases with
``--backend postgres``), then for every benchmark runs it against Prefect and then against the
appliance, and prints one table: each headline figure for both, their ratio and the target.

  core       ../shared/bench/loadgen.py: W1 flow-run lifecycles (16 clients and 1), W2 log
             ingest, W3 task-run events over the websocket, W5 real SDK flows, W4 filters on a
             seeded database; memory idle and after the load (RSS of the process tree)
  lease      bench/lease_bench.py: acquire+release cycles/s at 16 and 50 clients on a limit of 5
  notify     bench/notify_compare.py: state change -> receiver latency and deliveries/s
             (the appliance's `appliance notifier` runs beside it)
  scheduler  bench/scheduler_bench.py: runs materialised for interval deployments, worker
             polling with scheduled runs in the pool, runs started per second by one worker
  boot       loadgen boot: exec to first healthy /health on the existing database

Every raw JSON line goes to ``.bench/<stamp>/results.jsonl``; the table goes to stdout and to
``.bench/<stamp>/table.md``. ``--quick`` shrinks every size (a smoke run, not figures).

  python bench/run.py                        # everything, SQLite
  python bench/run.py --suites core,lease --backend postgres
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg2

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PG_ADMIN = os.environ.get("APPLIANCE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
BENCH_KEY = "YmVuY2gta2V5LXRoZS1hcHBsaWFuY2UtYmVuY2gtcnVu"  # a Fernet key (32 bytes, base64)
SUITES = ("core", "lease", "notify", "scheduler", "boot")


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_admin(sql: str) -> None:
    conn = psycopg2.connect(PG_ADMIN)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql)
    conn.close()


@dataclass
class Server:
    """One server under test: its command, environment, state directory and process."""

    name: str
    home: Path
    port: int
    env: dict
    command: list[str]
    sidecars: list[list[str]] = field(default_factory=list)
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self, logdir: Path, timeout: float = 180) -> float:
        started = time.monotonic()
        out = open(logdir / f"{self.name}.log", "ab")
        self.procs = [subprocess.Popen(self.command, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)]
        while time.monotonic() - started < timeout:
            if self.procs[0].poll() is not None:
                raise SystemExit(f"{self.name} exited at start; see {logdir / (self.name + '.log')}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise SystemExit(f"{self.name} not healthy after {timeout} s")
        for sidecar in self.sidecars:
            self.procs.append(subprocess.Popen(sidecar, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                               stdin=subprocess.DEVNULL, start_new_session=True))
        return time.monotonic() - started

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        self.procs = []


def make_servers(workdir: Path, backend: str) -> tuple[Server, Server, list[str]]:
    """(prefect, appliance, databases to drop afterwards)."""
    drop = []
    prefect_home, ours_home = workdir / "prefect-home", workdir / "appliance-home"
    prefect_home.mkdir()
    ours_home.mkdir()
    prefect_env = {**os.environ, "PREFECT_HOME": str(prefect_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    ours_env = {**os.environ, "APPLIANCE_HOME": str(ours_home)}
    for key in [k for k in ours_env if k.startswith("PREFECT_")]:
        ours_env.pop(key)
    if backend == "postgres":
        suffix = uuid.uuid4().hex[:8]
        for db in (f"bench_prefect_{suffix}", f"bench_appliance_{suffix}"):
            pg_admin(f'CREATE DATABASE "{db}"')
            drop.append(db)
        base = PG_ADMIN.rsplit("/", 1)[0]
        prefect_env["PREFECT_API_DATABASE_CONNECTION_URL"] = (
            base.replace("postgresql://", "postgresql+asyncpg://", 1) + f"/{drop[0]}")
        ours_env["APPLIANCE_DATABASE_URL"] = f"{base}/{drop[1]}"
        ours_env["APPLIANCE_SECRET_KEY"] = BENCH_KEY
    prefect_port, ours_port = free_port(), free_port()
    prefect = Server("prefect", prefect_home, prefect_port, prefect_env,
                     [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)])
    ours = Server("appliance", ours_home, ours_port, ours_env,
                  [str(BIN / "appliance"), "serve", "--host", "127.0.0.1", "--port", str(ours_port)],
                  sidecars=[[str(BIN / "appliance"), "notifier"]])
    return prefect, ours, drop


class Runner:
    def __init__(self, args, workdir: Path, outdir: Path, replay: dict | None = None):
        self.args, self.workdir, self.outdir = args, workdir, outdir
        self.results: list[dict] = []
        self.rows: list[tuple] = []  # (benchmark, metric, prefect, ours, better, target)
        self.replay = replay  # {(bench, target): line} of an earlier run: tabulate, run nothing

    def run(self, name: str, label: str, command: list[str], timeout: float = 3600) -> dict:
        if self.replay is not None:
            line = self.replay.get((name, label), {"ok": False, "error": "not in the replayed run", "bench": name})
            self.results.append(line)
            return line
        log(f"[{datetime.now(UTC):%H:%M:%S}] {name} / {label}: {shlex.join(command[1:])}")
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
            lines = proc.stdout.strip().splitlines()
            line = json.loads(lines[-1]) if lines else {"ok": False, "error": proc.stderr[-500:]}
        except (subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
            line = {"ok": False, "error": str(exc)[:500]}
        line.update(bench=name, target=label)
        self.results.append(line)
        with open(self.outdir / "results.jsonl", "a") as fh:
            fh.write(json.dumps(line) + "\n")
        if not line.get("ok"):
            log(f"  NOT OK: {json.dumps(line)[:600]}")
        return line

    def pair(self, name: str, servers, build, timeout: float = 3600) -> dict[str, dict]:
        """Run one benchmark against each server in turn; ``build(server)`` gives the argv."""
        return {s.name: self.run(name, s.name, build(s), timeout) for s in servers}

    def row(self, bench: str, metric: str, pair: dict[str, dict], path: str, better: str, target: float | None,
            note: str = "", even_failed: bool = False) -> None:
        def pick(line):
            if not line.get("ok") and not even_failed:
                return None
            value = line.get("results", line)
            for key in path.split("."):
                value = value.get(key) if isinstance(value, dict) else None
            if value is None and path.startswith("retries.") and line.get("ok"):
                return 0  # no retry of that kind
            return value

        self.rows.append((bench, metric, pick(pair["prefect"]), pick(pair["appliance"]), better, target, note,
                          pair["prefect"], pair["appliance"]))


def retries_note(line: dict) -> str:
    retries = (line.get("results") or {}).get("retries")
    return f"retries {retries}" if retries else ""


def core(runner: Runner, prefect: Server, ours: Server, quick: bool) -> None:
    loadgen = [sys.executable, str(runner.args.loadgen)]
    servers = (prefect, ours)
    size = (lambda full, small: small if quick else full)  # noqa: E731

    def lg(workload, *extra):
        return lambda s: loadgen + [workload, "--url", s.url, "--label", s.name, *extra]

    idle = runner.pair("rss-idle", servers, lambda s: loadgen + ["rss", "--server-port", str(s.port)])
    w1 = runner.pair("w1-16", servers, lambda s: lg("w1", "-c", "16", "--runs", str(size(160, 32)),
                                                    "--server-port", str(s.port))(s))
    runner.row("W1 flow-run lifecycle, 16 clients", "runs/s", w1, "runs_per_s", "higher", 10)
    runner.row("W1, 16 clients", "p99 ms", w1, "latency_all.p99_ms", "lower", None)
    runner.row("W1, 16 clients", "server CPU s", w1, "server_cpu_s", "lower", None)
    w1s = runner.pair("w1-1", servers, lambda s: lg("w1", "-c", "1", "--runs", str(size(100, 20)),
                                                    "--server-port", str(s.port))(s))
    runner.row("W1 flow-run lifecycle, 1 client", "runs/s", w1s, "runs_per_s", "higher", None)
    w2 = runner.pair("w2", servers, lg("w2", "--lines", str(size(20000, 2000))))
    runner.row("W2 log ingest", "lines/s", w2, "lines_per_s", "higher", 10)
    w3 = runner.pair("w3", servers, lg("w3", "-n", str(size(2000, 200))))
    runner.row("W3 events -> task runs", "task runs/s end to end", w3, "task_runs_per_s_e2e", "higher", 10)
    runner.row("W3", "s until all visible", w3, "visible_all_s", "lower", None)
    w5 = runner.pair("w5", servers, lg("w5", "--python", sys.executable, "-k", str(size(20, 3))))
    runner.row("W5 real SDK, flow with 10 tasks", "flows/s", w5, "flows_per_s", "higher", 1)
    w4 = runner.pair("w4", servers, lg("w4", "--seed", str(size(20000, 1000)), "--seed-task-runs",
                                       str(size(5000, 200)), "--retry-base", "0.05"))
    for key, label in (("flow_runs_filter", "/flow_runs/filter"), ("flow_runs_filter_name", "filter by name like_"),
                       ("flow_runs_filter_state", "filter by state"), ("flow_runs_count", "/flow_runs/count"),
                       ("task_runs_filter_state", "/task_runs/filter by state")):
        runner.row(f"W4 {label} on {size(20000, 1000)} runs", "p50 ms", w4, f"{key}.p50_ms", "lower",
                   1 / 3 if key == "flow_runs_filter" else None)
    after = runner.pair("rss-after", servers, lambda s: loadgen + ["rss", "--server-port", str(s.port)])
    runner.row("memory idle", "RSS MiB", idle, "rss_mib", "lower", 1 / 4)
    runner.row("memory after W1-W5 and W4's seeding", "RSS MiB", after, "rss_mib", "lower", 1 / 4)


def lease(runner: Runner, prefect: Server, ours: Server, quick: bool) -> None:
    for clients, cycles in ((16, 400), (50, 400)):
        cycles = 40 if quick else cycles
        pair = runner.pair(f"lease-{clients}", (prefect, ours), lambda s, c=clients, n=cycles: [
            sys.executable, str(REPO / "bench" / "lease_bench.py"), "--url", s.url, "--label", s.name,
            "-c", str(c), "--cycles", str(n), "--hold", "0.01"])
        runner.row(f"lease acquire+release, {clients} clients, limit 5", "cycles/s", pair, "cycles_per_s", "higher", 10)
        runner.row(f"lease, {clients} clients", "503 answers", pair, "retries.503", "lower", None)


def notify(runner: Runner, prefect: Server, ours: Server, quick: bool) -> None:
    count = 50 if quick else 1000
    pair = runner.pair("notify", (prefect, ours), lambda s: [
        sys.executable, str(REPO / "bench" / "notify_compare.py"), "--url", s.url, "--label", s.name,
        "--notifications", str(count), "--timeout", "900"])
    runner.row(f"notifications, {count} Failed runs -> receiver", "p50 latency ms", pair, "latency_p50_ms", "lower", 1 / 5)
    runner.row("notifications", "p99 latency ms", pair, "latency_p99_ms", "lower", None)
    runner.row("notifications", "deliveries/s", pair, "deliveries_per_s", "higher", 10)
    runner.row("notifications", "lost", pair, "lost", "lower", None, even_failed=True)


def scheduler(runner: Runner, prefect: Server, ours: Server, quick: bool) -> None:
    script = [sys.executable, str(REPO / "bench" / "scheduler_bench.py")]
    servers = (prefect, ours)
    deployments = 20 if quick else 100
    pair = runner.pair("scheduler", servers, lambda s: script + [
        "scheduler", "--url", s.url, "--label", s.name, "--deployments", str(deployments)])
    runner.row(f"scheduler, {deployments} interval deployments", "s to materialise", pair, "total_seconds", "lower", 1 / 10)
    runs = 2000 if quick else 10000
    pair = runner.pair("poll", servers, lambda s: script + ["poll", "--url", s.url, "--label", s.name, "--runs", str(runs)])
    runner.row(f"worker poll, {runs} scheduled runs in the pool", "p50 ms", pair, "p50_ms", "lower", 1 / 3)
    pair = runner.pair("worker", servers, lambda s: script + [
        "worker", "--url", s.url, "--label", s.name, "--runs", "4" if quick else "10"])
    runner.row("process worker", "runs started/s", pair, "runs_started_per_second", "higher", 10)
    runner.row("process worker", "s until every run COMPLETED", pair, "total_seconds", "lower", None)


def boot(runner: Runner, prefect: Server, ours: Server, quick: bool) -> None:
    """Servers stopped: time exec -> healthy on their existing databases."""
    loadgen = [sys.executable, str(runner.args.loadgen)]
    reps = "2" if quick else "3"

    def cmd(s: Server):
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in s.env.items()
                       if k.startswith(("PREFECT_", "APPLIANCE_")))
        return loadgen + ["boot", "--url", s.url, "--label", s.name, "--reps", reps,
                          "--cmd", f"env {env} {shlex.join(s.command)}", "--log", str(runner.outdir / "boot.log")]

    pair = runner.pair("boot", (prefect, ours), cmd)
    runner.row("boot, existing database", "s to healthy (median)", pair, "boot_s_median", "lower", None,
               "target < 1 s")
    runner.row("boot", "RSS MiB settled", pair, "rss_mib_settled_median", "lower", 1 / 4)


def verdict(prefect, ours, better, target) -> tuple[str, str]:
    if prefect is None or ours is None or not isinstance(prefect, int | float) or not isinstance(ours, int | float):
        return "", ""
    if prefect == 0:
        return ("same" if ours == 0 else ""), ""
    if better == "higher":
        ratio = ours / prefect if prefect else float("inf")
        shown = f"{ratio:.1f}x"
        met = "" if target is None else ("met" if ratio >= target else "NOT met")
        want = "" if target is None else f">= {target:g}x"
    else:
        ratio = ours / prefect if prefect else float("inf")
        shown = f"{ratio:.3f}" if ratio < 1 else f"{ratio:.2f}"
        met = "" if target is None else ("met" if ratio <= target else "NOT met")
        want = "" if target is None else f"<= {target:.3g}"
    return shown, f"{want} {met}".strip()


def fmt(value) -> str:
    if value is None:
        return "failed"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3g}"
    return str(value)


def table(rows, backend: str) -> str:
    head = f"| benchmark ({backend}) | metric | Prefect 3.8.8 | appliance | ratio | target |\n|---|---|---|---|---|---|"
    lines = [head]
    previous = None
    for bench, metric, prefect, ours, better, target, note, pline, oline in rows:
        ratio, want = verdict(prefect, ours, better, target)
        first_of_pair, previous = pline is not previous, pline  # retries noted once per benchmark run
        notes = "; ".join(filter(None, [note, first_of_pair and retries_note(pline) and f"Prefect {retries_note(pline)}",
                                        first_of_pair and retries_note(oline) and f"appliance {retries_note(oline)}"]))
        lines.append(f"| {bench} | {metric} | {fmt(prefect)} | {fmt(ours)} | {ratio} | {want}{' — ' + notes if notes else ''} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--suites", default=",".join(SUITES), help=f"comma-separated, of {', '.join(SUITES)}")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of the harness")
    parser.add_argument("--replay", type=Path, help="a results.jsonl of an earlier run: print its table, run nothing")
    parser.add_argument("--loadgen", type=Path,
                        default=Path(os.environ.get("APPLIANCE_LOADGEN", REPO.parent / "shared" / "bench" / "loadgen.py")))
    args = parser.parse_args(argv)
    suites = [s for s in args.suites.split(",") if s]
    unknown = set(suites) - set(SUITES)
    if unknown:
        parser.error(f"unknown suites: {', '.join(sorted(unknown))}")
    if "core" in suites and not args.loadgen.exists():
        parser.error(f"no load generator at {args.loadgen} (set APPLIANCE_LOADGEN)")
    if args.replay:
        return replay(args, suites)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    outdir = REPO / ".bench" / f"{stamp}-{args.backend}"
    outdir.mkdir(parents=True)
    workdir = Path(tempfile.mkdtemp(prefix="appliance-bench-"))
    prefect, ours, drop = make_servers(workdir, args.backend)
    runner = Runner(args, workdir, outdir)
    try:
        for server in (prefect, ours):
            log(f"starting {server.name} on {server.url}: {server.start(outdir):.1f} s")
        for suite in suites:
            if suite != "boot":
                globals()[suite](runner, prefect, ours, args.quick)
        prefect.stop()
        ours.stop()
        if "boot" in suites:
            boot(runner, prefect, ours, args.quick)
    finally:
        prefect.stop()
        ours.stop()
        for db in drop:
            pg_admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        shutil.rmtree(workdir, ignore_errors=True)
    print(render(runner, args, outdir))
    log(f"raw lines: {outdir / 'results.jsonl'}")
    return 0 if all(r.get("ok") for r in runner.results) else 1


def render(runner: Runner, args, outdir: Path) -> str:
    header = (f"{datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()}-core machine, {args.backend}, load generator on the "
              f"same machine{', QUICK sizes (not figures)' if args.quick else ''}")
    text = f"{header}\n\n{table(runner.rows, args.backend)}\n"
    (outdir / "table.md").write_text(text)
    return text


def replay(args, suites: list[str]) -> int:
    """The table of an earlier run's results.jsonl (e.g. one cut short), for the given suites."""
    lines = [json.loads(x) for x in args.replay.read_text().splitlines() if x.strip()]
    recorded = {(line["bench"], line["target"]): line for line in lines}
    workdir = Path(tempfile.mkdtemp(prefix="appliance-bench-replay-"))
    prefect, ours, _ = make_servers(workdir, "sqlite")  # commands only: nothing is started
    runner = Runner(args, workdir, args.replay.parent, replay=recorded)
    for suite in suites:
        globals()[suite](runner, prefect, ours, args.quick)
    shutil.rmtree(workdir, ignore_errors=True)
    print(render(runner, args, args.replay.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
