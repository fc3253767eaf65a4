"""``/``: the console opens on the dashboard, as Prefect's UI does."""

from __future__ import annotations

import falcon


class Home:
    async def on_get(self, req, resp):
        raise falcon.HTTPFound("/dashboard")


def register(app) -> None:
    app.add_route("/", Home())
