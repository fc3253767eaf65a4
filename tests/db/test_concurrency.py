"""Domain rules of global concurrency limits and leases (db.concurrency), on both backends.

Time is passed in (``now=``) so decay, expiry and the sweeper are tested without sleeping.
"""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from db import concurrency as cc
from db import database as dbmod
from db.fields import utcnow
from db.models_concurrency import ConcurrencyLease, ConcurrencyLeaseLimit, ConcurrencyLimit

T0 = dt.datetime(2026, 1, 1, 12, 0, 0)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def tx(fn, *args, **kwargs):
    with dbmod.write_tx():
        return fn(*args, **kwargs)


def make(name="lim", limit=2, now=T0, **extra):
    return tx(cc.create_limit, {"name": name, "limit": limit, **extra}, now)


def slots(name="lim", now=T0) -> int:
    return cc.whole(tx(cc.read_limit, name, now)["active_slots"])


def lease_count() -> int:
    return ConcurrencyLease.select().count()


def test_unknown_names_grant_nothing_and_write_nothing(migrated):
    got = tx(cc.acquire, ["tag:nope"], 1, lease_seconds=60, now=T0)
    assert got.granted and got.limits == [] and got.lease_id
    assert lease_count() == 0


def test_all_or_nothing_across_limits_and_release_gives_back_both(migrated):
    make("a", 1)
    make("b", 2)
    first = tx(cc.acquire, ["a", "b"], 1, lease_seconds=60, now=T0)
    assert first.granted and {x["name"] for x in first.limits} == {"a", "b"}
    assert (slots("a"), slots("b")) == (1, 1)
    denied = tx(cc.acquire, ["b", "a"], 1, lease_seconds=60, now=T0)
    assert not denied.granted and denied.retry_after > 0
    assert (slots("a"), slots("b")) == (1, 1)  # nothing taken from b either
    assert tx(cc.read_limit, "b", T0)["denied_slots"] == 1
    assert tx(cc.release_lease, first.lease_id, at(3))
    assert (slots("a", at(3)), slots("b", at(3))) == (0, 0)
    assert lease_count() == 0 and ConcurrencyLeaseLimit.select().count() == 0
    assert not tx(cc.release_lease, first.lease_id, at(4))  # idempotent no-op


def test_slots_greater_than_limit_and_rate_limit_without_decay_are_invalid(migrated):
    make("lim", 2)
    with pytest.raises(cc.Invalid, match="Slots requested is greater than the limit"):
        tx(cc.acquire, ["lim"], 3, now=T0)
    with pytest.raises(cc.Invalid, match="do not have a decay configured: 'lim'"):
        tx(cc.acquire, ["lim"], 1, "rate_limit", now=T0)
    make("zero", 0)
    with pytest.raises(cc.Invalid):
        tx(cc.acquire, ["zero"], 1, now=T0)
    assert slots("lim") == 0


def test_inactive_limits_are_returned_but_not_counted(migrated):
    make("off", 1, active=False)
    for _ in range(3):
        got = tx(cc.acquire, ["off"], 1, lease_seconds=60, now=T0)
        assert got.granted and got.limits[0]["name"] == "off"
    assert slots("off") == 0


def test_rate_limit_slots_decay_exactly(migrated):
    make("rl", 2, slot_decay_per_second=1.0)
    assert tx(cc.acquire, ["rl"], 2, "rate_limit", now=T0).granted
    # Half a second later one slot is half decayed: still counted (Prefect's floor).
    refused = tx(cc.acquire, ["rl"], 1, "rate_limit", now=at(0.5))
    assert not refused.granted
    # The write at 0.5 s must not lose the half second of decay already accrued.
    assert tx(cc.acquire, ["rl"], 1, "rate_limit", now=at(1.0)).granted
    assert slots("rl", at(1.0)) == 2
    assert slots("rl", at(3.0)) == 0


