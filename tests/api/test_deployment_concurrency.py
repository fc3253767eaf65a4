"""Deployment concurrency on leases (rule F6, Prefect §4.11), over HTTP on both backends.

The deployment's limit is the global limit ``deployment:<id>``; PENDING takes a slot with
a lease the runner renews; the lease travels to RUNNING/CANCELLING and is released when
the run leaves them; a dead runner's expired lease gives its slot back.
"""

from __future__ import annotations

import datetime as dt

import pytest

from db.models_concurrency import ConcurrencyLease

LEASE = "deployment_concurrency_lease_id"


@pytest.fixture
def deployment(client):
    flow = client.simulate_post("/api/flows/", json={"name": "limited"}).json
    resp = client.simulate_post(
        "/api/deployments/", json={"name": "d", "flow_id": flow["id"], "concurrency_limit": 1}
    )
    assert resp.status_code == 201, resp.text
    return resp.json


def new_run(client, deployment, **extra):
    resp = client.simulate_post(f"/api/deployments/{deployment['id']}/create_flow_run", json=extra)
    assert resp.status_code == 201, resp.text
    return resp.json


def propose(client, run, type_, name=None, **extra):
    state = {"type": type_, **({"name": name} if name else {})}
    return client.simulate_post(f"/api/flow_runs/{run['id']}/set_state", json={"state": state, **extra}).json


def held(client, deployment) -> int:
    return client.simulate_get(f"/api/v2/concurrency_limits/deployment:{deployment['id']}").json["active_slots"]


def test_the_limit_is_a_global_limit_that_follows_the_deployment(client, deployment):
    gcl = deployment["global_concurrency_limit"]
    assert gcl["name"] == f"deployment:{deployment['id']}" and gcl["limit"] == 1 and gcl["active_slots"] == 0
    url = f"/api/deployments/{deployment['id']}"
    assert client.simulate_patch(url, json={"concurrency_limit": 3}).status_code == 204
    assert client.simulate_get(url).json["global_concurrency_limit"]["limit"] == 3
    listed = client.simulate_post("/api/deployments/filter", json={}).json
    assert listed[0]["global_concurrency_limit"]["limit"] == 3
    assert client.simulate_patch(url, json={"concurrency_limit": None}).status_code == 204
    assert client.simulate_get(url).json["global_concurrency_limit"] is None
    assert client.simulate_get(f"/api/v2/concurrency_limits/deployment:{deployment['id']}").status_code == 404


def test_lease_taken_at_pending_carried_to_running_released_at_the_end(client, deployment):
    run = new_run(client, deployment)
    pending = propose(client, run, "PENDING")
    assert pending["status"] == "ACCEPT"
    lease_id = pending["state"]["state_details"][LEASE]
    assert lease_id and held(client, deployment) == 1
    # The runner's maintain_concurrency_lease renews it.
    renew = client.simulate_post(f"/api/v2/concurrency_limits/leases/{lease_id}/renew", json={"lease_duration": 300})
    assert renew.status_code == 204
    running = propose(client, run, "RUNNING")
    assert running["status"] == "ACCEPT" and running["state"]["state_details"][LEASE] == lease_id
    assert propose(client, run, "COMPLETED")["status"] == "ACCEPT"
    assert held(client, deployment) == 0 and ConcurrencyLease.select().count() == 0


def test_cancelling_keeps_the_lease_until_cancelled(client, deployment):
    run = new_run(client, deployment)
    propose(client, run, "PENDING")
    propose(client, run, "RUNNING")
    cancelling = propose(client, run, "CANCELLING")
    assert cancelling["status"] == "ACCEPT" and cancelling["state"]["state_details"][LEASE]
    assert held(client, deployment) == 1
    assert propose(client, run, "CANCELLED")["status"] == "ACCEPT"
    assert held(client, deployment) == 0


def test_in_process_retry_keeps_the_slot(client, deployment):
    run = new_run(client, deployment)
    client.simulate_patch(f"/api/flow_runs/{run['id']}", json={"empirical_policy": {"retries": 1, "retry_delay": 0}})
    lease_id = propose(client, run, "PENDING")["state"]["state_details"][LEASE]
    propose(client, run, "RUNNING")
    retry = propose(client, run, "FAILED")
    assert retry["status"] == "REJECT" and retry["state"]["name"] == "AwaitingRetry"
    assert held(client, deployment) == 1
    again = propose(client, run, "RUNNING", name="Retrying")
    assert again["status"] == "ACCEPT" and again["state"]["state_details"][LEASE] == lease_id
    propose(client, run, "COMPLETED")
    assert held(client, deployment) == 0


def expire(lease_id: str) -> None:
    ConcurrencyLease.update(expires=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)).where(
        ConcurrencyLease.id == lease_id
    ).execute()


def test_a_dead_runners_expired_lease_frees_the_slot(client, deployment):
    first, second = new_run(client, deployment), new_run(client, deployment)
    lease_id = propose(client, first, "PENDING")["state"]["state_details"][LEASE]
    assert propose(client, second, "PENDING")["state"]["name"] == "AwaitingConcurrencySlot"
    expire(lease_id)  # the runner died and stopped renewing
    admitted = propose(client, second, "PENDING")
    assert admitted["status"] == "ACCEPT" and admitted["state"]["state_details"][LEASE] != lease_id
    assert held(client, deployment) == 1


def test_pending_to_running_after_the_lease_was_reaped(client, deployment):
    first = new_run(client, deployment)
    lease_id = propose(client, first, "PENDING")["state"]["state_details"][LEASE]
    expire(lease_id)
    # Slot still free: a new lease is taken and the run goes on.
    running = propose(client, first, "RUNNING")
    assert running["status"] == "ACCEPT"
    assert running["state"]["state_details"][LEASE] not in (None, lease_id)
    assert held(client, deployment) == 1



def test_late_run_loses_its_slot_and_is_cancelled(client, deployment):
    first, second = new_run(client, deployment), new_run(client, deployment)
    lease_id = propose(client, first, "PENDING")["state"]["state_details"][LEASE]
    expire(lease_id)
    assert propose(client, second, "PENDING")["status"] == "ACCEPT"  # takes the freed slot
    lost = propose(client, first, "RUNNING")
    assert lost["status"] == "REJECT" and lost["state"]["type"] == "CANCELLED"
    assert "slot lost" in lost["state"]["message"]
    assert held(client, deployment) == 1
