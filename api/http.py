"""Small request/response helpers shared by every resource module."""

from __future__ import annotations

from typing import TypeVar

import falcon
import orjson
from pydantic import BaseModel, ValidationError

from api.errors import ValidationFailed, from_pydantic
from db.fields import dumps

_MISSING = object()
M = TypeVar("M", bound=BaseModel)


async def read_json(req, default=_MISSING):
    """The request body parsed as JSON (``default`` when empty); malformed -> 422."""
    raw = await req.stream.read()
    if not raw or not raw.strip():
        if default is _MISSING:
            raise ValidationFailed(
                [{"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}],
                None,
                "request body is required",
            )
        return default
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValidationFailed(
            [{"type": "json_invalid", "loc": ["body", exc.pos], "msg": f"JSON decode error: {exc.msg}", "input": {}}],
            raw[:1000].decode(errors="replace"),
            f"malformed JSON body: {exc.msg} at position {exc.pos}",
        ) from None


async def read_model(req, model: type[M], default=_MISSING) -> M:
    """The request body validated by a pydantic model (``{}`` when empty, if allowed)."""
    body = await read_json(req, {} if default is _MISSING else default)
    if body is None:
        body = {}
    return parse(model, body)


def parse(model: type[M], body) -> M:
    refuse_nul(body)
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise from_pydantic(exc, body) from None


def _nul_path(value) -> list | None:
    """Where in a parsed JSON value a string (or key) holds a NUL character, or None."""
    if isinstance(value, str):
        return [] if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                return [key]
            path = _nul_path(item)
            if path is not None:
                return [key, *path]
    elif isinstance(value, list):
        for index, item in enumerate(value):
            path = _nul_path(item)
            if path is not None:
                return [index, *path]
    return None


def refuse_nul(body) -> None:
    """422 for a NUL (0x00) character anywhere in a body: PostgreSQL cannot store one in
    text or JSON, so both backends refuse it up front instead of failing mid-write."""
    path = _nul_path(body)
    if path is not None:
        where = ".".join(str(p) for p in path) or "body"
        raise ValidationFailed(
            [{"type": "string_nul", "loc": ["body", *path], "msg": "String should not contain NUL (0x00) characters"}],
            body,
            f"{where}: String should not contain NUL (0x00) characters",
        )


def send(resp, body, status: int = 200) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = dumps(body).encode()


def send_raw(resp, data: bytes, status: int = 200) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = data


def no_content(resp, status: int = 204) -> None:
    resp.status = status
    resp.data = b""


def query_bool(req, name: str, default: bool = False) -> bool:
    value = req.get_param(name)
    if value is None:
        return default
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise ValidationFailed(
        [{"type": "bool_parsing", "loc": ["query", name], "msg": "Input should be a valid boolean", "input": value}],
        None,
    )
