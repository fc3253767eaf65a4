#!/usr/bin/env python3
"""ui_bench.py - `just bench-ui`: how fast the console is on a big database, beside Prefect's UI.

Three parts (``--parts``, default all):

  pages    Seeds (or reuses) a big database with bench/ui_seed.py (1,000,000 runs and 10,000,000
           log lines on PostgreSQL, 100,000 / 1,000,000 on SQLite), starts a live `appliance serve`
           on it and times every console page with one keep-alive client on loopback: K requests
           after W warm-ups, p50/p95/max of the time to the full response (and of the
           Server-Timing header when a page sends one), the bytes of the page plus every
           /ui-assets/ file it links. Which pages exist is discovered (a page that does not
           answer 200 is reported as missing, not timed). Pages over the targets (p95 < 100 ms on
           PostgreSQL, < 150 ms on SQLite; < 150 KB with assets) are then replayed in-process
           with every SQL statement recorded, and their slowest queries are EXPLAIN ANALYZEd.
  browser  The real Prefect 3.8.8 server (its own SQLite database) and the appliance, each seeded
           with the same runs through the REST API (--compare-runs, 2,000): headless Chromium,
           cold cache, time from navigation until the first run row of the runs list is visible,
           and the bytes transferred (DevTools protocol, encoded sizes) until then and once the
           network is idle.
  api      The REST API must not get slower with the console mounted: ../shared/bench/loadgen.py
           W1 (16 clients) and W4 (filters on seeded runs) against the appliance with
           APPLIANCE_UI_ENABLED=true and =false on one fresh database, alternating, medians of
           --api-repeat runs each, and the ratio (target: within 5 %).

One markdown table goes to stdout and ``.bench/<stamp>-ui-<backend>/table.md``; every figure is a
JSON line in ``results.jsonl`` beside it. The seeded database is kept for the next run
(PostgreSQL ``appliance_uibench``, SQLite ``.bench/uibench.db``).

  python bench/ui_bench.py --backend postgres                     # 1M runs, 10M logs
  python bench/ui_bench.py --backend sqlite --runs 20000 --logs 200000 --parts pages
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode

import httpx

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))

import ui_seed  # noqa: E402


def _load_bench_run():
    spec = importlib.util.spec_from_file_location("bench_run", BENCH / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bench_run = _load_bench_run()
Server = bench_run.Server
free_port = bench_run.free_port
log = bench_run.log

TARGET_MS = {"postgres": 100.0, "sqlite": 150.0}
TARGET_BYTES = 150_000
API_TARGET = 0.05
ROW_SELECTOR = 'a[href*="/runs/flow-run/"]'  # a run's link in a row of the runs list: both UIs
# Query parameters of the console's pages (ui/dashboard.py, ui/runs.py).
DASHBOARD_WINDOW = "window"
RUNS_FILTERS = {"state": "state", "flow": "flow", "tag": "tag", "name": "q"}
DEEP_PAGES = 20


# --- results -------------------------------------------------------------------------------


class Results:
    def __init__(self, outdir: Path | None):
        self.outdir = outdir
        self.lines: list[dict] = []

    def add(self, bench: str, **fields) -> dict:
        line = {"bench": bench, **fields, "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
                "loadavg": [round(x, 2) for x in os.getloadavg()], "host_cores": os.cpu_count()}
        self.lines.append(line)
        if self.outdir:
            with open(self.outdir / "results.jsonl", "a") as fh:
                fh.write(json.dumps(line) + "\n")
        return line

    def of(self, bench: str) -> list[dict]:
        return [line for line in self.lines if line["bench"] == bench]


def pct(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


# --- the appliance ---------------------------------------------------------------------------


def appliance(url: str, home: Path, ui: bool = True, **extra) -> Server:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLIANCE_", "PREFECT_"))}
    env.update(APPLIANCE_HOME=str(home), APPLIANCE_DATABASE_URL=url, APPLIANCE_SECRET_KEY=ui_seed.BENCH_KEY,
               APPLIANCE_UI_ENABLED="true" if ui else "false", APPLIANCE_LOG_LEVEL="warning")
    env.update({k: str(v) for k, v in extra.items()})
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    return Server(f"appliance-ui-{'on' if ui else 'off'}", home, port, env,
                  [str(bench_run.BIN / "appliance"), "serve", "--host", "127.0.0.1", "--port", str(port)])


def base_of(server: Server) -> str:
    return f"http://127.0.0.1:{server.port}"


# --- pages ---------------------------------------------------------------------------------------


class PageParser(HTMLParser):
    """Links, /ui-assets/ references and data-live blocks of a page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str]] = []  # (href, rel)
        self.assets: list[str] = []
        self.live: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("href", "src"):
            value = attrs.get(key) or ""
            if value.startswith("/ui-assets/"):
                self.assets.append(value.split("#", 1)[0])
        if tag == "a" and attrs.get("href"):
            self.links.append((attrs["href"], attrs.get("rel") or ""))
        if attrs.get("data-live"):
            self.live.append(attrs["data-live"])


