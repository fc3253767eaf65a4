"""Geometry of the run pages' server-drawn SVG charts: pure functions from rows to shapes.

- ``task_bars``: task runs as bars on a time axis (the flow run page's Gantt-like timeline),
  at most ``CAP`` bars (the rest is said as "N more" under the chart);
- ``state_strip``: a run's state history as one horizontal strip of coloured segments.

Nothing here touches the database or Jinja: rows in, numbers and labels out, so the charts
are tested directly (tests/ui/test_timeline.py). Coordinates are in a fixed ``WIDTH``-wide
viewBox; the SVG scales to the page's width (CSS ``width: 100%``), so there is never a
horizontal scroll bar, at 390 px as at 1280 px. Times are naive UTC datetimes, as the
database hands them back (aware ones are converted).
"""

from __future__ import annotations

import datetime as dt
import math

from db.states import TERMINAL
from ui.render import format_duration, state_class

WIDTH = 1000
CAP = 200
AXIS_HEIGHT = 24  # the tick labels above the bars
ROW_HEIGHT = 18
BAR_HEIGHT = 12
MIN_BAR = 3  # a task that took no time still shows
STRIP_HEIGHT = 24
MIN_SEGMENT = 6
MAX_TICKS = 6
# Tick steps in seconds: the first that gives at most MAX_TICKS intervals is used.
NICE_STEPS = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30,
    60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800,
]


def _naive(value) -> dt.datetime | None:
    if value is None or not isinstance(value, dt.datetime):
        return None
    if value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def _seconds(a: dt.datetime, b: dt.datetime) -> float:
    return (b - a).total_seconds()


def _interval(row: dict, now: dt.datetime) -> tuple[dt.datetime | None, dt.datetime | None]:
    """(start, end) of a task run on the axis: its run time, or a point at its expected start
    when it never ran; a run still going ends now."""
    start = _naive(row.get("start_time"))
    end = _naive(row.get("end_time"))
    if start is None:
        point = _naive(row.get("expected_start_time")) or _naive(row.get("created"))
        return point, point
    if end is None:
        end = start if (row.get("state_type") or "") in TERMINAL else max(now, start)
    return start, max(end, start)


def _step(span: float) -> float:
    for step in NICE_STEPS:
        if span / step <= MAX_TICKS:
            return step
    return math.ceil(span / MAX_TICKS / NICE_STEPS[-1]) * NICE_STEPS[-1]


def ticks(span: float) -> list[dict]:
    """Tick marks of an axis ``span`` seconds long: {"x", "label", "anchor"}."""
    if span <= 0:
        return [{"x": 0.0, "label": "0s", "anchor": "start"}]
    step = _step(span)
    out = []
    for k in range(int(span / step + 1e-9) + 1):
        x = round(k * step / span * WIDTH, 2)
        anchor = "start" if k == 0 else ("end" if x > WIDTH - 40 else "middle")
        out.append({"x": x, "label": "0s" if k == 0 else "+" + format_duration(k * step), "anchor": anchor})
    return out


def task_bars(rows: list[dict], now: dt.datetime, cap: int = CAP, total: int | None = None) -> dict:
    """The timeline of ``rows`` (task runs: id, name, state_type, state_name, start_time,
    end_time, expected_start_time, created), earliest first.

    Returns {"width", "height", "bars": [{"x", "y", "width", "height", "css", "title", "id"}],
    "ticks", "start" (the axis origin), "span" (seconds), "more" (rows not drawn: beyond ``cap``
    or beyond what was read, when ``total`` says how many there are)}."""
    now = _naive(now) or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    placed = []
    for row in rows:
        start, end = _interval(row, now)
        if start is not None:
            placed.append((start, end, row))
    placed.sort(key=lambda p: (p[0], p[1], str(p[2].get("id") or "")))
    shown = placed[:cap]
    known = max(total if total is not None else 0, len(rows))
    more = known - len(shown)
    if not shown:
        return {"width": WIDTH, "height": AXIS_HEIGHT, "bars": [], "ticks": [], "start": None, "span": 0.0,
                "more": max(more, 0)}
    origin = min(p[0] for p in shown)
    finish = max(p[1] for p in shown)
    span = _seconds(origin, finish)
    scale = WIDTH / span if span > 0 else 0.0
    bars = []
    for i, (start, end, row) in enumerate(shown):
        x = _seconds(origin, start) * scale
        width = max(_seconds(start, end) * scale, MIN_BAR)
        x = min(x, WIDTH - MIN_BAR)
        width = min(width, WIDTH - x)
        duration = _seconds(start, end)
        state = row.get("state_name") or row.get("state_type") or "Unknown"
        title = f"{row.get('name') or row.get('id')}: {state}"
        if row.get("start_time") is not None:
            title += f", {format_duration(duration)}"
        bars.append({
            "x": round(x, 2), "y": AXIS_HEIGHT + i * ROW_HEIGHT + (ROW_HEIGHT - BAR_HEIGHT) / 2,
            "width": round(width, 2), "height": BAR_HEIGHT, "css": state_class(row.get("state_type")),
            "title": title, "id": row.get("id"),
        })
    return {"width": WIDTH, "height": AXIS_HEIGHT + len(shown) * ROW_HEIGHT + 4, "bars": bars,
            "ticks": ticks(span), "start": origin, "span": span, "more": max(more, 0)}


def state_strip(states: list[dict], end: dt.datetime | None, now: dt.datetime) -> dict:
    """A state history (oldest first: type, name, timestamp) as segments of one strip, each as
    long as its state lasted (the last one until ``end``, or now while the run goes on),
    never thinner than ``MIN_SEGMENT`` so that an instant state still shows.

    Returns {"width", "height", "segments": [{"x", "width", "css", "title"}], "label"}."""
    now = _naive(now) or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    rows = [s for s in states if _naive(s.get("timestamp")) is not None]
    if not rows:
        return {"width": WIDTH, "height": STRIP_HEIGHT, "segments": [], "label": "No states"}
    last = _naive(end) or now
    lengths = []
    for i, state in enumerate(rows):
        start = _naive(state["timestamp"])
        stop = _naive(rows[i + 1]["timestamp"]) if i + 1 < len(rows) else max(last, start)
        lengths.append(max(_seconds(start, stop), 0.0))
    span = sum(lengths)
    raw = [length / span * WIDTH if span > 0 else WIDTH / len(rows) for length in lengths]
    widths = [max(w, MIN_SEGMENT) for w in raw]
    fit = WIDTH / sum(widths)
    segments, x = [], 0.0
    for state, width, length in zip(rows, widths, lengths, strict=True):
        w = width * fit
        name = state.get("name") or state.get("type")
        segments.append({"x": round(x, 2), "width": round(w, 2), "css": state_class(state.get("type")),
                         "title": f"{name}: {format_duration(length)}"})
        x += w
    label = "State history: " + " → ".join(str(s.get("name") or s.get("type")) for s in rows)
    return {"width": WIDTH, "height": STRIP_HEIGHT, "segments": segments, "label": label}
