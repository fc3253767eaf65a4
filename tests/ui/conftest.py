"""Console fixtures: a live `appliance serve` on SQLite with the UI, and Debian's Chromium.

Server-side page tests use falcon.testing on both backends (the ``client`` fixture of
tests/conftest.py); these fixtures are for the browser tests, which follow what a person
does on a real server driven by the real Prefect SDK.
"""

from __future__ import annotations

import httpx
import pytest

from tests import support
from tests.ui import browser

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.fixture
def client(client):
    """The page tests' client asks for HTML, as a browser does (a client that does not gets
    the API's JSON errors on unknown paths)."""
    client._default_headers = {**(client._default_headers or {}), "Accept": BROWSER_ACCEPT}
    return client


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("ui")
    server = support.LiveServer(f"sqlite:///{home / 'appliance.db'}", home, workers=1).start()
    yield server
    code = server.stop()
    assert code == 0, server.log()


@pytest.fixture(scope="module")
def ui_base(ui_server) -> str:
    """http://127.0.0.1:PORT (pages); the API is at ui_server.url."""
    return ui_server.url.rsplit("/api", 1)[0]


@pytest.fixture(scope="module")
def api(ui_server):
    with httpx.Client(base_url=ui_server.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def chromium():
    """One browser per module. Module scope, not session: Playwright's sync API keeps an
    event loop running in this thread while it is open, and falcon.testing (the page tests
    in other modules) cannot run beside it. So browser tests live in test_browser_*.py."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = browser.launch(playwright)
        yield instance
        instance.close()


@pytest.fixture
def page(chromium, ui_base):
    context = chromium.new_context(base_url=ui_base, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    # A test that opens an error page on purpose clears this list after it.
    page.console_errors = errors
    yield page
    context.close()
    assert not errors, f"errors in the browser console: {errors}"

