"""Root endpoints: health, readiness, versions, CSRF and admin probes."""

from __future__ import annotations

import logging

from api.http import send
from db import database as dbmod
from db import migrate

log = logging.getLogger("appliance.api")

SERVER_VERSION = "3.8.8"  # what the Prefect client's major-version check expects
API_VERSION = "0.8.4"


class Health:
    async def on_get(self, req, resp):
        send(resp, True)


class Ready:
    """200 when the database answers and is at the latest revision, else 503 with the reason."""

    async def on_get(self, req, resp):
        try:
            at_head = await dbmod.run(migrate.is_at_head)
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            log.warning("readiness check failed: %s", exc)
            send(resp, {"message": f"database unreachable: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"}, 503)
            return
        if not at_head:
            send(resp, {"message": "database schema is not at the latest revision; run migrations"}, 503)
            return
        send(resp, {"message": "OK"})


class Version:
    async def on_get(self, req, resp):
        send(resp, API_VERSION)


class AdminVersion:
    async def on_get(self, req, resp):
        send(resp, SERVER_VERSION)


class Hello:
    async def on_get(self, req, resp):
        send(resp, "👋")


class CsrfToken:
    """CSRF protection is off: the Prefect client disables it on exactly this answer."""

    async def on_get(self, req, resp):
        send(resp, {"detail": "CSRF protection is disabled."}, 422)


class AdminStorage:
    async def on_get(self, req, resp):
        send(resp, {"default_result_storage_block_id": None})


class AdminSettings:
    def __init__(self, settings):
        self.settings = settings

    async def on_get(self, req, resp):
        send(resp, {"appliance": self.settings.masked()})


def register(app, prefix: str, settings) -> None:
    app.add_route(f"{prefix}/health", Health())
    app.add_route(f"{prefix}/ready", Ready())
    app.add_route(f"{prefix}/version", Version())
    app.add_route(f"{prefix}/admin/version", AdminVersion())
    app.add_route(f"{prefix}/admin/settings", AdminSettings(settings))
    app.add_route(f"{prefix}/admin/storage", AdminStorage())
    app.add_route(f"{prefix}/hello", Hello())
    app.add_route(f"{prefix}/csrf-token", CsrfToken())
