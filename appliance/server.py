"""Runs the Falcon ASGI app under gunicorn with uvicorn workers."""

from __future__ import annotations

from gunicorn.app.base import BaseApplication

from appliance.settings import Settings


class ApplianceServer(BaseApplication):
    def __init__(self, settings: Settings):
        self.settings = settings
        super().__init__()

    def load_config(self):
        s = self.settings
        config = {
            "bind": f"{s.host}:{s.port}",
            "workers": s.workers,
            "worker_class": "uvicorn_worker.UvicornWorker",
            "loglevel": s.log_level,
            "accesslog": "-" if s.log_level == "debug" else None,
            "errorlog": "-",
            "graceful_timeout": 20,
            "timeout": 120,
            "keepalive": 30,
            "proc_name": "appliance",
            # No runtime control socket: it wants a writable home (read-only root fs).
            "control_socket_disable": True,
        }
        for key, value in config.items():
            self.cfg.set(key, value)

    def load(self):
        # Imported in the worker, after the fork: the master stays small.
        from api.app import create_app

        return create_app()


def serve(settings: Settings) -> None:
    ApplianceServer(settings).run()
