"""The admin pages in a real browser against a live server, with the real Prefect SDK:
run a deployment from its form, create and edit a block (the secret stays masked and
``Block.load`` still sees it), a variable, a concurrency limit, a notification policy, and
follow the link of a notification the real ``appliance notifier`` delivered to the run's page.
Every page is screenshotted at both widths and checked by axe-core (browser.check_page)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import uuid

import pytest

from tests import support
from tests.e2e.conftest import wait_for
from tests.notifier.receivers import Receiver
from tests.ui import browser
from tests.ui.sdk import sdk_runner

SDK_SCRIPT = '''
"""SDK side of the console's browser tests: `deploy`, `load-slack NAME`, `fail TAG`."""
import json
import sys

from prefect import flow, tags


@flow
def greet(name: str, count: int = 3, dry_run: bool = False):
    return name * count


@flow(name="console-notify")
def boom():
    raise ValueError("boom for the console")


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "deploy":
        deployment_id = greet.to_deployment(name="console-run", tags=["console"]).apply()
        print(json.dumps({"id": str(deployment_id)}))
    elif command == "load-slack":
        from prefect.blocks.notifications import SlackWebhook

        block = SlackWebhook.load(sys.argv[2])
        print(json.dumps({"url": block.url.get_secret_value(), "notify_type": block.notify_type}))
    elif command == "fail":
        with tags(sys.argv[2]):
            state = boom(return_state=True)
        print(json.dumps({"id": str(state.state_details.flow_run_id), "state": state.name}))
