"""SDK side of the notification e2e: a policy (via the SDK's API client) or an
``Automation`` (the SDK's class) on Failed + tag, then three flows: a tagged failing one,
an untagged failing one, a tagged completed one. Prints one JSON line of run ids."""

import json
import os
import uuid

from prefect import flow, tags
from prefect.client.orchestration import get_client

MODE = os.environ["NOTIFY_MODE"]
BLOCK_ID = os.environ["NOTIFY_BLOCK_ID"]
TAG = os.environ["NOTIFY_TAG"]

if MODE == "policy":
    # 3.8.8's client has no policy helpers (removed in 3.4): the SDK's own HTTP client posts it.
    with get_client(sync_client=True) as client:
        resp = client.request("POST", "/flow_run_notification_policies/",
                              json={"state_names": ["Failed"], "tags": [TAG], "block_document_id": BLOCK_ID})
        resp.raise_for_status()
else:
    from prefect.automations import Automation, EventTrigger, Posture
    from prefect.events.actions import SendNotification

    Automation(
        name=f"notify-{TAG}",
        trigger=EventTrigger(
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{TAG}"},
            expect={"prefect.flow-run.Failed"},
            posture=Posture.Reactive,
            threshold=1,
            for_each={"prefect.resource.id"},
        ),
        actions=[SendNotification(block_document_id=uuid.UUID(BLOCK_ID), subject="Run failed",
                                  body="Flow run {{ flow.name }}/{{ flow_run.name }} entered {{ flow_run.state.name }}")],
    ).create()


@flow(name=f"nightly-{TAG}")
def nightly(fail: bool):
    if fail:
        raise ValueError("boom")
    return 1


ids = {}
for label, tagged, fail in (("tagged_failed", True, True), ("untagged_failed", False, True), ("tagged_completed", True, False)):
    run_name = f"{label}-{uuid.uuid4().hex[:6]}"
    with tags(TAG) if tagged else tags():
        state = nightly.with_options(flow_run_name=run_name)(fail, return_state=True)
    ids[label] = {"id": str(state.state_details.flow_run_id), "name": run_name, "state": state.name}
print(json.dumps(ids))
