"""The runs list, dashboard and flows pages in a real browser against a live server, with
runs made by the real Prefect SDK: see the run in /runs, filter the list by state and by
name, click through to the run's page (its task runs and logs), and check every page
(screenshots at both widths, no horizontal overflow, axe-core: browser.check_page)."""

from __future__ import annotations

import re
import uuid

import pytest

from tests.ui import browser
from tests.ui.sdk import sdk_runner

SDK_SCRIPT = '''
"""SDK side of the runs pages' browser tests: `ok LABEL`, `fail LABEL`."""
import json
import sys

from prefect import flow, get_run_logger, task


@task
def extract(n: int) -> list[int]:
    get_run_logger().info("extracted %d rows", n)
    return list(range(n))


@task
def load(rows: list[int]) -> int:
    get_run_logger().info("loaded %d rows", len(rows))
    return len(rows)


@flow(name="console-etl", flow_run_name="etl-{label}")
def etl(label: str, fail: bool = False) -> int:
    get_run_logger().info("console etl starting for %s", label)
    count = load(extract(5))
    if fail:
        raise RuntimeError("the console etl failed on purpose")
    return count


if __name__ == "__main__":
    command, label = sys.argv[1], sys.argv[2]
    state = etl(label, fail=command == "fail", return_state=True)
    run_id = str(state.state_details.flow_run_id)
    print(json.dumps({"id": run_id, "state": state.type.value}))
'''


@pytest.fixture(scope="module")
def sdk(ui_server, tmp_path_factory):
    """Run the SDK script with a command; returns its last JSON line."""
    return sdk_runner(ui_server, tmp_path_factory, SDK_SCRIPT, "console_runs_sdk.py")


def submit_filters(page) -> None:
    with page.expect_navigation():
        page.locator("form.runs-filters button[type=submit]").click()


def test_runs_list_filters_and_run_page(page, api, sdk):
    label = uuid.uuid4().hex[:8]
    ok = sdk("ok", label)
    failed = sdk("fail", f"{label}-x")
    assert ok["state"] == "COMPLETED" and failed["state"] == "FAILED"
    run = api.get(f"/flow_runs/{ok['id']}").json()

    page.goto("/runs")
    ok_link = page.locator(f"main a[href='/runs/flow-run/{ok['id']}']")
    failed_link = page.locator(f"main a[href='/runs/flow-run/{failed['id']}']")
    assert ok_link.inner_text() == f"etl-{label}" and failed_link.count() == 1
    browser.check_page(page, "runs")

    page.check("input[name=state][value=COMPLETED]")
    submit_filters(page)
    assert "state=COMPLETED" in page.url
    assert ok_link.count() == 1 and failed_link.count() == 0
    page.uncheck("input[name=state][value=COMPLETED]")
    page.check("input[name=state][value=FAILED]")
    submit_filters(page)
    assert ok_link.count() == 0 and failed_link.count() == 1
    browser.check_page(page, "runs-filtered")

    page.uncheck("input[name=state][value=FAILED]")
    page.fill("input[name=q]", f"ETL-{label.upper()}")  # case-insensitive; both runs contain it
    submit_filters(page)
    assert ok_link.count() == 1 and failed_link.count() == 1
    page.fill("input[name=q]", f"{label}-x")
    submit_filters(page)
    assert ok_link.count() == 0 and failed_link.count() == 1

    page.goto(f"/runs?q={label}")
    with page.expect_navigation():
        ok_link.click()
    assert re.search(rf"/runs/flow-run/{ok['id']}$", page.url)
    main = page.locator("main")
    assert f"etl-{label}" in page.locator("h1").inner_text()
    tasks = page.locator("#task-runs + .run-live, section[aria-labelledby=task-runs]").first.inner_text()
    assert "extract" in tasks and "load" in tasks
    assert f"console etl starting for {label}" in main.inner_text()
    assert "loaded 5 rows" in main.inner_text()
    browser.check_page(page, "flow-run")

    page.goto("/dashboard")
    assert page.locator(f"main a[href='/runs/flow-run/{failed['id']}']").count() == 1  # recent failures
    browser.check_page(page, "dashboard")
    page.goto("/dashboard?window=7d")
    browser.check_page(page, "dashboard-7d")

    page.goto("/flows")
    browser.check_page(page, "flows")
    with page.expect_navigation():
        page.click(f"a[href='/flows/flow/{run['flow_id']}']")
    assert page.locator("h1").inner_text() == "console-etl"
    assert page.locator(f"main a[href='/runs/flow-run/{ok['id']}']").count() == 1
    browser.check_page(page, "flow")
    with page.expect_navigation():
        page.locator(f"main a[href='/runs?flow={run['flow_id']}']").first.click()
    assert ok_link.count() == 1 and failed_link.count() == 1
    assert "Flow: console-etl" in page.locator("main").inner_text()


def test_live_list_shows_a_new_run(page, api, sdk):
    page.goto("/runs")
    label = uuid.uuid4().hex[:8]
    made = sdk("ok", label)
    # app.js refreshes the table (data-live="rows") every few seconds without a reload
    page.locator(f"main a[href='/runs/flow-run/{made['id']}']").wait_for(timeout=20000)
