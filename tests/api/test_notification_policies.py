"""/flow_run_notification_policies on both databases."""

from __future__ import annotations

import uuid

import pytest

P = "/api/flow_run_notification_policies"


@pytest.fixture
def known_block():
    from notifier import blocks_access

    block_id = str(uuid.uuid4())
    blocks_access.set_resolver({block_id: ("slack-webhook", {"url": "http://x"})}.get)
    yield block_id
    blocks_access.set_resolver(None)


def test_crud(client, known_block):
    r = client.simulate_post(P, json={"state_names": ["Failed"], "tags": ["prod"], "block_document_id": known_block})
    assert r.status_code == 201, r.text
    body = r.json
    assert body["is_active"] is True and body["message_template"] is None and body["tags"] == ["prod"]
    pid = body["id"]
    assert client.simulate_get(f"{P}/{pid}").json["id"] == pid
    r = client.simulate_patch(f"{P}/{pid}", json={"is_active": False, "message_template": "{flow_name} is {flow_run_state_name}"})
    assert r.status_code == 204
    assert client.simulate_get(f"{P}/{pid}").json["is_active"] is False
    listed = client.simulate_post(f"{P}/filter", json={}).json
    assert [p["id"] for p in listed] == [pid]
    active = client.simulate_post(f"{P}/filter", json={"flow_run_notification_policy_filter": {"is_active": {"eq_": True}}})
    assert active.json == []
    assert client.simulate_delete(f"{P}/{pid}").status_code == 204
    assert client.simulate_get(f"{P}/{pid}").status_code == 404
    assert client.simulate_delete(f"{P}/{pid}").status_code == 404


def test_unknown_placeholder_is_422_and_nothing_stored(client, known_block):
    r = client.simulate_post(P, json={"block_document_id": known_block, "message_template": "{nope} {flow_name}"})
    assert r.status_code == 422 and "message_template" in r.json["detail"]
    assert client.simulate_post(f"{P}/filter", json={}).json == []


def test_unknown_block_document_is_404(client, known_block):
    r = client.simulate_post(P, json={"block_document_id": str(uuid.uuid4())})
    assert r.status_code == 404


def test_missing_block_id_is_422(client):
    r = client.simulate_post(P, json={"state_names": ["Failed"]})
    assert r.status_code == 422 and "block_document_id" in r.json["detail"]
