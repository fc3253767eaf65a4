"""Fixtures of the notifier tests: receivers, a block resolver, runs that change state."""

from __future__ import annotations

import pytest

from tests.notifier.receivers import Receiver


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def blocks(monkeypatch):
    """An in-memory block-document store the notifier resolves through blocks_access."""
    from notifier import blocks_access

    store: dict[str, tuple[str, dict]] = {}
    blocks_access.set_resolver(store.get)
    yield store
    blocks_access.set_resolver(None)


@pytest.fixture
def fast_settings(monkeypatch, tmp_home):
    from appliance import settings as settings_mod

    monkeypatch.setenv("APPLIANCE_HOME", str(tmp_home))
    monkeypatch.setenv("APPLIANCE_NOTIFIER_POLL_INTERVAL", "0.05")
    monkeypatch.setenv("APPLIANCE_NOTIFIER_BACKOFF_BASE_SECONDS", "0.05")
    settings_mod.get_settings.cache_clear()
    yield settings_mod.get_settings()
    settings_mod.get_settings.cache_clear()
