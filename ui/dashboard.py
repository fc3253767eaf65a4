"""``/dashboard``: what needs attention, over a window of ``?window=1h|24h|7d`` (default 24h;
any other value answers a 400 page listing the allowed ones).

- flow runs per state type whose expected start falls in the window, up to now (a capped count per
  state type, one range of ix_flow_run_state_expected each) as a server-drawn SVG bar
  chart, each state linking to the runs list filtered by it and the window;
- late runs: SCHEDULED runs whose expected start has passed (count, the most overdue few,
  a link to ``/runs?state=SCHEDULED&until=now``);
- recent FAILED / CRASHED runs in the window, linking to their pages;
- work pool health: each pool's status and workers online / total;
- notification failures: the newest failed and dead (out of retries) deliveries of the outbox,
  linking to ``/notifications``.

All of it is one ``data-live`` block (``?fragment=live``), refreshed every few seconds.
"""

from __future__ import annotations

import datetime as dt

from db import console_runs as reads
from db import database as db
from db.fields import utcnow
from db.states import STATE_TYPES
from ui.errors import PageError
from ui.render import render

WINDOWS = {"1h": dt.timedelta(hours=1), "24h": dt.timedelta(hours=24), "7d": dt.timedelta(days=7)}
DEFAULT_WINDOW = "24h"
LIVE_INTERVAL_MS = 5000
CHART_WIDTH = 1000
ROW_HEIGHT = 26
LABEL_WIDTH = 130


def chart(counts: dict[str, int], cap: int) -> dict:
    """Horizontal bars (SVG geometry in a CHART_WIDTH-wide viewBox), one per state type."""
    top = max(counts.values(), default=0) or 1
    span = CHART_WIDTH - LABEL_WIDTH - 90
    bars = []
    for i, state in enumerate(STATE_TYPES):
        count = counts.get(state, 0)
        width = 0 if count == 0 else max(round(span * min(count, top) / top), 2)
        bars.append({"state": state, "count": count, "label": f"{cap}+" if count > cap else str(count),
                     "y": i * ROW_HEIGHT, "width": width, "text_x": LABEL_WIDTH + width + 8})
    return {"bars": bars, "width": CHART_WIDTH, "height": len(STATE_TYPES) * ROW_HEIGHT, "label_width": LABEL_WIDTH,
            "total": sum(counts.values()), "capped": any(c > cap for c in counts.values())}


def _read(since: dt.datetime, now: dt.datetime) -> dict:
    counts = reads.state_counts(since, now)
    failures = reads.recent_failures(since)
    late = reads.late_runs(now)
    reads.names_for(failures)
    reads.names_for(late["rows"])
    return {"chart": chart(counts, reads.COUNT_CAP), "failures": failures, "late": late,
            "pools": reads.pool_health(), "notifications": reads.notification_failures()}


class Dashboard:
    async def on_get(self, req, resp):
        window = req.get_param("window") or DEFAULT_WINDOW
        if window not in WINDOWS:
            raise PageError(400, f"window={window!r} is not one of {', '.join(WINDOWS)}.")
        now = utcnow()
        view = await db.run(_read, now - WINDOWS[window], now)
        render(req, resp, "dashboard.html", **view, window=window, windows=list(WINDOWS), now=now,
               interval=LIVE_INTERVAL_MS, pool_cap=50, count_cap=reads.COUNT_CAP)


def register(app) -> None:
    app.add_route("/dashboard", Dashboard())
