"""Deployment concurrency (Prefect §4.11, rule F6) on leases, as Prefect 3.8.8 does it.

A deployment with ``concurrency_limit`` owns a global concurrency limit named
``deployment:<id>`` (shown as the deployment's ``global_concurrency_limit``). A run
proposed PENDING takes one slot with a lease whose id goes into the new state's
``deployment_concurrency_lease_id``; the runner or worker renews it while the run lives
(``maintain_concurrency_lease``), PENDING→RUNNING renews it again (or re-acquires a
reaped one, or cancels the run when the slot went to someone else), and leaving
PENDING/RUNNING/CANCELLING releases it. When the process running the flow dies, its
lease expires and the lease sweeper gives the slot back, so a crashed runner never
holds a deployment's slot for ever.

Everything runs inside the state write's transaction; the limit row is locked (row lock
on PostgreSQL, the single writer on SQLite), so two workers proposing PENDING for runs
of one deployment are admitted one after the other.
"""

from __future__ import annotations

import datetime as dt

from appliance.settings import get_settings
from db import concurrency
from db.concurrency import ConcurrencyLimit
from db.fields import utcnow
from db.models_deployments import Deployment

ACTIVE = ("PENDING", "RUNNING", "CANCELLING")
# Prefect's PREFECT_SERVER_CONCURRENCY_INITIAL_DEPLOYMENT_LEASE_DURATION default.
DEFAULT_GRACE_SECONDS = 300.0
LEASE_KEY = "deployment_concurrency_lease_id"


def limit_name(deployment_id: str) -> str:
    return f"deployment:{deployment_id}"


# --- the deployment's limit row ---------------------------------------------------------------


def sync_limit(deployment_id: str, limit: int | None) -> None:
    """Make the deployment's global limit match ``concurrency_limit`` (create, resize, drop)."""
    name = limit_name(deployment_id)
    existing = concurrency.read_limit(name)
    if limit is None:
        if existing is not None:
            concurrency.delete_limit(name)
        return
    if existing is None:
        concurrency.create_limit({"name": name, "limit": limit})
    elif existing["limit"] != limit:
        concurrency.update_limit(name, {"limit": limit})


def global_limit_of(deployment_id: str) -> dict | None:
    return concurrency.read_limit(limit_name(deployment_id))


def global_limits_of(deployment_ids: list[str]) -> dict[str, dict]:
    """deployment id -> its limit row (one query for a listing)."""
    names = {limit_name(d): d for d in deployment_ids}
    if not names:
        return {}
    now = utcnow()
    rows = ConcurrencyLimit.select().where(ConcurrencyLimit.name.in_(list(names))).dicts()
    return {names[r["name"]]: concurrency.decayed(r, now) for r in rows}


# --- what rule F6 needs to decide -------------------------------------------------------------


def slots_for(run: dict, current: dict | None, proposed: dict, now: dt.datetime) -> dict | None:
    """For the F6 rules: the deployment's limit, strategy and whether a slot is free now,
    with the limit row locked for the rest of the transaction. None when the deployment
    has no limit (or is gone). Expired leases on this limit are freed first."""
    dep = (
        Deployment.select(Deployment.concurrency_limit, Deployment.concurrency_options)
        .where(Deployment.id == run["deployment_id"])
        .dicts()
        .first()
    )
    if dep is None or dep["concurrency_limit"] is None:
        return None
    rows = concurrency._lock(ConcurrencyLimit.name == limit_name(run["deployment_id"]), now)
    if not rows:  # a limit set before leases existed: create it now
        sync_limit(run["deployment_id"], dep["concurrency_limit"])
        rows = concurrency._lock(ConcurrencyLimit.name == limit_name(run["deployment_id"]), now)
    row = rows[0]
    concurrency._free_expired_of(rows, now)
    options = dep["concurrency_options"] or {}
    lease_id = ((current or {}).get("state_details") or {}).get(LEASE_KEY)
    return {
        "limit": row["limit"],
        "strategy": options.get("collision_strategy") or "ENQUEUE",
        "grace_seconds": float(options.get("grace_period_seconds") or DEFAULT_GRACE_SECONDS),
        "available": concurrency.whole(row["active_slots"]) < row["limit"],
        "lease_alive": bool(lease_id) and lease_alive(lease_id, now),
        "name": row["name"],
        "wait_seconds": get_settings().deployment_slot_wait_seconds,
    }


def lease_alive(lease_id: str, now: dt.datetime) -> bool:
    lease = concurrency.ConcurrencyLease.select(concurrency.ConcurrencyLease.expires).where(
        concurrency.ConcurrencyLease.id == lease_id
    ).first()
    return lease is not None and lease.expires >= now


def take_slot(run: dict, slots: dict, now: dt.datetime) -> str:
    """Take one slot of the (locked, checked) limit with a new lease held by the run."""
    admission = concurrency.acquire(
        [slots["name"]], 1, lease_seconds=slots["grace_seconds"],
        holder={"type": "flow_run", "id": run["id"]}, now=now,
    )
    if not admission.granted:  # cannot happen under the lock taken by slots_for
        raise RuntimeError("deployment concurrency slot vanished under its lock")
    return admission.lease_id


def renew(lease_id: str, slots: dict, now: dt.datetime) -> bool:
    return concurrency.renew_lease(lease_id, slots["grace_seconds"], now)


# --- release ----------------------------------------------------------------------------------


def release_after(previous: dict | None, written: dict, *, kept_for_retry: bool) -> None:
    """Prefect's ReleaseFlowConcurrencySlots: leaving PENDING/RUNNING/CANCELLING for any
    other state gives the lease back, except an in-process retry (AwaitingRetry by
    rejection), during which the engine keeps renewing it."""
    if previous is None or previous["type"] not in ACTIVE or written["type"] in ACTIVE or kept_for_retry:
        return
    lease_id = (previous.get("state_details") or {}).get(LEASE_KEY)
    if lease_id:
        concurrency.release_lease(lease_id)
