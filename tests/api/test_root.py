"""Root endpoints, error shapes, trailing slashes, auth and the API-version header."""

import base64

import falcon.testing
import pytest

from api.app import create_app
from appliance.settings import Settings


def test_health_version_hello(client):
    assert client.simulate_get("/api/health").json is True
    assert client.simulate_get("/api/version").json == "0.8.4"
    assert client.simulate_get("/api/admin/version").json == "3.8.8"
    assert client.simulate_get("/api/hello").json == "👋"
    assert client.simulate_get("/api/admin/storage").json == {"default_result_storage_block_id": None}


def test_ready_when_migrated(client):
    result = client.simulate_get("/api/ready")
    assert result.status_code == 200
    assert result.json == {"message": "OK"}


def test_ready_503_when_schema_behind(client):
    from db import migrate

    migrate.downgrade("base")
    result = client.simulate_get("/api/ready")
    assert result.status_code == 503
    assert "latest revision" in result.json["message"]


def test_csrf_disabled_answer_the_client_recognises(client):
    result = client.simulate_get("/api/csrf-token", params={"client": "abc"})
    assert result.status_code == 422
    assert result.json == {"detail": "CSRF protection is disabled."}


@pytest.mark.parametrize("path", ["/api/nope", "/api/flows/not-a-uuid", "/nothing"])
def test_unknown_paths_are_json_404(client, path):
    result = client.simulate_get(path)
    assert result.status_code == 404
    assert result.json == {"detail": "Not Found"}


def test_trailing_slash_on_either_form(client):
    assert client.simulate_post("/api/flows/", json={"name": "slash"}).status_code == 201
    assert client.simulate_post("/api/flows", json={"name": "slash"}).status_code == 200
    assert client.simulate_post("/api/flows/filter/", json={}).status_code == 200


def test_malformed_json_is_422_with_detail(client):
    result = client.simulate_post("/api/flows/", body=b"{not json", headers={"content-type": "application/json"})
    assert result.status_code == 422
    assert "malformed JSON" in result.json["detail"]
    assert result.json["exception_message"] == "Invalid request received."


def test_bad_api_version_header(client):
    result = client.simulate_get("/api/flows/filter", headers={"X-PREFECT-API-VERSION": "abc"})
    assert result.status_code == 400
    assert "X-PREFECT-API-VERSION" in result.json["detail"]
    ok = client.simulate_post("/api/flows/filter", json={}, headers={"X-PREFECT-API-VERSION": "0.8.4"})
    assert ok.status_code == 200


def test_basic_auth(migrated, tmp_home, monkeypatch):
    monkeypatch.setenv("APPLIANCE_HOME", str(tmp_home))
    app = create_app(Settings(database_url=migrated, auth_string="admin:pass"), init_db=False)
    client = falcon.testing.TestClient(app)
    assert client.simulate_get("/api/health").status_code == 200
    assert client.simulate_get("/api/ready").status_code == 200
    denied = client.simulate_get("/api/admin/version")
    assert denied.status_code == 401
    assert denied.json == {"exception_message": "Unauthorized"}
    wrong = "Basic " + base64.b64encode(b"admin:nope").decode()
    assert client.simulate_get("/api/admin/version", headers={"Authorization": wrong}).status_code == 401
    assert client.simulate_get("/api/admin/version", headers={"Authorization": "Basic %%%"}).status_code == 401
    good = "Basic " + base64.b64encode(b"admin:pass").decode()
    assert client.simulate_get("/api/admin/version", headers={"Authorization": good}).json == "3.8.8"


def test_unexpected_exception_is_a_logged_json_500(client, caplog):
    """The one catch-all handler: a bug answers JSON 500 and logs the traceback."""

    class Broken:
        async def on_get(self, req, resp):
            raise RuntimeError("boom")

    client.app.add_route("/api/test-broken", Broken())
    with caplog.at_level("ERROR", logger="appliance.api"):
        result = client.simulate_get("/api/test-broken")
    assert result.status_code == 500
    assert result.json == {"exception_message": "Internal Server Error"}
    assert any("boom" in (r.exc_text or "") or r.exc_info for r in caplog.records)


def test_transient_database_error_is_503_with_retry_after(client):
    import peewee

    class Locked:
        async def on_get(self, req, resp):
            raise peewee.OperationalError("database is locked")

    client.app.add_route("/api/test-locked", Locked())
    result = client.simulate_get("/api/test-locked")
    assert result.status_code == 503
    assert result.headers["retry-after"] == "1"
    assert result.json == {"exception_message": "Service Unavailable"}
