"""A flow run's actions in a real browser against a live server, on runs of the real Prefect
SDK running in a subprocess: cancel a running run, and resume a paused run with input from
the form generated from its RunInput schema (a wrong value first: the form says why and the
run stays paused). The pages are checked by browser.check_page (screenshots at both widths,
no horizontal overflow, axe-core)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid

import pytest

from tests.e2e.conftest import last_json_line, sdk_env, wait_for
from tests.ui import browser

SDK_SCRIPT = '''
"""SDK side of the run actions' browser tests: `long LABEL`, `approval LABEL`."""
import json
import sys
import time

from pydantic import Field

from prefect import flow, get_run_logger
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput


class Approval(RunInput):
    approver: str
    amount: int = Field(ge=1)


@flow(name="console-long", flow_run_name="long-{label}")
def long_running(label: str, seconds: float = 60) -> str:
    get_run_logger().info("long run %s started", label)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.2)
    return "slept"


@flow(name="console-approval", flow_run_name="approval-{label}")
def approval(label: str) -> dict:
    answer = pause_flow_run(wait_for_input=Approval, timeout=60, poll_interval=1)
    get_run_logger().info("approved by %s for %d", answer.approver, answer.amount)
    return {"approver": answer.approver, "amount": answer.amount}


if __name__ == "__main__":
    command, label = sys.argv[1], sys.argv[2]
    run = long_running if command == "long" else approval
    state = run(label, return_state=True)
    print(json.dumps({"id": str(state.state_details.flow_run_id), "state": state.type.value,
                      "result": state.result(raise_on_failure=False) if state.is_completed() else None}))
