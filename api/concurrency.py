"""/v2/concurrency_limits: global concurrency limits (Prefect §5.10) and their leases.

Create / read / update / delete a limit by id or name, list them, and the runtime calls:
``increment`` (all-or-nothing; a full limit is waited on at the server for a while, see
api.slot_waiters, then answered 423 + ``Retry-After``), ``increment-with-lease``
(the same, held by a lease the client renews), ``decrement``, ``decrement-with-lease``
and ``leases/{id}/renew`` (410 once the lease is gone). Admission itself is decided in
db.concurrency inside one write transaction.

The task engine calls ``increment-with-lease`` for every tagged task (names ``tag:<tag>``)
and usually no such limit exists: that answer (``{"lease_id": …, "limits": []}``) is
given from a plain read, without taking the write lock.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from api import state
from api.errors import ApiError, invalid, not_found
from api.http import no_content, parse, read_json, read_model, send
from api.listing import filter_failed, read_filter_body
from api.slot_waiters import POLL_SECONDS, WAITERS
from db import concurrency
from db import database as db
from db.filters import FilterError, paging
from db.states import iso

MAX_INT = 2**31 - 1  # the limit columns are 32-bit integers on PostgreSQL
MAX_NAMES = 1000

LimitName = Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^[^/%&><]+$")]
Slots = Annotated[int, Field(ge=0, le=MAX_INT)]
PositiveSlots = Annotated[int, Field(gt=0, le=MAX_INT)]
Names = Annotated[list[str], Field(min_length=1, max_length=MAX_NAMES)]
LeaseSeconds = Annotated[
    float, Field(ge=concurrency.MIN_LEASE_SECONDS, le=concurrency.MAX_LEASE_SECONDS, allow_inf_nan=False)
]
Decay = Annotated[float, Field(ge=0.0, le=1e9, allow_inf_nan=False)]

INTEGRITY_CONFLICT = (
    "Data integrity conflict. This usually means a unique or foreign key constraint was violated. "
    "See server logs for details."
)


class LimitCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    active: bool = True
    name: LimitName
    limit: Slots
    active_slots: Slots = 0
    denied_slots: Slots = 0
    slot_decay_per_second: Decay = 0.0


class LimitUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    active: bool | None = None
    name: LimitName | None = None
    limit: Slots | None = None
    active_slots: Slots | None = None
    denied_slots: Slots | None = None
    slot_decay_per_second: Decay | None = None


class Holder(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["flow_run", "task_run", "deployment"]
    id: uuid.UUID


class Acquire(BaseModel):
    # Body parameters of a FastAPI route in Prefect: unknown keys are ignored.
    model_config = ConfigDict(extra="ignore")

    names: Names
    slots: PositiveSlots
    mode: Literal["concurrency", "rate_limit"] = "concurrency"
    create_if_missing: bool | None = None  # deprecated in Prefect; ignored


class AcquireWithLease(Acquire):
    lease_duration: LeaseSeconds = concurrency.DEFAULT_LEASE_SECONDS
    holder: Holder | None = None


class Decrement(BaseModel):
    model_config = ConfigDict(extra="ignore")

    names: Names
    slots: PositiveSlots
    occupancy_seconds: Annotated[float, Field(gt=0.0, allow_inf_nan=False)] | None = None
    create_if_missing: bool | None = None


class LeaseRef(BaseModel):
    model_config = ConfigDict(extra="ignore")

    lease_id: uuid.UUID


class Renewal(BaseModel):
    model_config = ConfigDict(extra="ignore")

    lease_duration: LeaseSeconds = concurrency.DEFAULT_LEASE_SECONDS


def global_limit(row: dict) -> dict:
    """GlobalConcurrencyLimitResponse (reads, lists)."""
    return {
        "id": row["id"],
        "created": iso(row["created"]),
        "updated": iso(row["updated"]),
        "active": row["active"],
        "name": row["name"],
        "limit": row["limit"],
        "active_slots": concurrency.whole(row["active_slots"]),
        "slot_decay_per_second": row["slot_decay_per_second"],
    }


def full_limit(row: dict) -> dict:
    """ConcurrencyLimitV2 (the create answer)."""
    return {
        **global_limit(row),
        "denied_slots": concurrency.whole(row["denied_slots"]),
        "avg_slot_occupancy_seconds": row["avg_slot_occupancy_seconds"],
    }


def locked(admission: concurrency.Admission) -> ApiError:
    # The client sleeps Retry-After (and crashes on a 423 without it).
    return ApiError(423, admission.detail, {"Retry-After": str(admission.retry_after)})


class Limits:
    async def on_post(self, req, resp):
        body = await read_model(req, LimitCreate)
        try:
            row = await db.run_write(concurrency.create_limit, body.model_dump())
        except concurrency.Conflict:
            raise ApiError(409, INTEGRITY_CONFLICT) from None
        send(resp, full_limit(row), 201)


class LimitByIdOrName:
    async def on_get(self, req, resp, id_or_name):
        row = await db.run(concurrency.read_limit, id_or_name)
        if row is None:
            raise not_found(concurrency.LIMIT_NOT_FOUND)
        send(resp, global_limit(row))

    async def on_patch(self, req, resp, id_or_name):
        body = await read_model(req, LimitUpdate)
        try:
            await db.run_write(concurrency.update_limit, id_or_name, body.model_dump(exclude_unset=True))
        except concurrency.NotFound as exc:
            raise not_found(str(exc)) from None
        except concurrency.Conflict:
            raise ApiError(409, INTEGRITY_CONFLICT) from None
        no_content(resp)

    async def on_delete(self, req, resp, id_or_name):
        try:
            await db.run_write(concurrency.delete_limit, id_or_name)
        except concurrency.NotFound as exc:
            raise not_found(str(exc)) from None
        no_content(resp)


BY_ID_OR_NAME = LimitByIdOrName()


class _NamedToo:
    """A fixed route (``/filter``, ``/increment`` …) that is also a possible limit name:
    GET / PATCH / DELETE on it address the limit of that name, as in Prefect."""

    segment = ""

    async def on_get(self, req, resp):
        await BY_ID_OR_NAME.on_get(req, resp, self.segment)

    async def on_patch(self, req, resp):
        await BY_ID_OR_NAME.on_patch(req, resp, self.segment)

    async def on_delete(self, req, resp):
        await BY_ID_OR_NAME.on_delete(req, resp, self.segment)


class LimitFilter(_NamedToo):
    segment = "filter"

    async def on_post(self, req, resp):
        body = await read_filter_body(req)
        try:
            limit, offset = paging(body)
        except FilterError as exc:
            raise filter_failed(exc, body) from None
        rows = await db.run(concurrency.list_limits, limit, offset)
        send(resp, [global_limit(r) for r in rows])


async def _acquire(req, model, lease: bool) -> tuple[concurrency.Admission, object]:
    body = await read_model(req, model)
    names = list(dict.fromkeys(body.names))
    if not await db.run(concurrency.any_exist, names):
        return concurrency.Admission([], lease_id=str(uuid.uuid4())), body
    kwargs = {}
    if lease:
        kwargs = {
            "lease_seconds": body.lease_duration,
            "holder": {"type": body.holder.type, "id": str(body.holder.id)} if body.holder else None,
        }
    try:
        admission = await _admit(names, body.slots, body.mode, kwargs)
    except concurrency.Invalid as exc:
        raise ApiError(422, str(exc)) from None
    if not admission.granted:
        raise locked(admission)
    return admission, body


async def _admit(names: list[str], slots: int, mode: str, kwargs: dict) -> concurrency.Admission:
    """Admission, waiting at the server for a slot for up to the queue window (see
    api.slot_waiters); the last, refused attempt records the denial and the Retry-After."""
    window = state.settings.concurrency_queue_seconds if mode == "concurrency" else 0.0
    if window <= 0:
        return await db.run_write(concurrency.acquire, names, slots, mode, **kwargs)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + window
    admission = await db.run_write(concurrency.acquire, names, slots, mode, record_denial=False, **kwargs)
    woken = False
    while not admission.granted:
        left = deadline - loop.time()
        if left <= 0:
            return await db.run_write(concurrency.acquire, names, slots, mode, **kwargs)
        woken = await WAITERS.wait(names, min(left, POLL_SECONDS), first=woken)
        if woken or await db.run(concurrency.has_room, names, slots):
            admission = await db.run_write(concurrency.acquire, names, slots, mode, record_denial=False, **kwargs)
    return admission


class Increment(_NamedToo):
    segment = "increment"

    async def on_post(self, req, resp):
        admission, _ = await _acquire(req, Acquire, lease=False)
        send(resp, admission.limits)


class IncrementWithLease(_NamedToo):
    segment = "increment-with-lease"

    async def on_post(self, req, resp):
        admission, _ = await _acquire(req, AcquireWithLease, lease=True)
        send(resp, {"lease_id": admission.lease_id, "limits": admission.limits})


class DecrementSlots(_NamedToo):
    segment = "decrement"

    async def on_post(self, req, resp):
        body = await read_model(req, Decrement)
        names = list(dict.fromkeys(body.names))
        if not await db.run(concurrency.any_exist, names):
            send(resp, [])
            return
        rows = await db.run_write(concurrency.decrement, names, body.slots, body.occupancy_seconds)
        WAITERS.wake([r["name"] for r in rows], body.slots)
        send(resp, rows)


class DecrementWithLease(_NamedToo):
    segment = "decrement-with-lease"

    async def on_post(self, req, resp):
        body = await read_model(req, LeaseRef)
        # Unknown or already released: still 204 (the release is idempotent).
        freed = await db.run_write(concurrency.release_lease_freeing, str(body.lease_id))
        if freed:
            WAITERS.wake(freed)
        no_content(resp)


class RenewLease:
    async def on_post(self, req, resp, lease_id):
        try:
            lease = str(uuid.UUID(lease_id))
        except ValueError:
            raise invalid("lease_id", "Input should be a valid UUID", lease_id, loc_root="path") from None
        body = await read_json(req, {})
        renewal = parse(Renewal, {} if body is None else body)
        if not await db.run_write(concurrency.renew_lease, lease, renewal.lease_duration):
            raise ApiError(410, "Lease not found - it may have expired or been revoked")
        no_content(resp)


def register(app, prefix: str) -> None:
    base = f"{prefix}/v2/concurrency_limits"
    app.add_route(base, Limits())
    app.add_route(f"{base}/filter", LimitFilter())
    app.add_route(f"{base}/increment", Increment())
    app.add_route(f"{base}/increment-with-lease", IncrementWithLease())
    app.add_route(f"{base}/decrement", DecrementSlots())
    app.add_route(f"{base}/decrement-with-lease", DecrementWithLease())
    app.add_route(f"{base}/leases/{{lease_id}}/renew", RenewLease())
    app.add_route(f"{base}/{{id_or_name}}", BY_ID_OR_NAME)