def test_retry_after_grows_with_denials_and_is_capped(migrated):
    make("tag:t", 1)
    make("g", 1)
    for name, cap in (("tag:t", cc.TAG_MAX_WAIT_SECONDS), ("g", cc.MAX_WAIT_SECONDS)):
        assert tx(cc.acquire, [name], 1, now=T0).granted
        waits = [tx(cc.acquire, [name], 1, now=T0).retry_after for _ in range(40)]
        assert all(0 < w <= cap * 1.3 for w in waits)
        assert waits[-1] > waits[0]


def test_denied_slots_decay(migrated):
    make("g", 1)
    assert tx(cc.acquire, ["g"], 1, now=T0).granted
    for _ in range(5):
        tx(cc.acquire, ["g"], 1, now=T0)
    assert tx(cc.read_limit, "g", T0)["denied_slots"] == 5
    # avg occupancy 2 s: one denied slot forgotten every 2 s
    assert cc.whole(tx(cc.read_limit, "g", at(4.0))["denied_slots"]) == 3


def test_release_moves_average_occupancy(migrated):
    make("g", 1)
    got = tx(cc.acquire, ["g"], 1, lease_seconds=60, now=T0)
    tx(cc.release_lease, got.lease_id, at(10))
    # weight 1/(2*limit): 2.0 + (10 - 2.0) / 2
    assert tx(cc.read_limit, "g", at(10))["avg_slot_occupancy_seconds"] == pytest.approx(6.0)


def test_renew_until_expiry_then_gone(migrated):
    make("g", 1)
    got = tx(cc.acquire, ["g"], 1, lease_seconds=60, now=T0)
    assert tx(cc.renew_lease, got.lease_id, 60, at(50))  # now expires at 110 s
    assert tx(cc.renew_lease, got.lease_id, 60, at(100))
    assert not tx(cc.renew_lease, got.lease_id, 60, at(161))
    assert not tx(cc.renew_lease, "00000000-0000-0000-0000-000000000000", 60, at(1))


def test_sweeper_frees_expired_leases_only(migrated):
    make("g", 3)
    dead = tx(cc.acquire, ["g"], 1, lease_seconds=60, holder={"type": "task_run", "id": cc.new_id()}, now=T0)
    alive = tx(cc.acquire, ["g"], 1, lease_seconds=60, now=T0)
    tx(cc.renew_lease, alive.lease_id, 120, at(50))
    assert tx(cc.sweep_expired_leases, at(59)) == 0
    assert tx(cc.sweep_expired_leases, at(61)) == 1
    assert slots("g", at(61)) == 1
    assert not tx(cc.renew_lease, dead.lease_id, 60, at(62))
    assert tx(cc.renew_lease, alive.lease_id, 60, at(62))


def test_full_limit_frees_its_own_expired_leases_at_admission(migrated):
    make("g", 2)
    for _ in range(2):
        assert tx(cc.acquire, ["g"], 1, lease_seconds=60, now=T0).granted
    assert not tx(cc.acquire, ["g"], 1, lease_seconds=60, now=at(30)).granted
    # The holders died: their leases ran out at 60 s; no sweeper pass needed.
    assert tx(cc.acquire, ["g"], 1, lease_seconds=60, now=at(61)).granted
    assert slots("g", at(61)) == 1 and lease_count() == 1


def test_update_and_delete_limit(migrated):
    make("g", 1)
    tx(cc.update_limit, "g", {"limit": 5, "active": False, "name": "g2"}, at(1))
    row = tx(cc.read_limit, "g2", at(1))
    assert (row["limit"], row["active"]) == (5, False)
    make("other", 1)
    with pytest.raises(cc.Conflict):
        tx(cc.update_limit, "g2", {"name": "other"}, at(2))
    with pytest.raises(cc.Conflict):
        make("other", 1)
    with pytest.raises(cc.NotFound):
        tx(cc.update_limit, "nope", {"limit": 1}, at(2))
    got = tx(cc.acquire, ["other"], 1, lease_seconds=60, now=at(2))
    tx(cc.delete_limit, row["id"], at(3))
    tx(cc.delete_limit, "other", at(3))
    assert ConcurrencyLimit.select().count() == 0
    assert tx(cc.release_lease, got.lease_id, at(4))  # the lease survives the limit, holding nothing
    with pytest.raises(cc.NotFound):
        tx(cc.delete_limit, "other", at(5))