'''


@pytest.fixture
def sdk(ui_server, tmp_path):
    """Start the SDK script in the background; every process started is killed at the end."""
    script = tmp_path / "console_actions_sdk.py"
    script.write_text(textwrap.dedent(SDK_SCRIPT))
    started: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        out = open(tmp_path / f"sdk-{len(started)}.out", "w+")
        proc = subprocess.Popen([sys.executable, str(script), *args], env=sdk_env(ui_server.url, ui_server.home),
                                stdout=out, stderr=subprocess.STDOUT, text=True, cwd=str(tmp_path))
        proc.output = out
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        proc.output.close()


def output(proc) -> str:
    proc.output.flush()
    proc.output.seek(0)
    return proc.output.read()[-3000:]


def run_named(api, name: str, proc, state_type: str, timeout: float = 25) -> dict:
    """The flow run called ``name`` once it is in ``state_type`` (bounded; fails with the SDK's output)."""
    def find():
        assert proc.poll() is None, f"the SDK exited early:\n{output(proc)}"
        found = api.post("/flow_runs/filter", json={"flow_runs": {"name": {"any_": [name]}}}).json()
        return found[0] if found and found[0]["state"]["type"] == state_type else None

    run = wait_for(find, timeout=timeout, interval=0.2)
    assert run, f"{name} never became {state_type}:\n{output(proc)}"
    return run


def test_cancel_a_running_run(page, api, sdk):
    label = uuid.uuid4().hex[:8]
    proc = sdk("long", label)
    run = run_named(api, f"long-{label}", proc, "RUNNING")
    path = f"/runs/flow-run/{run['id']}"

    page.goto(path)
    header = page.locator(".section-head")
    assert "Running" in header.inner_text()
    dialogs: list[str] = []

    def accept(dialog):
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    with page.expect_navigation():
        page.locator(f"form[action='{path}/cancel'] button").click()
    assert dialogs == [f"Cancel the flow run long-{label}?"]
    assert page.url.endswith(f"{path}?msg=cancelling")
    main = page.locator("main").inner_text()
    assert "Cancellation requested" in main and "Cancelling" in header.inner_text()
    assert page.locator(f"form[action='{path}/cancel']").count() == 0  # nothing more to cancel
    browser.check_page(page, "flow-run-cancelling")

    # As with Prefect's server: a forced Cancelling on a Running run is accepted as is (only a
    # Scheduled run with no infrastructure or a suspended one is Cancelled outright), and it is
    # the runner or worker that stops the process and writes Cancelled. This flow runs in a
    # plain process with neither, and the SDK does not watch for cancellation itself, so the
    # run stays Cancelling while the process goes on.
    state = api.get(f"/flow_runs/{run['id']}").json()["state"]
    assert state["type"] == "CANCELLING" and state["name"] == "Cancelling"
    page.wait_for_timeout(1000)
    assert proc.poll() is None, output(proc)
    assert api.get(f"/flow_runs/{run['id']}").json()["state"]["type"] == "CANCELLING"
    history = api.get("/flow_run_states/", params={"flow_run_id": run["id"]}).json()
    assert [s["type"] for s in history][-2:] == ["RUNNING", "CANCELLING"]


def test_resume_a_paused_run_with_input(page, api, sdk):
    label = uuid.uuid4().hex[:8]
    proc = sdk("approval", label)
    run = run_named(api, f"approval-{label}", proc, "PAUSED")
    path = f"/runs/flow-run/{run['id']}"
    keyset = run["state"]["state_details"]["run_input_keyset"]
    # The SDK writes the input's schema just after the Paused state is accepted: wait for it.
    assert wait_for(lambda: api.get(f"/flow_runs/{run['id']}/input/{keyset['schema']}").status_code == 200,
                    timeout=10, interval=0.2), output(proc)

    page.goto(path)
    assert "Paused" in page.locator(".section-head").inner_text()
    assert page.locator("#resume #f_approver").count() == 1  # the run page shows the form too
    browser.check_page(page, "flow-run-paused")
    with page.expect_navigation():
        page.click(f"a[href='{path}/resume']")
    assert page.url.endswith(f"{path}/resume")
    assert page.locator("h1").inner_text().startswith(f"Resume approval-{label}")
    browser.check_page(page, "flow-run-resume")

    # A number the schema refuses (pydantic's ge=1): the field is type=number, so a person
    # cannot type a word into it; the browser does not check the minimum, the server does.
    page.fill("#f_approver", "ada")
    page.fill("#f_amount", "0")
    with page.expect_navigation():
        page.click("main form.stack button[type=submit]")
    page.console_errors.clear()  # Chromium logs the 422 of the document itself
    assert "Must be at least 1." in page.locator("main").inner_text()
    assert page.input_value("#f_approver") == "ada" and page.input_value("#f_amount") == "0"
    browser.check_page(page, "flow-run-resume-errors")
    assert api.get(f"/flow_runs/{run['id']}").json()["state"]["type"] == "PAUSED"
    assert api.get(f"/flow_runs/{run['id']}/input/{keyset['response']}").status_code == 404
    assert proc.poll() is None, output(proc)

    page.fill("#f_amount", "250")
    with page.expect_navigation():
        page.click("main form.stack button[type=submit]")
    assert page.url.endswith(f"{path}?msg=resumed")
    assert "The run is resumed." in page.locator("main").inner_text()

    proc.wait(30)
    assert proc.returncode == 0, output(proc)
    done = last_json_line(output(proc))
    assert done == {"id": run["id"], "state": "COMPLETED", "result": {"approver": "ada", "amount": 250}}
    assert api.get(f"/flow_runs/{run['id']}").json()["state"]["type"] == "COMPLETED"
    stored = api.get(f"/flow_runs/{run['id']}/input/{keyset['response']}")
    assert stored.status_code == 200 and stored.json() == {"approver": "ada", "amount": 250}

    def logged():
        logs = api.post("/logs/filter", json={"logs": {"flow_run_id": {"any_": [run["id"]]}}}).json()
        return any(line["message"] == "approved by ada for 250" for line in logs)

    assert wait_for(logged, timeout=10, interval=0.2)
    page.reload()  # the run page of the finished run shows the line too
    assert "approved by ada for 250" in page.locator("main").inner_text()
