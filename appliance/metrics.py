"""Prometheus metrics: every metric object of the appliance and the helpers that feed them.

Nothing here costs anything until ``configure`` (the server, once per process) or
``configure_notifier`` runs: before that, or with APPLIANCE_METRICS_ENABLED=false, every
``record_*`` helper returns at once and prometheus_client is not imported.

Processes. Under gunicorn (workers > 1) each worker writes its samples to files in
PROMETHEUS_MULTIPROC_DIR (set by appliance.gunicorn_main before the fork, a fresh directory
per start) and a scrape, answered by any worker, merges them all; the master removes a dead
worker's live gauges. The single-process server keeps them in memory. The notifier is a
separate process (a sidecar in its own container, with its own PID namespace) and serves
its own registry on APPLIANCE_NOTIFIER_METRICS_PORT.

Database-derived gauges (runs by state, late runs, the notification queue) are read at
scrape time by ``DatabaseCollector``, at most once per APPLIANCE_METRICS_CACHE_SECONDS,
with index-only queries (see its docstring).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time

log = logging.getLogger("appliance.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED = "<unmatched>"  # route label of requests no route template matched
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
WAIT_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)
# Counting terminal runs reads the whole state index (~60-90 ms on 1M runs, SQLite and
# PostgreSQL alike): done at most this often; the live states are counted at every refresh.
TERMINAL_REFRESH_SECONDS = 300.0

_server = None  # _ServerMetrics once configure() ran
_notifier = None  # _NotifierMetrics once configure_notifier() ran
_lock = threading.Lock()
_last_scheduler_pass: float | None = None  # time.monotonic() of this process's last pass


class _ServerMetrics:
    """The API process's metric objects (registry None: multiprocess files)."""

    def __init__(self, registry, multiprocess: bool):
        from prometheus_client import Counter, Gauge, Histogram

        self.multiprocess = multiprocess
        r = {"registry": registry}
        self.http_requests = Counter(
            "appliance_http_requests", "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"], **r)
        self.http_duration = Histogram(
            "appliance_http_request_duration_seconds", "Time from request to response, by method, route and status.",
            ["method", "route", "status"], buckets=LATENCY_BUCKETS, **r)
        self.http_in_flight = Gauge(
            "appliance_http_requests_in_flight", "HTTP requests being served.", multiprocess_mode="livesum", **r)
        self.pool_in_use = Gauge(
            "appliance_db_pool_in_use", "Database threads running a call, by pool.", ["pool"],
            multiprocess_mode="livesum", **r)
        self.pool_threads = Gauge(
            "appliance_db_pool_threads", "Database threads (and connections) per pool (read/write on SQLite, "
            "shared on PostgreSQL).", ["pool"], multiprocess_mode="livesum", **r)
        self.pool_wait = Histogram(
            "appliance_db_pool_wait_seconds", "Time a database call queued before a pool thread took it.",
            ["pool"], buckets=WAIT_BUCKETS, **r)
        self.db_busy = Counter(
            "appliance_db_busy", "Transient database errors (SQLite busy/locked, PostgreSQL serialization, "
            "deadlock, lock timeout): answered 503 + Retry-After, or retried by the server.", ["action"], **r)
        self.events_ingested = Counter(
            "appliance_events_ingested", "Client events stored, by source (websocket /events/in, http POST /events).",
            ["source"], **r)
        self.events_lag = Histogram(
            "appliance_events_ingest_lag_seconds", "Time from an event's occurred timestamp to its storage.",
            buckets=LAG_BUCKETS, **r)
        self.scheduler_pass = Histogram(
            "appliance_scheduler_pass_seconds", "Duration of a scheduler pass.", buckets=LATENCY_BUCKETS, **r)
        self.scheduler_runs = Counter(
            "appliance_scheduler_runs_created", "Runs the scheduler materialised.", **r)
        self.retention_deleted = Counter(
            "appliance_retention_rows_deleted", "Rows deleted by retention, by kind.", ["kind"], **r)
        self.scrape_registry = None  # what a scrape reads (set by _build_server)
        self.children: dict = {}  # (method, route, status) -> (counter child, histogram child)
        self.pool_children: dict = {}  # pool label -> (wait histogram child, in-use gauge child)

    def http_children(self, method: str, route: str, status: int):
        key = (method, route, status)
        pair = self.children.get(key)
        if pair is None:
            labels = (method, route, str(status))
            pair = self.children[key] = (self.http_requests.labels(*labels), self.http_duration.labels(*labels))
        return pair


