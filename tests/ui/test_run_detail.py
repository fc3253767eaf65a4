"""/runs/flow-run/<id> and /runs/task-run/<id> on both backends (falcon.testing): what the
pages show, their live fragments, log filter and pages, task-run pages, and the actions
(cancel, retry, resume with input) with the states the orchestration rules decide.
Everything is made through the REST API, as the SDK makes it."""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from tests.ui.admin_helpers import api_json, assert_redirect, main_html, post_form

MISSING = "00000000-0000-0000-0000-000000000000"
T0 = dt.datetime(2026, 11, 1, 12, 0, 0, tzinfo=dt.UTC)


def flow(client, name="etl") -> dict:
    return client.simulate_post("/api/flows/", json={"name": name}).json


def flow_run(client, flow_name="etl", **body) -> dict:
    return api_json(client.simulate_post("/api/flow_runs/", json={"flow_id": flow(client, flow_name)["id"], **body}),
                    201)


def set_state(client, run_id, type_, force=False, **extra) -> dict:
    result = client.simulate_post(f"/api/flow_runs/{run_id}/set_state",
                                  json={"state": {"type": type_, **extra}, "force": force})
    assert result.status_code in (200, 201), result.text
    return result.json


def read_run(client, run_id) -> dict:
    return api_json(client.simulate_get(f"/api/flow_runs/{run_id}"))


def task_run(client, run_id, name, key=None, state="COMPLETED", **body) -> dict:
    made = api_json(client.simulate_post("/api/task_runs/", json={
        "flow_run_id": run_id, "task_key": key or name, "dynamic_key": "0", "name": name,
        "state": {"type": "RUNNING"}, **body}), 201)
    if state != "RUNNING":
        client.simulate_post(f"/api/task_runs/{made['id']}/set_state", json={"state": {"type": state}, "force": True})
    return made


def add_logs(client, run_id, count, *, task_run_id=None, level=lambda i: 20, message=lambda i: f"line {i}"):
    items = [{"name": "prefect.flow_runs", "level": level(i), "message": message(i), "flow_run_id": run_id,
              "task_run_id": task_run_id, "timestamp": (T0 + dt.timedelta(milliseconds=i)).isoformat()}
             for i in range(count)]
    assert client.simulate_post("/api/logs/", json=items).status_code == 201


def artifact(client, **body) -> dict:
    return api_json(client.simulate_post("/api/artifacts/", json=body), 201)


def deployment(client, name="nightly", flow_name="etl", **extra) -> dict:
    body = {"name": name, "flow_id": flow(client, flow_name)["id"], **extra}
    return api_json(client.simulate_post("/api/deployments/", json=body), 201)


def deployment_run(client, dep) -> dict:
    return api_json(client.simulate_post(f"/api/deployments/{dep['id']}/create_flow_run", json={}), 201)


def page(client, path, **params):
    result = client.simulate_get(path, params=params or None)
    assert result.status_code == 200, (result.status_code, result.text[:3000])
    return result


def links(html: str) -> list[str]:
    return re.findall(r'href="([^"]+)"', html)


# --- the flow run page ------------------------------------------------------------------------


