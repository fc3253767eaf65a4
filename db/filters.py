"""The filter grammar of Prefect's `/…/filter` and `/…/count` bodies as Peewee expressions.

One builder serves every entity: an entity is described by a table of its filterable
fields (``FieldSpec``: the column and the kind of value) and of the other entities it
can be joined to. ``where_for(entity, body)`` turns a whole request body (the entity's
own filter plus cross-entity filters such as ``flows`` on ``/flow_runs/filter``) into
one condition. Unknown operators and wrongly typed values raise ``FilterError`` naming
the offending path; explicit ``null`` anywhere means "no constraint".
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from functools import reduce

import peewee as pw

from db import database as dbmod
from db.fields import dumps
from db.states import STATE_TYPES, parse_datetime

MAX_LIMIT = 200


class FilterError(ValueError):
    def __init__(self, path: str, message: str, value=None):
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message
        self.value = value


@dataclass
class FieldSpec:
    column: object  # a Peewee field, or a callable(model) for computed conditions
    kind: str  # uuid | text | datetime | tags | int | bool | state | enum | custom
    ops: tuple = ()
    custom: object = None  # callable(value, path) -> expression, for kind == "custom"


@dataclass
class Entity:
    name: str
    model: type
    fields: dict
    # other entity name -> callable(subquery-condition) -> expression on this model
    links: dict = field(default_factory=dict)


def _and(parts):
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    return reduce(lambda a, b: a & b, parts)


def _or(parts):
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    return reduce(lambda a, b: a | b, parts)


NOTHING = pw.SQL("1 = 0")


def _list(value, path):
    if not isinstance(value, list):
        raise FilterError(path, "Input should be a valid list", value)
    return value


def _uuid(value, path):
    try:
        return str(uuid.UUID(str(value)))
    except (ValueError, TypeError, AttributeError):
        raise FilterError(path, "Input should be a valid UUID", value) from None


def _text(value, path):
    if not isinstance(value, str):
        raise FilterError(path, "Input should be a valid string", value)
    return value


def _dt(value, path):
    try:
        return parse_datetime(value)
    except (ValueError, TypeError):
        raise FilterError(path, "Input should be a valid datetime", value) from None


def _bool(value, path):
    if not isinstance(value, bool):
        raise FilterError(path, "Input should be a valid boolean", value)
    return value


def _int(value, path):
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FilterError(path, "Input should be a valid integer", value)
    return value


def _state_type(value, path):
    if value not in STATE_TYPES:
        raise FilterError(path, f"Input should be one of {', '.join(STATE_TYPES)}", value)
    return value


def json_contains(column, value):
    """JSON array column contains ``value``."""
    if dbmod.is_postgres():
        return pw.NodeList((column, pw.SQL("@>"), pw.Cast(pw.Value(dumps([value])), "jsonb")))
    return pw.NodeList(
        (pw.SQL("EXISTS (SELECT 1 FROM json_each("), column, pw.SQL(") WHERE value ="), pw.Value(value), pw.SQL(")")),
        glue=" ",
    )


def json_array_empty(column):
    func = "jsonb_array_length" if dbmod.is_postgres() else "json_array_length"
    return pw.fn.COALESCE(pw.Function(func, (column,)), 0) == 0


def _scalar_ops(column, kind, ops: dict, path: str):
    conv = {"uuid": _uuid, "text": _text, "datetime": _dt, "int": _int, "bool": _bool, "state_type": _state_type}[kind]
    parts = []
    for op, value in ops.items():
        if value is None or op == "operator":
            continue
        p = f"{path}.{op}"
        if op == "any_":
            items = [conv(v, f"{p}.{i}") for i, v in enumerate(_list(value, p))]
            parts.append(column.in_(items) if items else NOTHING)
        elif op == "not_any_":
            items = [conv(v, f"{p}.{i}") for i, v in enumerate(_list(value, p))]
            if items:  # SQL NOT IN, as Prefect: rows whose column is NULL do not match
                parts.append(column.not_in(items))
        elif op == "like_":
            parts.append(column ** f"%{_text(value, p)}%")
        elif op == "startswith_":
            items = [_text(v, f"{p}.{i}") for i, v in enumerate(_list(value, p))]
            parts.append(_or([column.startswith(v) for v in items]) or NOTHING)
        elif op == "eq_":
            parts.append(column == conv(value, p))
        elif op == "ge_":
            parts.append(column >= conv(value, p))
        elif op == "le_":
            parts.append(column <= conv(value, p))
        elif op == "before_":
            parts.append(column <= _dt(value, p))
        elif op == "after_":
            parts.append(column >= _dt(value, p))
        elif op == "is_null_":
            parts.append(column.is_null() if _bool(value, p) else column.is_null(False))
        else:
            raise FilterError(p, f"unknown filter operator {op!r}", value)
    return _combine(ops, parts, path)


def _combine(ops: dict, parts, path):
    operator = ops.get("operator") or "and_"
    if operator not in ("and_", "or_"):
        raise FilterError(f"{path}.operator", "Input should be 'and_' or 'or_'", operator)
    return _or(parts) if operator == "or_" else _and(parts)


def _tags_ops(column, ops: dict, path: str):
    parts = []
    for op, value in ops.items():
        if value is None or op == "operator":
            continue
        p = f"{path}.{op}"
        if op == "all_":
            items = [_text(v, f"{p}.{i}") for i, v in enumerate(_list(value, p))]
            parts.append(_and([json_contains(column, t) for t in items]))
        elif op == "any_":
            items = [_text(v, f"{p}.{i}") for i, v in enumerate(_list(value, p))]
            parts.append(_or([json_contains(column, t) for t in items]) or NOTHING)
        elif op == "is_null_":
            empty = json_array_empty(column)
            parts.append(empty if _bool(value, p) else ~empty)
        else:
            raise FilterError(p, f"unknown filter operator {op!r}", value)
    return _combine(ops, parts, path)


def _state_ops(model, ops: dict, path: str):
    parts = []
    for key, sub in ops.items():
        if sub is None or key == "operator":
            continue
        p = f"{path}.{key}"
        if not isinstance(sub, dict):
            raise FilterError(p, "Input should be a valid dictionary", sub)
        if key == "type":
            parts.append(_scalar_ops(model.state_type, "state_type", sub, p))
        elif key == "name":
            parts.append(_scalar_ops(model.state_name, "text", sub, p))
        else:
            raise FilterError(p, f"unknown state filter {key!r}", sub)
    return _combine(ops, parts, path)


def entity_condition(entity: Entity, body, path: str):
    """The condition of one entity filter object (e.g. the value of ``flow_runs``)."""
    if body is None:
        return None
    if not isinstance(body, dict):
        raise FilterError(path, "Input should be a valid dictionary", body)
    parts = []
    for key, ops in body.items():
        if ops is None or key == "operator":
            continue
        p = f"{path}.{key}"
        spec = entity.fields.get(key)
        if spec is None:
            raise FilterError(p, f"unknown filter field {key!r} for {entity.name}", ops)
        if not isinstance(ops, dict):
            raise FilterError(p, "Input should be a valid dictionary", ops)
        if spec.kind == "tags":
            parts.append(_tags_ops(spec.column, ops, p))
        elif spec.kind == "state":
            parts.append(_state_ops(entity.model, ops, p))
        elif spec.kind == "custom":
            parts.append(spec.custom(ops, p))
        else:
            parts.append(_scalar_ops(spec.column, spec.kind, ops, p))
    return _combine(body, parts, path)


REGISTRY: dict[str, Entity] = {}


def register(entity: Entity) -> Entity:
    REGISTRY[entity.name] = entity
    return entity


def where_for(entity_name: str, body: dict, keys=None):
    """The condition for a whole filter request body on ``entity_name``.

    ``keys`` lists the top-level keys this endpoint accepts (others are ignored, as the
    real server does for unknown body fields).
    """
    entity = REGISTRY[entity_name]
    parts = []
    for key, value in body.items():
        if value is None or (keys is not None and key not in keys):
            continue
        if key == entity_name:
            parts.append(entity_condition(entity, value, key))
        elif key in entity.links:
            other = REGISTRY.get(key)
            if other is None:
                continue
            cond = entity_condition(other, value, key)
            if cond is not None:
                parts.append(entity.links[key](cond))
    return _and(parts)


def paging(body: dict, default_limit: int = MAX_LIMIT, max_limit: int = MAX_LIMIT) -> tuple[int, int]:
    limit = body.get("limit")
    offset = body.get("offset")
    if limit is None:
        limit = default_limit
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise FilterError("limit", "Input should be a valid integer", limit)
    if limit > max_limit:
        raise FilterError("limit", f"Invalid limit: must be less than or equal to {max_limit}.", limit)
    if limit < 0:
        raise FilterError("limit", "Invalid limit: must be greater than or equal to 0.", limit)
    if offset is None:
        offset = 0
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise FilterError("offset", "Input should be an integer greater than or equal to 0", offset)
    return limit, offset


def sort_for(sorts: dict, value, default: str, path: str = "sort"):
    if value is None:
        value = default
    if value not in sorts:
        raise FilterError(path, f"Input should be one of {', '.join(sorts)}", value)
    return sorts[value]