def parse(html: str) -> PageParser:
    parser = PageParser()
    parser.feed(html)
    return parser


def known_pages(manifest: dict) -> list[tuple[str, str]]:
    """(name, path) of every page the benchmark times, in table order."""
    heavy = manifest["heavy_run_id"]
    flow = manifest["flow_ids"][0]
    deployment = manifest["deployments"][0]["id"]
    runs = lambda **q: "/runs?" + urlencode({RUNS_FILTERS[k]: v for k, v in q.items()})  # noqa: E731
    return [
        ("dashboard 1h", f"/dashboard?{DASHBOARD_WINDOW}=1h"),
        ("dashboard 24h", f"/dashboard?{DASHBOARD_WINDOW}=24h"),
        ("dashboard 7d", f"/dashboard?{DASHBOARD_WINDOW}=7d"),
        ("runs", "/runs"),
        ("runs by state FAILED", runs(state="FAILED")),
        ("runs by flow", runs(flow=flow)),
        ("runs by tag", runs(tag=manifest["tag"])),
        ("runs by name search", runs(name=manifest["search_name"])),
        (f"runs, keyset page {DEEP_PAGES + 1}", "DEEP"),
        ("run page (heavy run)", f"/runs/flow-run/{heavy}"),
        ("flows", "/flows"),
        ("flow page", f"/flows/flow/{flow}"),
        ("deployments", "/deployments"),
        ("deployment page", f"/deployments/deployment/{deployment}"),
        ("work pools", "/work-pools"),
        ("work pool page", f"/work-pools/work-pool/{manifest['work_pool']}"),
        ("blocks", "/blocks"),
        ("variables", "/variables"),
        ("concurrency limits", "/concurrency-limits"),
        ("notifications", "/notifications"),
    ]


def deep_page(client: httpx.Client, pages: int) -> tuple[str | None, str]:
    """Follow the runs list's rel=next link ``pages`` times: the URL of that page (None if the
    list has fewer pages or no pager) and why not."""
    path = "/runs"
    for n in range(pages):
        response = client.get(path)
        if response.status_code != 200:
            return None, f"page {n + 1} answered {response.status_code}"
        nexts = [href for href, rel in parse(response.text).links if "next" in rel.split()]
        if not nexts:
            return None, f"no rel=next link on page {n + 1}"
        path = nexts[0]
    return path, ""


def run_page_parts(client: httpx.Client, path: str) -> list[tuple[str, str]]:
    """The run page's live fragments (data-live -> ?fragment=NAME) and its sub-pages (links
    under the page's own path, e.g. a logs tab), each timed like a page."""
    response = client.get(path)
    if response.status_code != 200:
        return []
    page = parse(response.text)
    parts = [(f"run page fragment {name}", f"{path}?{urlencode({'fragment': name})}")
             for name in dict.fromkeys(page.live)]
    subpages = dict.fromkeys(href for href, _ in page.links if href.startswith(path) and href != path)
    parts += [(f"run page link {href[len(path):]}", href) for href in list(subpages)[:4]]
    return parts


def server_timing(header: str | None) -> float | None:
    """ms of a Server-Timing header: its ``total`` metric, else the sum of the durations."""
    if not header:
        return None
    durations = {}
    for part in header.split(","):
        name, *params = [p.strip() for p in part.split(";")]
        for param in params:
            if param.startswith("dur="):
                try:
                    durations[name] = float(param[4:])
                except ValueError:
                    pass
    if not durations:
        return None
    return durations.get("total", sum(durations.values()))