class _NotifierMetrics:
    def __init__(self, registry):
        from prometheus_client import Counter

        self.deliveries = Counter(
            "appliance_notifications_deliveries", "Notification delivery attempts, by channel (block type) and "
            "outcome (sent, retry, failed, dead).", ["channel", "outcome"], registry=registry)
        self.db_busy = Counter(
            "appliance_db_busy", "Transient database errors of the notifier's passes (retried at the next poll).",
            ["action"], registry=registry)


# ---------------------------------------------------------------------------- set-up


def configure(settings) -> None:
    """Create the server's metrics (once per process) and hook the database pools.

    Called by api.app.create_app; later calls only refresh the settings-dependent parts
    (tests build many apps in one process).
    """
    global _server
    if not settings.metrics_enabled:
        return
    from db import database as dbmod

    with _lock:
        if _server is None:
            _server = _build_server()
        DatabaseCollector.instance.configure(settings.metrics_cache_seconds)
        _server.pool_threads.clear()  # another database in this process (tests): other pools
        for pool, size in dbmod.pool_threads().items():
            _server.pool_threads.labels(pool).set(size)
        dbmod.pool_probe = _pool_probe


def _build_server() -> _ServerMetrics:
    from prometheus_client import CollectorRegistry, ProcessCollector, disable_created_metrics

    disable_created_metrics()  # a *_created series per labelled child doubles the scrape for nothing
    path = os.environ.get(MULTIPROC_ENV)
    registry = CollectorRegistry()
    if path:
        from prometheus_client.multiprocess import MultiProcessCollector

        metrics = _ServerMetrics(None, multiprocess=True)
        MultiProcessCollector(registry, path=path)
    else:
        metrics = _ServerMetrics(registry, multiprocess=False)
        ProcessCollector(registry=registry)  # per-process figures only mean something unmerged
    registry.register(DatabaseCollector.instance)
    metrics.scrape_registry = registry
    return metrics


def configure_notifier(settings) -> bool:
    """The notifier's registry, served on HOST:NOTIFIER_METRICS_PORT; False when not asked for."""
    global _notifier
    if not settings.metrics_enabled or not settings.notifier_metrics_port:
        return False
    os.environ.pop(MULTIPROC_ENV, None)  # its own in-memory registry, whatever the environment says
    from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server

    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    _notifier = _NotifierMetrics(registry)
    start_http_server(settings.notifier_metrics_port, addr=settings.host, registry=registry)
    log.info("notifier metrics on http://%s:%d/metrics", settings.host, settings.notifier_metrics_port)
    return True


def enabled() -> bool:
    return _server is not None


def render(accept: str | None) -> tuple[bytes, str]:
    """The scrape body and its content type (OpenMetrics when the scraper asks for it).
    Blocking (files, database): call it through db.database.run."""
    from prometheus_client.exposition import choose_encoder

    encoder, content_type = choose_encoder(accept or "")
    return encoder(_server.scrape_registry), content_type


# ---------------------------------------------------------------------------- recorders


def observe_request(method: str, route: str | None, status: int, seconds: float) -> None:
    m = _server
    if m is None:
        return
    counter, histogram = m.http_children(method if method in METHODS else "OTHER", route or UNMATCHED, status)
    counter.inc()
    histogram.observe(seconds)


def in_flight(delta: int) -> None:
    if _server is not None:
        _server.http_in_flight.inc(delta)


