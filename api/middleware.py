"""Request middleware: basic auth and the Prefect API-version header check."""

from __future__ import annotations

import base64
import hmac

import falcon

from api.errors import ApiError

OPEN_PATHS = ("/health", "/ready")


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
            raise falcon.HTTPUnauthorized()

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
