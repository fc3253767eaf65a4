"""Reading the console's HTML forms: URL-encoded bodies, the CSRF check, field helpers."""

from __future__ import annotations

from urllib.parse import parse_qs

from ui import security
from ui.errors import PageError

MAX_FORM_BYTES = 1_000_000


async def read_form(req) -> dict[str, str | list[str]]:
    """The POSTed form (a field sent twice becomes a list), after the CSRF check (403)."""
    raw = await req.stream.read(MAX_FORM_BYTES + 1)
    if len(raw) > MAX_FORM_BYTES:
        raise PageError(413, "The form is too large.")
    try:
        parsed = parse_qs(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise PageError(400, "The form is not valid UTF-8.") from None
    form: dict[str, str | list[str]] = {k: v[0] if len(v) == 1 else v for k, v in parsed.items()}
    if not security.csrf_ok(req, form):
        raise PageError(403, "The form's security token is missing or stale: reload the page and try again.")
    return form


def field(form: dict, name: str, default: str = "") -> str:
    """One text field, stripped ('' when absent; the last value when sent twice)."""
    value = form.get(name, default)
    if isinstance(value, list):
        value = value[-1]
    return value.strip()


def values(form: dict, name: str) -> list[str]:
    """Every value of a repeated field (checkboxes, multi-selects)."""
    value = form.get(name)
    if value is None:
        return []
    return [v for v in (value if isinstance(value, list) else [value]) if v != ""]