def test_flow_run_page_shows_the_run(client):
    client.simulate_post("/api/work_pools/", json={"name": "pool-a", "type": "process"})
    dep = deployment(client, work_pool_name="pool-a", tags=["prod"])
    run = deployment_run(client, dep)
    client.simulate_patch(f"/api/flow_runs/{run['id']}", json={"parameters": {"day": "2026-11-01", "n": 3}})
    set_state(client, run["id"], "PENDING")
    set_state(client, run["id"], "RUNNING")
    tasks = [task_run(client, run["id"], f"step-{i}") for i in range(3)]
    tracking = task_run(client, run["id"], "child-flow", state="RUNNING")  # the subflow's task in the parent
    child = flow_run(client, "child-flow", name="the-child", parent_task_run_id=tracking["id"])
    add_logs(client, run["id"], 5, message=lambda i: f"hello <b>{i}</b>")
    artifact(client, key="report", type="markdown", flow_run_id=run["id"],
             data="# Daily\n\n**bold** <script>alert(1)</script> [x](javascript:alert(1)) [docs](https://example.com/d)")
    artifact(client, key="counts", type="table", flow_run_id=run["id"],
             data=orjson.dumps([{"table": "users", "rows": 10}, {"table": "orders", "rows": 7}]).decode())
    artifact(client, type="link", flow_run_id=run["id"], data="https://example.com/report/latest")
    artifact(client, key="progress", type="progress", flow_run_id=run["id"], data=42.5)

    result = page(client, f"/runs/flow-run/{run['id']}")
    html = main_html(result)
    assert run["name"] in html and "Running" in html
    hrefs = links(html)
    assert f"/flows/flow/{run['flow_id']}" in hrefs and f"/deployments/deployment/{dep['id']}" in hrefs
    assert "/work-pools/work-pool/pool-a" in hrefs and "prod" in html
    assert f"/runs/flow-run/{run['id']}/cancel" in html  # a running run can be cancelled
    assert "/retry" not in html
    for t in tasks:
        assert f"/runs/task-run/{t['id']}" in hrefs
    assert html.count('<rect class="bar st-completed"') == 3
    assert f"/runs/flow-run/{child['id']}" in hrefs and "the-child" in html
    assert "&#34;day&#34;: &#34;2026-11-01&#34;" in html  # the parameters, as JSON
    assert "hello &lt;b&gt;4&lt;/b&gt;" in html and "<b>4</b>" not in html
    # State history: the strip and the list, oldest first.
    assert html.index("st-scheduled") < html.index("st-pending") < html.rindex("st-running")
    # Artifacts: markdown rendered without its HTML, the table, the link, the progress bar.
    assert "<h4>Daily</h4>" in html and "<strong>bold</strong>" in html
    assert "<script>" not in result.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'href="javascript:' not in html and 'href="https://example.com/d"' in html
    assert "<td>users</td><td>10</td>" in html and '<th scope="col">table</th>' in html
    assert 'href="https://example.com/report/latest"' in html
    assert '<progress max="100" value="42.5"' in html
    # Live while the run goes on: header, states, task runs and the logs tail refresh.
    assert set(re.findall(r'data-live="(\w+)"', html)) == {"header", "states", "tasks", "logs"}

    child_page = main_html(page(client, f"/runs/flow-run/{child['id']}"))
    assert f"/runs/flow-run/{run['id']}" in links(child_page)  # the parent run


def test_fragments_answer_their_block_only_and_a_finished_run_does_not_poll(client):
    run = flow_run(client)
    set_state(client, run["id"], "RUNNING")
    task_run(client, run["id"], "only-task")
    add_logs(client, run["id"], 3)
    path = f"/runs/flow-run/{run['id']}"
    header = page(client, path, fragment="header").text
    assert "<h1>" in header and "<html" not in header and "only-task" not in header
    tasks = page(client, path, fragment="tasks").text
    assert "only-task" in tasks and "<h1>" not in tasks and "<svg" in tasks
    logs = page(client, path, fragment="logs").text
    assert "line 2" in logs and "only-task" not in logs
    assert "Running" in page(client, path, fragment="states").text
    assert client.simulate_get(path, params={"fragment": "nope"}).status_code == 404

    set_state(client, run["id"], "COMPLETED")
    done = page(client, path).text
    assert "data-live" not in done and "Completed" in done
    assert "Completed" in page(client, path, fragment="header").text  # an open tab sees it end


def test_logs_level_filter_and_keyset_pages(client):
    run = flow_run(client)
    add_logs(client, run["id"], 250, level=lambda i: 40 if i % 10 == 0 else 20)
    path = f"/runs/flow-run/{run['id']}"

    def lines(html):
        return [int(n) for n in re.findall(r'class="log-msg">line (\d+)<', html)]

    newest = page(client, path).text
    assert lines(newest) == list(range(150, 250))  # the tail
    prev = re.search(r'href="([^"]+)" rel="prev"', newest).group(1).replace("&amp;", "&")
    assert "before=" in prev and prev.endswith("#logs")
    earlier = page(client, urlsplit(prev).path, **{k: v[0] for k, v in parse_qs(urlsplit(prev).query).items()}).text
    assert lines(earlier) == list(range(50, 150))
    assert 'data-live="logs"' not in earlier  # reading history: not refreshed under the reader
    first = page(client, path, after="start").text
    assert lines(first) == list(range(100))
    nxt = re.search(r'href="([^"]+)" rel="next"', first).group(1).replace("&amp;", "&")
    later = page(client, urlsplit(nxt).path, **{k: v[0] for k, v in parse_qs(urlsplit(nxt).query).items()}).text
    assert lines(later) == list(range(100, 200))

    errors = page(client, path, level="ERROR").text
    assert lines(errors) == list(range(0, 250, 10)) and '<option value="ERROR" selected>' in errors
    assert lines(page(client, path, level="critical").text) == []
    assert lines(page(client, path, level="bogus").text) == list(range(150, 250))  # unknown: everything
    assert client.simulate_get(path, params={"after": "not-a-cursor"}).status_code == 400