def _pool_probe(pool: str, submitted: float, call):
    m = _server
    pair = m.pool_children.get(pool)
    if pair is None:
        pair = m.pool_children[pool] = (m.pool_wait.labels(pool), m.pool_in_use.labels(pool))
    wait, in_use = pair
    wait.observe(time.perf_counter() - submitted)
    in_use.inc()
    try:
        return call()
    finally:
        in_use.dec()


def record_db_busy(action: str) -> None:
    """``action``: "answered_503" (the client retries) or "retried" (the server did)."""
    m = _server or _notifier
    if m is not None:
        m.db_busy.labels(action).inc()


def record_events_ingested(source: str, events: list[dict]) -> None:
    """Count stored events and observe now - occurred for each (negative: client clock ahead -> 0)."""
    m = _server
    if m is None or not events:
        return
    from db.states import parse_datetime

    m.events_ingested.labels(source).inc(len(events))
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    observe = m.events_lag.observe
    for event in events:
        try:
            lag = (now - parse_datetime(event["occurred"])).total_seconds()
        except (KeyError, TypeError, ValueError):
            continue
        observe(lag if lag > 0 else 0.0)


def record_scheduler_pass(seconds: float, created: int) -> None:
    global _last_scheduler_pass
    _last_scheduler_pass = time.monotonic()
    m = _server
    if m is None:
        return
    m.scheduler_pass.observe(seconds)
    if created:
        m.scheduler_runs.inc(created)


def record_delivery(channel: str | None, outcome: str) -> None:
    """``outcome``: the status a delivery attempt left its row in (sent, pending = retry, failed, dead)."""
    m = _notifier
    if m is not None:
        m.deliveries.labels(channel or "unknown", "retry" if outcome == "pending" else outcome).inc()


def record_retention_deleted(kind: str, rows: int) -> None:
    m = _server
    if m is not None and rows:
        m.retention_deleted.labels(kind).inc(rows)


# ---------------------------------------------------------------------------- scrape-time


class DatabaseCollector:
    """Gauges read from the database when scraped, cached ``cache_seconds``: a scrape storm
    costs one set of queries, and concurrent scrapes wait for the one computing.

    Cheap on a million runs (EXPLAIN on PostgreSQL 16 and SQLite): the live states are
    counted on the (state_type, expected_start_time, id) index, an index-only range over
    the live runs only; terminal states need the whole index and are refreshed every
    TERMINAL_REFRESH_SECONDS; late runs come from the next_scheduled_start_time index
    (set only on SCHEDULED runs); the notification queue from its (status,
    next_attempt_at) index. Failures are logged and reported as
    appliance_metrics_database_ok 0, never as a failed scrape.
    """

    instance: DatabaseCollector

    def __init__(self) -> None:
        self.cache_seconds = 10.0
        self.lock = threading.Lock()
        self.values: dict | None = None
        self.expires = 0.0
        self.terminal: dict[str, int] = {}
        self.terminal_expires = 0.0
        self.database_key = None

    def configure(self, cache_seconds: float) -> None:
        with self.lock:
            if cache_seconds != self.cache_seconds:
                self.cache_seconds, self.expires = cache_seconds, 0.0

    def describe(self):
        return []  # nothing at registration: collect() reads the database

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        values = self._current()
        ok = GaugeMetricFamily("appliance_metrics_database_ok", "1 when the last read of the database gauges worked.")
        ok.add_metric([], 1.0 if values is not None else 0.0)
        yield ok
        if values is None:
            return
        runs = GaugeMetricFamily(
            "appliance_flow_runs", "Flow runs by state type (terminal types refreshed every "
            f"{TERMINAL_REFRESH_SECONDS:.0f} s).", labels=["state"])
        for state, count in sorted(values["runs"].items()):
            runs.add_metric([state], count)
        yield runs
        yield _gauge("appliance_flow_runs_late", "SCHEDULED runs more than 15 s past their scheduled time.",
                     values["late"])
        queue = GaugeMetricFamily(
            "appliance_notifications_queued", "Notifications waiting (pending) or being sent (sending).",
            labels=["status"])
        for status, count in sorted(values["queue"].items()):
            queue.add_metric([status], count)
        yield queue
        yield _gauge("appliance_notifications_oldest_pending_age_seconds",
                     "How long the oldest due pending notification has waited since it became due.",
                     values["oldest_pending"])
        if _last_scheduler_pass is not None:
            yield _gauge("appliance_scheduler_lag_seconds",
                         "Seconds since this process's last completed scheduler pass (normally under its 2 s "
                         "interval plus one pass).", time.monotonic() - _last_scheduler_pass)

    def _current(self) -> dict | None:
        from db import database as dbmod

        with self.lock:
            now = time.monotonic()
            key = id(dbmod.database.obj)
            if key != self.database_key:  # another database (tests): nothing cached applies
                self.database_key, self.expires, self.terminal_expires = key, 0.0, 0.0
            if self.values is not None and now < self.expires:
                return self.values
            try:
                with_terminal = now >= self.terminal_expires
                values = read_database_gauges(with_terminal)
            except Exception as exc:  # noqa: BLE001 - a scrape must not fail with the database
                log.warning("metrics: reading the database gauges failed: %s", exc)
                self.values, self.expires = None, now + min(self.cache_seconds, 5.0)
                return None
            if with_terminal:
                self.terminal = values.pop("terminal")
                self.terminal_expires = now + TERMINAL_REFRESH_SECONDS
            values["runs"].update(self.terminal)
            self.values, self.expires = values, now + self.cache_seconds
            return values


