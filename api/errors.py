"""Every HTTP error the API answers is raised from here, with Prefect's body shapes.

- ``ApiError(status, detail)`` -> ``{"detail": ...}`` (404, 409, 403, 423 ...).
- ``ValidationFailed`` -> 422 ``{"exception_message", "exception_detail", "request_body", "detail"}``
  (Prefect's shape, which clients print; ``detail`` names the field for people).
- Transient database errors -> 503 ``{"exception_message": "Service Unavailable"}`` + Retry-After,
  which the Prefect client retries transparently.
- Anything else -> a logged 500 ``{"exception_message": "Internal Server Error"}``.
"""

from __future__ import annotations

import logging

import falcon
import orjson
import peewee
from pydantic import ValidationError

from appliance import metrics
from db.database import is_transient
from db.fields import dumps

log = logging.getLogger("appliance.api")


class ApiError(Exception):
    def __init__(self, status: int, detail, headers: dict | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


class ValidationFailed(Exception):
    def __init__(self, errors: list[dict], body=None, message: str | None = None):
        super().__init__(message or "Invalid request received.")
        self.errors = errors
        self.body = body
        self.message = message


def not_found(what: str = "Not Found") -> ApiError:
    return ApiError(404, what)


def conflict(detail: str) -> ApiError:
    return ApiError(409, detail)


def invalid(field: str, msg: str, value=None, body=None, loc_root: str = "body") -> ValidationFailed:
    """A 422 for one bad field (``field`` dotted, e.g. ``"state.type"``)."""
    loc = [loc_root, *[int(p) if p.isdigit() else p for p in field.split(".")]] if field else [loc_root]
    return ValidationFailed([{"type": "value_error", "loc": loc, "msg": msg, "input": value}], body)


def from_pydantic(exc: ValidationError, body=None) -> ValidationFailed:
    errors = []
    for err in exc.errors(include_url=False):
        item = {"type": err["type"], "loc": ["body", *err["loc"]], "msg": err["msg"], "input": err.get("input")}
        if "ctx" in err:
            item["ctx"] = {k: str(v) for k, v in err["ctx"].items()}
        errors.append(item)
    return ValidationFailed(errors, body)


def _describe(errors: list[dict]) -> str:
    parts = []
    for err in errors[:5]:
        where = ".".join(str(p) for p in err["loc"][1:]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def _write(resp, status: int, body, headers: dict | None = None) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = dumps(body).encode() if not isinstance(body, bytes) else body
    for key, value in (headers or {}).items():
        resp.set_header(key, value)


async def handle_api_error(req, resp, ex: ApiError, params, ws=None):
    if ws is not None:
        await ws.close(1008)
        return
    _write(resp, ex.status, {"detail": ex.detail}, ex.headers)


async def handle_validation(req, resp, ex: ValidationFailed, params, ws=None):
    if ws is not None:
        await ws.close(1002)
        return
    detail = ex.message or _describe(ex.errors)
    _write(
        resp,
        422,
        {
            "exception_message": "Invalid request received.",
            "exception_detail": _safe(ex.errors),
            "request_body": _safe(ex.body),
            "detail": detail,
        },
    )


def _safe(value):
    """Make validation error payloads JSON-serialisable whatever they echo."""
    try:
        orjson.dumps(value, option=orjson.OPT_NAIVE_UTC)
        return value
    except TypeError:
        return orjson.loads(orjson.dumps(value, default=str, option=orjson.OPT_NAIVE_UTC))


async def handle_pydantic(req, resp, ex: ValidationError, params, ws=None):
    await handle_validation(req, resp, from_pydantic(ex), params, ws)


async def handle_http_error(req, resp, ex: falcon.HTTPError, params, ws=None):
    if ws is not None:
        await ws.close(ex.status_code if 3000 <= ex.status_code < 5000 else 1011)
        return
    status = ex.status_code
    detail = ex.description or ex.title
    if status == 404:
        detail = ex.description or "Not Found"
    body = {"detail": detail}
    if status == 401:
        body = {"exception_message": "Unauthorized"}
    _write(resp, status, body, dict(ex.headers or {}))


async def handle_unexpected(req, resp, ex: Exception, params, ws=None):
    if isinstance(ex, peewee.DatabaseError) and is_transient(ex):
        log.warning("transient database error on %s %s: %s", req.method, req.path, ex)
        metrics.record_db_busy("answered_503")
        if ws is not None:
            await ws.close(1011)
            return
        _write(resp, 503, {"exception_message": "Service Unavailable"}, {"Retry-After": "1"})
        return
    if isinstance(ex, peewee.IntegrityError):
        log.info("integrity error on %s %s: %s", req.method, req.path, ex)
        _write(resp, 409, {"detail": f"Data integrity conflict. {str(ex).splitlines()[0] if str(ex) else ''}".strip()})
        return
    log.exception("unexpected error on %s %s", req.method, req.path)
    if ws is not None:
        await ws.close(1011)
        return
    _write(resp, 500, {"exception_message": "Internal Server Error"})


def install(app) -> None:
    # Falcon picks the handler of the most specific exception class.
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(falcon.HTTPError, handle_http_error)
    app.add_error_handler(ApiError, handle_api_error)
    app.add_error_handler(ValidationFailed, handle_validation)
    app.add_error_handler(ValidationError, handle_pydantic)
