"""Driving Debian's Chromium with Playwright for the console's browser tests.

- ``launch(playwright)``: /usr/bin/chromium headless, with the flags this closed network
  needs (no background connections to Google's hosts).
- ``check_page(page, name)``: screenshots at 1280 and 390 px wide into ``artifacts/screenshots``
  (kept by CI), asserting there is no horizontal overflow at either width, and an axe-core
  scan that finds no serious or critical violation.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.support import REPO

CHROMIUM = os.environ.get("APPLIANCE_TEST_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = REPO / "artifacts" / "screenshots"
AXE_JS = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"
WIDTHS = (1280, 390)

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def launch(playwright):
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: `apt-get install chromium` (.ci/run does)")
    if not AXE_JS.exists():
        raise RuntimeError(f"{AXE_JS} is missing: `npm ci --prefix tests/ui` (.ci/run does)")
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def horizontal_overflow(page) -> int:
    """How many CSS pixels the document is wider than the viewport (0 = none)."""
    return page.evaluate(
        "() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
        " - document.documentElement.clientWidth"
    )


def axe_violations(page, impacts=("serious", "critical")) -> list[dict]:
    """axe-core's violations of the given impacts on the current page.

    The script is evaluated through the DevTools protocol, which the page's
    Content-Security-Policy does not apply to, so the page keeps its strict policy.
    """
    page.evaluate(AXE_JS.read_text())
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"], "nodes": [n["target"] for n in v["nodes"][:5]]}
        for v in result["violations"]
        if v["impact"] in impacts
    ]


def check_page(page, name: str) -> None:
    """Screenshots at each width, no horizontal overflow, no serious axe violation."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    original = page.viewport_size
    problems = []
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(50)
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{width}.png"), full_page=True)
        overflow = horizontal_overflow(page)
        if overflow > 0:
            problems.append(f"{name}: {overflow}px horizontal overflow at {width}px wide")
    if original:
        page.set_viewport_size(original)
    violations = axe_violations(page)
    if violations:
        problems.append(f"{name}: axe-core violations {violations}")
    assert not problems, "\n".join(problems)
