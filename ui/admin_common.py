"""Small helpers the admin pages share (deployments, work pools, blocks, variables,
concurrency, notifications): ids from the URL, pager links, flash messages after a redirect."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from db.console_admin import valid_uuid
from ui.errors import PageError


def require_uuid(value: str, what: str) -> str:
    """The canonical id, or a 404 page saying the id is malformed."""
    found = valid_uuid(value)
    if found is None:
        raise PageError(404, f"{value!r} is not a valid {what} id.")
    return found


def page_url(path: str, **params) -> str:
    """``path`` with the non-empty ``params`` as its query string."""
    kept = {k: v for k, v in params.items() if v not in (None, "")}
    return f"{path}?{urlencode(kept)}" if kept else path


def pager_urls(path: str, page: dict, **params) -> tuple[str | None, str | None]:
    """(next URL, previous URL) of a keyset page from db.console_admin."""
    next_url = page_url(path, **params, after=page["next"]) if page["next"] is not None else None
    prev_url = page_url(path, **params, before=page["prev"]) if page["prev"] is not None else None
    return next_url, prev_url


def flash(req, messages: dict[str, str]) -> str | None:
    """The message of the ``?msg=`` code a redirect carried (codes only: a link cannot make
    the page say arbitrary text)."""
    return messages.get(req.get_param("msg") or "")


def segment(value: str) -> str:
    """A name as one URL path segment."""
    return quote(value, safe="")
