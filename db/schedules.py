"""Schedule objects (Interval, Cron, RRule): validation and date generation.

A schedule is the JSON Prefect sends inside ``DeploymentScheduleCreate.schedule``.
``normalize`` validates one and fills its defaults (raising ScheduleError naming the
field); ``dates`` yields its occurrences as naive-UTC datetimes in ascending order.
Cron uses ``cronsim`` and RRule ``python-dateutil`` — the same libraries family Prefect's
own schedules rely on — with IANA time zones from ``zoneinfo``, so that DST changes
are handled by the libraries rather than by hand.
"""

from __future__ import annotations

import datetime as dt
import math
import zoneinfo
from collections.abc import Iterator
from functools import lru_cache

import cronsim
import dateutil.rrule
import dateutil.tz

from db.states import parse_datetime

MAX_RRULE_LENGTH = 6500
MAX_ITERATIONS = 1000
# RRule's implicit DTSTART when the string has none (Prefect's DEFAULT_ANCHOR_DATE).
RRULE_DEFAULT_ANCHOR = dt.datetime(2020, 1, 1)
DAY = 86400


class ScheduleError(ValueError):
    def __init__(self, field: str, message: str, value=None):
        super().__init__(message)
        self.field = field
        self.message = message
        self.value = value


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) | {"UTC"}


def _timezone(value, field: str = "timezone") -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or (value and value not in _zones()):
        raise ScheduleError(
            field, f'Invalid timezone: "{value}" (specify in IANA tzdata format, for example, America/New_York)', value
        )
    return value or None


def kind(schedule: dict) -> str:
    for name in ("interval", "cron", "rrule"):
        if name in schedule:
            return name
    raise ScheduleError("schedule", "schedule must be an interval, cron or rrule schedule", schedule)


def display_name(schedule: dict) -> str:
    return {"interval": "IntervalSchedule", "cron": "CronSchedule", "rrule": "RRuleSchedule"}[kind(schedule)]


def normalize(schedule, now: dt.datetime | None = None) -> dict:
    """Validate a schedule and return it with defaults filled (what the API echoes back)."""
    if not isinstance(schedule, dict):
        raise ScheduleError("schedule", "Input should be a valid dictionary", schedule)
    which = kind(schedule)
    allowed = {
        "interval": {"interval", "anchor_date", "timezone"},
        "cron": {"cron", "timezone", "day_or"},
        "rrule": {"rrule", "timezone"},
    }[which]
    extra = set(schedule) - allowed
    if extra:
        name = sorted(extra)[0]
        raise ScheduleError(f"schedule.{name}", "Extra inputs are not permitted", schedule[name])
    if which == "interval":
        return _normalize_interval(schedule, now)
    if which == "cron":
        return _normalize_cron(schedule)
    return _normalize_rrule(schedule)


def _normalize_interval(schedule: dict, now) -> dict:
    interval = schedule["interval"]
    if isinstance(interval, bool) or not isinstance(interval, int | float) or not math.isfinite(interval):
        raise ScheduleError("schedule.interval", "Input should be a number of seconds", interval)
    if interval <= 0:
        raise ScheduleError("schedule.interval", "The interval must be positive", interval)
    raw_anchor = schedule.get("anchor_date")
    if raw_anchor is None:
        anchor = (now or dt.datetime.now(dt.UTC).replace(tzinfo=None)).replace(tzinfo=dt.UTC)
    else:
        anchor = _aware(raw_anchor, "schedule.anchor_date")
    tz = _timezone(schedule.get("timezone"), "schedule.timezone") or "UTC"
    return {
        "interval": float(interval),
        "anchor_date": anchor.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "timezone": tz,
    }


