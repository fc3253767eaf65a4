"""HTML forms generated from JSON schemas, and the submitted form parsed back into typed values.

Two kinds of schema feed it: a deployment's ``parameter_openapi_schema`` (what the SDK's
``parameter_schema`` makes of a flow's signature) and a block schema's ``fields``. Both are
Prefect's dialect of JSON schema: ``$ref`` into ``definitions`` (pydantic models, enums and,
for blocks, nested block types that carry ``block_type_slug``), ``allOf`` of one ``$ref``
(pydantic v1 style), ``anyOf`` with ``{"type": "null"}`` for optional values, ``position``
for the order of the fields.

``build(schema)`` turns the schema into a tree of ``Field``; the template macro in
``_admin_schema_form.html`` renders it; ``parse(fields, form)`` reads the POSTed strings back
into the JSON value the schema describes, with one message per field that is wrong:

- strings, numbers, integers, booleans (a checkbox, or a three-way select when null is
  allowed), enums (a select), date-times (text, ISO 8601);
- arrays, free-form objects and unions of several kinds: JSON in a text area (a union that
  allows a string also takes plain text that is not JSON);
- objects with known properties: flattened, one input per property under a dotted name
  (``inner.a``), up to ``MAX_DEPTH`` levels, JSON below that;
- nested blocks: a select of the saved documents of that block type (sent as
  ``{"$ref": {"block_document_id": …}}``, as the SDK sends them);
- secrets (``format: password``, ``writeOnly``, or a path in the block schema's
  ``secret_fields``, where ``*`` matches every key): a password input that is never given a
  value; an empty one keeps the stored value (the caller passes it as ``stored``). A
  free-form object whose keys are all secret (``secrets.*``) is shown as JSON with its values
  masked as ``********``, which the block update keeps (db.blocks).

A field left empty is *missing* (the flow's or the block's default applies); a required one
that is missing is an error. ``validate`` then checks the whole value against the schema
(jsonschema, as db.deployments does for runs) and puts each message by its field.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
import re
from dataclasses import dataclass, field

import orjson

MISSING = object()
MAX_DEPTH = 3
FORM_PREFIX = "f."
KEEP = "__keep__"  # the select value of a nested block that is stored inline (not as a reference)
OBFUSCATED = "********"
FORM_ERROR = "_form"

JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number"}
INTEGER_TEXT = re.compile(r"^[+-]?\d+$")


class SchemaFormError(ValueError):
    """A schema this module cannot make a form of (it is then shown as JSON)."""


@dataclass
class Field:
    path: str
    label: str
    kind: str  # string | datetime | secret | integer | number | boolean | tristate | enum | json | object | block
    required: bool = False
    description: str | None = None
    default: object = MISSING
    nullable: bool = False
    options: list = field(default_factory=list)  # enum values
    json_types: tuple[str, ...] = ()  # json: the JSON types allowed (empty: any)
    multiline: bool = True  # json: a text area (else one line)
    masked_keys: bool = False  # json: its values are secrets, shown as ********
    block_types: tuple[str, ...] = ()  # block: the slugs whose documents may be chosen
    constraints: dict = field(default_factory=dict)
    children: list[Field] = field(default_factory=list)

    @property
    def name(self) -> str:
        return FORM_PREFIX + self.path

    @property
    def id(self) -> str:
        return "f_" + re.sub(r"[^A-Za-z0-9_-]", "_", self.path.replace(".", "__"))

    @property
    def has_default(self) -> bool:
        return self.default is not MISSING

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()


# --- schema -> fields ---------------------------------------------------------------------------


def _definitions(schema: dict) -> dict:
    defs = schema.get("definitions") or schema.get("$defs") or {}
    return defs if isinstance(defs, dict) else {}


def _ref_target(ref: str, defs: dict) -> dict | None:
    for prefix in ("#/definitions/", "#/$defs/"):
        if isinstance(ref, str) and ref.startswith(prefix):
            target = defs.get(ref[len(prefix):])
            return target if isinstance(target, dict) else None
    return None


def _resolve(node: dict, defs: dict, depth: int = 0) -> dict:
    """``node`` with ``$ref`` / single ``allOf`` inlined (its own keys win), down to a block
    definition (kept whole: it becomes a select of documents) or a plain schema."""
    if depth > 20 or not isinstance(node, dict):
        return node if isinstance(node, dict) else {}
    if "$ref" in node:
        target = _ref_target(node["$ref"], defs)
        rest = {k: v for k, v in node.items() if k != "$ref"}
        if target is None:
            return rest
        if "block_type_slug" in target:
            return {**rest, "__block__": (target["block_type_slug"],), "__block_schema__": target}
        return _resolve({**target, **rest}, defs, depth + 1)
    if isinstance(node.get("allOf"), list) and len(node["allOf"]) == 1:
        rest = {k: v for k, v in node.items() if k != "allOf"}
        inner = _resolve(node["allOf"][0], defs, depth + 1)
        return {**inner, **rest}
    return node


def _types(node: dict) -> list[str]:
    kind = node.get("type")
    if isinstance(kind, list):
        return [str(k) for k in kind]
    return [kind] if isinstance(kind, str) else []


def _is_secret_node(node: dict) -> bool:
    return node.get("format") == "password" or node.get("writeOnly") is True


def _path_matches(path: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    return len(path) == len(pattern) and all(p == "*" or p == k for k, p in zip(path, pattern, strict=True))


def _secret_kind(path: str, secret_paths: list[tuple[str, ...]]) -> str | None:
    """'leaf' when ``path`` is a secret field, 'keys' when every key under it is secret."""
    parts = tuple(path.split("."))
    for pattern in secret_paths:
        if _path_matches(parts, pattern):
            return "leaf"
        if len(pattern) == len(parts) + 1 and pattern[-1] == "*" and _path_matches(parts, pattern[:-1]):
            return "keys"
    return None


CONSTRAINT_KEYS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "pattern",
                   "multipleOf")


def _field(path: str, key: str, raw: dict, defs: dict, required: bool, secret_paths, depth: int) -> Field:
    node = _resolve(raw, defs)
    label = str(node.get("title") or key)
    description = node.get("description") if isinstance(node.get("description"), str) else None
    base = {"path": path, "label": label, "required": required, "description": description}
    if "default" in node:
        base["default"] = copy.deepcopy(node["default"])
    secret = _is_secret_node(node)

    branches = node.get("anyOf") or node.get("oneOf")
    nullable = False
    if isinstance(branches, list) and branches:
        resolved = [_resolve(b, defs) for b in branches if isinstance(b, dict)]
        nullable = any(_types(b) == ["null"] for b in resolved)
        rest = [b for b in resolved if _types(b) != ["null"]]
        secret = secret or any(_is_secret_node(b) for b in rest)
        if rest and all("__block__" in b for b in rest):
            slugs = tuple(s for b in rest for s in b["__block__"])
            return Field(kind="block", block_types=slugs, nullable=nullable, **base)
        if len(rest) == 1:
            outer = {k: v for k, v in node.items() if k not in ("anyOf", "oneOf")}
            node = {**rest[0], **outer}
        elif rest:
            if secret:
                return Field(kind="secret", nullable=nullable, **base)
            types = sorted({t for b in rest for t in (_types(b) or ["any"])})
            if "any" in types:
                types = []
            scalar_only = bool(types) and not {"object", "array"} & set(types)
            return Field(kind="json", json_types=tuple(types), multiline=not scalar_only, nullable=nullable, **base)

    if "__block__" in node:
        return Field(kind="block", block_types=tuple(node["__block__"]), nullable=nullable, **base)
    types = [t for t in _types(node) if t != "null"]
    nullable = nullable or "null" in _types(node)
    constraints = {k: node[k] for k in CONSTRAINT_KEYS if k in node}
    where = _secret_kind(path, secret_paths)
    if secret or where == "leaf":
        return Field(kind="secret", nullable=nullable, constraints=constraints, **base)
    if isinstance(node.get("enum"), list) and node["enum"]:
        options = list(node["enum"])
        return Field(kind="enum", options=[o for o in options if o is not None],
                     nullable=nullable or None in options, **base)
    kind = types[0] if len(types) == 1 else None
    if kind == "string":
        fmt = node.get("format")
        return Field(kind="datetime" if fmt == "date-time" else "string", nullable=nullable,
                     constraints=constraints, **base)
    if kind in ("integer", "number"):
        return Field(kind=kind, nullable=nullable, constraints=constraints, **base)
    if kind == "boolean":
        return Field(kind="tristate" if nullable else "boolean", nullable=nullable, **base)
    properties = node.get("properties")
    if kind in ("object", None) and isinstance(properties, dict) and properties and depth < MAX_DEPTH \
            and where is None:
        wanted = set(node.get("required") or [])
        children = [
            _field(f"{path}.{name}", name, sub, defs, name in wanted, secret_paths, depth + 1)
            for name, sub in _ordered(properties)
        ]
        return Field(kind="object", nullable=nullable, children=children, **base)
    json_types = tuple(types) if types else ()
    return Field(kind="json", json_types=json_types, nullable=nullable, masked_keys=where == "keys",
                 multiline=not (json_types and not {"object", "array"} & set(json_types)), **base)


def _ordered(properties: dict) -> list[tuple[str, dict]]:
    items = [(k, v if isinstance(v, dict) else {}) for k, v in properties.items()]
    # Prefect's ``position`` (the order of the signature / the block's fields) first.
    return sorted(items, key=lambda kv: (kv[1].get("position", math.inf) if isinstance(
        kv[1].get("position"), int | float) else math.inf))


def build(schema: dict | None, secret_fields=None) -> list[Field]:
    """The fields of ``schema`` (an object schema) in display order; [] when it has none."""
    if not isinstance(schema, dict):
        return []
    defs = _definitions(schema)
    root = _resolve(schema, defs)
    properties = root.get("properties")
    if not isinstance(properties, dict):
        return []
    paths = [tuple(str(p).split(".")) for p in dict.fromkeys(secret_fields or schema.get("secret_fields") or [])]
    wanted = set(root.get("required") or [])
    return [_field(name, name, sub, defs, name in wanted, paths, 1) for name, sub in _ordered(properties)]


def block_fields(fields: list[Field]) -> list[Field]:
    """Every nested-block field (to load the documents its select offers)."""
    return [f for top in fields for f in top.walk() if f.kind == "block"]


def secret_paths(fields: list[Field]) -> list[str]:
    return [f.path for top in fields for f in top.walk() if f.kind == "secret"]


# --- values -> what the inputs show ------------------------------------------------------------


def value_at(data, path: str):
    node = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


def _json_text(value) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def _shown(f: Field, value) -> str | bool:
    if f.kind == "secret" or value is MISSING:
        return False if f.kind == "boolean" else ""
    if f.kind == "boolean":
        return value is True
    if f.kind == "tristate":
        return "" if value is None else ("true" if value else "false")
    if f.kind == "enum":
        return "" if value is None else str(value)
    if f.kind == "block":
        if isinstance(value, dict) and isinstance(value.get("$ref"), dict):
            return str(value["$ref"].get("block_document_id") or "")
        return KEEP if value not in (None, MISSING) else ""
    if value is None:
        return ""
    if f.kind == "json":
        if isinstance(value, str) and "string" in (f.json_types or ("string",)):
            return value
        return _json_text(value)
    if isinstance(value, bool | dict | list):
        return _json_text(value)  # a stored value of another type than the schema says
    return str(value)


def display(fields: list[Field], data: dict | None) -> dict[str, str | bool]:
    """Form name -> what its input shows for ``data`` (defaults where ``data`` has nothing).

    Secrets show nothing whatever ``data`` holds (and the data given here should be the
    masked one anyway: it is rendered into the page)."""
    out: dict[str, str | bool] = {}

    def visit(f: Field, value, use_defaults: bool):
        if value is MISSING and use_defaults and f.has_default:
            value = f.default
        if f.kind != "object":
            out[f.name] = _shown(f, value)
            return
        present = isinstance(value, dict)
        # An optional object without a value: its children do not take their defaults
        # (else it would look filled in, and its required children missing).
        child_defaults = use_defaults and (present or f.required)
        for child in f.children:
            visit(child, value.get(_key(child), MISSING) if present else MISSING, child_defaults)

    for f in fields:
        visit(f, value_at(data or {}, f.path), True)
    return out


def _key(f: Field) -> str:
    return f.path.rsplit(".", 1)[-1]


def echo(fields: list[Field], form: dict) -> dict[str, str | bool]:
    """What the user typed, to re-render a form that failed (secrets are not echoed)."""
    out: dict[str, str | bool] = {}
    for top in fields:
        for f in top.walk():
            if f.kind == "object":
                continue
            raw = _last(form.get(f.name))
            if f.kind == "secret":
                out[f.name] = ""
            elif f.kind == "boolean":
                out[f.name] = raw in ("true", "on", "1")
            else:
                out[f.name] = raw if raw is not None else ""
    return out


# --- the submitted form -> typed values -------------------------------------------------------


def _last(value):
    if isinstance(value, list):
        return value[-1] if value else None
    return value


def _check_number(f: Field, value, errors: dict) -> None:
    c = f.constraints
    if "minimum" in c and value < c["minimum"]:
        errors[f.path] = f"Must be at least {c['minimum']}."
    elif "maximum" in c and value > c["maximum"]:
        errors[f.path] = f"Must be at most {c['maximum']}."
    elif "exclusiveMinimum" in c and not isinstance(c["exclusiveMinimum"], bool) and value <= c["exclusiveMinimum"]:
        errors[f.path] = f"Must be greater than {c['exclusiveMinimum']}."
    elif "exclusiveMaximum" in c and not isinstance(c["exclusiveMaximum"], bool) and value >= c["exclusiveMaximum"]:
        errors[f.path] = f"Must be less than {c['exclusiveMaximum']}."


def _check_string(f: Field, value: str, errors: dict) -> None:
    c = f.constraints
    if "minLength" in c and len(value) < c["minLength"]:
        errors[f.path] = f"Must be at least {c['minLength']} characters."
    elif "maxLength" in c and len(value) > c["maxLength"]:
        errors[f.path] = f"Must be at most {c['maxLength']} characters."
    elif "pattern" in c:
        try:
            if re.search(str(c["pattern"]), value) is None:
                errors[f.path] = f"Must match the pattern {c['pattern']}."
        except re.error:
            pass  # a pattern Python cannot read is not the user's fault


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return JSON_TYPES.get(type(value), "object")


def _type_ok(value, allowed: tuple[str, ...]) -> bool:
    kind = _json_type(value)
    return not allowed or kind in allowed or (kind == "integer" and "number" in allowed)


def _parse_leaf(f: Field, raw, stored, errors: dict):
    """The typed value of one input, or MISSING (empty), recording a message when wrong."""
    if f.kind == "boolean":
        return raw in ("true", "on", "1")
    text = raw if isinstance(raw, str) else ""
    if "\x00" in text:
        errors[f.path] = "Must not contain NUL characters."
        return MISSING
    if f.kind == "secret":
        if text == "":
            kept = value_at(stored, f.path) if stored is not None else MISSING
            return kept if kept not in (MISSING, None) else MISSING
        _check_string(f, text, errors)
        return text
    text = text.strip()
    if text == "":
        return MISSING
    if f.kind in ("string", "datetime"):
        if f.kind == "datetime":
            try:
                dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                errors[f.path] = "Must be a date and time like 2026-01-31T12:00:00Z."
                return MISSING
        _check_string(f, text, errors)
        return text
    if f.kind == "integer":
        if not INTEGER_TEXT.match(text):
            errors[f.path] = "Must be a whole number."
            return MISSING
        value = int(text)
        _check_number(f, value, errors)
        return value
    if f.kind == "number":
        try:
            value = int(text) if INTEGER_TEXT.match(text) else float(text)
        except ValueError:
            errors[f.path] = "Must be a number."
            return MISSING
        if isinstance(value, float) and not math.isfinite(value):
            errors[f.path] = "Must be a finite number."
            return MISSING
        _check_number(f, value, errors)
        return value
    if f.kind == "tristate":
        if text in ("true", "false"):
            return text == "true"
        errors[f.path] = "Must be true or false."
        return MISSING
    if f.kind == "enum":
        for option in f.options:
            if str(option) == text:
                return option
        errors[f.path] = "Must be one of: " + ", ".join(str(o) for o in f.options) + "."
        return MISSING
    if f.kind == "block":
        if text == KEEP:
            kept = value_at(stored, f.path) if stored is not None else MISSING
            return kept if kept is not MISSING else MISSING
        try:
            import uuid

            return {"$ref": {"block_document_id": str(uuid.UUID(text))}}
        except ValueError:
            errors[f.path] = "Choose one of the saved blocks."
            return MISSING
    # json
    allows_text = "string" in f.json_types
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        if allows_text:
            return text
        errors[f.path] = f"Must be valid JSON ({exc.args[0].split(':')[0]})."
        return MISSING
    if not _type_ok(value, f.json_types):
        if allows_text:
            return text
        wanted = " or ".join("a JSON " + t for t in f.json_types)
        errors[f.path] = f"Must be {wanted}."
        return MISSING
    return value


def parse(fields: list[Field], form: dict, stored: dict | None = None) -> tuple[dict, dict[str, str]]:
    """(value, {field path: message}) of a submitted form.

    ``stored`` is the current (decrypted) value when editing: an empty secret input and a
    "keep" block select take their value from it. It is read server-side and never shown."""
    errors: dict[str, str] = {}

    def visit(f: Field):
        if f.kind != "object":
            value = _parse_leaf(f, _last(form.get(f.name)), stored, errors)
            if value is MISSING and f.required and f.path not in errors:
                errors[f.path] = REQUIRED
            return value
        out = {}
        for child in f.children:
            value = visit(child)
            if value is not MISSING:
                out[_key(child)] = value
        inner = [c for c in f.walk() if c is not f]
        filled = any(c.kind != "boolean" and _key(c) in out for c in f.children) or any(
            errors.get(c.path) not in (None, REQUIRED) for c in inner
        )
        if not filled and not f.required:
            # Left empty as a whole: the object is missing, not its required parts.
            for c in inner:
                if errors.get(c.path) == REQUIRED:
                    del errors[c.path]
            return MISSING
        return out

    data = {}
    for f in fields:
        value = visit(f)
        if value is not MISSING:
            data[f.path] = value
    return data, errors


REQUIRED = "Required."


def _blockless(schema: dict) -> dict:
    """``schema`` with nested block definitions accepting anything (their values are
    references to saved documents, which the block API resolves)."""
    out = copy.deepcopy(schema)
    for key in ("definitions", "$defs"):
        defs = out.get(key)
        if isinstance(defs, dict):
            for name, definition in list(defs.items()):
                if isinstance(definition, dict) and "block_type_slug" in definition:
                    defs[name] = {}
    out.pop("block_type_slug", None)
    return out


def validate(schema: dict | None, data: dict, fields: list[Field]) -> dict[str, str]:
    """Messages of jsonschema (as db.deployments.validate_parameters checks runs) by field path;
    what belongs to no field goes under ``FORM_ERROR``."""
    if not isinstance(schema, dict) or not schema:
        return {}
    import jsonschema

    checked = _blockless(schema)
    validator_cls = jsonschema.validators.validator_for(checked, default=jsonschema.Draft202012Validator)
    try:
        found = list(validator_cls(checked).iter_errors(data))
    except (jsonschema.exceptions.SchemaError, jsonschema.exceptions.RefResolutionError):
        return {}  # a schema the SDK produced but jsonschema cannot read is not the user's fault
    known = {f.path for top in fields for f in top.walk()}
    errors: dict[str, str] = {}
    for err in found:
        if err.validator == "required":
            continue  # missing values are reported by parse, next to their inputs
        parts = [str(p) for p in err.absolute_path]
        while parts and ".".join(parts) not in known:
            parts.pop()
        if parts:
            errors.setdefault(".".join(parts), err.message)
        else:
            where = ".".join(str(p) for p in err.absolute_path) or "value"
            errors.setdefault(FORM_ERROR, f"{where}: {err.message}")
    return errors


# --- small helpers the admin forms share ------------------------------------------------------


def text(form: dict, name: str, *, strip: bool = True) -> str:
    """One text input (the last value when sent twice), '' when absent."""
    value = _last(form.get(name))
    value = value if isinstance(value, str) else ""
    return value.strip() if strip else value


def no_nul(values: dict[str, str], errors: dict[str, str]) -> None:
    """PostgreSQL text cannot hold NUL: refuse it by the field instead of failing the write."""
    for name, value in values.items():
        if isinstance(value, str) and "\x00" in value:
            errors[name] = "Must not contain NUL characters."


def tags_list(value: str) -> list[str]:
    """'a, b,,c' -> ['a', 'b', 'c'] (order kept, duplicates dropped)."""
    return list(dict.fromkeys(t.strip() for t in value.split(",") if t.strip()))


def integer(value: str, name: str, errors: dict, *, minimum: int | None = None, maximum: int = 2**31 - 1,
            required: bool = True) -> int | None:
    if value == "":
        if required:
            errors[name] = REQUIRED
        return None
    if not INTEGER_TEXT.match(value):
        errors[name] = "Must be a whole number."
        return None
    number = int(value)
    if minimum is not None and number < minimum:
        errors[name] = f"Must be at least {minimum}."
    elif number > maximum:
        errors[name] = f"Must be at most {maximum}."
    return number


def decimal(value: str, name: str, errors: dict, *, minimum: float = 0.0, maximum: float = 1e9) -> float | None:
    if value == "":
        return None
    try:
        number = float(value)
    except ValueError:
        errors[name] = "Must be a number."
        return None
    if not math.isfinite(number) or number < minimum or number > maximum:
        errors[name] = f"Must be between {minimum:g} and {maximum:g}."
        return None
    return number
