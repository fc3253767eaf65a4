"""Runs the Falcon ASGI app: one uvicorn process, or gunicorn with uvicorn workers.

`appliance serve` does the boot work (wait for the database, migrate) in its own
process, then replaces itself (exec, same PID, so signals and supervisors are
unaffected) with a fresh interpreter that imports only what serving needs (the boot's
migrations, block catalogue and cryptography stay behind):

- one worker (the default, APPLIANCE_SERVER_MODE=auto): ``appliance.uvicorn_main``, the
  app in one uvicorn process. A gunicorn master would add a process (~29 MiB) and do
  nothing a supervisor (systemd, Kubernetes, tini) does not already do for one process.
- several workers, or APPLIANCE_SERVER_MODE=gunicorn: ``appliance.gunicorn_main``, a
  gunicorn master that imports nothing but gunicorn, while each worker imports the app
  after the fork; the master restarts a crashed or hung worker.

Both run the same app with the same lifespan (background services), the same logging
and SIGTERM handling: stop accepting, finish in-flight requests (20 s), exit 0.
"""

from __future__ import annotations

import os
import sys

from appliance.settings import Settings

GRACEFUL_SECONDS = 20
KEEPALIVE_SECONDS = 30


def single_process(settings: Settings) -> bool:
    return settings.server_mode == "auto" and settings.workers == 1


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
        "--log-format",
        settings.log_format,
        "--metrics-dir",
        _metrics_dir(settings),
    ]


def uvicorn_argv(settings: Settings) -> list[str]:
    return [sys.executable, "-m", "appliance.uvicorn_main"]


def _metrics_dir(settings: Settings) -> str:
    """'' (no metrics), 'auto' (a fresh temp directory) or the configured directory."""
    if not settings.metrics_enabled:
        return ""
    return str(settings.metrics_multiproc_dir) if settings.metrics_multiproc_dir else "auto"


def serve(settings: Settings) -> None:
    argv = uvicorn_argv(settings) if single_process(settings) else gunicorn_argv(settings)
    # One process keeps its metrics in memory; gunicorn_main sets this for its workers.
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)


def prepare_process(settings: Settings) -> None:
    """Before the app is imported in a serving process: on SQLite, keep psycopg2 out.

    Peewee imports psycopg2 when it is installed, and psycopg2-binary brings libpq and its
    own OpenSSL: ~5 MiB of a SQLite server's memory for a driver it never calls. Marking
    the module absent makes peewee's import fail the way it does without the package.
    """
    if not settings.effective_database_url.startswith("postgres"):
        sys.modules.setdefault("psycopg2", None)


def freeze_heap() -> None:
    """After the app is built, before serving: move every object alive now (modules, the app,
    the console's templates) out of the garbage collector's reach. They live as long as the
    process, and a full collection would otherwise walk all of them again and again while
    requests allocate (the console's modules made the API's reads a few % slower)."""
    import gc

    gc.collect()
    gc.freeze()