def test_long_messages_are_cut_and_a_big_run_page_stays_small(client):
    run = flow_run(client)
    set_state(client, run["id"], "RUNNING")
    for i in range(230):
        task_run(client, run["id"], f"task-{i:03d}")
    add_logs(client, run["id"], 300, message=lambda i: f"{i} " + "x" * 3000)
    for i in range(12):
        artifact(client, key=f"md-{i}", type="markdown", flow_run_id=run["id"], data="word " * 4000)
        artifact(client, key=f"tb-{i}", type="table", flow_run_id=run["id"],
                 data=orjson.dumps([{"a": "y" * 150, "b": "z" * 150}] * 500).decode())
    result = page(client, f"/runs/flow-run/{run['id']}")
    assert len(result.content) < 150_000, len(result.content)
    html = result.text
    assert "more characters)" in html
    assert html.count('<rect class="bar') == 200 and "30 more task runs not drawn" in html
    assert html.count("/runs/task-run/") == 50 and "More task runs" in html
    nxt = re.search(r'href="([^"]+tasks_after=[^"]+)"', html).group(1).replace("&amp;", "&")
    second = page(client, urlsplit(nxt).path, tasks_after=parse_qs(urlsplit(nxt).query)["tasks_after"][0]).text
    assert "task-050" in second and "task-099" in second and "task-049" not in main_html_table(second)
    assert "More artifacts" in html and html.count('class="card artifact"') == 5
    for fragment in ("header", "states", "tasks", "logs"):
        assert len(page(client, f"/runs/flow-run/{run['id']}", fragment=fragment).content) < 150_000


def main_html_table(html: str) -> str:
    start = html.find("<table")
    return html[start:html.find("</table>", start)]


def test_unknown_and_malformed_ids_are_404_pages(client):
    for path in ("/runs/flow-run/not-a-uuid", f"/runs/flow-run/{MISSING}", "/runs/task-run/xyz",
                 f"/runs/task-run/{MISSING}", f"/runs/flow-run/{MISSING}/resume"):
        result = client.simulate_get(path)
        assert result.status_code == 404, path
        assert "text/html" in result.headers["content-type"] and "<main" in result.text
    for action in ("cancel", "retry", "resume"):
        assert post_form(client, f"/runs/flow-run/{MISSING}/{action}").status_code == 404
        assert post_form(client, f"/runs/flow-run/bad/{action}").status_code == 404
    run = flow_run(client)
    assert client.simulate_get(f"/runs/flow-run/{run['id']}", params={"tasks_after": "x"}).status_code == 404


# --- the task run page ------------------------------------------------------------------------


def test_task_run_page(client):
    run = flow_run(client, name="parent-run")
    set_state(client, run["id"], "RUNNING")
    upstream = task_run(client, run["id"], "extract")
    task = task_run(client, run["id"], "transform", state="FAILED", tags=["heavy"],
                    task_inputs={"rows": [{"input_type": "task_run", "id": upstream["id"]}]})
    add_logs(client, run["id"], 4, task_run_id=task["id"], message=lambda i: f"task line {i}")
    add_logs(client, run["id"], 2, message=lambda i: f"flow line {i}")
    artifact(client, key="task-md", type="markdown", flow_run_id=run["id"], task_run_id=task["id"], data="*hi*")
    html = main_html(page(client, f"/runs/task-run/{task['id']}"))
    assert "transform" in html and "Failed" in html and "heavy" in html
    assert f"/runs/flow-run/{run['id']}" in links(html) and "parent-run" in html
    assert "task line 3" in html and "flow line" not in html
    assert "<em>hi</em>" in html and upstream["id"] in html  # its artifact and its inputs
    assert "data-live" not in html  # a failed task run is finished
    assert "task line 0" not in page(client, f"/runs/task-run/{task['id']}", level="ERROR").text

    running = task_run(client, run["id"], "load", state="RUNNING")
    assert 'data-live="header"' in page(client, f"/runs/task-run/{running['id']}").text
    flow_page = main_html(page(client, f"/runs/flow-run/{run['id']}"))
    assert f'href="/runs/task-run/{task["id"]}">task</a>' in flow_page  # a task's log line links to it