def test_tag_limit_views_reset_and_delete(migrated):
    view, created = tx(cc.upsert_tag_limit, "db", 2)
    assert created and view["tag"] == "db" and view["active_slots"] == []
    view, created = tx(cc.upsert_tag_limit, "db", 3)
    assert not created and view["concurrency_limit"] == 3
    make("tag:other", 5)
    runs = [cc.new_id() for _ in range(3)]
    now = utcnow()
    both = tx(cc.acquire, ["tag:db", "tag:other"], 1, lease_seconds=60, holder={"type": "task_run", "id": runs[0]}, now=now)
    only = tx(cc.acquire, ["tag:db"], 1, lease_seconds=60, holder={"type": "task_run", "id": runs[1]}, now=now)
    assert sorted(tx(cc.read_tag_limit, "db")["active_slots"]) == sorted(runs[:2])
    # reset: the limit's slots are cleared; a lease holding only it is revoked
    tx(cc.reset_tag_limit, "db", [runs[2]])
    assert tx(cc.read_tag_limit, "db")["active_slots"] == [runs[2]]
    assert slots("tag:db", utcnow()) == 1
    assert not tx(cc.renew_lease, only.lease_id, 60)
    assert tx(cc.renew_lease, both.lease_id, 60)  # still holds tag:other
    assert slots("tag:other", utcnow()) == 1
    # delete: leases holding it are revoked and give back their other slots
    tx(cc.reset_tag_limit, "db", None)
    tx(cc.acquire, ["tag:db", "tag:other"], 1, lease_seconds=60, holder={"type": "task_run", "id": runs[0]})
    assert slots("tag:other", utcnow()) == 2
    tx(cc.delete_tag_limit, "db")
    assert tx(cc.read_tag_limit, "db") is None
    assert slots("tag:other", utcnow()) == 1
    with pytest.raises(cc.NotFound):
        tx(cc.delete_tag_limit, "db")
    assert [v["tag"] for v in tx(cc.list_tag_limits, 10, 0)] == ["other"]


def test_v1_increment_and_decrement(migrated):
    tx(cc.upsert_tag_limit, "a", 1)
    tx(cc.upsert_tag_limit, "zero", 0)
    run = cc.new_id()
    got = tx(cc.v1_increment, ["a", "untracked"], run)
    assert [g["name"] for g in got] == ["a"]
    with pytest.raises(cc.Refused, match="Concurrency limit for the a tag has been reached"):
        tx(cc.v1_increment, ["a"], cc.new_id())
    with pytest.raises(cc.Refused, match='on tag "zero" is 0'):
        tx(cc.v1_increment, ["zero"], cc.new_id())
    assert tx(cc.read_tag_limit, "a")["active_slots"] == [run]
    assert [r["name"] for r in tx(cc.v1_decrement, ["a"], run)] == ["tag:a"]
    assert tx(cc.read_tag_limit, "a")["active_slots"] == []
    assert slots("tag:a", utcnow()) == 0


def test_threads_never_over_admit(migrated):
    """Many threads, each with its own connection on PostgreSQL, racing for 3 slots."""
    make("race", 3, now=utcnow())
    held, peak, lock = [0], [0], threading.Lock()
    errors = []

    def worker():
        try:
            for _ in range(15):
                with dbmod.write_tx():
                    got = cc.acquire(["race"], 1, lease_seconds=60)
                if not got.granted:
                    continue
                with lock:
                    held[0] += 1
                    peak[0] = max(peak[0], held[0])
                with lock:
                    held[0] -= 1
                with dbmod.write_tx():
                    cc.release_lease(got.lease_id)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            dbmod.database.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert peak[0] <= 3
    assert slots("race", utcnow()) == 0 and lease_count() == 0
