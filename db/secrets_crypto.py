"""Encryption at rest of block document data (Fernet, from ``cryptography``).

The key never lives in the database, so a database backup alone reveals no secret:
``APPLIANCE_SECRET_KEY`` (one key, or several comma-separated during a roll-out: the
first encrypts, any decrypts), else — on SQLite only — the key file ``HOME/secret.key``
created with mode 0600 on first use. On PostgreSQL several processes must share one key,
so without ``APPLIANCE_SECRET_KEY`` start-up stops and says how to make one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.settings import Settings, get_settings

if TYPE_CHECKING:
    from cryptography.fernet import Fernet, MultiFernet

KEY_FILE = "secret.key"
MAKE_ONE = (
    "generate one with `appliance secrets generate-key` (or python -c \"from cryptography.fernet import "
    "Fernet; print(Fernet.generate_key().decode())\") and give every server and notifier process the same "
    "value in APPLIANCE_SECRET_KEY"
)


class KeyError_(RuntimeError):
    """The encryption key is missing, malformed, or does not open the stored data."""


_settings: Settings | None = None
_cipher: MultiFernet | None = None


def _fernet():
    # Imported on first use (~8 MiB): an API worker needs it only once a block is read or written.
    from cryptography import fernet

    return fernet


def configure(settings: Settings) -> None:
    """Use these settings for the key (the app and the notifier call this at start)."""
    global _settings, _cipher
    _settings, _cipher = settings, None


def _current() -> Settings:
    return _settings or get_settings()


def key_file(settings: Settings) -> Path:
    return settings.home_dir / KEY_FILE


def _parse(keys: str, where: str) -> list[Fernet]:
    parsed = []
    for key in (k.strip() for k in keys.split(",")):
        if not key:
            continue
        try:
            parsed.append(_fernet().Fernet(key.encode()))
        except (ValueError, TypeError):
            raise KeyError_(f"{where} is not a valid Fernet key (32 url-safe base64-encoded bytes); {MAKE_ONE}") from None
    if not parsed:
        raise KeyError_(f"{where} is empty; {MAKE_ONE}")
    return parsed


def _read_or_create_key_file(path: Path) -> str:
    """The SQLite key file, created once (O_EXCL, so two processes starting at once agree)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(generate_key() + "\n")
    return path.read_text().strip()


def load_keys(settings: Settings, *, create: bool = True) -> list[Fernet]:
    if settings.secret_key:
        return _parse(settings.secret_key, "APPLIANCE_SECRET_KEY")
    if settings.effective_database_url.startswith("postgres"):
        raise KeyError_(f"APPLIANCE_SECRET_KEY is not set: on PostgreSQL it is required; {MAKE_ONE}")
    path = key_file(settings)
    if not path.exists() and not create:
        raise KeyError_(f"no encryption key: APPLIANCE_SECRET_KEY is unset and {path} does not exist")
    keys = _parse(_read_or_create_key_file(path), str(path))
    staged = path.with_suffix(".key.new")
    if staged.exists():
        # A rotate-key that died between its commit and replacing the file: the rows are
        # under one of the two keys; decrypt with both until rotate-key is run again.
        keys += _parse(staged.read_text().strip(), str(staged))
    return keys


def cipher() -> MultiFernet:
    global _cipher
    if _cipher is None:
        _cipher = _fernet().MultiFernet(load_keys(_current()))
    return _cipher


def encrypt(plaintext: bytes) -> str:
    return cipher().encrypt(plaintext).decode()


def decrypt(token: str) -> bytes:
    try:
        return cipher().decrypt(token.encode())
    except _fernet().InvalidToken:
        raise KeyError_(
            "the encryption key does not decrypt the stored block documents: APPLIANCE_SECRET_KEY (or the key "
            "file) is not the key they were written with"
        ) from None


def generate_key() -> str:
    return _fernet().Fernet.generate_key().decode()
