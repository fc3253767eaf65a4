"""The gunicorn worker class: uvicorn with the standard asyncio loop and httptools."""

from uvicorn_worker import UvicornWorker


class ApplianceWorker(UvicornWorker):
    # uvloop would add ~8 MiB per worker for little gain here: request time goes to the
    # database threads and JSON, not to the event loop.
    CONFIG_KWARGS = {"loop": "asyncio", "http": "httptools", "ws": "websockets-sansio", "lifespan": "on"}
