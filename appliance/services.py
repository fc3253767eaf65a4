"""Background services (loops) that run inside every API worker process.

Each service is a plain function doing one bounded pass of work in one write
transaction (``db.run_write``), registered with an interval. Every replica runs every
service; the work itself must be safe under that — conditional updates, row locks
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL) or an advisory lock — never in-process
state. A failing pass is logged and retried at the next interval.

A service registered with ``own_transactions=True`` is a coroutine function ``fn(stop)``
that opens its own short transactions (each through ``db.run_write``) instead of running
in one: a long pass (data retention) then never holds the database, and on SQLite the
one writer thread serves API writes between its batches. ``stop`` is set at shutdown so
that the pass can end between two transactions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

from db import database as dbmod

log = logging.getLogger("appliance.services")


@dataclass
class Service:
    name: str
    interval_seconds: float
    run_once: Callable[..., object]  # runs inside one write transaction (or see own_transactions)
    own_transactions: bool = False  # run_once(stop) is a coroutine opening its own transactions


REGISTRY: list[Service] = []


def register(name: str, interval_seconds: float, *, own_transactions: bool = False):
    """Decorator: ``@register("lease-sweeper", 5)`` on a function run in a write transaction."""

    def wrap(fn):
        REGISTRY.append(Service(name, interval_seconds, fn, own_transactions))
        return fn

    return wrap


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def _loop(service: Service, stop: asyncio.Event) -> None:
    # Spread replicas/workers so they do not all wake at the same instant.
    await _pause(stop, random.uniform(0, min(service.interval_seconds, 2.0)))
    while not stop.is_set():
        try:
            if service.own_transactions:
                await service.run_once(stop)
            else:
                await dbmod.run_write(service.run_once)
        except Exception:  # noqa: BLE001 - a service must outlive a bad pass
            log.exception("service %s failed; retrying in %ss", service.name, service.interval_seconds)
        await _pause(stop, service.interval_seconds)


class Runner:
    """Starts every registered service on the worker's event loop; stops them at shutdown."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task] = []

    def start(self, services: list[Service] | None = None) -> None:
        for service in services if services is not None else REGISTRY:
            self.tasks.append(asyncio.create_task(_loop(service, self.stop), name=f"service:{service.name}"))

    async def shutdown(self, grace_seconds: float = 20.0) -> None:
        """Stop every loop; a pass under way is let finish (its transaction runs in a
        database thread, which cancelling the task would not stop: it would carry on after
        shutdown, against whatever database the process has next)."""
        self.stop.set()
        if self.tasks:
            _, late = await asyncio.wait(self.tasks, timeout=grace_seconds)
            for task in late:
                task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.tasks.clear()
