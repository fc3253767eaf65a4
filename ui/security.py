"""Security of the console: CSRF tokens for form POSTs and the response headers of every page.

- Basic auth: ``api.middleware.AuthMiddleware`` already guards every path (pages included)
  when APPLIANCE_AUTH_STRING is set; it answers pages with a ``WWW-Authenticate`` challenge
  so a browser asks for the password.
- CSRF: a random token in a ``SameSite=Strict``, HttpOnly cookie, repeated in a hidden form
  field (``csrf_token``) of every form; a POST whose field does not match the cookie is
  refused with 403 (double submit; the cookie cannot be set cross-site).
- Content-Security-Policy: scripts and styles only from this server (no inline script, no
  ``eval``), no frames, no plug-ins, forms post only here.
"""

from __future__ import annotations

import hmac
import secrets

COOKIE = "appliance_csrf"
FIELD = "csrf_token"

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ]
)

PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

_secure_cookie = False


def configure(settings) -> None:
    """Mark the cookie Secure when the console is served over HTTPS (APPLIANCE_UI_URL)."""
    global _secure_cookie
    _secure_cookie = bool(settings.ui_url and settings.ui_url.startswith("https://"))


def csrf_token(req, resp) -> str:
    """This browser's token, set as a cookie on first use."""
    token = req.cookies.get(COOKIE)
    if not token or len(token) != 43:
        token = secrets.token_urlsafe(32)
        resp.set_cookie(
            COOKIE, token, path="/", http_only=True, secure=_secure_cookie, same_site="Strict", max_age=None
        )
    return token


def csrf_ok(req, form: dict) -> bool:
    cookie = req.cookies.get(COOKIE) or ""
    supplied = form.get(FIELD) or ""
    return bool(cookie) and isinstance(supplied, str) and hmac.compare_digest(cookie, supplied)


def page_headers(resp) -> None:
    resp.set_headers(PAGE_HEADERS)
