"""Helpers of the admin page tests: form POSTs with the CSRF token, seeding through the API."""

from __future__ import annotations

from urllib.parse import urlencode

from ui import security

TOKEN = "t" * 43  # any 43-character value is a well-formed token; the cookie and the field must match
FORM = "application/x-www-form-urlencoded"


def post_form(client, path: str, fields=(), *, token: str | None = TOKEN):
    """POST ``fields`` (a dict, or pairs for repeated names) as a browser submits a form."""
    pairs = list(fields.items()) if isinstance(fields, dict) else list(fields)
    if token is not None:
        pairs.append((security.FIELD, token))
    return client.simulate_post(
        path, body=urlencode(pairs, doseq=True),
        headers={"Content-Type": FORM, "Cookie": f"{security.COOKIE}={TOKEN}"},
    )


def assert_redirect(result, prefix: str) -> str:
    assert result.status_code == 303, (result.status_code, result.text[:2000])
    location = result.headers["location"]
    assert location.startswith(prefix), location
    return location


def api_json(result, status: int = 200):
    assert result.status_code == status, (result.status_code, result.text[:2000])
    return result.json


def main_html(result) -> str:
    """The page's <main> (without the navigation, whose labels would match anything)."""
    text = result.text
    start = text.find("<main")
    return text[start:text.find("</main>", start)] if start >= 0 else text


def install_catalogue(client) -> None:
    """The built-in block types (the server registers them at start-up; tests start without)."""
    assert client.simulate_post("/api/block_types/install_system_block_types").status_code == 200


def block_document(client, slug: str, name: str, data: dict) -> dict:
    """A block document of a built-in type, saved through the blocks API (as the SDK saves one)."""
    install_catalogue(client)
    block_type = api_json(client.simulate_get(f"/api/block_types/slug/{slug}"))
    schemas = api_json(client.simulate_post(
        "/api/block_schemas/filter", json={"block_schemas": {"block_type_id": {"any_": [block_type["id"]]}}}))
    made = client.simulate_post("/api/block_documents/", json={
        "name": name, "block_type_id": block_type["id"], "block_schema_id": schemas[0]["id"], "data": data})
    return api_json(made, 201)


def failed_run(client, flow_name: str = "etl", tags=("prod",)) -> dict:
    """A flow run taken RUNNING then FAILED through the API (queues the notifications it matches)."""
    flow = client.simulate_post("/api/flows/", json={"name": flow_name}).json  # get or create
    run = api_json(client.simulate_post("/api/flow_runs/", json={"flow_id": flow["id"], "tags": list(tags)}), 201)
    for state in ("RUNNING", "FAILED"):
        client.simulate_post(f"/api/flow_runs/{run['id']}/set_state", json={"state": {"type": state}})
    return api_json(client.simulate_get(f"/api/flow_runs/{run['id']}"))