def time_page(client: httpx.Client, path: str, requests: int, warmup: int, asset_cache: dict) -> dict:
    for _ in range(warmup):
        client.get(path)
    samples, timings, statuses = [], [], Counter()
    wire = body = 0
    html = ""
    for _ in range(requests):
        began = time.perf_counter()
        response = client.get(path)
        elapsed = (time.perf_counter() - began) * 1000
        statuses[response.status_code] += 1
        samples.append(elapsed)
        st = server_timing(response.headers.get("server-timing"))
        if st is not None:
            timings.append(st)
        wire, body, html = response.num_bytes_downloaded, len(response.content), response.text
    assets = 0
    for asset in dict.fromkeys(parse(html).assets):
        if asset not in asset_cache:
            response = client.get(asset)
            asset_cache[asset] = response.num_bytes_downloaded if response.status_code == 200 else 0
        assets += asset_cache[asset]
    return {
        "requests": requests, "warmup": warmup, "statuses": {str(k): v for k, v in statuses.items()},
        "ok": set(statuses) == {200},
        "p50_ms": round(pct(samples, 0.5), 2), "p95_ms": round(pct(samples, 0.95), 2),
        "max_ms": round(max(samples), 2), "mean_ms": round(statistics.fmean(samples), 2),
        "server_timing_p50_ms": round(pct(timings, 0.5), 2) if timings else None,
        "server_timing_p95_ms": round(pct(timings, 0.95), 2) if timings else None,
        "bytes_page_wire": wire, "bytes_page": body, "bytes_assets": assets, "bytes_total": wire + assets,
    }


def measure_pages(base: str, manifest: dict, backend: str, results: Results, requests: int, warmup: int,
                  only: list[str] | None = None) -> list[dict]:
    """Time every known page that answers 200; the others are reported as missing."""
    lines = []
    asset_cache: dict = {}
    target = TARGET_MS[backend]
    headers = {"Accept-Encoding": "gzip, deflate", "Accept": "text/html"}
    with httpx.Client(base_url=base, headers=headers, timeout=60, follow_redirects=False) as client:
        queue = list(known_pages(manifest))
        while queue:
            name, path = queue.pop(0)
            if only and not any(o in name for o in only):
                continue
            if path == "DEEP":
                path, why = deep_page(client, DEEP_PAGES)
                if path is None:
                    lines.append(results.add("ui-page", page=name, path=f"/runs (+{DEEP_PAGES} x rel=next)",
                                             missing=True, why=why, ok=False))
                    continue
            probe = client.get(path)
            if probe.status_code != 200:
                lines.append(results.add("ui-page", page=name, path=path, missing=True, ok=False,
                                         why=f"answered {probe.status_code}"))
                continue
            if name.startswith("run page ("):
                queue[0:0] = run_page_parts(client, path)
            figures = time_page(client, path, requests, warmup, asset_cache)
            slow = figures["p95_ms"] >= target
            heavy = figures["bytes_total"] >= TARGET_BYTES
            lines.append(results.add("ui-page", page=name, path=path, missing=False, backend=backend,
                                     runs=manifest["runs"], logs=manifest["logs"], target_ms=target,
                                     target_bytes=TARGET_BYTES, over_time=slow, over_size=heavy, **figures))
            log(f"  {name:34} p50 {figures['p50_ms']:8.1f}  p95 {figures['p95_ms']:8.1f} ms  "
                f"{figures['bytes_total'] / 1000:7.1f} KB{'  SLOW' if slow else ''}{'  HEAVY' if heavy else ''}")
    return lines


# --- the slow pages' queries ---------------------------------------------------------------------


