"""The console's shell: security headers, HTML errors beside JSON API errors, auth, CSRF."""

from __future__ import annotations

import base64

import falcon.testing
import pytest

from tests import support


def test_root_opens_the_dashboard(client):
    result = client.simulate_get("/")
    assert result.status_code == 302
    assert result.headers["location"] == "/dashboard"


def test_unknown_page_is_an_html_404_with_a_strict_policy(client):
    result = client.simulate_get("/no-such-page")
    assert result.status_code == 404
    assert result.headers["content-type"].startswith("text/html")
    csp = result.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "Page not found." in result.text


def test_api_errors_stay_json(client):
    result = client.simulate_get("/api/no-such-thing")
    assert result.status_code == 404
    assert result.json == {"detail": "Not Found"}


def test_static_assets_are_served_by_the_appliance(client):
    for name in ("app.css", "app.js", "favicon.svg"):
        assert client.simulate_get(f"/ui-assets/{name}").status_code == 200


@pytest.fixture
def auth_client(migrated, tmp_home, monkeypatch):
    from api.app import create_app
    from appliance.settings import Settings

    monkeypatch.setenv("APPLIANCE_HOME", str(tmp_home))
    monkeypatch.setenv("APPLIANCE_SECRET_KEY", support.TEST_SECRET_KEY)
    settings = Settings(database_url=migrated, auth_string="admin:s3cret")
    return falcon.testing.TestClient(create_app(settings, init_db=False))


def test_pages_need_basic_auth_when_it_is_on(auth_client):
    result = auth_client.simulate_get("/dashboard")
    assert result.status_code == 401
    assert result.headers["www-authenticate"].startswith("Basic")
    token = base64.b64encode(b"admin:s3cret").decode()
    result = auth_client.simulate_get("/", headers={"Authorization": f"Basic {token}"})
    assert result.status_code == 302
    assert auth_client.simulate_get("/ui-assets/app.css").status_code == 401


def test_the_ui_can_be_switched_off(migrated, tmp_home, monkeypatch):
    from api.app import create_app
    from appliance.settings import Settings

    monkeypatch.setenv("APPLIANCE_HOME", str(tmp_home))
    monkeypatch.setenv("APPLIANCE_SECRET_KEY", support.TEST_SECRET_KEY)
    app = create_app(Settings(database_url=migrated, ui_enabled=False), init_db=False)
    result = falcon.testing.TestClient(app).simulate_get("/")
    assert result.status_code == 404
    assert result.json == {"detail": "Not Found"}
