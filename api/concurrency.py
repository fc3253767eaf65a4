"""/v2/concurrency_limits lease endpoints the task engine calls before every tagged task.

Until global limits can be created (a later issue adds their storage and routes), no
limit exists, so an acquisition names no limits: Prefect's own answer for unknown
names is ``{"lease_id": …, "limits": []}``, which the client caches per process.
"""

from __future__ import annotations

import uuid

from api.errors import ApiError, invalid
from api.http import no_content, read_json, send


def _names(body) -> list[str]:
    if not isinstance(body, dict):
        raise invalid("", "Input should be a valid dictionary", body, body)
    names = body.get("names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise invalid("names", "A non-empty list of limit names is required", names, body)
    slots = body.get("slots", 1)
    if isinstance(slots, bool) or not isinstance(slots, int) or slots <= 0:
        raise invalid("slots", "Input should be an integer greater than 0", slots, body)
    mode = body.get("mode", "concurrency")
    if mode not in ("concurrency", "rate_limit"):
        raise invalid("mode", "Input should be 'concurrency' or 'rate_limit'", mode, body)
    return names


class IncrementWithLease:
    async def on_post(self, req, resp):
        body = await read_json(req)
        _names(body)
        duration = body.get("lease_duration", 300)
        if isinstance(duration, bool) or not isinstance(duration, int | float) or not 60 <= duration <= 86400:
            raise invalid("lease_duration", "Input should be between 60 and 86400 seconds", duration, body)
        send(resp, {"lease_id": str(uuid.uuid4()), "limits": []})


class Increment:
    async def on_post(self, req, resp):
        body = await read_json(req)
        _names(body)
        send(resp, [])


class DecrementWithLease:
    async def on_post(self, req, resp):
        body = await read_json(req)
        if not isinstance(body, dict):
            raise invalid("", "Input should be a valid dictionary", body, body)
        try:
            uuid.UUID(str(body.get("lease_id")))
        except ValueError:
            raise invalid("lease_id", "Input should be a valid UUID", body.get("lease_id"), body) from None
        no_content(resp)


class RenewLease:
    async def on_post(self, req, resp, lease_id):
        raise ApiError(410, "Lease not found - it may have expired or been revoked")


def register(app, prefix: str) -> None:
    app.add_route(f"{prefix}/v2/concurrency_limits/increment-with-lease", IncrementWithLease())
    app.add_route(f"{prefix}/v2/concurrency_limits/increment", Increment())
    app.add_route(f"{prefix}/v2/concurrency_limits/decrement-with-lease", DecrementWithLease())
    app.add_route(f"{prefix}/v2/concurrency_limits/leases/{{lease_id:uuid}}/renew", RenewLease())
