"""The gunicorn worker class: uvicorn with the standard asyncio loop and httptools."""

from uvicorn_worker import UvicornWorker


class ApplianceWorker(UvicornWorker):
    # uvloop would add ~8 MiB per worker for little gain here: request time goes to the
    # database threads and JSON, not to the event loop. Access lines come from the app
    # (api.middleware.RequestObserver), as in the single-process server.
    CONFIG_KWARGS = {
        "loop": "asyncio", "http": "httptools", "ws": "websockets-sansio", "lifespan": "on", "access_log": False,
    }
