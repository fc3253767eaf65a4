"""Block schema checksums and the stored form of a schema's ``fields`` (Prefect §5.2).

The checksum must equal the client's (``Block._calculate_schema_checksum``) so that a
client saving a block finds its schema by checksum and never registers a duplicate:
``"sha256:" + sha256(json.dumps([[fields], {}], sort_keys=True))`` where ``fields`` has
every ``secret_fields`` key removed at any depth and ``definitions`` reduced to the
non-empty, non-block definitions referenced (transitively) from the rest.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

REF_PREFIX = "#/definitions/"


def _refs(value: Any) -> set[str]:
    """Names of the definitions referenced by ``$ref`` strings anywhere in ``value``."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref" and isinstance(item, str) and item.startswith(REF_PREFIX):
                found.add(item[len(REF_PREFIX):])
            else:
                found |= _refs(item)
    elif isinstance(value, list):
        for item in value:
            found |= _refs(item)
    return found


def _without_key(value: Any, key: str) -> Any:
    if isinstance(value, dict):
        return {k: _without_key(v, key) for k, v in value.items() if k != key}
    if isinstance(value, list):
        return [_without_key(v, key) for v in value]
    return value


def non_block_definitions(fields: dict, definitions: dict) -> dict:
    """The definitions referenced from ``fields`` (transitively) that are non-empty
    objects and not block schemas (those carry ``block_type_slug``)."""
    wanted: dict = {}
    pending = _refs({k: v for k, v in fields.items() if k != "definitions"})
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        definition = definitions.get(name)
        if not isinstance(definition, dict) or not definition or "block_type_slug" in definition:
            continue
        wanted[name] = definition
        pending |= _refs(definition)
    return wanted


def checksum(fields: dict) -> str:
    data = _without_key(copy.deepcopy(fields), "secret_fields")
    definitions = data.get("definitions")
    if isinstance(definitions, dict):
        kept = non_block_definitions(data, definitions)
        if kept:
            data["definitions"] = kept
        else:
            data.pop("definitions")
    encoded = json.dumps([[data], {}], sort_keys=True)
    return "sha256:" + hashlib.sha256(encoded.encode("utf-8")).hexdigest()


def stored_fields(fields: dict) -> dict:
    """``fields`` as the real server stores and returns them: definitions kept only when
    referenced and meaningful (block definitions are kept: Prefect rebuilds them on read)."""
    stored = copy.deepcopy(fields)
    definitions = stored.get("definitions")
    if isinstance(definitions, dict):
        kept = {
            name: d for name, d in definitions.items()
            if isinstance(d, dict) and d and (name in _all_refs(stored) or "block_type_slug" in d)
        }
        if kept:
            stored["definitions"] = kept
        else:
            stored.pop("definitions")
    stored.setdefault("block_schema_references", {})
    return stored


def _all_refs(fields: dict) -> set[str]:
    return _refs({k: v for k, v in fields.items() if k != "definitions"}) | _refs(fields.get("definitions") or {})


def secret_paths(fields: dict) -> list[tuple[str, ...]]:
    """Dotted ``secret_fields`` as key paths (``*`` matches every key at that level)."""
    return [tuple(path.split(".")) for path in dict.fromkeys(fields.get("secret_fields") or [])]
