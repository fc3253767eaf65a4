"""Template rendering for the console: one Jinja2 environment, autoescaped, with the filters
the pages share (times, durations, state colours).

``render`` answers a whole page; with ``?fragment=NAME`` in the URL it answers only the
template block NAME, which is how ``app.js`` refreshes a live part of a page without a
reload (the page and its refresh come from one template, so they cannot drift apart).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import falcon
import jinja2
import orjson

from ui import STATIC_PREFIX, security

TEMPLATES = Path(__file__).parent / "templates"

# Navigation: (label, path) in the order of the header.
NAV = [
    ("Dashboard", "/dashboard"),
    ("Runs", "/runs"),
    ("Flows", "/flows"),
    ("Deployments", "/deployments"),
    ("Work pools", "/work-pools"),
    ("Blocks", "/blocks"),
    ("Variables", "/variables"),
    ("Concurrency", "/concurrency-limits"),
    ("Notifications", "/notifications"),
]

# State type -> CSS class of its badge and timeline bar.
STATE_CLASSES = {
    "SCHEDULED": "st-scheduled",
    "PENDING": "st-pending",
    "RUNNING": "st-running",
    "COMPLETED": "st-completed",
    "FAILED": "st-failed",
    "CANCELLED": "st-cancelled",
    "CANCELLING": "st-cancelling",
    "CRASHED": "st-crashed",
    "PAUSED": "st-paused",
}


def _as_datetime(value) -> dt.datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def format_datetime(value) -> str:
    """2026-12-04 21:13:05 (UTC), or an em dash for none."""
    moment = _as_datetime(value)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else "—"


def format_duration(seconds) -> str:
    """1h 02m, 3m 05s, 4.2s, 120ms."""
    if seconds is None:
        return "—"
    seconds = float(seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    return f"{hours // 24}d {hours % 24}h"


def format_ago(value, now: dt.datetime | None = None) -> str:
    """'5m ago' / 'in 3m' relative to now."""
    moment = _as_datetime(value)
    if moment is None:
        return "—"
    delta = ((now or dt.datetime.now(dt.UTC)) - moment).total_seconds()
    text = format_duration(abs(delta)).split(" ")[0] if abs(delta) >= 60 else f"{abs(delta):.0f}s"
    return f"{text} ago" if delta >= 0 else f"in {text}"


def state_class(state_type) -> str:
    return STATE_CLASSES.get(str(state_type or "").upper(), "st-unknown")


def pretty_json(value) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS, default=str).decode()


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,  # every template, whatever its extension
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(
        datetime=format_datetime,
        duration=format_duration,
        ago=format_ago,
        state_class=state_class,
        pretty_json=pretty_json,
    )
    env.globals.update(nav=NAV, static=STATIC_PREFIX)
    return env


environment = _environment()


def _context(req, resp, ctx: dict) -> dict:
    return {
        "request_path": req.path,
        "query": req.params,
        "csrf_token": security.csrf_token(req, resp),
        "csrf_field_name": security.FIELD,
        **ctx,
    }


def render(req, resp, template: str, status: int = 200, **ctx) -> None:
    """Render ``template`` (or only its block ``?fragment=NAME``) into ``resp`` as HTML."""
    tmpl = environment.get_template(template)
    context = _context(req, resp, ctx)
    fragment = req.get_param("fragment")
    if fragment:
        block = tmpl.blocks.get(fragment)
        if block is None:
            raise falcon.HTTPNotFound(description=f"page {req.path} has no fragment {fragment!r}")
        html = "".join(block(tmpl.new_context(context)))
    else:
        html = tmpl.render(context)
    security.page_headers(resp)
    resp.status = status
    resp.content_type = falcon.MEDIA_HTML
    resp.text = html


def redirect(resp, location: str) -> None:
    """303 See Other after a successful form POST (the browser then GETs ``location``)."""
    security.page_headers(resp)
    resp.status = falcon.HTTP_303
    resp.location = location
