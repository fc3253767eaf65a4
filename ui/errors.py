"""Errors on console pages answer HTML; the same errors under the API prefix keep answering
the API's JSON (api.errors). ``PageError(status, message)`` is what page code raises."""

from __future__ import annotations

import logging

import falcon

from api import errors as api_errors

log = logging.getLogger("appliance.ui")


class PageError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def install(app, api_prefix: str) -> None:
    def is_api(req) -> bool:
        # Under the API prefix, or a client that did not ask for HTML (curl, the SDK, a
        # probe with no Accept header): the API's JSON error. Browsers ask for text/html.
        if api_prefix and (req.path == api_prefix or req.path.startswith(api_prefix + "/")):
            return True
        return req.client_prefers(["application/json", "text/html"]) != "text/html"

    def page(req, resp, status: int, message: str) -> None:
        from ui.render import render

        render(req, resp, "error.html", status=status, status_code=status, message=message)

    async def on_page_error(req, resp, ex: PageError, params, ws=None):
        page(req, resp, ex.status, ex.message)

    async def on_http_error(req, resp, ex: falcon.HTTPError, params, ws=None):
        if ws is not None or is_api(req):
            await api_errors.handle_http_error(req, resp, ex, params, ws)
            return
        if ex.status_code == 401:
            # No page for a browser that has not authenticated: just the challenge.
            resp.status = 401
            resp.set_headers(dict(ex.headers or {}))
            resp.text = "Unauthorized"
            return
        message = ex.description or ("Page not found." if ex.status_code == 404 else ex.title)
        page(req, resp, ex.status_code, message)

    async def on_unexpected(req, resp, ex: Exception, params, ws=None):
        if ws is not None or is_api(req):
            await api_errors.handle_unexpected(req, resp, ex, params, ws)
            return
        log.exception("unexpected error on page %s %s", req.method, req.path)
        page(req, resp, 500, "Something went wrong on the server; the error is in its log.")

    app.add_error_handler(Exception, on_unexpected)
    app.add_error_handler(falcon.HTTPError, on_http_error)
    app.add_error_handler(PageError, on_page_error)
