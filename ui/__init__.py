"""The web console: server-rendered pages under ``/`` (the REST API stays under the API prefix).

Pages are Falcon resources rendered with Jinja2 templates (``ui/templates``, autoescaped);
every page works without JavaScript, and ``ui/static/app.js`` only refreshes the parts
marked ``data-live`` (short polling of the same URL with ``?fragment=NAME``). One module
per area (``ui/runs.py``, ``ui/deployments.py`` ...), each with ``register(app)``, like the
API's resource modules. Security (basic auth, CSRF, Content-Security-Policy) is in
``ui/security.py``.
"""

from __future__ import annotations

import importlib
from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PREFIX = "/ui-assets"

# Page modules, one per area; each has register(app).
PAGES: list[str] = [
    "ui.home",
    "ui.dashboard",
    "ui.runs",
    "ui.flows",
    "ui.deployments",
    "ui.work_pools",
    "ui.blocks",
    "ui.variables",
    "ui.concurrency",
    "ui.notifications",
    "ui.run_detail",
]


def register(app, settings) -> None:
    from ui import errors, security

    security.configure(settings)
    errors.install(app, settings.api_prefix)
    app.add_static_route(STATIC_PREFIX, str(STATIC_DIR))
    for name in PAGES:
        importlib.import_module(name).register(app)
