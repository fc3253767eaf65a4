"""Remove credentials from anything that is logged or stored (URLs, headers, bodies)."""

from __future__ import annotations

import re

_PATTERNS = [
    (re.compile(r"(hooks\.slack(?:-gov)?\.com/services/)[^\s\"'?]+"), r"\1***"),
    (re.compile(r"(/api/webhooks/[^/\s]+/)[^\s\"'?/]+"), r"\1***"),
    (re.compile(r"(/hooks/)[^\s\"'?/]+"), r"\1***"),
    (re.compile(r"([?&](?:sig|token|key|api_key|apikey|code)=)[^&\s\"']+", re.I), r"\1***"),
    (re.compile(r"((?:Authorization|X-Api-Key)\s*[:=]\s*)(\w+\s+)?[^\s,\"']+", re.I), r"\1\2***"),
    (re.compile(r"(GenieKey|Bearer|Basic|Token token=)\s*[^\s,\"']+", re.I), r"\1 ***"),
    (re.compile(r"(https?://)[^/\s:@]+:[^/\s@]+@"), r"\1***:***@"),
]


def redact(text: str | None, secrets: list[str] | tuple = ()) -> str | None:
    if text is None:
        return None
    for secret in secrets:
        if secret and len(str(secret)) >= 4:
            text = text.replace(str(secret), "***")
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text