def explain_slow(url: str, paths: list[tuple[str, str]], results: Results, top: int = 3) -> list[dict]:
    """Replay each page in-process with every SQL statement recorded; re-run the statements to
    time them alone and EXPLAIN (ANALYZE on PostgreSQL) the slowest."""
    if not paths:
        return []
    os.environ["APPLIANCE_SECRET_KEY"] = ui_seed.BENCH_KEY
    os.environ.setdefault("APPLIANCE_HOME", tempfile.mkdtemp(prefix="uibench-explain-"))
    import falcon.testing

    from api.app import create_app
    from appliance.settings import Settings
    from db import database as dbmod

    dbmod.init(url, pool_size=2)
    app = create_app(Settings(database_url=url, services_enabled=False), init_db=False)
    client = falcon.testing.TestClient(app)
    db = dbmod.database.obj
    recorded: list[tuple[str, tuple]] = []
    original = db.execute_sql

    def recording(sql, params=None, *args, **kwargs):
        recorded.append((sql, tuple(params or ())))
        return original(sql, params, *args, **kwargs)

    db.execute_sql = recording
    lines = []
    try:
        for name, path in paths:
            recorded.clear()
            target, _, query = path.partition("?")
            client.simulate_get(target, query_string=query)
            statements = list(dict.fromkeys(recorded))
            db.execute_sql = original
            timed = []
            for sql, params in statements:
                if not sql.lstrip().upper().startswith(("SELECT", "WITH")):
                    continue
                began = time.perf_counter()
                db.execute_sql(sql, params).fetchall()
                timed.append(((time.perf_counter() - began) * 1000, sql, params))
            timed.sort(key=lambda t: -t[0])
            queries = []
            for ms, sql, params in timed[:top]:
                prefix = "EXPLAIN (ANALYZE, BUFFERS) " if dbmod.is_postgres() else "EXPLAIN QUERY PLAN "
                plan = [" | ".join(str(c) for c in row) for row in db.execute_sql(prefix + sql, params).fetchall()]
                queries.append({"ms": round(ms, 2), "sql": _inline(sql, params), "plan": plan})
            db.execute_sql = recording
            lines.append(results.add("ui-explain", page=name, path=path, statements=len(statements),
                                     total_ms=round(sum(t[0] for t in timed), 2), queries=queries))
    finally:
        db.execute_sql = original
        dbmod.close_all()
    return lines


def _inline(sql: str, params: tuple) -> str:
    """The statement with its parameters written in, for a person to paste into psql/sqlite3."""
    out = sql
    for value in params:
        literal = "NULL" if value is None else (str(value) if isinstance(value, int | float)
                                                 else "'" + str(value).replace("'", "''") + "'")
        out = re.sub(r"%s|\?", lambda _m, lit=literal: lit, out, count=1)
    return out


# --- beside Prefect's UI -----------------------------------------------------------------------


def prefect_server(home: Path) -> Server:
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api"}
    home.mkdir(parents=True, exist_ok=True)
    return Server("prefect", home, port, env,
                  [str(bench_run.BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)])


async def seed_through_api(api_url: str, runs: int, concurrency: int = 4) -> float:
    """The same runs on any Prefect 3 API: 2 flows, 90 % COMPLETED, 8 % FAILED, 2 % RUNNING,
    0-2 tags. Returns runs/s."""
    async with httpx.AsyncClient(base_url=api_url, timeout=60) as client:
        flows = []
        for name in ("compare-etl", "compare-report"):
            response = await client.post("/flows/", json={"name": name})
            response.raise_for_status()
            flows.append(response.json()["id"])
        counter = iter(range(runs))
        began = time.monotonic()

        async def worker():
            for i in counter:
                kind = "FAILED" if i % 50 < 4 else "RUNNING" if i % 50 == 4 else "COMPLETED"
                body = {"flow_id": flows[i % 2], "name": f"compare-run-{i}", "tags": ["compare", "prod"][: i % 3],
                        "state": {"type": kind}}
                # As the SDK's client: 429/503 are retried, after Retry-After when given (Prefect's
                # own server answers 503 "database is locked" under concurrent writes on SQLite).
                for attempt in range(10):
                    response = await client.post("/flow_runs/", json=body)
                    if response.status_code not in (429, 503):
                        break
                    wait = response.headers.get("Retry-After")
                    await asyncio.sleep(float(wait) if wait and wait.replace(".", "", 1).isdigit()
                                        else min(0.2 * 2 ** attempt, 5.0))
                response.raise_for_status()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return runs / (time.monotonic() - began)


