"""The gunicorn master of `appliance serve` (see appliance.server): deliberately tiny.

Only gunicorn is imported here; the app (Falcon, Peewee, pydantic) is imported by each
uvicorn worker after the fork. Settings reach the workers through the environment.
"""

from __future__ import annotations

import argparse

from gunicorn.app.base import BaseApplication


class ApplianceServer(BaseApplication):
    def __init__(self, bind: str, workers: int, log_level: str):
        self.options = {
            "bind": bind,
            "workers": workers,
            "worker_class": "appliance.uvicorn_worker.ApplianceWorker",
            "loglevel": log_level,
            "accesslog": "-" if log_level == "debug" else None,
            "errorlog": "-",
            "graceful_timeout": 20,
            "timeout": 120,
            "keepalive": 30,
            "proc_name": "appliance",
            # No runtime control socket: it wants a writable home (read-only root fs).
            "control_socket_disable": True,
        }
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from api.app import create_app

        return create_app()


def main() -> None:
    parser = argparse.ArgumentParser(prog="appliance-gunicorn")
    parser.add_argument("--bind", required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    ApplianceServer(args.bind, args.workers, args.log_level).run()


if __name__ == "__main__":
    main()
