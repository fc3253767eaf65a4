"""/deployments: the list (search, keyset pages), one deployment (schedules and their toggle,
pause / resume, recent runs) and "Run" with the form generated from its parameter schema,
which creates the run as POST /deployments/{id}/create_flow_run does."""

from __future__ import annotations

import uuid

from tests.ui.admin_helpers import api_json, assert_redirect, main_html, post_form

# The shape the SDK's parameter_schema gives for `def etl(name: str, count: int = 3, dry_run: bool = False)`.
SCHEMA = {
    "title": "Parameters", "type": "object", "required": ["name"], "definitions": {},
    "properties": {
        "name": {"position": 0, "title": "name", "type": "string"},
        "count": {"default": 3, "position": 1, "title": "count", "type": "integer", "maximum": 100},
        "dry_run": {"default": False, "position": 2, "title": "dry_run", "type": "boolean"},
    },
}
SCHEDULE = {"schedule": {"interval": 3600.0, "anchor_date": "2026-01-01T00:00:00Z", "timezone": "UTC"}, "active": True}


def _deployment(client, name="nightly", flow="etl", **extra):
    flow_row = client.simulate_post("/api/flows/", json={"name": flow}).json
    body = {"name": name, "flow_id": flow_row["id"], "parameter_openapi_schema": SCHEMA,
            "parameters": {"count": 5}, "schedules": [SCHEDULE], "tags": ["prod"], **extra}
    return api_json(client.simulate_post("/api/deployments/", json=body), 201)


def _runs(client, dep):
    return api_json(client.simulate_post("/api/flow_runs/filter",
                                         json={"deployments": {"id": {"any_": [dep["id"]]}}}))


def test_list_search_and_pages(client):
    dep = _deployment(client, "nightly", "etl")
    _deployment(client, "hourly", "reports")
    page = main_html(client.simulate_get("/deployments"))
    assert f"/deployments/deployment/{dep['id']}" in page and "etl" in page and "hourly" in page
    found = main_html(client.simulate_get("/deployments?q=REPO"))
    assert "hourly" in found and "nightly" not in found

    for i in range(50):
        _deployment(client, f"bulk-{i:02d}", "bulk", schedules=[])
    first = main_html(client.simulate_get("/deployments"))
    assert "bulk-00" in first and "bulk-49" in first and "nightly" not in first
    next_href = first.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
    second = main_html(client.simulate_get(next_href))
    assert "hourly" in second and "nightly" in second and "bulk-49" not in second
    assert client.simulate_get("/deployments?after=garbage").status_code == 404


def test_deployment_page_schedules_pause_and_runs(client):
    dep = _deployment(client)
    run = api_json(client.simulate_post(f"/api/deployments/{dep['id']}/create_flow_run",
                                     json={"parameters": {"name": "x"}}), 201)
    page = client.simulate_get(f"/deployments/deployment/{dep['id']}")
    assert page.status_code == 200
    text = main_html(page)
    assert "every 1h 00m (UTC)" in text and f"/runs/flow-run/{run['id']}" in text and "prod" in text

    schedule_id = dep["schedules"][0]["id"]
    toggled = post_form(client, f"/deployments/deployment/{dep['id']}/schedule/{schedule_id}/toggle")
    assert_redirect(toggled, f"/deployments/deployment/{dep['id']}?msg=schedule-off")
    assert api_json(client.simulate_get(f"/api/deployments/{dep['id']}"))["schedules"][0]["active"] is False
    post_form(client, f"/deployments/deployment/{dep['id']}/schedule/{schedule_id}/toggle")
    assert api_json(client.simulate_get(f"/api/deployments/{dep['id']}"))["schedules"][0]["active"] is True

    assert_redirect(post_form(client, f"/deployments/deployment/{dep['id']}/pause"),
                    f"/deployments/deployment/{dep['id']}?msg=paused")
    assert api_json(client.simulate_get(f"/api/deployments/{dep['id']}"))["paused"] is True
    assert "Deployment paused" in client.simulate_get(f"/deployments/deployment/{dep['id']}?msg=paused").text
    assert_redirect(post_form(client, f"/deployments/deployment/{dep['id']}/resume"), "/deployments/deployment/")
    assert api_json(client.simulate_get(f"/api/deployments/{dep['id']}"))["paused"] is False

    assert client.simulate_get("/deployments/deployment/nope").status_code == 404
    assert client.simulate_get(f"/deployments/deployment/{uuid.uuid4()}").status_code == 404
    bogus = post_form(client, f"/deployments/deployment/{dep['id']}/schedule/{uuid.uuid4()}/toggle")
    assert bogus.status_code == 404


