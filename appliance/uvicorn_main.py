"""The single-process server of `appliance serve` (one worker, see appliance.server).

Settings come from the environment, as for gunicorn's workers. uvicorn handles SIGTERM
and SIGINT: it stops accepting, lets in-flight requests finish (up to 20 s), runs the
lifespan shutdown (background services, then the database pools) and exits 0.
"""

from __future__ import annotations

import signal
import sys


def main() -> int:
    from appliance import logging_setup, server
    from appliance.settings import Settings

    settings = Settings()
    logging_setup.configure_from(settings)
    server.prepare_process(settings)

    import uvicorn

    from api.app import create_app

    app = create_app(settings)
    server.freeze_heap()
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        # As the gunicorn workers (appliance.uvicorn_worker): asyncio and httptools; uvloop
        # would add memory for no gain (request time goes to the database threads).
        loop="asyncio",
        http="httptools",
        ws="websockets-sansio",
        lifespan="on",
        log_config=None,  # appliance.logging_setup owns the handlers
        access_log=False,  # api.middleware.RequestObserver writes the access lines
        timeout_keep_alive=server.KEEPALIVE_SECONDS,
        timeout_graceful_shutdown=server.GRACEFUL_SECONDS,
        log_level=settings.log_level,
    )
    uv = uvicorn.Server(config)

    def stop(signum, frame):
        uv.should_exit = True

    # uvicorn re-raises the signal it shut down for, once done, to the handler it found:
    # this one, so a graceful stop exits 0 (as gunicorn does) instead of dying of SIGTERM;
    # a signal before uvicorn installs its own still stops the server.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    uv.run()
    return 0 if uv.started else 3  # 3: as gunicorn's worker-boot error


if __name__ == "__main__":
    sys.exit(main())
