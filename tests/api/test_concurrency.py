"""/v2/concurrency_limits and /concurrency_limits (v1 tag limits) over HTTP, on both backends.

Status codes and shapes are the real 3.8.8 server's (spec §5.9, §5.10); the admission
arithmetic itself is covered in tests/db/test_concurrency.py.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import falcon.testing
import pytest

from api import state
from db.models_concurrency import ConcurrencyLease, ConcurrencyLimit

V2 = "/api/v2/concurrency_limits"
V1 = "/api/concurrency_limits"


@pytest.fixture(autouse=True)
def answer_full_limits_at_once(client):
    """Most tests here check Prefect's own answers to a full limit: no waiting at the server
    (the tests of that wait set their own window)."""
    state.settings = state.settings.model_copy(update={"concurrency_queue_seconds": 0.0})


def queue_window(seconds: float) -> None:
    state.settings = state.settings.model_copy(update={"concurrency_queue_seconds": seconds})


def make(client, name="gcl", limit=2, **extra):
    resp = client.simulate_post(f"{V2}/", json={"name": name, "limit": limit, **extra})
    assert resp.status_code == 201, resp.text
    return resp.json


def acquire(client, names, slots=1, **extra):
    return client.simulate_post(f"{V2}/increment-with-lease", json={"names": names, "slots": slots, **extra})


def test_create_shape_read_by_id_and_name_list(client):
    made = make(client, "db-pool", 3)
    assert set(made) == {
        "id", "created", "updated", "active", "name", "limit", "active_slots",
        "denied_slots", "slot_decay_per_second", "avg_slot_occupancy_seconds",
    }
    assert made["avg_slot_occupancy_seconds"] == 2.0 and made["active"] is True
    by_name = client.simulate_get(f"{V2}/db-pool").json
    assert client.simulate_get(f"{V2}/{made['id']}").json == by_name
    assert "denied_slots" not in by_name and by_name["limit"] == 3
    listed = client.simulate_post(f"{V2}/filter", json={"limit": 100, "offset": 0}).json
    assert [row["name"] for row in listed] == ["db-pool"]


def test_duplicate_name_conflicts_and_writes_nothing(client):
    make(client, "dup")
    resp = client.simulate_post(f"{V2}/", json={"name": "dup", "limit": 9})
    assert resp.status_code == 409 and "detail" in resp.json
    assert client.simulate_get(f"{V2}/dup").json["limit"] == 2


def test_patch_and_delete_by_name_then_404(client):
    made = make(client, "patchme")
    assert client.simulate_patch(f"{V2}/patchme", json={"limit": 7, "active": False}).status_code == 204
    row = client.simulate_get(f"{V2}/{made['id']}").json
    assert row["limit"] == 7 and row["active"] is False
    assert client.simulate_delete(f"{V2}/{made['id']}").status_code == 204
    missing = client.simulate_get(f"{V2}/patchme")
    assert missing.status_code == 404 and missing.json == {"detail": "Concurrency Limit not found"}
    assert client.simulate_delete(f"{V2}/patchme").status_code == 404
    assert client.simulate_patch(f"{V2}/patchme", json={"limit": 1}).status_code == 404


def test_lease_lifecycle_renew_release_and_410(client):
    make(client, "leased", 1)
    first = acquire(client, ["leased"], lease_duration=60)
    assert first.status_code == 200
    lease_id = first.json["lease_id"]
    assert [lim["name"] for lim in first.json["limits"]] == ["leased"]
    assert set(first.json["limits"][0]) == {"id", "name", "limit"}

    full = acquire(client, ["leased"])
    assert full.status_code == 423 and float(full.headers["Retry-After"]) > 0
    assert client.simulate_get(f"{V2}/leased").json["active_slots"] == 1

    renew = client.simulate_post(f"{V2}/leases/{lease_id}/renew", json={"lease_duration": 120})
    assert renew.status_code == 204
    assert client.simulate_post(f"{V2}/decrement-with-lease", json={"lease_id": lease_id}).status_code == 204
    assert client.simulate_get(f"{V2}/leased").json["active_slots"] == 0
    # Releasing again is a no-op; renewing a gone lease is 410.
    assert client.simulate_post(f"{V2}/decrement-with-lease", json={"lease_id": lease_id}).status_code == 204
    gone = client.simulate_post(f"{V2}/leases/{lease_id}/renew", json={"lease_duration": 60})
    assert gone.status_code == 410 and "detail" in gone.json


def test_unknown_names_get_a_lease_and_no_limits(client):
    resp = acquire(client, ["tag:nobody-limits-this"], holder={"type": "task_run", "id": str(uuid.uuid4())})
    assert resp.status_code == 200 and resp.json["limits"] == [] and uuid.UUID(resp.json["lease_id"])
    assert ConcurrencyLease.select().count() == 0


def test_increment_and_decrement_without_lease(client):
    make(client, "plain", 2)
    got = client.simulate_post(f"{V2}/increment", json={"names": ["plain"], "slots": 2})
    assert got.status_code == 200 and got.json[0]["name"] == "plain"
    assert client.simulate_post(f"{V2}/increment", json={"names": ["plain"], "slots": 1}).status_code == 423
    back = client.simulate_post(f"{V2}/decrement", json={"names": ["plain"], "slots": 2, "occupancy_seconds": 1.5})
    assert back.status_code == 200
    assert client.simulate_get(f"{V2}/plain").json["active_slots"] == 0


def test_more_slots_than_the_limit_and_rate_limit_without_decay_are_422(client):
    make(client, "small", 1)
    too_many = client.simulate_post(f"{V2}/increment", json={"names": ["small"], "slots": 2})
    assert too_many.status_code == 422 and too_many.json["detail"] == "Slots requested is greater than the limit"
    rate = client.simulate_post(f"{V2}/increment", json={"names": ["small"], "slots": 1, "mode": "rate_limit"})
    assert rate.status_code == 422 and "detail" in rate.json


@pytest.mark.parametrize(
    "path, body",
    [
        (f"{V2}/", {"name": "x", "limit": -1}),
        (f"{V2}/", {"name": "", "limit": 1}),
        (f"{V2}/", {"name": "a/b", "limit": 1}),
        (f"{V2}/", {"name": "x", "limit": "lots"}),
        (f"{V2}/", {"name": "x", "limit": 1, "slot_decay_per_second": -0.5}),
        (f"{V2}/", {"name": "x", "limit": 2**40}),
        (f"{V2}/", {"name": "x", "limit": 1, "bogus": True}),
        (f"{V2}/", ["not", "an", "object"]),
        (f"{V2}/increment-with-lease", {"names": ["x"], "slots": 1, "lease_duration": 5}),
        (f"{V2}/increment-with-lease", {"names": ["x"], "slots": 1, "lease_duration": 10**9}),
        (f"{V2}/increment-with-lease", {"names": [], "slots": 1}),
        (f"{V2}/increment-with-lease", {"names": ["x"], "slots": 0}),
        (f"{V2}/increment-with-lease", {"names": ["x"], "slots": 1, "holder": {"type": "robot", "id": "1"}}),
        (f"{V2}/increment", {"names": ["x"], "slots": 1, "mode": "sometimes"}),
        (f"{V2}/decrement-with-lease", {"lease_id": "not-a-uuid"}),
        (f"{V2}/leases/not-a-uuid/renew", {"lease_duration": 60}),
        (f"{V1}/", {"tag": "t", "concurrency_limit": -3}),
        (f"{V1}/", {"tag": "t"}),
        (f"{V1}/increment", {"names": ["t"], "task_run_id": "nope"}),
    ],
)
def test_bad_input_is_422_with_detail_and_writes_nothing(client, path, body):
    resp = client.simulate_post(path, json=body)
    assert resp.status_code == 422, resp.text
    assert resp.json.get("detail")
    assert ConcurrencyLimit.select().count() == 0 and ConcurrencyLease.select().count() == 0


def test_malformed_json_is_4xx(client):
    resp = client.simulate_post(f"{V2}/", body=b"{not json", headers={"content-type": "application/json"})
    assert 400 <= resp.status_code < 500 and resp.json.get("detail")


# --- v1 tag limits ---------------------------------------------------------------------------


def test_v1_upsert_codes_and_views_over_v2(client):
    made = client.simulate_post(f"{V1}/", json={"tag": "db", "concurrency_limit": 1})
    assert made.status_code == 201
    assert set(made.json) == {"id", "created", "updated", "tag", "concurrency_limit", "active_slots"}
    again = client.simulate_post(f"{V1}/", json={"tag": "db", "concurrency_limit": 4})
    assert again.status_code == 200 and again.json["id"] == made.json["id"]
    # The same row, seen as a v2 limit named tag:db.
    v2 = client.simulate_get(f"{V2}/tag:db").json
    assert v2["id"] == made.json["id"] and v2["limit"] == 4
    assert client.simulate_get(f"{V1}/tag/db").json["concurrency_limit"] == 4
    assert client.simulate_get(f"{V1}/{made.json['id']}").json["tag"] == "db"
    assert [v["tag"] for v in client.simulate_post(f"{V1}/filter", json={"limit": 15, "offset": 0}).json] == ["db"]


def test_v1_active_slots_are_task_run_ids_and_reset(client):
    client.simulate_post(f"{V1}/", json={"tag": "io", "concurrency_limit": 2})
    task_run = str(uuid.uuid4())
    held = acquire(client, ["tag:io"], lease_duration=60, holder={"type": "task_run", "id": task_run})
    assert held.status_code == 200
    assert client.simulate_get(f"{V1}/tag/io").json["active_slots"] == [task_run]

    override = [str(uuid.uuid4()), str(uuid.uuid4())]
    reset = client.simulate_post(f"{V1}/tag/io/reset", json={"slot_override": override})
    assert reset.status_code == 200 and reset.json is None
    assert sorted(client.simulate_get(f"{V1}/tag/io").json["active_slots"]) == sorted(override)
    assert client.simulate_post(f"{V1}/tag/io/reset", json={}).status_code == 200
    assert client.simulate_get(f"{V1}/tag/io").json["active_slots"] == []


def test_v1_zero_limit_refuses_tagged_acquisition_with_422(client):
    client.simulate_post(f"{V1}/", json={"tag": "never", "concurrency_limit": 0})
    resp = acquire(client, ["tag:never"], holder={"type": "task_run", "id": str(uuid.uuid4())})
    assert resp.status_code == 422 and resp.json["detail"] == "Slots requested is greater than the limit"


def test_v1_legacy_increment_decrement(client):
    client.simulate_post(f"{V1}/", json={"tag": "legacy", "concurrency_limit": 1})
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    assert client.simulate_post(f"{V1}/increment", json={"names": ["legacy"], "task_run_id": first}).status_code == 200
    refused = client.simulate_post(f"{V1}/increment", json={"names": ["legacy"], "task_run_id": second})
    assert refused.status_code == 423 and "Retry-After" in refused.headers
    assert client.simulate_post(f"{V1}/decrement", json={"names": ["legacy"], "task_run_id": first}).status_code == 200
    assert client.simulate_post(f"{V1}/increment", json={"names": ["legacy"], "task_run_id": second}).status_code == 200


def test_v1_delete_answers_200_null_then_404(client):
    made = client.simulate_post(f"{V1}/", json={"tag": "gone", "concurrency_limit": 1}).json
    resp = client.simulate_delete(f"{V1}/tag/gone")
    assert resp.status_code == 200 and resp.json is None
    missing = client.simulate_get(f"{V1}/tag/gone")
    assert missing.status_code == 404 and missing.json == {"detail": "Concurrency limit not found"}
    assert client.simulate_delete(f"{V1}/{made['id']}").status_code == 404
    assert client.simulate_post(f"{V1}/tag/gone/reset", json={}).status_code == 404


# --- a full limit is waited on at the server (api.slot_waiters) -------------------------------


def _body(names):
    return {"names": names, "slots": 1, "mode": "concurrency", "lease_duration": 60}


def test_a_waiting_acquisition_is_granted_when_a_slot_is_released(client):
    make(client, "queued", 1)
    queue_window(5.0)
    held = acquire(client, ["queued"]).json["lease_id"]

    async def scenario():
        async with falcon.testing.ASGIConductor(client.app) as conductor:
            waiting = asyncio.ensure_future(conductor.simulate_post(f"{V2}/increment-with-lease", json=_body(["queued"])))
            await asyncio.sleep(0.3)
            assert not waiting.done()  # parked, not refused
            started = time.monotonic()
            released = await conductor.simulate_post(f"{V2}/decrement-with-lease", json={"lease_id": held})
            assert released.status_code == 204
            granted = await waiting
            return granted, time.monotonic() - started

    granted, after_release = asyncio.run(scenario())
    assert granted.status_code == 200 and granted.json["lease_id"] != held
    assert after_release < 0.4  # woken by the release, not by the poll
    row = ConcurrencyLimit.get(ConcurrencyLimit.name == "queued")
    assert row.active_slots == 1 and row.denied_slots == 0  # nobody was refused


def test_past_the_window_it_is_423_with_retry_after_and_the_denial_counted(client):
    make(client, "busy", 1)
    queue_window(0.4)
    assert acquire(client, ["busy"]).status_code == 200
    started = time.monotonic()
    refused = acquire(client, ["busy"])
    waited = time.monotonic() - started
    assert refused.status_code == 423 and float(refused.headers["Retry-After"]) > 0
    assert 0.4 <= waited < 2.0
    assert ConcurrencyLimit.get(ConcurrencyLimit.name == "busy").denied_slots == 1


def test_a_release_elsewhere_is_seen_by_the_poll(client):
    """A slot freed without this process's wake-up (another replica; here a direct write)."""
    from db import concurrency, database

    make(client, "elsewhere", 1)
    queue_window(5.0)
    held = acquire(client, ["elsewhere"]).json["lease_id"]

    async def release_then_wait():
        async with falcon.testing.ASGIConductor(client.app) as conductor:
            waiting = asyncio.ensure_future(conductor.simulate_post(f"{V2}/increment-with-lease", json=_body(["elsewhere"])))
            await asyncio.sleep(0.2)

            def release_directly():
                with database.write_tx():
                    concurrency.release_lease(held)

            await asyncio.to_thread(database._connected, release_directly)
            started = time.monotonic()
            granted = await waiting
            return granted, time.monotonic() - started

    granted, waited = asyncio.run(release_then_wait())
    assert granted.status_code == 200
    assert waited < 1.5  # the poll interval, not the whole window