def _gauge(name: str, doc: str, value: float):
    from prometheus_client.core import GaugeMetricFamily

    return GaugeMetricFamily(name, doc, value=value)


def read_database_gauges(with_terminal: bool) -> dict:
    """One round of the database gauges (runs in a database thread)."""
    import peewee as pw

    from db.fields import utcnow
    from db.models import FlowRun
    from db.models_notifications import Notification
    from db.services_runs import LATE_AFTER
    from db.states import STATE_TYPES, TERMINAL

    now = utcnow()
    live = [t for t in STATE_TYPES if t not in TERMINAL]
    counted = dict(
        FlowRun.select(FlowRun.state_type, pw.fn.COUNT(pw.SQL("*")))
        .where(FlowRun.state_type.in_(live)).group_by(FlowRun.state_type).tuples()
    )
    out: dict = {"runs": {t: counted.get(t, 0) for t in live}}
    if with_terminal:
        done = dict(
            FlowRun.select(FlowRun.state_type, pw.fn.COUNT(pw.SQL("*")))
            .where(FlowRun.state_type.in_(sorted(TERMINAL))).group_by(FlowRun.state_type).tuples()
        )
        out["terminal"] = {t: done.get(t, 0) for t in sorted(TERMINAL)}
    out["late"] = (
        FlowRun.select(pw.fn.COUNT(pw.SQL("*")))
        .where((FlowRun.next_scheduled_start_time < now - LATE_AFTER) & (FlowRun.state_type == "SCHEDULED"))
        .scalar() or 0
    )
    queued = dict(
        Notification.select(Notification.status, pw.fn.COUNT(pw.SQL("*")))
        .where(Notification.status.in_(["pending", "sending"])).group_by(Notification.status).tuples()
    )
    out["queue"] = {s: queued.get(s, 0) for s in ("pending", "sending")}
    oldest = (
        Notification.select(pw.fn.MIN(Notification.next_attempt_at))
        .where((Notification.status == "pending") & (Notification.next_attempt_at <= now)).scalar()
    )
    if isinstance(oldest, str):  # SQLite hands an aggregate back as text
        from db.states import parse_datetime

        oldest = parse_datetime(oldest)
    out["oldest_pending"] = max((now - oldest).total_seconds(), 0.0) if oldest else 0.0
    return out


DatabaseCollector.instance = DatabaseCollector()