# --- actions ----------------------------------------------------------------------------------


def test_cancel_a_running_run_and_a_scheduled_one(client):
    run = flow_run(client)
    set_state(client, run["id"], "RUNNING")
    assert post_form(client, f"/runs/flow-run/{run['id']}/cancel", token=None).status_code == 403
    location = assert_redirect(post_form(client, f"/runs/flow-run/{run['id']}/cancel"), f"/runs/flow-run/{run['id']}")
    assert location.endswith("?msg=cancelling")
    assert read_run(client, run["id"])["state"]["type"] == "CANCELLING"
    shown = page(client, f"/runs/flow-run/{run['id']}", msg="cancelling").text
    assert "Cancellation requested" in shown and "Cancelling" in shown
    assert f"/runs/flow-run/{run['id']}/cancel" not in shown  # already being cancelled
    again = post_form(client, f"/runs/flow-run/{run['id']}/cancel")
    assert again.status_code == 409 and "cannot be cancelled" in again.text

    # A scheduled deployment run with no infrastructure: cancelled outright, as in Prefect.
    scheduled = deployment_run(client, deployment(client))
    location = assert_redirect(post_form(client, f"/runs/flow-run/{scheduled['id']}/cancel"), "/runs/flow-run/")
    assert location.endswith("?msg=cancelled") and read_run(client, scheduled["id"])["state"]["type"] == "CANCELLED"

    done = flow_run(client)
    set_state(client, done["id"], "COMPLETED", force=True)
    refused = post_form(client, f"/runs/flow-run/{done['id']}/cancel")
    assert refused.status_code == 409 and "Completed" in refused.text


def test_retry_a_failed_deployment_run(client):
    dep = deployment(client)
    run = deployment_run(client, dep)
    for state in ("PENDING", "RUNNING", "FAILED"):
        set_state(client, run["id"], state)
    assert "/retry" in page(client, f"/runs/flow-run/{run['id']}").text
    assert_redirect(post_form(client, f"/runs/flow-run/{run['id']}/retry"), f"/runs/flow-run/{run['id']}?msg=retrying")
    state = read_run(client, run["id"])["state"]
    assert (state["type"], state["name"], state["message"]) == ("SCHEDULED", "AwaitingRetry", "Retry from the UI")
    refused = post_form(client, f"/runs/flow-run/{run['id']}/retry")  # scheduled: not terminal
    assert refused.status_code == 409

    adhoc = flow_run(client)
    set_state(client, adhoc["id"], "FAILED", force=True)
    assert "/retry" not in page(client, f"/runs/flow-run/{adhoc['id']}").text
    refused = post_form(client, f"/runs/flow-run/{adhoc['id']}/retry")
    assert refused.status_code == 409 and "deployment" in refused.text
    assert read_run(client, adhoc["id"])["state"]["type"] == "FAILED"


APPROVAL_SCHEMA = {
    "title": "Approval", "type": "object",
    "properties": {"approver": {"title": "Approver", "type": "string"},
                   "amount": {"title": "Amount", "type": "integer", "minimum": 1}},
    "required": ["approver", "amount"],
}


def paused_run(client, schema=APPROVAL_SCHEMA, description="Approve the **payment**.") -> dict:
    """A running flow run paused with ``wait_for_input``, as the SDK pauses it: the RunInput's
    schema (and description) saved as flow-run inputs, the keyset in the Paused state."""
    run = flow_run(client)
    set_state(client, run["id"], "RUNNING")
    keyset = None
    if schema is not None:
        keyset = {"schema": "paused-1-schema", "response": "paused-1-response", "description": "paused-1-description"}
        for key, value in (("paused-1-schema", schema), ("paused-1-description", description)):
            client.simulate_post(f"/api/flow_runs/{run['id']}/input",
                                 json={"key": key, "value": orjson.dumps(value).decode()})
    timeout = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    set_state(client, run["id"], "PAUSED", state_details={"pause_key": "1", "run_input_keyset": keyset,
                                                          "pause_timeout": timeout})
    assert read_run(client, run["id"])["state"]["type"] == "PAUSED"
    return run