'''


@pytest.fixture(scope="module")
def sdk(ui_server, tmp_path_factory):
    """Run the SDK script with a command; returns its last JSON line."""
    return sdk_runner(ui_server, tmp_path_factory, SDK_SCRIPT, "console_sdk.py")


def submit(page, form_selector: str = "form.stack") -> None:
    with page.expect_navigation():
        page.locator(f"{form_selector} button[type=submit]").first.click()


def test_run_a_deployment_from_its_form(page, api, sdk):
    deployment_id = sdk("deploy")["id"]
    page.goto("/deployments")
    browser.check_page(page, "deployments")
    page.click(f"a[href='/deployments/deployment/{deployment_id}']")
    assert page.locator("h1").inner_text() == "console-run"
    browser.check_page(page, "deployment")
    page.click(f"a[href='/deployments/deployment/{deployment_id}/run'] >> nth=0")
    assert page.input_value("#f_count") == "3"  # the schema's default
    browser.check_page(page, "deployment-run")

    submit(page)  # the required name left empty: the form comes back (422) with the message by the field
    page.console_errors.clear()  # Chromium logs the 422 of the document itself
    assert "Required." in page.locator("main").inner_text()
    browser.check_page(page, "deployment-run-errors")

    page.fill("#f_name", "ada")
    page.fill("#f_count", "7")
    page.check("#f_dry_run")
    page.fill("#in-run_tags", "from-console")
    submit(page)
    match = re.search(r"/runs/flow-run/([0-9a-f-]{36})$", page.url)
    assert match, page.url
    run = api.get(f"/flow_runs/{match.group(1)}").json()
    assert run["parameters"] == {"name": "ada", "count": 7, "dry_run": True}
    assert run["deployment_id"] == deployment_id and "from-console" in run["tags"]
    assert run["id"] in page.content()


def test_create_and_edit_a_block_keeps_the_secret_masked(page, api, sdk):
    secret_url = f"https://hooks.slack.com/services/T0/B0/{uuid.uuid4().hex}"
    name = f"alerts-{uuid.uuid4().hex[:6]}"
    page.goto("/blocks/catalog")
    browser.check_page(page, "blocks-catalog")
    page.click("a[href='/blocks/catalog/slack-webhook/create']")
    browser.check_page(page, "block-create")
    page.fill("#in-block_name", name)
    page.fill("#f_url", secret_url)
    page.select_option("#f_notify_type", "warning")
    submit(page)
    assert page.locator("h1").inner_text().startswith(name)
    assert secret_url not in page.content() and "********" in page.locator("main").inner_text()
    browser.check_page(page, "block")

    page.click("a:has-text('Edit')")
    assert page.input_value("#f_url") == "" and secret_url not in page.content()
    browser.check_page(page, "block-edit")
    page.select_option("#f_notify_type", "failure")
    submit(page)
    assert "Block saved." in page.locator("main").inner_text() and secret_url not in page.content()

    loaded = sdk("load-slack", name)
    assert loaded == {"url": secret_url, "notify_type": "failure"}
    page.goto("/blocks")
    assert name in page.locator("main").inner_text() and secret_url not in page.content()
    browser.check_page(page, "blocks")


def test_create_and_edit_a_variable(page, api):
    page.goto("/variables")
    page.fill("#in-name", "region")
    page.fill("#in-value", "eu-west-1")
    page.fill("#in-tags", "infra")
    submit(page, "form.stack")
    assert "Variable created." in page.locator("main").inner_text()
    browser.check_page(page, "variables")
    variable = api.get("/variables/name/region").json()
    assert variable["value"] == "eu-west-1" and variable["tags"] == ["infra"]

    page.click(f"a[href='/variables/variable/{variable['id']}/edit']")
    browser.check_page(page, "variable-edit")
    page.fill("#in-value", '{"primary": "eu-west-1", "replicas": 2}')
    submit(page)
    assert api.get("/variables/name/region").json()["value"] == {"primary": "eu-west-1", "replicas": 2}


def test_create_and_edit_a_concurrency_limit(page, api):
    page.goto("/concurrency-limits")
    page.fill("#in-name", "warehouse-db")
    page.fill("#in-limit", "4")
    submit(page, "form[action='/concurrency-limits']")
    assert "Concurrency limit created." in page.locator("main").inner_text()
    api.post("/concurrency_limits/", json={"tag": "etl", "concurrency_limit": 2})
    page.reload()
    browser.check_page(page, "concurrency")
    limit = api.get("/v2/concurrency_limits/warehouse-db").json()
    assert limit["limit"] == 4 and limit["active"] is True

    page.click(f"a[href='/concurrency-limits/concurrency-limit/{limit['id']}/edit']")
    browser.check_page(page, "concurrency-edit")
    page.fill("#in-limit", "6")
    page.fill("#in-slot_decay_per_second", "0.25")
    page.uncheck("#in-active")
    submit(page)
    limit = api.get("/v2/concurrency_limits/warehouse-db").json()
    assert limit["limit"] == 6 and limit["slot_decay_per_second"] == 0.25 and limit["active"] is False


def test_work_pool_pages(page, api):
    api.post("/work_pools/", json={"name": "console-pool", "type": "process"})
    api.post("/work_pools/console-pool/queues/", json={"name": "high", "priority": 1})
    api.post("/work_pools/console-pool/workers/heartbeat", json={"name": "w-1", "heartbeat_interval_seconds": 30})
    page.goto("/work-pools")
    browser.check_page(page, "work-pools")
    page.click("a[href='/work-pools/work-pool/console-pool']")
    assert "w-1" in page.locator("main").inner_text() and "ONLINE" in page.locator("main").inner_text()
    browser.check_page(page, "work-pool")
    page.click("a[href='/work-pools/work-pool/console-pool/queue/high']")
    browser.check_page(page, "work-queue")
    page.goto("/work-pools/work-pool/console-pool")
    with page.expect_navigation():
        page.click("form[action='/work-pools/work-pool/console-pool/queue/high/pause'] button")
    assert api.get("/work_pools/console-pool/queues/high").json()["is_paused"] is True


@pytest.fixture
def receiver():
    r = Receiver(default=(200, {}, b""))
    yield r
    r.close()


def start_notifier(server, ui_url: str):
    """The real `appliance notifier`, with the server's settings and the console's public URL."""
    env = {**server.env, "APPLIANCE_UI_URL": ui_url, "APPLIANCE_NOTIFIER_POLL_INTERVAL": "0.2",
           "APPLIANCE_NOTIFIER_HEARTBEAT_PATH": str(server.home / "notifier.hb")}
    return subprocess.Popen([support.APPLIANCE_BIN, "notifier"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def test_notification_policy_and_the_link_of_a_delivered_message(page, api, sdk, ui_server, ui_base, receiver):
    tag = f"t{uuid.uuid4().hex[:8]}"
    hook = f"hook-{uuid.uuid4().hex[:6]}"
    page.goto("/blocks/catalog/custom-webhook/create")
    page.fill("#in-block_name", hook)
    page.fill("#f_name", "console hook")
    page.fill("#f_url", receiver.url + "/hook")
    page.fill("#f_json_data", json.dumps({"text": "{{body}}"}))
    page.fill("#f_secrets", json.dumps({"token": "never-shown"}))
    submit(page)
    assert "never-shown" not in page.content()

    page.goto("/notifications")
    page.uncheck("#st-Crashed")
    page.fill("#in-tags", tag)
    page.select_option("#in-block_document_id", label=f"Custom Webhook / {hook}")
    submit(page, "form[action='/notifications/policies']")
    assert "Notification policy created." in page.locator("main").inner_text()
    browser.check_page(page, "notifications")
    (policy,) = [p for p in api.post("/flow_run_notification_policies/filter", json={}).json() if tag in p["tags"]]
    assert policy["state_names"] == ["Failed"] and policy["is_active"] is True
    page.click(f"a[href='/notifications/policy/{policy['id']}/edit']")
    browser.check_page(page, "notification-policy-edit")

    notifier = start_notifier(ui_server, ui_base)
    try:
        run = sdk("fail", tag)
        assert run["state"] == "Failed"
        (message,) = receiver.wait_for(1, 20)[:1]
    finally:
        notifier.send_signal(signal.SIGTERM)
        assert notifier.wait(20) == 0
    text = message.json()["text"]
    link = re.search(r"Flow run URL: (\S+)", text).group(1)
    assert link == f"{ui_base}/runs/flow-run/{run['id']}"

    response = page.goto(link)
    assert response.status == 200
    assert run["id"] in page.content()
    page.goto("/notifications?status=sent")
    log = page.locator("#log ~ .table-wrap").inner_text()
    assert "custom-webhook" in log
    assert wait_for(lambda: api.get(f"/appliance/notifications?flow_run_id={run['id']}").json()[0]["status"] == "sent")
