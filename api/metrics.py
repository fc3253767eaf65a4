"""GET /api/metrics: the Prometheus scrape (text format, or OpenMetrics when asked for).

Behind the same basic auth as the rest of the API (the counts say what runs here); a
Prometheus job sets ``basic_auth`` when APPLIANCE_AUTH_STRING is set. The body is built
in a database thread: it merges the workers' metric files and may read the database
gauges (see appliance.metrics.DatabaseCollector).
"""

from __future__ import annotations

from api import state
from appliance import metrics
from db import database as db


class Metrics:
    async def on_get(self, req, resp):
        body, content_type = await db.run(metrics.render, req.get_header("Accept"))
        resp.content_type = content_type
        resp.data = body


def register(app, prefix: str) -> None:
    if state.settings.metrics_enabled and metrics.enabled():
        app.add_route(f"{prefix}/metrics", Metrics())
