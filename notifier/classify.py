"""Response classification (notifications.md §0.2) and retry-hint parsing."""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass

RETRY_STATUSES = {408, 425, 500, 502, 503, 504}
MIN_HINT, MAX_HINT = 1.0, 3600.0


@dataclass
class Outcome:
    kind: str  # "sent" | "retry" | "failed"
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None  # seconds, from the server's hint
    rate_limited: bool = False


def _clamp(value: float) -> float:
    return max(MIN_HINT, min(MAX_HINT, value))


def retry_hint(headers, body_json=None, now: float | None = None) -> float | None:
    """Seconds to wait, from (in order) Retry-After, Discord's body/headers, reset epochs, Opsgenie."""
    now = time.time() if now is None else now
    h = {k.lower(): v for k, v in (headers or {}).items()}
    value = h.get("retry-after")
    if value:
        try:
            return _clamp(float(value))
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value) if value else None
            if parsed is not None:
                return _clamp(parsed.timestamp() - now)
    if isinstance(body_json, dict) and isinstance(body_json.get("retry_after"), int | float):
        return _clamp(float(body_json["retry_after"]))
    for key in ("x-ratelimit-reset-after",):
        if h.get(key):
            try:
                return _clamp(float(h[key]))
            except ValueError:
                pass
    if h.get("x-ratelimit-reset"):
        try:
            return _clamp(float(h["x-ratelimit-reset"]) - now)
        except ValueError:
            pass
    if h.get("x-ratelimit-period-in-sec"):
        try:
            return _clamp(float(h["x-ratelimit-period-in-sec"]))
        except ValueError:
            pass
    return None


def classify(channel: str, status: int, headers, text: str) -> Outcome:
    body_json = None
    if text[:1] in "{[":
        try:
            import json

            body_json = json.loads(text)
        except ValueError:
            body_json = None
    short = (text or "").strip()[:300]
    if 200 <= status < 300:
        if channel in ("slack-webhook", "mattermost-webhook") and short != "ok":
            return Outcome("failed", status, f"HTTP {status} without 'ok' body: {short!r}")
        if channel == "twilio-sms" and isinstance(body_json, dict) and body_json.get("code") == 21611:
            return Outcome("retry", status, "Twilio 21611: sender queue full")
        return Outcome("sent", status)
    if status == 429:
        return Outcome("retry", status, f"HTTP 429: {short}", retry_hint(headers, body_json), rate_limited=True)
    if channel == "twilio-sms" and isinstance(body_json, dict) and body_json.get("code") == 21611:
        return Outcome("retry", status, f"HTTP {status}: {short}", retry_hint(headers, body_json))
    if status in RETRY_STATUSES:
        return Outcome("retry", status, f"HTTP {status}: {short}", retry_hint(headers, body_json))
    if 300 <= status < 400:
        return Outcome("failed", status, f"HTTP {status} redirect (not followed)")
    return Outcome("failed", status, f"HTTP {status}: {short}")