def test_run_form_is_prefilled_and_creates_a_typed_run(client):
    dep = _deployment(client)
    form = client.simulate_get(f"/deployments/deployment/{dep['id']}/run")
    assert form.status_code == 200
    text = main_html(form)
    assert 'name="f.name"' in text and 'name="f.count" value="5"' in text  # the deployment's value over the default
    assert 'type="checkbox" id="f_dry_run" name="f.dry_run" value="true"' in text

    made = post_form(client, f"/deployments/deployment/{dep['id']}/run",
                     [("f.name", "ada"), ("f.count", "7"), ("f.dry_run", "false"), ("f.dry_run", "true"),
                      ("run_name", "from-the-console"), ("run_tags", "manual")])
    location = assert_redirect(made, "/runs/flow-run/")
    run = api_json(client.simulate_get(f"/api/flow_runs/{location.rsplit('/', 1)[1]}"))
    assert run["parameters"] == {"name": "ada", "count": 7, "dry_run": True}
    assert run["deployment_id"] == dep["id"] and run["name"] == "from-the-console"
    assert run["tags"] == ["prod", "manual"] and run["state"]["type"] == "SCHEDULED"


def test_bad_run_form_rerenders_and_creates_nothing(client):
    dep = _deployment(client)
    bad = post_form(client, f"/deployments/deployment/{dep['id']}/run",
                    [("f.name", ""), ("f.count", "many"), ("f.dry_run", "false")])
    assert bad.status_code == 422
    text = main_html(bad)
    assert "Required." in text and "Must be a whole number." in text and 'value="many"' in text
    too_big = post_form(client, f"/deployments/deployment/{dep['id']}/run", [("f.name", "a"), ("f.count", "1000")])
    assert too_big.status_code == 422 and "Must be at most 100." in too_big.text
    assert _runs(client, dep) == []


def test_the_domain_rules_still_apply(client):
    strict = {**SCHEMA, "additionalProperties": False}
    dep = _deployment(client, parameter_openapi_schema=strict, parameters={"unknown": 1})
    refused = post_form(client, f"/deployments/deployment/{dep['id']}/run", [("f.name", "a")])
    assert refused.status_code == 422 and "Validation failed" in refused.text
    assert _runs(client, dep) == []


def test_a_deployment_without_schema_takes_json(client):
    flow_row = client.simulate_post("/api/flows/", json={"name": "loose"}).json
    dep = api_json(client.simulate_post("/api/deployments/", json={
        "name": "raw", "flow_id": flow_row["id"], "parameters": {"x": 1}}), 201)
    form = main_html(client.simulate_get(f"/deployments/deployment/{dep['id']}/run"))
    assert 'name="parameters_json"' in form and "&#34;x&#34;: 1" in form
    bad = post_form(client, f"/deployments/deployment/{dep['id']}/run", {"parameters_json": "[1]"})
    assert bad.status_code == 422 and "JSON object" in bad.text
    made = post_form(client, f"/deployments/deployment/{dep['id']}/run", {"parameters_json": '{"y": [2]}'})
    run_id = assert_redirect(made, "/runs/flow-run/").rsplit("/", 1)[1]
    assert api_json(client.simulate_get(f"/api/flow_runs/{run_id}"))["parameters"] == {"x": 1, "y": [2]}
