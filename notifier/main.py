"""`appliance notifier`: the delivery loop.

Each pass touches the heartbeat file, claims due rows under a lease (one short
transaction), delivers them in parallel threads with no transaction open, and settles
each row in its own short transaction. Idle, it sleeps the poll interval — on
PostgreSQL it LISTENs, so a committed state change wakes it at once. SIGTERM stops
claiming, lets in-flight HTTP calls finish (bounded by their timeouts) and hands back
claimed rows it had not started.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from appliance import metrics
from db import database as dbmod
from db import notifications as notes
from notifier import blocks_access, channels, templates
from notifier.classify import Outcome, classify
from notifier.redact import redact

log = logging.getLogger("appliance.notifier")
CONNECT_TIMEOUT = 5.0
# Minimum seconds between requests to one destination (webhook URL / routing key).
PACING = {"slack-webhook": 1.0, "ms-teams-webhook": 0.25, "pager-duty-webhook": 0.5}


def heartbeat_path(settings) -> Path:
    return Path(settings.notifier_heartbeat_path or settings.home_dir / "notifier.heartbeat").expanduser()


def check(settings) -> int:
    """0 when the heartbeat is fresh (liveness probe), else 1."""
    path = heartbeat_path(settings)
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        print(f"notifier heartbeat {path} missing")
        return 1
    if age > settings.notifier_heartbeat_max_age:
        print(f"notifier heartbeat is {age:.0f}s old (max {settings.notifier_heartbeat_max_age:.0f}s)")
        return 1
    print(f"notifier alive (heartbeat {age:.1f}s old)")
    return 0


def _load_contexts(rows: list[dict]) -> dict:
    """(flow, run, state) per row id, read in three queries for the whole batch."""
    from db.models import Flow, FlowRun, FlowRunState

    run_ids = {r["flow_run_id"] for r in rows}
    runs = {str(r["id"]): r for r in FlowRun.select().where(FlowRun.id.in_(run_ids)).dicts()}
    flow_ids = {r["flow_id"] for r in rows if r["flow_id"]}
    flows = {str(f["id"]): f for f in Flow.select().where(Flow.id.in_(flow_ids)).dicts()}
    states = {str(st["id"]): st for st in FlowRunState.select().where(FlowRunState.id.in_({r["state_id"] for r in rows})).dicts()}
    out = {}
    for row in rows:
        run = runs.get(row["flow_run_id"]) or {"id": row["flow_run_id"], "flow_id": row["flow_id"], "name": None,
                                               "tags": [], "parameters": {}}
        flow = flows.get(row["flow_id"] or "") or {"id": row["flow_id"], "name": None}
        st = states.get(row["state_id"]) or {}
        state = {
            "id": row["state_id"],
            "type": row["state_type"],
            "name": row["state_name"],
            "timestamp": st["timestamp"].isoformat() + "+00:00" if st.get("timestamp") else None,
            "message": st.get("message"),
        }
        run = {k: (str(v) if k in ("id", "flow_id") and v is not None else v) for k, v in run.items() if k != "state"}
        out[row["id"]] = ({**flow, "id": str(flow["id"]) if flow.get("id") else None}, run, state)
    return out


class Notifier:
    def __init__(self, settings, worker_id: str | None = None):
        self.settings = settings
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self.stop = threading.Event()
        self.session = requests.Session()
        self.pool = ThreadPoolExecutor(max_workers=settings.notifier_concurrency, thread_name_prefix="notify")
        self.listen_conn = None
        self.pace_lock = threading.Lock()
        self.next_slot: dict[str, float] = {}

    # -- one delivery (no transaction open) --------------------------------------------
    def deliver(self, row: dict, context) -> tuple:
        """Render, build and send one row; returns what to settle it with."""
        subject = body = slug = None
        secrets: list = []
        try:
            flow, run, state = context
            slug, data = blocks_access.load(row["block_document_id"])
            subject, body = templates.render(row, flow, run, state, self.settings.ui_url)
            reqs = channels.build(slug, data, subject, body, row["idempotency_key"], self.settings.notifier_endpoints)
            outcome = Outcome("sent")
            for req in reqs:
                secrets.extend(req.secrets)
                outcome = self._send(slug, req)
                if outcome.kind != "sent":
                    break
        except blocks_access.BlockUnavailable as exc:
            outcome = Outcome("failed", None, str(exc))
        except channels.ChannelError as exc:
            outcome = Outcome("failed", None, f"invalid block data: {exc}")
        except Exception as exc:  # noqa: BLE001 - a template or data error fails this row only
            outcome = Outcome("failed", None, f"{type(exc).__name__}: {exc}")
        return row, outcome, redact(outcome.error, secrets), subject, body, slug

    def _settle_all(self, results: list[tuple]) -> None:
        statuses = []
        with dbmod.database.atomic():
            for row, outcome, error, subject, body, slug in results:
                status = notes.settle(
                    row, outcome.kind, status_code=outcome.status_code, error=error,
                    retry_after=outcome.retry_after, rate_limited=outcome.rate_limited,
                    subject=subject, body=body, channel=slug,
                )
                statuses.append(status)
                log.info("notification %s via %s: %s%s", row["id"], slug, status, f" ({error})" if error else "")
        # Counted once the outcomes are committed (a failed settle is retried, not counted).
        for (*_, slug), status in zip(results, statuses, strict=True):
            metrics.record_delivery(slug, status)

    def _pace(self, slug: str, url: str) -> None:
        """Keep under the destination's documented rate (Slack ~1/s per webhook, Teams 4/s,
        PagerDuty ~120/min per key) instead of provoking 429s."""
        gap = PACING.get(slug)
        if not gap:
            return
        with self.pace_lock:
            now = time.monotonic()
            slot = max(now, self.next_slot.get(url, 0.0))
            self.next_slot[url] = slot + gap
        if slot > now:
            time.sleep(slot - now)

    def _send(self, slug: str, req: channels.Request) -> Outcome:
        self._pace(slug, req.url + str((req.json or {}).get("routing_key", "") if isinstance(req.json, dict) else ""))
        try:
            resp = self.session.request(
                req.method, req.url, headers=req.headers, json=req.json, data=req.data, params=req.params,
                auth=req.auth, timeout=(CONNECT_TIMEOUT, req.timeout or 10.0), allow_redirects=False,
            )
        except requests.Timeout as exc:
            return Outcome("retry", None, f"timeout: {exc}")
        except requests.RequestException as exc:
            return Outcome("retry", None, f"network error: {type(exc).__name__}: {exc}")
        return classify(slug, resp.status_code, resp.headers, resp.text)

    # -- the loop ----------------------------------------------------------------------
    def beat(self) -> None:
        path = heartbeat_path(self.settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()

    def claim(self) -> list[dict]:
        limit = self.settings.notifier_concurrency * 4
        return dbmod._connected(notes.claim, self.worker_id, limit, self.settings.notifier_lease_seconds)

    def run_once(self) -> int:
        rows = self.claim()
        if not rows:
            return 0
        contexts = dbmod._connected(_load_contexts, rows)
        futures = {self.pool.submit(self.deliver, row, contexts[row["id"]]): row for row in rows}
        results, unstarted = [], []
        for future, row in futures.items():
            if self.stop.is_set() and future.cancel():
                unstarted.append(row)
            else:
                results.append(future.result())
        # Settled in one short transaction after the HTTP calls, never across them.
        dbmod._connected(self._settle_all, results)
        if unstarted:
            dbmod._connected(lambda: _release_tx(unstarted))
            log.info("released %d claimed notifications at shutdown", len(unstarted))
        return len(rows)

    def wait(self, seconds: float) -> None:
        if self.listen_conn is not None:
            try:
                ready, _, _ = select.select([self.listen_conn], [], [], seconds)
                if ready:
                    self.listen_conn.poll()
                    self.listen_conn.notifies.clear()
                return
            except Exception:  # noqa: BLE001 - fall back to plain polling
                self.listen_conn = None
        self.stop.wait(seconds)

    def listen(self) -> None:
        if not dbmod.is_postgres():
            return
        import psycopg2

        db = dbmod.database.obj
        try:
            conn = psycopg2.connect(database=db.database, **db.connect_params)
            conn.autocommit = True
            conn.cursor().execute(f"LISTEN {notes.NOTIFY_CHANNEL}")
            self.listen_conn = conn
        except Exception as exc:  # noqa: BLE001 - polling still works
            log.warning("LISTEN unavailable (%s); polling only", exc)

    def serve(self) -> None:
        self.listen()
        log.info("notifier %s started (poll %.2fs)", self.worker_id, self.settings.notifier_poll_interval)
        while not self.stop.is_set():
            self.beat()
            try:
                if self.run_once():
                    continue
            except Exception as exc:  # noqa: BLE001 - database hiccup: log, back off, go on
                if not dbmod.is_transient(exc):
                    log.exception("notifier pass failed")
                else:
                    log.warning("notifier pass: transient database error: %s", exc)
                    metrics.record_db_busy("retried")
            self.wait(self.settings.notifier_poll_interval)
        self.pool.shutdown(wait=True)
        log.info("notifier %s stopped", self.worker_id)


def _release_tx(rows):
    with dbmod.database.atomic():
        notes.release(rows)


def main(settings) -> int:
    from appliance import boot
    from db import secrets_crypto

    db = boot.open_database(settings)
    boot.connect(db, settings.db_wait_seconds)
    secrets_crypto.configure(settings)
    try:
        secrets_crypto.cipher()  # a missing or malformed key stops the notifier at start, not per row
    except secrets_crypto.KeyError_ as exc:
        raise boot.BootError(str(exc)) from None
    metrics.configure_notifier(settings)
    notifier = Notifier(settings)

    def on_term(signum, frame):
        log.info("signal %d: finishing in-flight deliveries", signum)
        notifier.stop.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    notifier.serve()
    return 0
