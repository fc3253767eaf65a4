"""Run history: counts and durations of runs per time interval and state (for the UI/CLI)."""

from __future__ import annotations

import datetime as dt

from db.fields import utcnow
from db.states import TERMINAL, iso

MAX_INTERVALS = 500


def history(rows, start: dt.datetime, end: dt.datetime, interval_seconds: float) -> list[dict]:
    """``rows``: (expected_start_time, state_type, state_name, total_run_time, state_timestamp, start_time)."""
    step = dt.timedelta(seconds=interval_seconds)
    buckets = []
    cursor = start
    while cursor < end and len(buckets) < MAX_INTERVALS:  # ceil((end - start) / interval) buckets
        try:
            upper = cursor + step
        except OverflowError:  # the last bucket reaches past year 9999
            upper = dt.datetime.max
        buckets.append((cursor, upper, {}))
        cursor = upper
    if not buckets:
        return []
    now = utcnow()
    for expected, state_type, state_name, total, state_ts, start_time in rows:
        if expected is None or expected < start or expected >= buckets[-1][1]:
            continue
        index = int((expected - start) / step)
        if not 0 <= index < len(buckets):
            continue
        run_time = total or 0.0
        if state_type == "RUNNING" and state_ts is not None:
            run_time += max((now - state_ts).total_seconds(), 0.0)
        if start_time is not None:
            lateness = max((start_time - expected).total_seconds(), 0.0)
        elif state_type not in TERMINAL and expected < now:
            lateness = (now - expected).total_seconds()
        else:
            lateness = 0.0
        entry = buckets[index][2].setdefault((state_type, state_name), [0, 0.0, 0.0])
        entry[0] += 1
        entry[1] += run_time
        entry[2] += lateness
    return [
        {
            "interval_start": iso(lo),
            "interval_end": iso(hi),
            "states": [
                {
                    "state_type": key[0],
                    "state_name": key[1],
                    "count_runs": value[0],
                    "sum_estimated_run_time": float(round(value[1])),
                    "sum_estimated_lateness": float(round(value[2])),
                }
                for key, value in sorted(states.items(), key=lambda kv: (kv[0][0] or "", kv[0][1] or ""))
            ],
        }
        for lo, hi, states in buckets
    ]