def _aware(value, field: str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ScheduleError(field, "Input should be a valid datetime", value) from None
    else:
        raise ScheduleError(field, "Input should be a valid datetime", value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _normalize_cron(schedule: dict) -> dict:
    expr = schedule["cron"]
    if not isinstance(expr, str):
        raise ScheduleError("schedule.cron", "Input should be a valid string", expr)
    fields = expr.split()
    if len(fields) != 5 and not (len(fields) == 1 and fields[0].startswith("@")):
        raise ScheduleError("schedule.cron", f'Invalid cron string: "{expr}" (five fields expected)', expr)
    if any(f.casefold() in ("r", "h") for f in fields):
        raise ScheduleError("schedule.cron", f'Random and Hashed expressions are unsupported, received: "{expr}"', expr)
    try:
        cronsim.CronSim(expr, dt.datetime(2020, 1, 1))
    except cronsim.CronSimError:
        raise ScheduleError("schedule.cron", f'Invalid cron string: "{expr}"', expr) from None
    day_or = schedule.get("day_or", True)
    if not isinstance(day_or, bool):
        raise ScheduleError("schedule.day_or", "Input should be a valid boolean", day_or)
    return {"cron": expr, "timezone": _timezone(schedule.get("timezone"), "schedule.timezone"), "day_or": day_or}


def _normalize_rrule(schedule: dict) -> dict:
    text = schedule["rrule"]
    if not isinstance(text, str):
        raise ScheduleError("schedule.rrule", "Input should be a valid string", text)
    if len(text) > MAX_RRULE_LENGTH:
        raise ScheduleError(
            "schedule.rrule", f'Invalid RRule string "{text[:40]}..." Max length is {MAX_RRULE_LENGTH}, got {len(text)}'
        )
    try:
        dateutil.rrule.rrulestr(text, cache=True)
    except (ValueError, TypeError) as exc:
        raise ScheduleError("schedule.rrule", f'Invalid RRule string "{text}": {exc}', text) from None
    if "DTSTART" not in text.upper():
        # As the real server echoes it: the implicit anchor made explicit.
        text = f"DTSTART:{RRULE_DEFAULT_ANCHOR:%Y%m%dT%H%M%S}\n{text}"
    return {"rrule": text, "timezone": _timezone(schedule.get("timezone"), "schedule.timezone") or "UTC"}


# --- date generation ------------------------------------------------------------------


def dates(schedule: dict, start: dt.datetime, end: dt.datetime, limit: int) -> list[dt.datetime]:
    """Occurrences with start <= date <= end, at most ``limit``, as naive UTC, ascending."""
    out = []
    start_utc = start.replace(tzinfo=dt.UTC)
    end_utc = end.replace(tzinfo=dt.UTC)
    for when in _generate(schedule, start_utc):
        if when > end_utc:
            break
        if when >= start_utc:
            out.append(when.astimezone(dt.UTC).replace(tzinfo=None))
            if len(out) >= limit:
                break
    return out


def _generate(schedule: dict, start: dt.datetime) -> Iterator[dt.datetime]:
    which = kind(schedule)
    if which == "interval":
        return _interval_dates(schedule, start)
    if which == "cron":
        return _cron_dates(schedule, start)
    return _rrule_dates(schedule, start)


def _interval_dates(schedule: dict, start: dt.datetime) -> Iterator[dt.datetime]:
    tz = zoneinfo.ZoneInfo(schedule.get("timezone") or "UTC")
    anchor = _aware(schedule["anchor_date"], "anchor_date").astimezone(tz)
    seconds = float(schedule["interval"])
    if seconds % DAY == 0:
        # Whole days keep the local wall-clock time across DST changes: step the naive
        # local time, then attach the zone (fold=0 for ambiguous times).
        days = int(seconds // DAY)
        local_anchor = anchor.replace(tzinfo=None)
        start_local = start.astimezone(tz).replace(tzinfo=None)
        k = math.floor((start_local - local_anchor).total_seconds() / seconds) - 1
        for _ in range(MAX_ITERATIONS * 10):
            candidate = (local_anchor + dt.timedelta(days=days * k)).replace(tzinfo=tz)
            k += 1
            if candidate >= start:
                yield candidate
    else:
        # Sub-day intervals are absolute time: step in UTC (aware arithmetic in a ZoneInfo
        # would be wall-clock arithmetic).
        step = dt.timedelta(seconds=seconds)
        anchor_utc = anchor.astimezone(dt.UTC)
        k = math.ceil((start - anchor_utc).total_seconds() / seconds)
        while True:
            yield (anchor_utc + step * k).astimezone(tz)
            k += 1


def _cron_dates(schedule: dict, start: dt.datetime) -> Iterator[dt.datetime]:
    tz = zoneinfo.ZoneInfo(schedule.get("timezone") or "UTC")
    # CronSim yields ticks strictly after its start; step back a second so start itself counts.
    local_start = (start - dt.timedelta(seconds=1)).astimezone(tz)
    if local_start.microsecond:
        local_start = local_start.replace(microsecond=0) + dt.timedelta(seconds=1)
    it = cronsim.CronSim(schedule["cron"], local_start)
    if schedule.get("day_or", True) is False:
        it.day_and = True  # AND semantics of day-of-month and day-of-week
    seen = set()
    for _ in range(MAX_ITERATIONS):
        when = next(it)
        if when not in seen:
            seen.add(when)
            yield when


def _rrule_dates(schedule: dict, start: dt.datetime) -> Iterator[dt.datetime]:
    timezone = dateutil.tz.gettz(schedule.get("timezone") or "UTC")
    rule = dateutil.rrule.rrulestr(schedule["rrule"], dtstart=RRULE_DEFAULT_ANCHOR, cache=True)
    rule = _localize(rule, timezone)
    rule = _advance_dtstart(rule, start)
    seen = set()
    for count, when in enumerate(rule.xafter(start, count=None, inc=True)):
        if count > MAX_ITERATIONS:
            return
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone)
        if when not in seen:
            seen.add(when)
            yield when


def _advance_dtstart(rule, start: dt.datetime):
    """Sub-hourly rules anchored years back would make dateutil walk millions of occurrences
    to reach ``start``: move DTSTART forward by whole periods (same grid) when no COUNT ties
    the occurrences to it (Prefect does the same for its implicit anchor)."""
    if not isinstance(rule, dateutil.rrule.rrule) or rule._count is not None:
        return rule
    unit = {dateutil.rrule.SECONDLY: 1, dateutil.rrule.MINUTELY: 60, dateutil.rrule.HOURLY: 3600}.get(rule._freq)
    if unit is None:
        return rule
    period = unit * rule._interval
    dtstart = rule._dtstart
    behind = (start - dtstart.astimezone(dt.UTC)).total_seconds()
    steps = int(behind // period) - 1
    if steps <= 0:
        return rule
    # dateutil steps the naive wall-clock time, so the grid is kept by stepping it the same way.
    moved = dtstart.replace(tzinfo=None) + dt.timedelta(seconds=steps * period)
    return rule.replace(dtstart=moved.replace(tzinfo=dtstart.tzinfo))


def _localize(rule, timezone):
    """rrulestr does not carry time zones: relabel DTSTART/UNTIL/RDATE/EXDATE with the schedule's."""

    def fix(rr):
        kwargs = {"dtstart": rr._dtstart.replace(tzinfo=timezone)}
        if rr._until:
            kwargs["until"] = rr._until.replace(tzinfo=timezone)
        return rr.replace(**kwargs)

    if isinstance(rule, dateutil.rrule.rrule):
        return fix(rule)
    rule._rrule = [fix(r) for r in rule._rrule]
    rule._exrule = [fix(r) for r in rule._exrule]
    rule._rdate = [d.replace(tzinfo=timezone) for d in rule._rdate]
    rule._exdate = [d.replace(tzinfo=timezone) for d in rule._exdate]
    return rule


__all__ = ["ScheduleError", "normalize", "dates", "display_name", "kind", "parse_datetime"]
