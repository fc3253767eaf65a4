"""Shared plumbing of the /filter, /count and /paginate endpoints."""

from __future__ import annotations

import math

from api.errors import ValidationFailed, invalid
from api.http import read_json, refuse_nul
from db.filters import MAX_LIMIT, FilterError, paging, sort_for, where_for


def filter_failed(exc: FilterError, body) -> ValidationFailed:
    if exc.path in ("limit", "offset") and exc.message.startswith("Invalid limit"):
        return ValidationFailed(
            [{"type": "value_error", "loc": ["body", exc.path], "msg": exc.message, "input": exc.value}],
            body,
            exc.message,
        )
    return invalid(exc.path, exc.message, exc.value, body)


async def read_filter_body(req) -> dict:
    body = await read_json(req, {})
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise invalid("", "Input should be a valid dictionary", body, body)
    refuse_nul(body)
    return body


def build_query(model, entity: str, body: dict, keys, sorts: dict | None = None, default_sort: str | None = None,
                *, paginate: bool = False, default_limit: int = MAX_LIMIT):
    """(select query with where/sort/limit/offset, limit, page) for a filter body; 422 on bad input."""
    try:
        where = where_for(entity, body, keys)
        query = model.select()
        if where is not None:
            query = query.where(where)
        if sorts is not None:
            query = query.order_by(*sort_for(sorts, body.get("sort"), default_sort))
        if paginate:
            limit, _ = paging({"limit": body.get("limit")}, default_limit)
            page = body.get("page")
            page = 1 if page is None else page  # 0 is an error, not the default
            if isinstance(page, bool) or not isinstance(page, int) or page < 1:
                raise FilterError("page", "Input should be an integer greater than or equal to 1", page)
            return query.limit(limit).offset((page - 1) * limit), limit, page
        limit, offset = paging(body, default_limit)
        return query.limit(limit).offset(offset), limit, None
    except FilterError as exc:
        raise filter_failed(exc, body) from None


def count_query(model, entity: str, body: dict, keys):
    try:
        where = where_for(entity, body, keys)
    except FilterError as exc:
        raise filter_failed(exc, body) from None
    query = model.select()
    if where is not None:
        query = query.where(where)
    return query


def page_body(results: list, count: int, limit: int, page: int) -> dict:
    return {
        "results": results,
        "count": count,
        "limit": limit,
        "pages": math.ceil(count / limit) if limit else 0,
        "page": page,
    }