def time_to_runs_list(chromium, url: str, reps: int, via_link: str | None = None) -> dict:
    """Cold loads of the runs list: ms until the first run row is visible, bytes transferred.
    With ``via_link`` (a selector), ``url`` is the app's front page and the runs list is
    reached by clicking that link (a single-page app whose server does not answer deep links)."""
    samples, usable_bytes, idle_bytes, requests_made = [], [], [], []
    for _ in range(reps):
        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        cdp = context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
        total = {"bytes": 0, "requests": 0}

        def finished(event, total=total):
            total["bytes"] += int(event.get("encodedDataLength") or 0)
            total["requests"] += 1

        cdp.on("Network.loadingFinished", finished)
        began = time.perf_counter()
        page.goto(url, wait_until="commit")
        if via_link:
            page.locator(via_link).first.click(timeout=120_000)
        page.wait_for_selector(ROW_SELECTOR, state="visible", timeout=120_000)
        samples.append((time.perf_counter() - began) * 1000)
        usable_bytes.append(total["bytes"])
        try:
            page.wait_for_load_state("networkidle", timeout=20_000)
        except Exception:  # noqa: BLE001 - a page that keeps polling never idles: take what came
            pass
        page.wait_for_timeout(500)
        idle_bytes.append(total["bytes"])
        requests_made.append(total["requests"])
        context.close()
    return {"reps": reps, "usable_ms_median": round(statistics.median(samples), 1),
            "usable_ms": [round(s, 1) for s in samples],
            "bytes_until_usable_median": int(statistics.median(usable_bytes)),
            "bytes_after_idle_median": int(statistics.median(idle_bytes)),
            "requests_median": int(statistics.median(requests_made))}


def compare_browser(results: Results, outdir: Path, runs: int, reps: int, keep: Path) -> list[dict]:
    from playwright.sync_api import sync_playwright

    from tests.ui import browser

    work = Path(tempfile.mkdtemp(prefix="uibench-browser-"))
    prefect = prefect_server(work / "prefect")
    ours = appliance(f"sqlite:///{work / 'appliance' / 'appliance.db'}", work / "appliance")
    lines = []
    try:
        for server in (prefect, ours):
            log(f"starting {server.name}: {server.start(outdir):.1f} s; seeding {runs} runs through its API")
            rate = asyncio.run(seed_through_api(server.url, runs))
            log(f"  {rate:.0f} runs/s")
        with sync_playwright() as playwright:
            chromium = browser.launch(playwright)
            try:
                for server, label in ((prefect, "Prefect 3.8.8"), (ours, "appliance")):
                    url, via_link, how = f"{base_of(server)}/runs", None, "a cold load of /runs"
                    status = httpx.get(url, timeout=30).status_code
                    if status == 404 and httpx.get(f"{base_of(server)}/", timeout=30).status_code == 200:
                        # Prefect 3.8.8 under this package index's fastapi answers its UI's deep links
                        # 404 (the SPA fallback does not apply): load its front page (it opens its v2
                        # UI's dashboard) and click "Runs" in its sidebar.
                        url, via_link, how = (f"{base_of(server)}/", 'a[href="/v2/runs"], a[href="/runs"]',
                                              "a cold load of / and a click on Runs")
                    elif status != 200:
                        lines.append(results.add("ui-browser", target=label, url=url, ok=False, runs=runs,
                                                 missing=True, why=f"/runs answered {status}"))
                        continue
                    try:
                        figures = time_to_runs_list(chromium, url, reps, via_link)
                    except Exception as exc:  # noqa: BLE001 - recorded as a failed line, never a figure
                        lines.append(results.add("ui-browser", target=label, url=url, ok=False, runs=runs,
                                                 error=str(exc)[:300]))
                        continue
                    shot = keep / f"runs-list-{label.split()[0].lower()}.png"
                    context = chromium.new_context(viewport={"width": 1280, "height": 900})
                    page = context.new_page()
                    page.goto(url)
                    if via_link:
                        page.locator(via_link).first.click(timeout=60_000)
                    page.wait_for_selector(ROW_SELECTOR, state="visible", timeout=60_000)
                    page.screenshot(path=str(shot))
                    context.close()
                    lines.append(results.add("ui-browser", target=label, url=url, ok=True, runs=runs,
                                             selector=ROW_SELECTOR, how=how, screenshot=str(shot), **figures))
                    log(f"  {label}: {figures['usable_ms_median']} ms to a usable runs list, "
                        f"{figures['bytes_after_idle_median'] / 1000:.0f} KB")
            finally:
                chromium.close()
    finally:
        prefect.stop()
        ours.stop()
        shutil.rmtree(work, ignore_errors=True)
    return lines


# --- the API with and without the console --------------------------------------------------------


