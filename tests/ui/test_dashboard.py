"""/dashboard on both backends (falcon.testing): counts per state over the window, late runs,
recent failures, work pool health, notification failures, the live fragment, bad windows."""

from __future__ import annotations

import datetime as dt
import html
import re

from db import database as dbmod
from db import notifications as notes
from tests.ui.admin_helpers import api_json, block_document, failed_run, main_html


def flow(client, name="etl") -> dict:
    return client.simulate_post("/api/flows/", json={"name": name}).json


def run_at(client, when: dt.datetime, state="SCHEDULED", name=None) -> dict:
    body = {"flow_id": flow(client)["id"],
            "state": {"type": "SCHEDULED", "state_details": {"scheduled_time": when.isoformat()}}}
    if name:
        body["name"] = name
    run = api_json(client.simulate_post("/api/flow_runs/", json=body), 201)
    if state != "SCHEDULED":
        client.simulate_post(f"/api/flow_runs/{run['id']}/set_state", json={"state": {"type": state}, "force": True})
    return run


def count_of(text: str, state: str) -> str:
    found = re.search(rf'href="/runs\?state={state}&amp;since=[^"]+&amp;until=now"><span class="badge[^"]*">[^<]+</span> ([0-9+]+)</a>',
                      text)
    assert found, state
    return found.group(1)


def test_empty_dashboard(client):
    result = client.simulate_get("/dashboard")
    assert result.status_code == 200
    text = main_html(result)
    assert "last 24h" in text and 'aria-current="page">Last 24h' in text
    assert "No late runs." in text and "No work pools." in text and "No failed notification deliveries." in text
    assert count_of(text, "COMPLETED") == "0"
    assert 'data-live="live"' in text


def test_counts_late_and_failures(client):
    now = dt.datetime.now(dt.UTC)
    for _ in range(3):
        run_at(client, now - dt.timedelta(minutes=30), "COMPLETED")
    failed = run_at(client, now - dt.timedelta(hours=2), "FAILED", name="broke-<b>it</b>")
    crashed = run_at(client, now - dt.timedelta(days=3), "CRASHED")
    late = run_at(client, now - dt.timedelta(minutes=10), name="overdue-run")
    run_at(client, now + dt.timedelta(hours=1), name="future-run")

    day = main_html(client.simulate_get("/dashboard"))
    assert count_of(day, "COMPLETED") == "3" and count_of(day, "FAILED") == "1" and count_of(day, "CRASHED") == "0"
    assert count_of(day, "SCHEDULED") == "1"  # the future run is outside the window (expected later)
    assert f'href="/runs/flow-run/{failed["id"]}"' in day and crashed["id"] not in day
    assert "broke-&lt;b&gt;it&lt;/b&gt;" in day and "<b>it</b>" not in day
    assert f'href="/runs/flow-run/{late["id"]}">overdue-run</a>' in day and "future-run" not in day
    assert 'href="/runs?state=SCHEDULED&amp;until=now">1 scheduled run past its start time' in day
    assert 'href="/runs?state=FAILED&amp;state=CRASHED&amp;since=24h"' in day

    hour = main_html(client.simulate_get("/dashboard", params={"window": "1h"}))
    assert count_of(hour, "COMPLETED") == "3" and count_of(hour, "FAILED") == "0"
    week = main_html(client.simulate_get("/dashboard", params={"window": "7d"}))
    assert count_of(week, "CRASHED") == "1" and f'/runs/flow-run/{crashed["id"]}' in week
    # the links the dashboard makes are pages of the runs list that work
    listed = client.simulate_get("/runs", params={"state": "SCHEDULED", "until": "now"})
    assert listed.status_code == 200 and late["id"] in listed.text and "future-run" not in listed.text


def test_pools_and_notification_failures(client):
    W = "/api/work_pools"
    api_json(client.simulate_post(f"{W}/", json={"name": "local", "type": "process"}), 201)
    api_json(client.simulate_post(f"{W}/", json={"name": "idle pool", "type": "process"}), 201)
    client.simulate_post(f"{W}/local/workers/heartbeat", json={"name": "w1", "heartbeat_interval_seconds": 30})
    hook = block_document(client, "custom-webhook", "ops", {"name": "ops", "url": "http://127.0.0.1:9/hook"})
    client.simulate_post("/api/flow_run_notification_policies",
                         json={"state_names": ["Failed"], "block_document_id": hook["id"]})
    run = failed_run(client)
    with dbmod.write_tx():
        for row in notes.claim("test", 100, 60):
            notes.settle(row, "failed", status_code=500, error="receiver <down>", channel="custom-webhook")
    text = main_html(client.simulate_get("/dashboard"))
    pools = text[text.index('id="pool-health"'):text.index('id="notification-failures"')]
    assert 'href="/work-pools/work-pool/local"' in pools and "1 / 1 workers online" in pools
    assert 'href="/work-pools/work-pool/idle%20pool"' in pools and "0 / 0 workers online" in pools
    notes_part = text[text.index('id="notification-failures"'):]
    assert 'href="/notifications">1 failed, 0 dead (out of retries)</a>' in notes_part
    assert "receiver &lt;down&gt;" in notes_part and "HTTP 500" in notes_part
    assert f'href="/runs/flow-run/{run["id"]}"' in notes_part


def test_live_fragment_and_bad_window(client):
    fragment = client.simulate_get("/dashboard", params={"fragment": "live", "window": "1h"})
    assert fragment.status_code == 200 and "<html" not in fragment.text and "by-state" in fragment.text
    bad = client.simulate_get("/dashboard", params={"window": "2y"})
    assert bad.status_code == 400 and "is not one of 1h, 24h, 7d" in html.unescape(bad.text)
    assert client.simulate_get("/").status_code == 302
