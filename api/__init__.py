"""The Falcon ASGI app serving the Prefect 3 REST API."""
