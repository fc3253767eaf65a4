"""Global concurrency limits and their leases: admission, slot decay, release, expiry.

Every function here runs inside one write transaction (``db.run_write``), and admission
is decided from the limit rows *as locked by that transaction*: on SQLite the
transaction is ``BEGIN IMMEDIATE`` (one writer at a time, across processes too); on
PostgreSQL the limit rows are taken ``SELECT … FOR UPDATE`` **in name order**, so two
requests naming several limits cannot deadlock, and any transaction that changes slot
counters or a lease's set of limits first holds the locks of all the limits involved.
The counter ``active_slots`` is therefore never over-committed, whatever the number of
API workers or replicas.

Slot math follows Prefect 3.8.8 (§5.10): a limit with ``slot_decay_per_second`` > 0
loses slots over time (rate limits); ``denied_slots`` decays too and drives the
``Retry-After`` estimate of a 423; releases move ``avg_slot_occupancy_seconds`` toward
the observed occupancy. Counters are stored as floats and decay continuously, so the
decay is exact however often a row is written (Prefect floors the decay at every write
and loses the fraction); the API shows whole slots (``whole``), which equals Prefect's
``active_slots - floor(decay × elapsed)``.

Leases (``ConcurrencyLease`` + one ``ConcurrencyLeaseLimit`` row per limit it holds
slots of) expire unless renewed; ``sweep_expired_leases`` (the ``lease-sweeper`` service)
gives the slots of expired leases back, and an admission about to be refused first frees
the expired leases of its own limits, so a dead holder's slots come back as soon as its
lease has run out.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import uuid
from dataclasses import dataclass, field

from appliance import services
from db import database as dbmod
from db.fields import new_id, utcnow
from db.models_concurrency import ConcurrencyLease, ConcurrencyLeaseLimit, ConcurrencyLimit

TAG_PREFIX = "tag:"
MIN_LEASE_SECONDS = 60.0
MAX_LEASE_SECONDS = 86400.0
DEFAULT_LEASE_SECONDS = 300.0
# Legacy v1 increments cannot renew: their leases live "forever" (Prefect: ~100 years).
V1_LEASE_SECONDS = 100 * 365 * 86400.0
# Retry-After caps without decay (Prefect's server settings defaults).
TAG_MAX_WAIT_SECONDS = 10.0
MAX_WAIT_SECONDS = 30.0
OCCUPANCY_SAMPLES_MULTIPLIER = 2
MIN_OCCUPANCY_SECONDS = 0.1
DEFAULT_AVG_OCCUPANCY = 2.0
SWEEP_BATCH = 500
EPSILON = 1e-9

SLOTS_TOO_MANY = "Slots requested is greater than the limit"
LIMIT_NOT_FOUND = "Concurrency Limit not found"


class NotFound(LookupError):
    pass


class Conflict(ValueError):
    pass


class Invalid(ValueError):
    """A request the server refuses with 422 ``{"detail": message}``."""


class Refused(Exception):
    """A 423 decided before any write (v1 limit of 0)."""

    def __init__(self, detail: str, retry_after: float):
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


@dataclass
class Admission:
    """The outcome of an acquisition: granted (``retry_after`` None) or denied (423)."""

    limits: list[dict] = field(default_factory=list)  # {"id", "name", "limit"} of every named limit
    lease_id: str | None = None
    retry_after: float | None = None
    detail: str = "Locked"

    @property
    def granted(self) -> bool:
        return self.retry_after is None


# --- slot arithmetic ------------------------------------------------------------------------


def whole(slots: float) -> int:
    """Whole slots occupied: a partly decayed slot still counts (Prefect's integer math)."""
    return max(0, math.ceil(slots - EPSILON))


def _max_wait(row: dict) -> float:
    return TAG_MAX_WAIT_SECONDS if row["name"].startswith(TAG_PREFIX) else MAX_WAIT_SECONDS


def _denied_decay_rate(row: dict) -> float:
    if row["slot_decay_per_second"] > 0:
        return row["slot_decay_per_second"]
    occupancy = max(MIN_OCCUPANCY_SECONDS, min(row["avg_slot_occupancy_seconds"], _max_wait(row)))
    return 1.0 / occupancy


def decayed(row: dict, now: dt.datetime) -> dict:
    """``row`` with the decay since ``row["updated"]`` folded into its counters, as of ``now``."""
    elapsed = max((now - row["updated"]).total_seconds(), 0.0)
    out = dict(row)
    if elapsed:
        if row["slot_decay_per_second"] > 0:
            out["active_slots"] = max(0.0, row["active_slots"] - row["slot_decay_per_second"] * elapsed)
        out["denied_slots"] = max(0.0, row["denied_slots"] - _denied_decay_rate(row) * elapsed)
    return out


def retry_after(rows: list[dict], slots: int) -> float:
    """Seconds a refused acquirer should wait (Prefect's estimate, Poisson-jittered)."""

    def blocking(row):
        if row["slot_decay_per_second"] > 0:
            return slots + whole(row["denied_slots"])
        return (slots + whole(row["denied_slots"])) / max(row["limit"], 1)

    row = max(rows, key=blocking)
    if row["slot_decay_per_second"] > 0:
        average = blocking(row) / row["slot_decay_per_second"]
    else:
        max_wait = _max_wait(row)
        average = min(min(row["avg_slot_occupancy_seconds"], max_wait) * blocking(row), max_wait)
    return clamped_poisson_interval(average)


def clamped_poisson_interval(average: float, clamping_factor: float = 0.3) -> float:
    """A Poisson inter-arrival time bounded to about [0.7, 1.3] × ``average`` (jitter that
    keeps refused clients from retrying in lockstep), as Prefect's server computes it."""
    if average <= 0:
        return 0.0
    upper_multiple = 1 + clamping_factor
    lower_multiple = math.log(2**upper_multiple / (2**upper_multiple - 1), 2)

    def cdf(x):
        return 1 - math.exp(-x / average)

    u = random.uniform(cdf(average * lower_multiple), cdf(average * upper_multiple))
    return -math.log(max(1 - u, 1e-10)) * average


def _release_slots(row: dict, slots: int, occupancy_seconds: float | None) -> None:
    row["active_slots"] = max(0.0, row["active_slots"] - slots)
    if occupancy_seconds and row["limit"] > 0 and slots > 0:
        per_slot = max(occupancy_seconds / slots, MIN_OCCUPANCY_SECONDS)
        weight = row["limit"] * OCCUPANCY_SAMPLES_MULTIPLIER
        row["avg_slot_occupancy_seconds"] += (per_slot - row["avg_slot_occupancy_seconds"]) / weight


# --- locking and writing limit rows ---------------------------------------------------------


# The acquisition and release paths (two requests per `with concurrency(...)`) run a
# handful of statements each; building them with Peewee cost more than running them, so
# they are written out here ("?" placeholders, see _sql). Everything else uses the models.
LIMIT_COLUMNS = ("id", "created", "updated", "active", "name", "limit", "active_slots", "denied_slots",
                 "slot_decay_per_second", "avg_slot_occupancy_seconds")
_SELECT_LIMITS = "SELECT " + ", ".join(f'"{c}"' for c in LIMIT_COLUMNS) + " FROM concurrency_limit"
_to_db_time = ConcurrencyLimit.updated.db_value
_from_db_time = ConcurrencyLimit.updated.python_value


def _sql(sql: str, params=()):
    if dbmod.is_postgres():
        sql = sql.replace("?", "%s")
    return dbmod.database.execute_sql(sql, params)


def _marks(values) -> str:
    return ", ".join("?" * len(values))


def _limit_row(values: tuple) -> dict:
    row = dict(zip(LIMIT_COLUMNS, values, strict=True))
    row["created"], row["updated"] = _from_db_time(row["created"]), _from_db_time(row["updated"])
    row["active"] = bool(row["active"])
    return row


def _lock(where, now: dt.datetime) -> list[dict]:
    """The limit rows matching ``where``, locked for this transaction in name order, with
    their decay folded in as of ``now``."""
    query = ConcurrencyLimit.select().where(where).order_by(ConcurrencyLimit.name)
    if dbmod.is_postgres():
        query = query.for_update()
    return [decayed(row, now) for row in query.dicts()]


def _lock_in(column: str, values, now: dt.datetime) -> list[dict]:
    """``_lock`` of the limits whose ``column`` ("id" or "name") is among ``values``."""
    values = list(values)
    if not values:
        return []
    sql = f'{_SELECT_LIMITS} WHERE "{column}" IN ({_marks(values)}) ORDER BY "name"'
    if dbmod.is_postgres():
        sql += " FOR UPDATE"
    return [decayed(_limit_row(r), now) for r in _sql(sql, values).fetchall()]


COUNTERS = ("active_slots", "denied_slots", "avg_slot_occupancy_seconds")


def _save(rows, now: dt.datetime) -> None:
    """Write back the counters of locked rows; ``updated`` (the decay clock) becomes now."""
    stamp = _to_db_time(now)
    for row in rows:
        _sql(
            "UPDATE concurrency_limit SET active_slots = ?, denied_slots = ?, avg_slot_occupancy_seconds = ?, "
            "updated = ? WHERE id = ?",
            (*(row[k] for k in COUNTERS), stamp, row["id"]),
        )
        row["updated"] = now


def minimal(row: dict, name: str | None = None) -> dict:
    return {"id": row["id"], "name": name if name is not None else row["name"], "limit": row["limit"]}


# --- acquisition ----------------------------------------------------------------------------


def any_exist(names: list[str]) -> bool:
    """Whether any of ``names`` is a limit (a read outside the write lock: the task engine
    asks for every tagged task, and usually no tag limit exists)."""
    return _sql(f"SELECT 1 FROM concurrency_limit WHERE name IN ({_marks(names)}) LIMIT 1", names).fetchone() is not None


def acquire(
    names: list[str],
    slots: int,
    mode: str = "concurrency",
    lease_seconds: float | None = None,
    holder: dict | None = None,
    now: dt.datetime | None = None,
    record_denial: bool = True,
) -> Admission:
    """Take ``slots`` slots of every active limit in ``names``, all or nothing.

    Unknown names are ignored (no limits -> granted with ``limits == []``); inactive
    limits are returned but not counted. With ``lease_seconds`` the slots are held by a
    new lease (only when some limit matched). A refusal is *returned* (not raised) so
    that its ``denied_slots`` bookkeeping commits; ``record_denial=False`` (an attempt of
    a request still waiting at the server) leaves the counters untouched.
    """
    now = now or utcnow()
    rows = _lock_in("name", set(names), now)
    active = [r for r in rows if r["active"]]
    if any(r["limit"] < slots for r in active):
        raise Invalid(SLOTS_TOO_MANY)
    if mode == "rate_limit":
        flat = [r["name"] for r in active if r["slot_decay_per_second"] == 0]
        if flat:
            raise Invalid(
                "Only concurrency limits with slot decay can be used for rate limiting. The "
                f"following limits do not have a decay configured: {','.join(flat)!r}"
            )

    def blocked():
        return [r for r in active if whole(r["active_slots"]) + slots > r["limit"]]

    if blocked():
        _free_expired_of(active, now)  # a dead holder's slots come back at its lease's end
    if blocked():
        wait = retry_after(active, slots)
        if record_denial:
            for row in active:
                row["denied_slots"] += slots
            _save(active, now)
        return Admission([minimal(r) for r in rows], retry_after=wait)

    for row in active:
        row["active_slots"] += slots
    _save(active, now)
    lease_id = new_id()
    if lease_seconds is not None and rows:
        _create_lease(lease_id, [r["id"] for r in active], slots, lease_seconds, holder, now)
    return Admission([minimal(r) for r in rows], lease_id=lease_id)


def has_room(names: list[str], slots: int, now: dt.datetime | None = None) -> bool:
    """Read-only: whether ``acquire`` could grant now. Also True when an expired lease
    holds one of the limits (the acquisition itself frees it)."""
    now = now or utcnow()
    rows = [decayed(r, now) for r in ConcurrencyLimit.select().where(ConcurrencyLimit.name.in_(names)).dicts()]
    active = [r for r in rows if r["active"]]
    if all(whole(r["active_slots"]) + slots <= r["limit"] for r in active):
        return True
    return (
        ConcurrencyLeaseLimit.select()
        .join(ConcurrencyLease)
        .where(ConcurrencyLeaseLimit.limit.in_([r["id"] for r in active]) & (ConcurrencyLease.expires < now))
        .exists()
    )


def _create_lease(lease_id, limit_ids, slots, seconds, holder, now) -> None:
    _sql(
        "INSERT INTO concurrency_lease (id, created, expires, slots, holder_type, holder_id) VALUES (?, ?, ?, ?, ?, ?)",
        (lease_id, _to_db_time(now), _to_db_time(now + dt.timedelta(seconds=seconds)), slots,
         (holder or {}).get("type"), (holder or {}).get("id")),
    )
    if limit_ids:
        pairs = ", ".join("(?, ?)" for _ in limit_ids)
        _sql(f"INSERT INTO concurrency_lease_limit (lease_id, limit_id) VALUES {pairs}",
             [v for lid in limit_ids for v in (lease_id, lid)])


def _free_expired_of(locked: list[dict], now: dt.datetime) -> bool:
    """Release expired leases holding only limits among ``locked`` (already locked here, so
    no lock is taken out of name order); leases spanning other limits wait for the sweeper.
    Updates the ``locked`` rows in place. True when some lease was released."""
    by_id = {r["id"]: r for r in locked}
    if not by_id:
        return False
    candidates = _sql(
        "SELECT ll.lease_id FROM concurrency_lease_limit ll JOIN concurrency_lease l ON l.id = ll.lease_id "
        f"WHERE ll.limit_id IN ({_marks(by_id)}) AND l.expires < ? LIMIT {SWEEP_BATCH}",
        [*by_id, _to_db_time(now)],
    ).fetchall()
    lease_ids = list({r[0] for r in candidates})
    if not lease_ids:
        return False
    held = _limits_of(lease_ids)
    own = [lid for lid in lease_ids if set(held.get(lid, ())) <= set(by_id)]
    return bool(_drop_leases(own, held, by_id, now, expired_only=True))


# --- release ----------------------------------------------------------------------------------


def _limits_of(lease_ids: list[str]) -> dict[str, list[str]]:
    held: dict[str, list[str]] = {}
    if not lease_ids:
        return held
    rows = _sql(f"SELECT lease_id, limit_id FROM concurrency_lease_limit WHERE lease_id IN ({_marks(lease_ids)})",
                lease_ids).fetchall()
    for lease_id, limit_id in rows:
        held.setdefault(lease_id, []).append(limit_id)
    return held


def _drop_leases(lease_ids, held, locked_by_id, now, *, expired_only: bool) -> list[str]:
    """Delete the leases (their limits already locked) and give their slots back to the
    locked rows in ``locked_by_id`` (written here). Returns the ids actually dropped."""
    if not lease_ids:
        return []
    lease_ids = list(lease_ids)
    sql, params = f"SELECT id, slots, created FROM concurrency_lease WHERE id IN ({_marks(lease_ids)})", lease_ids
    if expired_only:  # a renewal that committed meanwhile keeps its lease
        sql, params = sql + " AND expires < ?", [*lease_ids, _to_db_time(now)]
    if dbmod.is_postgres():
        sql += " FOR UPDATE"
    leases = [{"id": i, "slots": n, "created": _from_db_time(c)} for i, n, c in _sql(sql, params).fetchall()]
    if not leases:
        return []
    touched = {}
    for lease in leases:
        occupancy = max((now - lease["created"]).total_seconds(), 0.0)
        for limit_id in held.get(lease["id"], ()):
            row = locked_by_id.get(limit_id)
            if row is not None:
                _release_slots(row, lease["slots"], occupancy)
                touched[limit_id] = row
    dropped = [lease["id"] for lease in leases]
    _sql(f"DELETE FROM concurrency_lease WHERE id IN ({_marks(dropped)})", dropped)  # cascades to lease limits
    _save(touched.values(), now)
    return dropped


def release_leases(
    lease_ids: list[str], now: dt.datetime | None = None, *, expired_only: bool = False, also_lock=()
) -> tuple[list[str], dict[str, dict]]:
    """Drop leases and give back their slots: lock every limit they hold (plus
    ``also_lock`` ids) in name order, then re-read what the leases hold — stable now, since
    whoever changes it holds those locks too. Returns (dropped ids, locked rows by id)."""
    now = now or utcnow()
    first = _limits_of(lease_ids)
    limit_ids = {lid for ids in first.values() for lid in ids} | set(also_lock)
    locked = {r["id"]: r for r in _lock_in("id", limit_ids, now)}
    held = _limits_of(lease_ids) if dbmod.is_postgres() else first
    return _drop_leases(lease_ids, held, locked, now, expired_only=expired_only), locked


def release_lease(lease_id: str, now: dt.datetime | None = None) -> bool:
    """``decrement-with-lease``: give back the lease's slots; an unknown lease is a no-op."""
    return release_lease_freeing(lease_id, now) is not None


def release_lease_freeing(lease_id: str, now: dt.datetime | None = None) -> list[str] | None:
    """``release_lease`` answering the names of the limits that got slots back (to wake
    acquisitions waiting on them), or None when there was no such lease."""
    dropped, locked = release_leases([lease_id], now)
    return [row["name"] for row in locked.values()] if dropped else None


def renew_lease(lease_id: str, seconds: float, now: dt.datetime | None = None) -> bool:
    """Extend a live lease to now + ``seconds``; False when unknown or already expired."""
    now = now or utcnow()
    return bool(
        ConcurrencyLease.update(expires=now + dt.timedelta(seconds=seconds))
        .where((ConcurrencyLease.id == lease_id) & (ConcurrencyLease.expires >= now))
        .execute()
    )


def decrement(names: list[str], slots: int, occupancy_seconds: float | None = None, now=None) -> list[dict]:
    """Leaseless release (``/v2/concurrency_limits/decrement``) of the active named limits."""
    now = now or utcnow()
    rows = _lock_in("name", set(names), now)
    active = [r for r in rows if r["active"]]
    for row in active:
        _release_slots(row, slots, occupancy_seconds)
    _save(active, now)
    return [minimal(r) for r in rows]


def sweep_expired_leases(now: dt.datetime | None = None, batch: int = SWEEP_BATCH) -> int:
    """One pass of the lease sweeper: free the slots of up to ``batch`` expired leases
    (holders that died or stopped renewing). Safe in every replica at once: the leases
    are re-checked under the limit locks and a lease renewed meanwhile is kept."""
    now = now or utcnow()
    expired = [
        r[0]
        for r in ConcurrencyLease.select(ConcurrencyLease.id)
        .where(ConcurrencyLease.expires < now)
        .order_by(ConcurrencyLease.expires)
        .limit(batch)
        .tuples()
    ]
    if not expired:
        return 0
    dropped, _ = release_leases(expired, now, expired_only=True)
    return len(dropped)


services.register("lease-sweeper", 5)(sweep_expired_leases)


# --- limits: create, read, update, delete -----------------------------------------------------


def _by(id_or_name: str):
    try:
        return ConcurrencyLimit.id == str(uuid.UUID(id_or_name))
    except (ValueError, AttributeError, TypeError):
        return ConcurrencyLimit.name == id_or_name


def create_limit(data: dict, now: dt.datetime | None = None) -> dict:
    now = now or utcnow()
    if ConcurrencyLimit.select(ConcurrencyLimit.id).where(ConcurrencyLimit.name == data["name"]).exists():
        raise Conflict(data["name"])
    row = {
        "id": new_id(),
        "created": now,
        "updated": now,
        "active": data.get("active", True),
        "name": data["name"],
        "limit": data["limit"],
        "active_slots": float(data.get("active_slots", 0)),
        "denied_slots": float(data.get("denied_slots", 0)),
        "slot_decay_per_second": float(data.get("slot_decay_per_second", 0.0)),
        "avg_slot_occupancy_seconds": DEFAULT_AVG_OCCUPANCY,
    }
    ConcurrencyLimit.insert(row).execute()
    return row


def read_limit(id_or_name: str, now: dt.datetime | None = None) -> dict | None:
    row = ConcurrencyLimit.select().where(_by(id_or_name)).dicts().first()
    return None if row is None else decayed(row, now or utcnow())


def list_limits(limit: int, offset: int, where=None, now: dt.datetime | None = None) -> list[dict]:
    query = ConcurrencyLimit.select()
    if where is not None:
        query = query.where(where)
    query = query.order_by(ConcurrencyLimit.name).limit(limit).offset(offset)
    now = now or utcnow()
    return [decayed(r, now) for r in query.dicts()]


UPDATABLE = ("active", "name", "limit", "active_slots", "denied_slots", "slot_decay_per_second")


def update_limit(id_or_name: str, changes: dict, now: dt.datetime | None = None) -> dict:
    """Apply the given fields (decay folded in first, so the clock restart loses nothing)."""
    now = now or utcnow()
    rows = _lock(_by(id_or_name), now)
    if not rows:
        raise NotFound(LIMIT_NOT_FOUND)
    row = rows[0]
    new_name = changes.get("name")
    if new_name is not None and new_name != row["name"]:
        if ConcurrencyLimit.select(ConcurrencyLimit.id).where(ConcurrencyLimit.name == new_name).exists():
            raise Conflict(new_name)
    values = {k: row[k] for k in COUNTERS}
    values.update({k: v for k, v in changes.items() if k in UPDATABLE and v is not None})
    for key in ("active_slots", "denied_slots", "slot_decay_per_second"):
        if key in values:
            values[key] = float(values[key])
    values["updated"] = now
    ConcurrencyLimit.update(values).where(ConcurrencyLimit.id == row["id"]).execute()
    row.update(values)
    return row


def delete_limit(id_or_name: str, now: dt.datetime | None = None) -> None:
    """Delete a limit; leases lose their hold on it (they stay valid for their other limits)."""
    rows = _lock(_by(id_or_name), now or utcnow())
    if not rows:
        raise NotFound(LIMIT_NOT_FOUND)
    ConcurrencyLimit.delete().where(ConcurrencyLimit.id == rows[0]["id"]).execute()


# --- v1 tag limits: views over the v2 limits named tag:<tag> ---------------------------------


def tag_name(tag: str) -> str:
    return f"{TAG_PREFIX}{tag}"


def task_run_holders(limit_ids: list[str], now: dt.datetime | None = None) -> dict[str, list[str]]:
    """Task-run ids holding live leases on each limit (v1 ``active_slots``)."""
    now = now or utcnow()
    out: dict[str, list[str]] = {lid: [] for lid in limit_ids}
    if not limit_ids:
        return out
    query = (
        ConcurrencyLeaseLimit.select(ConcurrencyLeaseLimit.limit, ConcurrencyLease.holder_id)
        .join(ConcurrencyLease)
        .where(
            ConcurrencyLeaseLimit.limit.in_(limit_ids)
            & (ConcurrencyLease.expires >= now)
            & (ConcurrencyLease.holder_type == "task_run")
        )
        .order_by(ConcurrencyLease.created)
    )
    for limit_id, holder_id in query.tuples():
        out[limit_id].append(holder_id)
    return out


def v1_view(row: dict, holders: list[str]) -> dict:
    return {
        "id": row["id"],
        "created": row["created"],
        "updated": row["updated"],
        "tag": row["name"][len(TAG_PREFIX):],
        "concurrency_limit": row["limit"],
        "active_slots": holders,
    }


def read_tag_limit(tag: str | None = None, limit_id: str | None = None) -> dict | None:
    where = ConcurrencyLimit.name == tag_name(tag) if tag is not None else ConcurrencyLimit.id == limit_id
    row = ConcurrencyLimit.select().where(where & ConcurrencyLimit.name.startswith(TAG_PREFIX)).dicts().first()
    if row is None:
        return None
    return v1_view(row, task_run_holders([row["id"]])[row["id"]])


def list_tag_limits(limit: int, offset: int) -> list[dict]:
    rows = list_limits(limit, offset, ConcurrencyLimit.name.startswith(TAG_PREFIX))
    holders = task_run_holders([r["id"] for r in rows])
    return [v1_view(r, holders[r["id"]]) for r in rows]


def upsert_tag_limit(tag: str, concurrency_limit: int, now: dt.datetime | None = None) -> tuple[dict, bool]:
    """Create ``tag:<tag>`` or change its limit. Returns (v1 view, created)."""
    now = now or utcnow()
    rows = _lock(ConcurrencyLimit.name == tag_name(tag), now)
    if rows:
        ConcurrencyLimit.update(limit=concurrency_limit, updated=now).where(
            ConcurrencyLimit.id == rows[0]["id"]
        ).execute()
        created = False
        row = {**rows[0], "limit": concurrency_limit, "updated": now}
    else:
        row = create_limit({"name": tag_name(tag), "limit": concurrency_limit}, now)
        created = True
    return v1_view(row, task_run_holders([row["id"]], now)[row["id"]]), created


def _tag_row_or_404(where, now) -> dict:
    rows = _lock(where & ConcurrencyLimit.name.startswith(TAG_PREFIX), now)
    if not rows:
        raise NotFound("Concurrency limit not found")
    return rows[0]


def _leases_on(limit_id: str) -> list[str]:
    query = ConcurrencyLeaseLimit.select(ConcurrencyLeaseLimit.lease).where(ConcurrencyLeaseLimit.limit == limit_id)
    return [r[0] for r in query.tuples()]


def delete_tag_limit(tag: str | None = None, limit_id: str | None = None, now: dt.datetime | None = None) -> None:
    """v1 delete: the leases holding the limit are revoked (their slots on other limits
    given back), then the limit goes."""
    now = now or utcnow()
    where = ConcurrencyLimit.name == tag_name(tag) if tag is not None else ConcurrencyLimit.id == limit_id
    pre = ConcurrencyLimit.select(ConcurrencyLimit.id).where(where).tuples().first()
    if pre is None:
        raise NotFound("Concurrency limit not found")
    release_leases(_leases_on(pre[0]), now, also_lock=[pre[0]])
    row = _tag_row_or_404(where, now)
    ConcurrencyLimit.delete().where(ConcurrencyLimit.id == row["id"]).execute()


def reset_tag_limit(tag: str, slot_override: list[str] | None, now: dt.datetime | None = None) -> None:
    """v1 reset: the limit's slots are cleared (its leases no longer hold it), then one
    never-expiring lease per task run in ``slot_override`` holds a slot each."""
    now = now or utcnow()
    row = _tag_row_or_404(ConcurrencyLimit.name == tag_name(tag), now)
    holding = _leases_on(row["id"])
    ConcurrencyLeaseLimit.delete().where(ConcurrencyLeaseLimit.limit == row["id"]).execute()
    if holding:
        # Leases that held only this limit are revoked (a renewal answers 410); leases that
        # also hold other limits keep those.
        still = ConcurrencyLeaseLimit.select(ConcurrencyLeaseLimit.lease).where(ConcurrencyLeaseLimit.lease.in_(holding))
        ConcurrencyLease.delete().where(ConcurrencyLease.id.in_(holding) & ConcurrencyLease.id.not_in(still)).execute()
    overrides = list(dict.fromkeys(slot_override or []))
    for task_run_id in overrides:
        _create_lease(new_id(), [row["id"]], 1, V1_LEASE_SECONDS, {"type": "task_run", "id": task_run_id}, now)
    row["active_slots"] = float(len(overrides))
    _save([row], now)


def v1_increment(tags: list[str], task_run_id: str, now: dt.datetime | None = None) -> list[dict]:
    """Legacy ``/concurrency_limits/increment``: one slot of every active tag limit, held
    by a never-expiring lease of the task run. Raises Refused (423)."""
    now = now or utcnow()
    names = {tag_name(t): t for t in tags}
    rows = _lock(ConcurrencyLimit.name.in_(list(names)), now)
    for row in rows:
        if row["limit"] == 0:
            raise Refused(
                f'The concurrency limit on tag "{names[row["name"]]}" is 0 and will deadlock if the task '
                "tries to run again.",
                TAG_MAX_WAIT_SECONDS,
            )
    active = [r for r in rows if r["active"]]
    for row in active:
        if whole(row["active_slots"]) + 1 > row["limit"]:
            raise Refused(f"Concurrency limit for the {names[row['name']]} tag has been reached", TAG_MAX_WAIT_SECONDS)
    for row in active:
        row["active_slots"] = whole(row["active_slots"]) + 1
    _save(active, now)
    if active:
        _create_lease(new_id(), [r["id"] for r in active], 1, V1_LEASE_SECONDS, {"type": "task_run", "id": task_run_id}, now)
    return [minimal(r, names[r["name"]]) for r in active]


def v1_decrement(tags: list[str], task_run_id: str, now: dt.datetime | None = None) -> list[dict]:
    """Legacy ``/concurrency_limits/decrement``: release the task run's leases on the tags."""
    now = now or utcnow()
    names = [tag_name(t) for t in tags]
    rows = list(ConcurrencyLimit.select().where(ConcurrencyLimit.name.in_(names)).dicts())
    if not rows:
        return []
    leases = (
        ConcurrencyLeaseLimit.select(ConcurrencyLeaseLimit.lease)
        .join(ConcurrencyLease)
        .where(
            ConcurrencyLeaseLimit.limit.in_([r["id"] for r in rows]) & (ConcurrencyLease.holder_id == task_run_id)
        )
    )
    release_leases(list({r[0] for r in leases.tuples()}), now)
    return [minimal(r) for r in rows]
