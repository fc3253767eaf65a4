"""Acquisitions of a full global concurrency limit, held at the server until a slot frees.

Prefect answers a full limit at once with 423 and a Retry-After estimate, and the SDK sleeps
it out: under contention a client spends most of its time asleep past the moment a slot
was released. Here the request waits instead (``APPLIANCE_CONCURRENCY_QUEUE_SECONDS``), and
its admission is tried again as soon as a release in this process frees a slot of that
limit (first come, first woken: one waiter per release), or after a short poll with a
read-only check (a release by another replica, an expired lease, slot decay). Past the
window the usual 423 with Retry-After is answered.

The database still decides every admission; this only replaces the client's sleep, so an
in-process wake-up that is missed or spurious costs latency, never correctness.
"""

from __future__ import annotations

import asyncio
from collections import deque

POLL_SECONDS = 0.5


class SlotWaiters:
    """FIFO queues of parked acquisitions per limit name, on one event loop."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[asyncio.Future]] = {}

    async def wait(self, names: list[str], timeout: float, first: bool = False) -> bool:
        """Park until a release of one of ``names`` wakes us (True) or ``timeout`` (False).
        ``first`` puts us at the head of the queues (a woken waiter that lost the race)."""
        future = asyncio.get_running_loop().create_future()
        for name in names:
            queue = self._queues.setdefault(name, deque())
            queue.appendleft(future) if first else queue.append(future)
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            for name in names:
                queue = self._queues.get(name)
                if queue is None:
                    continue
                try:
                    queue.remove(future)
                except ValueError:
                    pass
                if not queue:
                    del self._queues[name]

    def wake(self, names: list[str], count: int = 1) -> None:
        """Wake up to ``count`` waiters of each of ``names`` (a release freed slots there)."""
        for name in names:
            queue = self._queues.get(name)
            woken = 0
            while queue and woken < count:
                future = queue.popleft()
                if not future.done():
                    future.set_result(None)
                    woken += 1


WAITERS = SlotWaiters()
