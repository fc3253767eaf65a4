"""The notifier's one door to block documents: (block type slug, decrypted data).

Reads through db.blocks.read_block_document (decrypted); ``set_resolver`` lets tests
and tools substitute a resolver.
"""

from __future__ import annotations


class BlockUnavailable(LookupError):
    pass


_resolver = None


def set_resolver(fn) -> None:
    global _resolver
    _resolver = fn


def load(block_document_id: str) -> tuple[str, dict]:
    if _resolver is not None:
        found = _resolver(block_document_id)
    else:
        try:
            from db.blocks import read_block_document
        except ImportError as exc:
            raise BlockUnavailable("block documents are not available in this build") from exc
        from db.secrets_crypto import KeyError_

        try:
            found = read_block_document(block_document_id, include_secrets=True)
        except KeyError_ as exc:
            raise BlockUnavailable(str(exc)) from None
        if found is not None and isinstance(found, dict) and "data" in found:
            slug = (found.get("block_type") or {}).get("slug") or found.get("block_type_slug")
            found = (slug, found["data"])
    if not found:
        raise BlockUnavailable(f"block document {block_document_id} not found")
    return found


def exists(block_document_id: str) -> bool | None:
    """True/False when blocks can be read; None when this build cannot tell."""
    try:
        load(block_document_id)
    except BlockUnavailable as exc:
        return None if "not available" in str(exc) else False
    return True
