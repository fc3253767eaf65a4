"""Runs the Falcon ASGI app under gunicorn with uvicorn workers.

`appliance serve` does the boot work (wait for the database, migrate) in its own
process, then replaces itself (exec, same PID, so signals and supervisors are
unaffected) with ``appliance.gunicorn_main``: a gunicorn master that imports nothing
but gunicorn, while each worker imports the app after the fork. This keeps the master
at a fraction of a worker's memory.
"""

from __future__ import annotations

import os
import sys

from appliance.settings import Settings


def gunicorn_argv(settings: Settings) -> list[str]:
    return [
        sys.executable,
        "-m",
        "appliance.gunicorn_main",
        "--bind",
        f"{settings.host}:{settings.port}",
        "--workers",
        str(settings.workers),
        "--log-level",
        settings.log_level,
    ]


def serve(settings: Settings) -> None:
    argv = gunicorn_argv(settings)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)
