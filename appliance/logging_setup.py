"""Log output of every process: plain text lines by default, JSON lines with
APPLIANCE_LOG_FORMAT=json (one object per line: ts, level, logger, message, and on access
lines request_id, method, route, path, status, duration_ms).

What is never logged: request or response headers and bodies, query strings, and the
secrets the process knows (the database URL's password, the basic-auth password, the
encryption keys): ``configure(secrets=...)`` masks any of them that an exception message
or a library would otherwise print. Kept light (stdlib and orjson only): the gunicorn
master imports it.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import sys

import orjson

ACCESS_LOGGER = "appliance.access"
TEXT_FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"
# Fields an access record carries (as ``extra``), copied into its JSON object.
ACCESS_FIELDS = ("method", "route", "path", "status", "duration_ms")
MASK = "********"

# The id of the request being served (set by api.middleware.RequestObserver): every record
# logged while serving it carries it, not only the access line.
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

_secrets: tuple[str, ...] = ()


def _masked(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class TextFormatter(logging.Formatter):
    def __init__(self, fmt: str = TEXT_FORMAT):
        super().__init__(fmt)

    def format(self, record: logging.LogRecord) -> str:
        return _masked(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record; exceptions as one ``exc`` string (a line stays a line)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or request_id.get()
        if rid:
            out["request_id"] = rid
        for key in ACCESS_FIELDS:
            value = record.__dict__.get(key)
            if value is not None:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        return _masked(orjson.dumps(out, default=str).decode())


def formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else TextFormatter()


def secrets_of(settings) -> tuple[str, ...]:
    """The values a log line must never show: passwords in the database URL and the auth
    string, and the encryption keys (settings is an appliance.settings.Settings)."""
    from urllib.parse import unquote, urlparse

    found = []
    password = urlparse(settings.effective_database_url).password
    if password:
        found += [password, unquote(password)]
    if settings.auth_string and ":" in settings.auth_string:
        found.append(settings.auth_string.split(":", 1)[1])
    if settings.secret_key:
        found += [key.strip() for key in settings.secret_key.split(",")]
    # Longest first, and never a short string that would mask ordinary words.
    return tuple(sorted({s for s in found if len(s) >= 4}, key=len, reverse=True))


def configure(level: str = "info", fmt: str = "text", *, secrets: tuple[str, ...] = (), access_log: bool = False,
              stream=None) -> None:
    """Route every logger of the process to stderr (or ``stream``) in the chosen format."""
    global _secrets
    _secrets = tuple(secrets)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Access lines are INFO records: shown when asked for, whatever the general level.
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.INFO if access_log else logging.WARNING)
    # uvicorn's own loggers propagate to the root handler (log_config=None leaves them bare).
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def configure_from(settings) -> None:
    configure(
        settings.log_level,
        settings.log_format,
        secrets=secrets_of(settings),
        access_log=access_log_enabled(settings),
    )


def access_log_enabled(settings) -> bool:
    return settings.access_log or settings.log_level == "debug"