def test_resume_with_input_validates_like_the_api(client):
    run = paused_run(client)
    path = f"/runs/flow-run/{run['id']}"
    html = page(client, path).text
    assert 'id="f_approver"' in html and 'id="f_amount"' in html and "<strong>payment</strong>" in html
    assert f'action="/runs/flow-run/{run["id"]}/resume"' in html and f'href="{path}/resume"' in html
    assert 'id="f_amount"' in page(client, f"{path}/resume").text

    missing = post_form(client, f"{path}/resume", {"f.approver": "ada"})
    assert missing.status_code == 422 and "Required." in missing.text and 'value="ada"' in missing.text
    wrong = post_form(client, f"{path}/resume", {"f.approver": "ada", "f.amount": "lots"})
    assert wrong.status_code == 422 and "Must be a whole number." in wrong.text
    small = post_form(client, f"{path}/resume", {"f.approver": "ada", "f.amount": "0"})
    assert small.status_code == 422 and "at least 1" in small.text
    assert read_run(client, run["id"])["state"]["type"] == "PAUSED"

    assert_redirect(post_form(client, f"{path}/resume", {"f.approver": "ada", "f.amount": "250"}),
                    f"{path}?msg=resumed")
    assert read_run(client, run["id"])["state"]["type"] == "RUNNING"
    stored = client.simulate_get(f"/api/flow_runs/{run['id']}/input/paused-1-response")
    assert stored.status_code == 200 and orjson.loads(stored.text) == {"approver": "ada", "amount": 250}
    again = post_form(client, f"{path}/resume", {"f.approver": "ada", "f.amount": "1"})
    assert again.status_code == 409 and "cannot be resumed" in again.text


def test_resume_rejections_from_the_server_are_shown_by_the_form(client):
    # A schema without properties has no inputs to generate: the input is typed as JSON and
    # only db.flow_run_inputs.resume (the API's own check) validates it; the page says why
    # it refused (422 with the message, not a 500) and the run stays paused.
    run = paused_run(client, schema={"type": "object", "minProperties": 1, "maxProperties": 1}, description=None)
    path = f"/runs/flow-run/{run['id']}"
    assert 'name="run_input_json"' in page(client, path).text
    bad_json = post_form(client, f"{path}/resume", {"run_input_json": "{nope"})
    assert bad_json.status_code == 422 and "Must be valid JSON" in bad_json.text
    refused = post_form(client, f"{path}/resume", {"run_input_json": '{"a": 1, "b": 2}'})
    assert refused.status_code == 422 and "has too many properties" in refused.text
    assert read_run(client, run["id"])["state"]["type"] == "PAUSED"
    assert_redirect(post_form(client, f"{path}/resume", {"run_input_json": '{"ok": true}'}), f"{path}?msg=resumed")
    stored = client.simulate_get(f"/api/flow_runs/{run['id']}/input/paused-1-response")
    assert orjson.loads(stored.text) == {"ok": True}


def test_resume_without_input(client):
    run = paused_run(client, schema=None)
    html = page(client, f"/runs/flow-run/{run['id']}").text
    assert 'id="f_' not in html and f'action="/runs/flow-run/{run["id"]}/resume"' in html
    assert_redirect(post_form(client, f"/runs/flow-run/{run['id']}/resume"), f"/runs/flow-run/{run['id']}?msg=resumed")
    assert read_run(client, run["id"])["state"]["type"] == "RUNNING"


@pytest.mark.parametrize("state", ["RUNNING", "COMPLETED"])
def test_resume_refused_when_not_paused(client, state):
    run = flow_run(client)
    set_state(client, run["id"], state, force=True)
    refused = post_form(client, f"/runs/flow-run/{run['id']}/resume")
    assert refused.status_code == 409 and "cannot be resumed" in refused.text
    assert client.simulate_get(f"/runs/flow-run/{run['id']}/resume").status_code == 409
