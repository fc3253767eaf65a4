"""The shell in a real browser: the layout holds at both widths and axe-core is satisfied."""

from __future__ import annotations

from tests.ui import browser


def test_error_page_layout_and_accessibility(page):
    response = page.goto("/dashboard-does-not-exist")
    assert response.status == 404
    page.console_errors.clear()  # Chromium logs the 404 of the document itself
    assert page.locator("h1").inner_text() == "404"
    browser.check_page(page, "error-404")