def api_overhead(results: Results, outdir: Path, backend: str, loadgen: Path, repeat: int, seed_runs: int,
                 w1_runs: int) -> list[dict]:
    work = Path(tempfile.mkdtemp(prefix="uibench-api-"))
    if backend == "postgres":
        name = f"appliance_uibench_api_{uuid.uuid4().hex[:8]}"
        bench_run.pg_admin(f'CREATE DATABASE "{name}"')
        url = ui_seed.PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    else:
        name, url = None, f"sqlite:///{work / 'appliance.db'}"
    lg = [sys.executable, str(loadgen)]

    def run(args: list[str]) -> dict:
        proc = subprocess.run(lg + args, capture_output=True, text=True, timeout=3600)
        lines = proc.stdout.strip().splitlines()
        return json.loads(lines[-1]) if lines else {"ok": False, "error": proc.stderr[-500:]}

    figures = {True: {"w1": [], "w4": []}, False: {"w1": [], "w4": []}}
    try:
        server = appliance(url, work / "home", ui=True)
        server.start(outdir, timeout=300)
        log(f"API overhead: seeding {seed_runs} runs for W4 through the API")
        seeded = run(["w4", "--url", server.url, "--seed", str(seed_runs), "--seed-task-runs", str(seed_runs // 5),
                      "--reps", "5", "--retry-base", "0.05"])
        server.stop()
        if not seeded.get("ok"):
            return [results.add("ui-api", ok=False, error=json.dumps(seeded)[:500])]
        for rep in range(repeat):
            for ui in ((True, False) if rep % 2 == 0 else (False, True)):
                server = appliance(url, work / "home", ui=ui)
                server.start(outdir, timeout=300)
                try:
                    w1 = run(["w1", "--url", server.url, "-c", "16", "--runs", str(w1_runs),
                              "--server-port", str(server.port), "--label", f"ui-{ui}"])
                    w4 = run(["w4", "--url", server.url, "--seed", "0", "--reps", "100", "--label", f"ui-{ui}"])
                finally:
                    server.stop()
                for key, line in (("w1", w1), ("w4", w4)):
                    results.add("ui-api-run", workload=key, ui_enabled=ui, rep=rep, ok=bool(line.get("ok")),
                                results=line.get("results"), errors=line.get("errors"))
                    if line.get("ok"):
                        figures[ui][key].append(line["results"])
                log(f"  rep {rep + 1} UI {'on ' if ui else 'off'}: W1 "
                    f"{(w1.get('results') or {}).get('runs_per_s')} runs/s, W4 filter p50 "
                    f"{((w4.get('results') or {}).get('flow_runs_filter') or {}).get('p50_ms')} ms")
    finally:
        if name:
            bench_run.pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(work, ignore_errors=True)
    lines = []
    for workload, metric, path, better in (
        ("W1 flow-run lifecycle, 16 clients", "runs/s", ("w1", "runs_per_s"), "higher"),
        ("W1, 16 clients", "p50 ms", ("w1", "latency_all", "p50_ms"), "lower"),
        ("W4 /flow_runs/filter", "p50 ms", ("w4", "flow_runs_filter", "p50_ms"), "lower"),
        ("W4 filter by name like_", "p50 ms", ("w4", "flow_runs_filter_name", "p50_ms"), "lower"),
        ("W4 /flow_runs/count", "p50 ms", ("w4", "flow_runs_count", "p50_ms"), "lower"),
        ("W4 /task_runs/filter by state", "p50 ms", ("w4", "task_runs_filter_state", "p50_ms"), "lower"),
    ):
        def median_of(ui, path=path):
            values = []
            for result in figures[ui][path[0]]:
                value = result
                for key in path[1:]:
                    value = (value or {}).get(key)
                if isinstance(value, int | float):
                    values.append(value)
            return statistics.median(values) if values else None

        on, off = median_of(True), median_of(False)
        ratio = on / off if on is not None and off else None
        if ratio is None:
            met = None
        elif better == "higher":
            met = ratio >= 1 - API_TARGET
        else:
            met = ratio <= 1 + API_TARGET
        headline = metric == "runs/s" or workload == "W4 /flow_runs/filter"
        lines.append(results.add("ui-api", ok=ratio is not None, workload=workload, metric=metric, ui_on=on,
                                 ui_off=off, ratio=round(ratio, 3) if ratio else None, better=better,
                                 target=API_TARGET if headline else None, met=met if headline else None,
                                 repeat=repeat, seed_runs=seed_runs, w1_runs=w1_runs, backend=backend))
    return lines


# --- the table ---------------------------------------------------------------------------------


def kb(value) -> str:
    return "—" if value is None else f"{value / 1000:.1f}"


def ms(value) -> str:
    return "—" if value is None else f"{value:,.1f}"


def table(results: Results, backend: str, header: str) -> str:
    out = [header, ""]
    pages = results.of("ui-page")
    if pages:
        target = TARGET_MS[backend]
        out += [f"| page ({backend}) | p50 ms | p95 ms | max ms | Server-Timing p50 | page KB | with assets KB "
                f"| target p95 < {target:g} ms, < {TARGET_BYTES // 1000} KB |",
                "|---|---|---|---|---|---|---|---|"]
        for line in pages:
            if line.get("missing"):
                out.append(f"| {line['page']} | — | — | — | — | — | — | missing: {line['why']} |")
                continue
            verdict = []
            if not line["ok"]:
                verdict.append(f"statuses {line['statuses']}")
            verdict.append("SLOW" if line["over_time"] else "met")
            if line["over_size"]:
                verdict.append("TOO BIG")
            out.append(f"| {line['page']} | {ms(line['p50_ms'])} | {ms(line['p95_ms'])} | {ms(line['max_ms'])} | "
                       f"{ms(line['server_timing_p50_ms'])} | {kb(line['bytes_page_wire'])} | "
                       f"{kb(line['bytes_total'])} | {', '.join(verdict)} |")
        out.append("")
    explains = results.of("ui-explain")
    if explains:
        out.append("Slow pages, their slowest statements (timed alone):")
        out.append("")
        for line in explains:
            out.append(f"- **{line['page']}** (`{line['path']}`): {line['statements']} statements, "
                       f"{line['total_ms']} ms of SQL alone")
            for query in line["queries"][:2]:
                out.append(f"  - {query['ms']} ms: `{query['sql'][:400]}`")
                for row in query["plan"][:12]:
                    out.append(f"    `{row[:160]}`")
        out.append("")
    browser = results.of("ui-browser")
    if browser:
        out += ["| runs list in headless Chromium, cold cache | runs | ms to first row visible (median) "
                "| KB until usable | KB once idle | requests |", "|---|---|---|---|---|---|"]
        for line in browser:
            if not line.get("ok"):
                out.append(f"| {line['target']} | {line['runs']} | failed: {line.get('why') or line.get('error')} "
                           "| | | |")
                continue
            target = line["target"] + (f" ({line['how']})" if line.get("how") and "click" in line["how"] else "")
            out.append(f"| {target} | {line['runs']} | {ms(line['usable_ms_median'])} | "
                       f"{kb(line['bytes_until_usable_median'])} | {kb(line['bytes_after_idle_median'])} | "
                       f"{line['requests_median']} |")
        ok = {line["target"]: line for line in browser if line.get("ok")}
        if len(ok) == 2:
            prefect, ours = ok["Prefect 3.8.8"], ok["appliance"]
            out.append(f"| ratio appliance ÷ Prefect | | "
                       f"{ours['usable_ms_median'] / prefect['usable_ms_median']:.3f} | "
                       f"{ours['bytes_until_usable_median'] / max(prefect['bytes_until_usable_median'], 1):.3f} | "
                       f"{ours['bytes_after_idle_median'] / max(prefect['bytes_after_idle_median'], 1):.3f} | |")
        out.append("")
    api = results.of("ui-api")
    if api:
        out += ["| API with the console mounted | metric | UI off | UI on | on ÷ off | target |",
                "|---|---|---|---|---|---|"]
        for line in api:
            if not line.get("ok"):
                out.append(f"| {line.get('workload', 'API overhead')} | failed: {line.get('error', '')[:200]} "
                           "| | | | |")
                continue
            want = ""
            if line["target"] is not None:
                bound = "≥ 0.95" if line["better"] == "higher" else "≤ 1.05"
                want = f"{bound} {'met' if line['met'] else 'NOT met'}"
            out.append(f"| {line['workload']} | {line['metric']} | {line['ui_off']:.2f} | {line['ui_on']:.2f} | "
                       f"{line['ratio']:.3f} | {want} |")
        out.append("")
    return "\n".join(out)


# --- main --------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ui_seed.add_arguments(parser)
    parser.add_argument("--parts", default="pages,browser,api", help="comma-separated, of pages, browser, api")
    parser.add_argument("--requests", type=int, default=50, help="timed requests per page")
    parser.add_argument("--warmup", type=int, default=5, help="untimed requests per page first")
    parser.add_argument("--pages", help="comma-separated substrings: time only the pages whose name has one")
    parser.add_argument("--no-explain", action="store_true", help="do not EXPLAIN the slow pages' queries")
    parser.add_argument("--compare-runs", type=int, default=2000, help="runs seeded in Prefect and the appliance")
    parser.add_argument("--browser-reps", type=int, default=5, help="cold loads of each runs list")
    parser.add_argument("--api-repeat", type=int, default=3, help="W1+W4 runs with the UI on and off, each")
    parser.add_argument("--api-seed", type=int, default=5000, help="runs W4 seeds through the API")
    parser.add_argument("--api-w1-runs", type=int, default=320)
    parser.add_argument("--start-timeout", type=float, default=1800,
                        help="seconds the appliance may take to start (migrating a big database)")
    parser.add_argument("--out", type=Path, help="directory for results.jsonl and table.md (default .bench/<stamp>-ui-<backend>)")
    parser.add_argument("--loadgen", type=Path,
                        default=Path(os.environ.get("APPLIANCE_LOADGEN", REPO.parent / "shared" / "bench" / "loadgen.py")))
    args = parser.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - {"pages", "browser", "api"}
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    if "api" in parts and not args.loadgen.exists():
        parser.error(f"no load generator at {args.loadgen} (set APPLIANCE_LOADGEN)")
    url, runs, logs = ui_seed.settle(args)
    backend = "postgres" if url.startswith("postgres") else "sqlite"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    outdir = args.out or REPO / ".bench" / f"{stamp}-ui-{backend}"
    outdir.mkdir(parents=True, exist_ok=True)
    results = Results(outdir)
    notes = []
    if "pages" in parts:
        manifest = ui_seed.seed(url, runs, logs, fresh=args.fresh, now=ui_seed.parse_now(args.now))
        age_h = (datetime.now(UTC) - datetime.fromisoformat(manifest["seeded_at"])).total_seconds() / 3600
        size = ui_seed.database_size(url)
        results.add("ui-seed", ok=True, backend=backend, database=_public(url), size_bytes=size,
                    **{k: manifest[k] for k in ("runs", "logs", "seeded_at", "seed_seconds", "heavy_run_id",
                                                "heavy_logs", "heavy_task_runs", "timings")}, age_hours=round(age_h, 2))
        notes.append(f"database {_public(url)}: {manifest['runs']:,} flow runs, {manifest['logs']:,} log lines, "
                     f"{size / 2**30:.2f} GiB, seeded {manifest['seeded_at']} in {manifest['seed_seconds']} s")
        if age_h > 2:
            notes.append(f"the seed is {age_h:.0f} h old: the dashboard's 1h/24h windows hold fewer runs than "
                         "when it was made (--fresh seeds again)")
        server = appliance(url, outdir / "appliance-home", ui=True)
        log(f"starting the appliance on {_public(url)}: {server.start(outdir, timeout=args.start_timeout):.1f} s")
        try:
            lines = measure_pages(base_of(server), manifest, backend, results, args.requests, args.warmup,
                                  only=[p for p in (args.pages or "").split(",") if p] or None)
        finally:
            server.stop()
        slow = [(line["page"], line["path"]) for line in lines if not line.get("missing") and line["over_time"]]
        if slow and not args.no_explain:
            log(f"explaining {len(slow)} slow pages")
            explain_slow(url, slow, results)
    if "browser" in parts:
        compare_browser(results, outdir, args.compare_runs, args.browser_reps, outdir)
    if "api" in parts:
        api_overhead(results, outdir, backend, args.loadgen, args.api_repeat, args.api_seed, args.api_w1_runs)
    header = (f"{datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()}-core machine, {backend}, one client on loopback, "
              f"{args.requests} requests per page after {args.warmup} warm-ups, load average "
              f"{os.getloadavg()[0]:.1f}" + "".join(f"\n{note}" for note in notes))
    text = table(results, backend, header)
    (outdir / "table.md").write_text(text + "\n")
    print(text)
    log(f"raw lines: {outdir / 'results.jsonl'}")
    return 0 if all(line.get("ok", True) or line.get("missing") for line in results.lines) else 1


def _public(url: str) -> str:
    return re.sub(r"//[^@/]*@", "//", url)


if __name__ == "__main__":
    sys.exit(main())
