"""The gunicorn master of `appliance serve` (see appliance.server): deliberately tiny.

Only gunicorn is imported here; the app (Falcon, Peewee, pydantic) is imported by each
uvicorn worker after the fork. Settings reach the workers through the environment.

Metrics: the master points PROMETHEUS_MULTIPROC_DIR at a directory emptied at start (or
a fresh temporary one, removed at exit) before forking, so every worker writes its
samples there and a scrape merges them; when a worker exits, the master drops its live
gauges (in-flight requests, busy database threads).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class JsonLogger(Logger):
    """gunicorn's own lines (master and workers) as JSON lines, as the app's."""

    def setup(self, cfg):
        super().setup(cfg)
        from appliance.logging_setup import JsonFormatter

        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(JsonFormatter())


def child_exit(server, worker) -> None:
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, path)


class ApplianceServer(BaseApplication):
    def __init__(self, bind: str, workers: int, log_level: str, log_format: str = "text",
                 remove_at_exit: str | None = None):
        self.options = {
            "bind": bind,
            "workers": workers,
            "worker_class": "appliance.uvicorn_worker.ApplianceWorker",
            "loglevel": log_level,
            # Access lines come from the app (api.middleware.RequestObserver) in both modes.
            "accesslog": None,
            "errorlog": "-",
            "graceful_timeout": 20,
            "timeout": 120,
            "keepalive": 30,
            "proc_name": "appliance",
            # No runtime control socket: it wants a writable home (read-only root fs).
            "control_socket_disable": True,
            "child_exit": child_exit,
        }
        if log_format == "json":
            self.options["logger_class"] = JsonLogger
        if remove_at_exit:
            # on_exit runs in the master only (a worker leaving must not remove the files).
            self.options["on_exit"] = lambda arbiter: shutil.rmtree(remove_at_exit, ignore_errors=True)
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from api.app import create_app
        from appliance import logging_setup, server
        from appliance.settings import Settings

        settings = Settings()
        logging_setup.configure_from(settings)
        server.prepare_process(settings)
        app = create_app(settings)
        server.freeze_heap()
        return app


def metrics_dir(spec: str) -> tuple[str | None, bool]:
    """(directory, whether it is ours to remove at exit) for --metrics-dir."""
    if not spec:
        return None, False
    if spec == "auto":
        return tempfile.mkdtemp(prefix="appliance-metrics-"), True
    os.makedirs(spec, exist_ok=True)
    for name in os.listdir(spec):  # samples of an earlier run would be merged into this one's
        if name.endswith(".db"):
            os.remove(os.path.join(spec, name))
    return spec, False


def main() -> None:
    parser = argparse.ArgumentParser(prog="appliance-gunicorn")
    parser.add_argument("--bind", required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--log-format", default="text", choices=("text", "json"))
    parser.add_argument("--metrics-dir", default="", help="'' (no metrics), auto, or a directory")
    args = parser.parse_args()
    path, owned = metrics_dir(args.metrics_dir)
    if path:
        os.environ[MULTIPROC_ENV] = path
    else:
        os.environ.pop(MULTIPROC_ENV, None)
    ApplianceServer(args.bind, args.workers, args.log_level, args.log_format, path if owned else None).run()


if __name__ == "__main__":
    main()
