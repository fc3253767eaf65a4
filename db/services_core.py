"""Housekeeping services of the run-tracking core (see appliance.services): data retention.

The retention pass (db.retention) deletes what the APPLIANCE_RETENTION_* settings say is
old (events after 7 days by default), one short transaction per batch, in one replica at a
time; every replica tries each interval and the others find the lock taken.
"""

from __future__ import annotations

import asyncio
import logging
import time

from appliance import services
from appliance.settings import get_settings
from db import retention

log = logging.getLogger("appliance.retention")


async def retention_pass(stop: asyncio.Event | None = None) -> retention.Counts | None:
    """One pass with the current settings; the rows deleted per kind and table (None: another
    replica holds the lock)."""
    plan = retention.Plan.from_settings(get_settings())
    started = time.monotonic()
    counts = await retention.prune_async(plan, stop=stop)
    if counts and retention.total(counts):
        log.info("retention: deleted %s in %.1f s", retention.describe(counts), time.monotonic() - started)
    return counts


services.register("retention", get_settings().retention_interval_seconds, own_transactions=True)(retention_pass)
