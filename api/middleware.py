"""Request middleware: request id, metrics and access line; basic auth; the Prefect
API-version header check."""

from __future__ import annotations

import base64
import hmac
import logging
import os
import re
import time

import falcon

from api.errors import ApiError
from appliance import logging_setup, metrics

access_log = logging.getLogger(logging_setup.ACCESS_LOGGER)
# An incoming X-Request-ID is kept when it is a plain token (no spaces or control
# characters to forge log lines with), else replaced by a fresh one.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}").fullmatch

OPEN_PATHS = ("/health", "/ready")


class RequestObserver:
    """First in the chain, so its process_response runs last and sees the final status:
    gives each HTTP request an id (X-Request-ID, answered back and carried by every log
    record of the request), counts it in the metrics under its route template (never the
    raw path: bounded label values) and writes the access line when asked for.
    Websockets are not HTTP requests here (Falcon calls process_request_ws for them)."""

    def __init__(self, access: bool):
        self.access = access

    async def process_request(self, req, resp):
        req.context.started = time.perf_counter()
        rid = req.get_header("X-Request-ID")
        if rid is None or not _REQUEST_ID(rid):
            rid = os.urandom(16).hex()
        req.context.request_id = rid
        logging_setup.request_id.set(rid)
        resp.set_header("X-Request-ID", rid)
        metrics.in_flight(1)

    async def process_response(self, req, resp, resource, req_succeeded):
        started = req.context.get("started")
        if started is None:
            return
        seconds = time.perf_counter() - started
        status = resp.status_code
        metrics.in_flight(-1)
        metrics.observe_request(req.method, req.uri_template, status, seconds)
        if self.access:
            route = req.uri_template or metrics.UNMATCHED
            ms = round(seconds * 1000, 2)
            # The path without its query string: queries may carry secrets, paths hold ids and names.
            access_log.info(
                "%s %s %s %.2fms", req.method, req.path, status, ms,
                extra={"method": req.method, "route": route, "path": req.path, "status": status, "duration_ms": ms},
            )


class AuthMiddleware:
    """HTTP basic auth against APPLIANCE_AUTH_STRING ('user:pass'), as Prefect's server does.

    /health and /ready stay open for probes. Websockets authenticate in their first
    message instead (see api.websocket), so upgrades pass through here.
    """

    def __init__(self, auth_string: str | None, prefix: str):
        self.expected = auth_string.encode() if auth_string else None
        self.open_paths = {prefix + p for p in OPEN_PATHS}

    async def process_request(self, req, resp):
        if self.expected is None or req.path in self.open_paths:
            return
        header = req.get_header("Authorization") or ""
        scheme, _, value = header.partition(" ")
        try:
            supplied = base64.b64decode(value.strip(), validate=True) if scheme.lower() == "basic" else b""
        except ValueError:
            supplied = b""
        if not supplied or not hmac.compare_digest(supplied, self.expected):
            # The challenge makes a browser ask for the password (console pages); the
            # Prefect client sends its credentials up front and ignores it.
            raise falcon.HTTPUnauthorized(challenges=['Basic realm="appliance", charset="UTF-8"'])

    def token_ok(self, token) -> bool:
        if self.expected is None:
            return True
        return isinstance(token, str) and hmac.compare_digest(token.encode(), self.expected)


class ApiVersionMiddleware:
    """Rejects a malformed or too old X-PREFECT-API-VERSION header (missing = latest)."""

    async def process_request(self, req, resp):
        value = req.get_header("X-PREFECT-API-VERSION")
        if not value:
            return
        parts = value.split(".")
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            raise ApiError(
                400, "Invalid X-PREFECT-API-VERSION header format. Expected header in format 'x.y.z'"
            )
        if tuple(int(p) for p in parts) < (0, 8, 0):
            raise ApiError(400, f"The request specified API version {value} but this server requires 0.8.0 or higher.")
