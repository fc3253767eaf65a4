"""GET /api/metrics parsed by prometheus_client's own parser: request counts by route
template, the database gauges (runs by state, late runs, the notification queue) and
their cache, event ingest, the pool and busy counters, auth, and the request id."""

from __future__ import annotations

import base64
import datetime as dt
import uuid

import falcon.testing
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from appliance import metrics
from appliance.settings import Settings
from tests import support
from tests.notifier.helpers import failing_run, policy


@pytest.fixture
def app_client(migrated, tmp_home, monkeypatch):
    monkeypatch.setenv("APPLIANCE_HOME", str(tmp_home))
    monkeypatch.setenv("APPLIANCE_SECRET_KEY", support.TEST_SECRET_KEY)

    def make(**settings):
        values = {"database_url": migrated, "metrics_cache_seconds": 0, **settings}
        return falcon.testing.TestClient(create_app(Settings(**values), init_db=False))

    return make


def scrape(client, **kwargs) -> dict:
    """{(sample name, frozenset(labels)): value} of one scrape."""
    result = client.simulate_get("/api/metrics", **kwargs)
    assert result.status_code == 200, result.text
    assert result.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(result.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_requests_counted_by_route_template_and_status(app_client):
    client = app_client()
    flow_id = client.simulate_post("/api/flows/", json={"name": "m"}).json["id"]
    before = scrape(client)
    for _ in range(3):
        assert client.simulate_get(f"/api/flows/{flow_id}").status_code == 200
    assert client.simulate_get(f"/api/flows/{uuid.uuid4()}").status_code == 404
    assert client.simulate_get("/api/no/such/thing").status_code == 404
    after = scrape(client)

    route = "/api/flows/{flow_id:uuid}"
    key = {"method": "GET", "route": route}
    assert value(after, "appliance_http_requests_total", **key, status="200") - \
        value(before, "appliance_http_requests_total", **key, status="200") == 3
    assert value(after, "appliance_http_requests_total", **key, status="404") - \
        value(before, "appliance_http_requests_total", **key, status="404") == 1
    unmatched = {"method": "GET", "route": metrics.UNMATCHED, "status": "404"}
    assert value(after, "appliance_http_requests_total", **unmatched) - \
        value(before, "appliance_http_requests_total", **unmatched) == 1
    # The histogram counts the same requests; no series carries a raw path.
    assert value(after, "appliance_http_request_duration_seconds_count", **key, status="200") - \
        value(before, "appliance_http_request_duration_seconds_count", **key, status="200") == 3
    assert value(after, "appliance_http_request_duration_seconds_bucket", **key, status="200", le="+Inf") >= 3
    routes = {dict(labels).get("route") for (_, labels) in after}
    assert flow_id not in " ".join(r for r in routes if r)
    # The scrape that is running counts itself as in flight; the pools report their size.
    assert value(after, "appliance_http_requests_in_flight") >= 1
    pools = {dict(labels)["pool"]: v for (name, labels), v in after.items() if name == "appliance_db_pool_threads"}
    assert pools in ({"read": 8, "write": 1}, {"shared": 8})
    waited = sum(v for (name, _), v in after.items() if name == "appliance_db_pool_wait_seconds_count")
    assert waited > sum(v for (name, _), v in before.items() if name == "appliance_db_pool_wait_seconds_count")


def test_request_id_kept_when_plain_else_generated(app_client):
    client = app_client()
    assert client.simulate_get("/api/health", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    generated = client.simulate_get("/api/health").headers["x-request-id"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    forged = client.simulate_get("/api/health", headers={"X-Request-ID": "x\" level=ERROR"}).headers["x-request-id"]
    assert forged != "x\" level=ERROR" and len(forged) == 32


def test_database_gauges_count_runs_late_runs_and_the_queue(app_client):
    client = app_client()
    flow_id = client.simulate_post("/api/flows/", json={"name": "g"}).json["id"]

    def run(state: dict) -> str:
        result = client.simulate_post("/api/flow_runs/", json={"flow_id": flow_id, "state": state})
        assert result.status_code == 201, result.text
        return result.json["id"]

    past = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    run({"type": "SCHEDULED", "state_details": {"scheduled_time": past}})  # late
    run({"type": "SCHEDULED", "state_details": {"scheduled_time": future}})
    running = run({"type": "PENDING"})
    assert client.simulate_post(f"/api/flow_runs/{running}/set_state",
                                json={"state": {"type": "RUNNING"}}).json["status"] == "ACCEPT"
    policy(str(uuid.uuid4()))
    failing_run()  # RUNNING -> FAILED, and one notification queued for the policy

    samples = scrape(client)
    assert value(samples, "appliance_metrics_database_ok") == 1
    runs = {dict(labels)["state"]: v for (name, labels), v in samples.items() if name == "appliance_flow_runs"}
    assert runs == {"SCHEDULED": 2, "PENDING": 0, "RUNNING": 1, "PAUSED": 0, "CANCELLING": 0,
                    "COMPLETED": 0, "FAILED": 1, "CANCELLED": 0, "CRASHED": 0}
    assert value(samples, "appliance_flow_runs_late") == 1
    assert value(samples, "appliance_notifications_queued", status="pending") == 1
    assert value(samples, "appliance_notifications_queued", status="sending") == 0
    assert 0 <= value(samples, "appliance_notifications_oldest_pending_age_seconds") < 60


def test_database_gauges_are_cached_between_scrapes(app_client):
    client = app_client(metrics_cache_seconds=300)
    flow_id = client.simulate_post("/api/flows/", json={"name": "c"}).json["id"]
    first = value(scrape(client), "appliance_flow_runs", state="RUNNING")
    client.simulate_post("/api/flow_runs/", json={"flow_id": flow_id, "state": {"type": "RUNNING"}})
    assert value(scrape(client), "appliance_flow_runs", state="RUNNING") == first  # served from the cache
    fresh = app_client(metrics_cache_seconds=0)
    assert value(scrape(fresh), "appliance_flow_runs", state="RUNNING") == first + 1


def test_events_ingested_and_their_lag(app_client):
    client = app_client()
    before = scrape(client)
    occurred = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)).isoformat()
    events = [{"id": str(uuid.uuid4()), "event": "test.happened", "occurred": occurred,
               "resource": {"prefect.resource.id": f"test.{i}"}} for i in range(4)]
    assert client.simulate_post("/api/events", json=events).status_code == 204
    after = scrape(client)
    assert value(after, "appliance_events_ingested_total", source="http") - \
        value(before, "appliance_events_ingested_total", source="http") == 4
    count = "appliance_events_ingest_lag_seconds_count"
    assert value(after, count) - value(before, count) == 4
    lag = value(after, "appliance_events_ingest_lag_seconds_sum") - value(before, "appliance_events_ingest_lag_seconds_sum")
    assert 4 * 29 < lag < 4 * 120
    # Fewer than 4 of these 30-second-old events fall in the 10 s bucket.
    bucket = "appliance_events_ingest_lag_seconds_bucket"
    assert value(after, bucket, le="10.0") - value(before, bucket, le="10.0") == 0


def test_retention_and_busy_helpers_feed_their_counters(app_client):
    client = app_client()
    before = scrape(client)
    metrics.record_retention_deleted("events", 120)
    metrics.record_retention_deleted("events", 0)
    metrics.record_db_busy("answered_503")
    after = scrape(client)
    assert value(after, "appliance_retention_rows_deleted_total", kind="events") - \
        value(before, "appliance_retention_rows_deleted_total", kind="events") == 120
    assert value(after, "appliance_db_busy_total", action="answered_503") - \
        value(before, "appliance_db_busy_total", action="answered_503") == 1


def test_openmetrics_when_the_scraper_asks_for_it(app_client):
    result = app_client().simulate_get("/api/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert result.headers["content-type"].startswith("application/openmetrics-text")
    assert result.text.rstrip().endswith("# EOF")


def test_metrics_behind_basic_auth_and_absent_when_disabled(app_client):
    client = app_client(auth_string="admin:pw")
    assert client.simulate_get("/api/metrics").status_code == 401
    token = base64.b64encode(b"admin:pw").decode()
    samples = scrape(client, headers={"Authorization": f"Basic {token}"})
    # Refused before routing: counted, under no route template.
    assert value(samples, "appliance_http_requests_total", method="GET", route=metrics.UNMATCHED, status="401") >= 1
    off = app_client(metrics_enabled=False)
    assert off.simulate_get("/api/metrics").status_code == 404


def test_grafana_dashboard_queries_only_metrics_that_exist(app_client):
    import json
    import re

    from db import database as dbmod
    from db import scheduler

    client = app_client()
    with dbmod.write_tx():
        scheduler.run_scheduler_pass()  # the lag gauge appears once this process has passed once
    families = {f.name for f in text_string_to_metric_families(client.simulate_get("/api/metrics").text)}
    assert 0 <= value(scrape(client), "appliance_scheduler_lag_seconds") < 30
    families.add("appliance_notifications_deliveries")  # the notifier's own (tests/notifier/test_metrics.py)
    dashboard = json.loads((support.REPO / "ops" / "grafana" / "appliance-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {re.sub(r"_(total|bucket|count|sum)$", "", name) for e in exprs for name in re.findall(r"appliance_\w+", e)}
    assert used and used <= families, used - families
