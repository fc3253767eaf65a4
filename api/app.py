"""The Falcon ASGI application factory."""

from __future__ import annotations

import importlib
import logging

import falcon
import falcon.asgi

from api import errors, middleware, root, state
from appliance import logging_setup, metrics
from appliance.settings import Settings, get_settings
from db import database as dbmod
from db import secrets_crypto

log = logging.getLogger("appliance.api")

# Resource modules, one per API area; each has register(app, prefix).
AREAS = [
    "api.flows",
    "api.flow_runs",
    "api.task_runs",
    "api.logs",
    "api.artifacts",
    "api.events",
    "api.concurrency",
    "api.concurrency_v1",
    "api.variables",
    "api.blocks",
    "api.deployments",
    "api.work_pools",
    "api.work_queues",
    "api.automations",
    "api.notification_policies",
    "api.notifications",
    "api.flow_run_inputs",
    "api.metrics",  # only when APPLIANCE_METRICS_ENABLED
]


# Modules whose import registers background services (appliance.services.register).
SERVICE_MODULES: list[str] = [
    "db.services_core",
    "db.services_runs",
    "db.concurrency",  # lease-sweeper
]


class Lifespan:
    """Starts the background services with the worker and stops them (then the pools) at exit."""

    def __init__(self, run_services: bool):
        self.run_services = run_services
        self.runner = None

    async def process_startup(self, scope, event):
        if self.run_services:
            from appliance import services

            for name in SERVICE_MODULES:
                importlib.import_module(name)
            self.runner = services.Runner()
            self.runner.start()

    async def process_shutdown(self, scope, event):
        if self.runner is not None:
            await self.runner.shutdown()
        dbmod.close_all()


def create_app(settings: Settings | None = None, *, init_db: bool = True) -> falcon.asgi.App:
    settings = settings or get_settings()
    if init_db:
        dbmod.init(
            settings.effective_database_url,
            busy_timeout_ms=settings.db_busy_timeout_ms,
            pool_size=settings.db_pool_size,
        )
    auth = middleware.AuthMiddleware(settings.auth_string, settings.api_prefix)
    app = falcon.asgi.App(
        middleware=[
            middleware.RequestObserver(logging_setup.access_log_enabled(settings)),
            auth,
            middleware.ApiVersionMiddleware(),
            Lifespan(settings.services_enabled),
        ]
    )
    app.req_options.strip_url_path_trailing_slash = True
    app.req_options.auto_parse_qs_csv = False
    app.resp_options.secure_cookies_by_default = False
    errors.install(app)
    state.auth = auth
    state.settings = settings
    secrets_crypto.configure(settings)
    metrics.configure(settings)

    prefix = settings.api_prefix
    root.register(app, prefix, settings)
    for name in AREAS:
        importlib.import_module(name).register(app, prefix)
    if settings.ui_enabled:
        import ui

        ui.register(app, settings)
    return app
