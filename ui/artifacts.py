"""Artifacts as the run pages show them, by type, as Prefect's SDK stores them:

- ``markdown`` (``create_markdown_artifact``, and ``create_link_artifact``, which stores a
  markdown link): rendered with markdown-it-py, raw HTML *off* (a ``<script>`` in the text
  is shown as text), links limited to markdown-it's safe schemes (no ``javascript:``) and
  marked ``rel="nofollow noopener noreferrer"``, images shown as links (the page's CSP loads
  no image from elsewhere, and a remote image would tell its host who looked), headings moved
  down three levels so that an artifact's ``#`` does not compete with the page's own;
- ``table`` (``create_table_artifact``: a JSON string of a list of dicts, a dict of lists or a
  list of lists): rows and columns for an autoescaped ``<table>``;
- ``link`` (the older type: a URL, a markdown link, or {"link", "link_text"}): one anchor,
  when its URL is http(s) or a path on this server;
- ``progress`` (a number 0-100): a ``<progress>`` element;
- ``image`` (a URL): a link to it;
- ``result`` and anything else: pretty JSON.

``view(row)`` answers a dict the template ``_run_artifacts.html`` draws; each kind is capped
(``BUDGET`` characters of content) so that a page of artifacts stays well under 150 KB.
The only HTML made here is markdown-it's, from escaped text: ``Markup`` is never built from
the artifact's data any other way.
"""

from __future__ import annotations

import math
import re
from itertools import zip_longest

import orjson
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markupsafe import Markup

from ui.render import pretty_json

BUDGET = 6000  # characters of an artifact's content shown (markdown source, table cells, JSON)
MAX_COLUMNS = 20
MAX_CELL = 200
LINK_REL = "nofollow noopener noreferrer"
SAFE_URL = re.compile(r"^(https?://|/(?!/))", re.IGNORECASE)
MARKDOWN_LINK = re.compile(r"^\[(?P<text>[^\]]*)\]\((?P<url>[^)\s]+)\)$")


def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])

    def link_open(self, tokens, idx, options, env):
        tokens[idx].attrSet("rel", LINK_REL)
        return self.renderToken(tokens, idx, options, env)

    def image(self, tokens, idx, options, env):
        token = tokens[idx]
        src = token.attrGet("src") or ""
        text = self.renderInlineAsText(token.children or [], options, env) or src
        return f'<a href="{escapeHtml(src)}" rel="{LINK_REL}">{escapeHtml("Image: " + text)}</a>'

    md.add_render_rule("link_open", link_open)
    md.add_render_rule("image", image)
    return md


_md = _markdown()


def markdown_html(text: str, budget: int = BUDGET) -> tuple[Markup, bool]:
    """(safe HTML of ``text``, whether it was cut at ``budget`` characters)."""
    cut = len(text) > budget
    tokens = _md.parse(text[:budget] if cut else text)
    for token in tokens:
        if token.type in ("heading_open", "heading_close"):
            token.tag = f"h{min(int(token.tag[1]) + 3, 6)}"
    # markdown-it escapes every piece of text and attribute it emits (html is off).
    return Markup(_md.renderer.render(tokens, _md.options, {})), cut


def _decoded(data):
    """The SDK sends tables (and sometimes other kinds) as JSON text: parse it when it is."""
    if isinstance(data, str):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            return data
    return data


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def table(data, budget: int = BUDGET) -> dict | None:
    """{"columns": [...] or None, "rows": [[str]], "more_rows", "more_columns"} of a table
    artifact's data, or None when it is not one of the three shapes Prefect accepts."""
    data = _decoded(data)
    if isinstance(data, dict) and data and all(isinstance(v, list) for v in data.values()):
        names = list(data)
        lines = [list(r) for r in zip_longest(*data.values(), fillvalue=None)]
    elif isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        names = list(dict.fromkeys(k for r in data for k in r))
        lines = [[r.get(k) for k in names] for r in data]
    elif isinstance(data, list) and data and all(isinstance(r, list) for r in data):
        names = None
        lines = data
    elif data in ([], {}):
        return {"columns": [], "rows": [], "more_rows": 0, "more_columns": 0}
    else:
        return None
    width = len(names) if names is not None else max(len(r) for r in lines)
    shown_width = min(width, MAX_COLUMNS)
    rows, used = [], 0
    for line in lines:
        cells = [_cell(v) for v in list(line)[:shown_width]]
        cells += [""] * (shown_width - len(cells))
        used += sum(len(c) for c in cells) + shown_width
        if rows and used > budget:
            break
        rows.append(cells)
    columns = [str(n) for n in names[:shown_width]] if names is not None else None
    return {"columns": columns, "rows": rows, "more_rows": len(lines) - len(rows),
            "more_columns": width - shown_width}


def safe_url(url) -> str | None:
    """``url`` when a link to it is harmless (http, https, or a path here), else None."""
    if isinstance(url, str) and SAFE_URL.match(url.strip()):
        return url.strip()
    return None


def link(data) -> dict | None:
    """{"href", "text"} of a link artifact, or None when it has no usable URL."""
    data = _decoded(data)
    if isinstance(data, dict):
        url, text = data.get("link"), data.get("link_text")
    elif isinstance(data, str):
        found = MARKDOWN_LINK.match(data.strip())
        url, text = (found.group("url"), found.group("text")) if found else (data, None)
    else:
        return None
    href = safe_url(url)
    if href is None:
        return None
    return {"href": href, "text": str(text) if text else href}


def progress(data) -> float | None:
    """The percentage of a progress artifact, clamped to 0-100 as the SDK clamps it."""
    data = _decoded(data)
    if isinstance(data, bool) or not isinstance(data, int | float | str):
        return None
    try:
        value = float(data)
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    return round(max(0.0, min(100.0, value)), 2)


def json_text(data, budget: int = BUDGET) -> tuple[str, bool]:
    text = pretty_json(_decoded(data))
    return (text[:budget] + "\n…", True) if len(text) > budget else (text, False)


def view(row: dict) -> dict:
    """What the template draws for one artifact row: {"id", "key", "type", "created",
    "description" (safe HTML or None), "kind", and the kind's own fields}."""
    kind = (row.get("type") or "").lower()
    data = row.get("data")
    out = {"id": row.get("id"), "key": row.get("key"), "type": kind or "unknown", "created": row.get("created"),
           "description": markdown_html(row["description"], 2000)[0] if row.get("description") else None,
           "task_run_id": row.get("task_run_id"), "kind": "json"}
    if kind == "markdown" and isinstance(data, str):
        html, cut = markdown_html(data)
        return out | {"kind": "markdown", "html": html, "cut": cut}
    if kind == "table":
        shaped = table(data)
        if shaped is not None:
            return out | {"kind": "table", **shaped}
    if kind in ("link", "image"):
        found = link(data)
        if found is not None:
            return out | {"kind": "link", **found}
    if kind == "progress":
        value = progress(data)
        if value is not None:
            return out | {"kind": "progress", "value": value}
    text, cut = json_text(data)
    return out | {"text": text, "cut": cut}
