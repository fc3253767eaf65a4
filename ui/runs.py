"""``/runs``: the flow runs list, newest first (expected start, then id), as Prefect's UI
has it at the same URL. Every filter is in the URL, so a filtered list can be linked:

- ``state``: a state type (SCHEDULED, RUNNING, FAILED ...; any case), may repeat (or be
  comma-separated): runs in any of them;
- ``flow`` / ``deployment``: a flow's / deployment's id;
- ``tag``: runs carrying that tag;
- ``q``: the run's name contains it (case-insensitive);
- ``since`` / ``until``: bounds of the expected start time, each an ISO 8601 time
  (``2026-11-01T12:00:00Z``; no offset = UTC), a span back from now (``30m``, ``1h``,
  ``24h``, ``7d``, ``2w``) or ``now``; since is inclusive, until exclusive. A time range
  leaves out runs that never had a state (they have no expected start).

Pages are keyset pages (``after`` / ``before`` = the (expected start, id) of a run, as the
``rel="next"`` / ``rel="prev"`` links carry them; db.console_runs says which index serves
which filter). A bad filter or cursor answers a 400 page saying what is wrong. The first
page's table is a ``data-live`` block (``?fragment=rows``), so new runs and state changes
appear without a reload; later pages hold still.
"""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import urlencode

from db import console_runs as reads
from db import database as db
from db.console_admin import valid_uuid
from db.console_run_detail import elapsed
from db.fields import utcnow
from db.states import STATE_TYPES, parse_datetime
from ui.errors import PageError
from ui.render import render

LIVE_INTERVAL_MS = 5000
TEXT_CAP = 200
RELATIVE = re.compile(r"^(\d{1,5})\s*([mhdw])$")
UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
NO_TIME = "none"


def encode_cursor(key: tuple | None) -> str | None:
    """(expected_start_time, id) -> ``2026-11-01T12:00:00.000000_<id>`` (``none_<id>`` for a
    run without an expected start)."""
    if key is None:
        return None
    moment, run_id = key
    return f"{moment.isoformat(timespec='microseconds') if moment else NO_TIME}_{run_id}"


def decode_cursor(text: str | None) -> tuple | None:
    if not text:
        return None
    moment_text, _, run_id = text.rpartition("_")
    run_id = valid_uuid(run_id)
    moment = None
    if moment_text != NO_TIME:
        try:
            moment = parse_datetime(moment_text)
        except (ValueError, OverflowError):
            moment = None
        if moment is None:
            run_id = None
    if run_id is None:
        raise PageError(400, "The page position in the link (after / before) is not valid.")
    return moment, run_id


def parse_time(value: str, name: str, now: dt.datetime) -> dt.datetime:
    """An ISO time, a span back from ``now`` (``1h``, ``7d``) or ``now`` -> naive UTC."""
    text = value.strip().lower()
    if text == "now":
        return now
    found = RELATIVE.match(text)
    if found:
        try:
            return now - dt.timedelta(**{UNITS[found.group(2)]: int(found.group(1))})
        except OverflowError:
            raise PageError(400, f"{name}={value!r} reaches too far back.") from None
    try:
        parsed = parse_datetime(value.strip())
    except (ValueError, OverflowError):
        parsed = None
    if parsed is None:
        raise PageError(400, f"{name}={value!r} is not a time: use an ISO 8601 time "
                             "(2026-11-01T12:00:00Z), a span back from now (30m, 1h, 24h, 7d, 2w) or now.")
    return parsed


def _text(req, name: str) -> str | None:
    value = (req.get_param(name) or "").strip()
    if len(value) > TEXT_CAP:
        raise PageError(400, f"{name} is too long (at most {TEXT_CAP} characters).")
    if "\x00" in value:
        raise PageError(400, f"{name} contains a NUL character.")
    return value or None


def _id(req, name: str, what: str) -> str | None:
    value = (req.get_param(name) or "").strip()
    if not value:
        return None
    found = valid_uuid(value)
    if found is None:
        raise PageError(400, f"{name}={value!r} is not a valid {what} id.")
    return found


def read_filter(req, now: dt.datetime) -> reads.RunFilter:
    """The filters of the URL; a 400 page naming the first bad one."""
    states: list[str] = []
    for raw in req.get_param_as_list("state") or []:
        for part in str(raw).split(","):
            part = part.strip().upper()
            if not part:
                continue
            if part not in STATE_TYPES:
                raise PageError(400, f"state={part!r} is not a state type: use one of {', '.join(STATE_TYPES)}.")
            if part not in states:
                states.append(part)
    since_text, until_text = _text(req, "since"), _text(req, "until")
    since = parse_time(since_text, "since", now) if since_text else None
    until = parse_time(until_text, "until", now) if until_text else None
    if since is not None and until is not None and since >= until:
        raise PageError(400, "since must be before until.")
    return reads.RunFilter(
        states=tuple(states), flow_id=_id(req, "flow", "flow"), deployment_id=_id(req, "deployment", "deployment"),
        tag=_text(req, "tag"), name=_text(req, "q"), since=since, until=until,
    )


def url_params(req, flt: reads.RunFilter) -> dict:
    """The filter part of the URL, as the person wrote it (relative times stay relative)."""
    return {
        "state": list(flt.states) or None, "flow": flt.flow_id, "deployment": flt.deployment_id, "tag": flt.tag,
        "q": flt.name, "since": _text(req, "since"), "until": _text(req, "until"),
    }


def runs_url(params: dict, **extra) -> str:
    kept = {k: v for k, v in {**params, **extra}.items() if v not in (None, "", [])}
    return f"/runs?{urlencode(kept, doseq=True)}" if kept else "/runs"


def _read(flt: reads.RunFilter, after, before) -> dict:
    page = reads.runs_page(flt, after, before)
    reads.names_for(page["rows"])
    page["flow_name"] = reads.flow_name(flt.flow_id) if flt.flow_id else None
    page["deployment_name"] = reads.deployment_name(flt.deployment_id) if flt.deployment_id else None
    return page


class RunList:
    async def on_get(self, req, resp):
        now = utcnow()
        flt = read_filter(req, now)
        after, before = decode_cursor(req.get_param("after")), decode_cursor(req.get_param("before"))
        if after is not None and before is not None:
            raise PageError(400, "Give after or before, not both.")
        page = await db.run(_read, flt, after, before)
        for row in page["rows"]:
            row["duration"] = elapsed(row, now)
        params = url_params(req, flt)
        next_url = runs_url(params, after=encode_cursor(page["next"])) if page["next"] else None
        prev_url = runs_url(params, before=encode_cursor(page["prev"])) if page["prev"] else None
        first_page = after is None and before is None
        render(req, resp, "runs.html", page=page, flt=flt, params=params, next_url=next_url, prev_url=prev_url,
               first_url=runs_url(params) if not first_page else None, live=first_page,
               interval=LIVE_INTERVAL_MS, states=STATE_TYPES, now=now,
               remove_url=lambda name: runs_url({**params, name: None}),
               scanned_to=page["scanned_to"][0] if page["partial"] and page["scanned_to"] else None)


def register(app) -> None:
    app.add_route("/runs", RunList())

