"""/work-pools: pools with worker health, one pool's queues and workers, pause / resume of
pools and queues, a pool's concurrency limit, one queue's runs."""

from __future__ import annotations

from tests.ui.admin_helpers import api_json, assert_redirect, main_html, post_form

W = "/api/work_pools"


def _pool(client, name="local", **extra):
    return api_json(client.simulate_post(f"{W}/", json={"name": name, "type": "process", **extra}), 201)


def test_list_shows_health(client):
    _pool(client, "local")
    _pool(client, "gpu pool", concurrency_limit=2)
    client.simulate_post(f"{W}/local/workers/heartbeat", json={"name": "worker-1", "heartbeat_interval_seconds": 30})
    page = main_html(client.simulate_get("/work-pools"))
    assert '/work-pools/work-pool/local"' in page and "/work-pools/work-pool/gpu%20pool" in page
    row = page[page.index("/work-pools/work-pool/local"):]
    assert "1 / 1" in row.split("</tr>")[0] and "READY" in row.split("</tr>")[0]


def test_pool_page_queues_workers_and_actions(client):
    _pool(client, "local")
    api_json(client.simulate_post(f"{W}/local/queues/", json={"name": "high", "priority": 1, "concurrency_limit": 3}),
             201)
    client.simulate_post(f"{W}/local/workers/heartbeat", json={"name": "worker-1", "heartbeat_interval_seconds": 15})
    flow = client.simulate_post("/api/flows/", json={"name": "etl"}).json
    dep = api_json(client.simulate_post("/api/deployments/", json={
        "name": "d", "flow_id": flow["id"], "work_pool_name": "local", "work_queue_name": "high"}), 201)
    run = api_json(client.simulate_post(f"/api/deployments/{dep['id']}/create_flow_run", json={}), 201)

    page = client.simulate_get("/work-pools/work-pool/local")
    assert page.status_code == 200
    text = main_html(page)
    assert "high" in text and "default" in text and "worker-1" in text and "ONLINE" in text and "15 s" in text
    queue_row = text[text.index("/work-pools/work-pool/local/queue/high"):].split("</tr>")[0]
    assert ">3<" in queue_row and ">1<" in queue_row  # its limit, one scheduled run

    assert_redirect(post_form(client, "/work-pools/work-pool/local/pause"), "/work-pools/work-pool/local?msg=paused")
    assert api_json(client.simulate_get(f"{W}/local"))["status"] == "PAUSED"
    assert "Work pool paused." in client.simulate_get("/work-pools/work-pool/local?msg=paused").text
    assert_redirect(post_form(client, "/work-pools/work-pool/local/resume"), "/work-pools/work-pool/local")
    pool = api_json(client.simulate_get(f"{W}/local"))
    assert pool["is_paused"] is False and pool["status"] == "READY"

    assert_redirect(post_form(client, "/work-pools/work-pool/local/queue/high/pause"), "/work-pools/work-pool/local")
    assert api_json(client.simulate_get(f"{W}/local/queues/high"))["status"] == "PAUSED"
    resumed = post_form(client, "/work-pools/work-pool/local/queue/high/resume", {"back": "queue"})
    assert_redirect(resumed, "/work-pools/work-pool/local/queue/high?msg=queue-resumed")
    assert api_json(client.simulate_get(f"{W}/local/queues/high"))["is_paused"] is False

    assert_redirect(post_form(client, "/work-pools/work-pool/local/concurrency", {"concurrency_limit": "4"}),
                    "/work-pools/work-pool/local?msg=saved")
    assert api_json(client.simulate_get(f"{W}/local"))["concurrency_limit"] == 4
    assert_redirect(post_form(client, "/work-pools/work-pool/local/concurrency", {"concurrency_limit": ""}),
                    "/work-pools/work-pool/local")
    assert api_json(client.simulate_get(f"{W}/local"))["concurrency_limit"] is None
    bad = post_form(client, "/work-pools/work-pool/local/concurrency", {"concurrency_limit": "-2"})
    assert bad.status_code == 422 and "at least 0" in bad.text and 'value="-2"' in bad.text

    queue = main_html(client.simulate_get("/work-pools/work-pool/local/queue/high"))
    assert f"/runs/flow-run/{run['id']}" in queue and run["name"] in queue


def test_unknown_pool_and_queue_are_404_pages(client):
    missing = client.simulate_get("/work-pools/work-pool/nope")
    assert missing.status_code == 404 and "not found" in missing.text
    assert missing.headers["content-type"].startswith("text/html")
    _pool(client, "local")
    assert client.simulate_get("/work-pools/work-pool/local/queue/nope").status_code == 404
    assert post_form(client, "/work-pools/work-pool/nope/pause").status_code == 404
    assert client.simulate_get("/work-pools").status_code == 200


def test_pool_list_pages(client):
    for i in range(52):
        _pool(client, f"pool-{i:02d}")
    first = main_html(client.simulate_get("/work-pools"))
    assert "pool-00" in first and "pool-49" in first and "pool-50" not in first
    assert "/work-pools?after=pool-49" in first
    second = main_html(client.simulate_get("/work-pools?after=pool-49"))
    assert "pool-50" in second and "pool-51" in second and "pool-49" not in second
    assert "/work-pools?before=pool-50" in second
