"""Variables: named JSON values (Prefect's ``Variable``), with the server's validation rules.

The rules live here so the API and the tests share them: a name is lowercase letters,
digits, dashes and underscores, at most 255 characters; a value is any JSON whose
serialisation is at most 5000 characters; names are unique (409 on a duplicate).
"""

from __future__ import annotations

import re

import orjson
import peewee as pw

from db.fields import new_id, utcnow
from db.filters import Entity, FieldSpec, register
from db.models_variables import Variable

MAX_NAME_LENGTH = 255
MAX_VALUE_LENGTH = 5000
NAME_PATTERN = re.compile(r"^[a-z0-9_-]*$")

NAME_RULE = "Variable name must only contain lowercase letters, numbers, and dashes or underscores."
VALUE_RULE = f"Variable value must be less than {MAX_VALUE_LENGTH} characters"

SORTS = {
    "CREATED_DESC": [Variable.created.desc(), Variable.id.desc()],
    "UPDATED_DESC": [Variable.updated.desc(), Variable.id.desc()],
    "NAME_DESC": [Variable.name.desc()],
    "NAME_ASC": [Variable.name.asc()],
}

VARIABLES = register(
    Entity(
        "variables",
        Variable,
        {
            "id": FieldSpec(Variable.id, "uuid"),
            "name": FieldSpec(Variable.name, "text"),
            "tags": FieldSpec(Variable.tags, "tags"),
        },
    )
)


class NotFound(LookupError):
    pass


class Conflict(ValueError):
    pass


def check_name(name: str) -> str:
    """The name if valid, else ValueError with Prefect's message."""
    if not NAME_PATTERN.match(name):
        raise ValueError(NAME_RULE)
    return name


def check_value(value):
    """The value if it serialises to at most 5000 JSON characters, else ValueError."""
    try:
        text = orjson.dumps(value)
    except TypeError:
        raise ValueError("Variable value must be serializable to JSON") from None
    if value is not None and len(text) > MAX_VALUE_LENGTH:
        raise ValueError(VALUE_RULE)
    return value


def _duplicate(name: str) -> Conflict:
    return Conflict(f"A variable with the name {name!r} already exists.")


def _where(variable_id: str | None = None, name: str | None = None):
    return (Variable.id == variable_id) if variable_id is not None else (Variable.name == name)


def create_variable(name: str, value, tags: list[str]) -> dict:
    if Variable.select(Variable.id).where(Variable.name == name).exists():
        raise _duplicate(name)
    now = utcnow()
    row = {"id": new_id(), "created": now, "updated": now, "name": name, "value": value, "tags": tags}
    try:
        Variable.insert(row).execute()
    except pw.IntegrityError:  # created by another process since the check
        raise _duplicate(name) from None
    return row


def read_variable(variable_id: str | None = None, name: str | None = None) -> dict | None:
    return Variable.select().where(_where(variable_id, name)).dicts().first()


def update_variable(changes: dict, variable_id: str | None = None, name: str | None = None) -> None:
    """Apply the keys present in ``changes`` (name, value, tags); NotFound / Conflict."""
    current = Variable.select(Variable.id, Variable.name).where(_where(variable_id, name)).dicts().first()
    if current is None:
        raise NotFound("Variable not found.")
    values = {k: changes[k] for k in ("name", "value", "tags") if k in changes}
    new_name = values.get("name")
    if new_name is not None and new_name != current["name"]:
        if Variable.select(Variable.id).where(Variable.name == new_name).exists():
            raise _duplicate(new_name)
    values["updated"] = utcnow()
    try:
        Variable.update(values).where(Variable.id == current["id"]).execute()
    except pw.IntegrityError:
        raise _duplicate(new_name) from None


def delete_variable(variable_id: str | None = None, name: str | None = None) -> None:
    if not Variable.delete().where(_where(variable_id, name)).execute():
        raise NotFound("Variable not found.")
