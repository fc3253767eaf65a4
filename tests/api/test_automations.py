"""/automations: the shapes the 3.8.8 SDK sends; unsupported automations refused with 422."""

from __future__ import annotations

import copy
import uuid

A = "/api/automations"
BODY = {
    "name": "notify-failed", "description": "", "enabled": True, "tags": [],
    "trigger": {"type": "event", "match": {"prefect.resource.id": "prefect.flow-run.*"},
                "match_related": {"prefect.resource.role": "tag", "prefect.resource.id": "prefect.tag.prod"},
                "after": [], "expect": ["prefect.flow-run.Failed"], "for_each": ["prefect.resource.id"],
                "posture": "Reactive", "threshold": 1, "within": 0.0},
    "actions": [{"type": "send-notification", "block_document_id": str(uuid.uuid4()), "subject": "s",
                 "body": "b {{ flow_run.name }}"}],
    "actions_on_trigger": [], "actions_on_resolve": [], "owner_resource": None,
}


def test_crud_and_filter(client):
    r = client.simulate_post(A, json=BODY)
    assert r.status_code == 201, r.text
    aid = r.json["id"]
    assert r.json["trigger"]["expect"] == ["prefect.flow-run.Failed"]
    assert client.simulate_get(f"{A}/{aid}").json["name"] == "notify-failed"
    by_name = client.simulate_post(f"{A}/filter", json={"automations": {"name": {"any_": ["notify-failed"]}}})
    assert [a["id"] for a in by_name.json] == [aid]
    assert client.simulate_post(f"{A}/count", json={}).json == 1
    assert client.simulate_patch(f"{A}/{aid}", json={"enabled": False}).status_code == 204
    assert client.simulate_get(f"{A}/{aid}").json["enabled"] is False
    changed = {**BODY, "name": "renamed"}
    assert client.simulate_put(f"{A}/{aid}", json=changed).status_code == 204
    assert client.simulate_get(f"{A}/{aid}").json["name"] == "renamed"
    assert [a["id"] for a in client.simulate_get(f"{A}/related-to/prefect.tag.prod").json] == [aid]
    assert client.simulate_delete(f"{A}/{aid}").status_code == 204
    assert client.simulate_get(f"{A}/{aid}").status_code == 404


def test_owned_by_and_related_to(client):
    owned = {**BODY, "owner_resource": "prefect.deployment.abc"}
    client.simulate_post(A, json=owned)
    assert len(client.simulate_get(f"{A}/related-to/prefect.deployment.abc").json) == 1
    assert client.simulate_delete(f"{A}/owned-by/prefect.deployment.abc").status_code == 202
    assert client.simulate_get(f"{A}/related-to/prefect.deployment.abc").json == []


def _refused(client, mutate, field):
    body = copy.deepcopy(BODY)
    mutate(body)
    r = client.simulate_post(A, json=body)
    assert r.status_code == 422, r.text
    assert field in r.json["detail"]
    assert client.simulate_post(f"{A}/count", json={}).json == 0


def test_unsupported_parts_are_refused(client):
    _refused(client, lambda b: b["trigger"].update(posture="Proactive"), "trigger.posture")
    _refused(client, lambda b: b["trigger"].update(threshold=3), "trigger.threshold")
    _refused(client, lambda b: b["trigger"].update(expect=["prefect.task-run.Failed"]), "trigger.expect")
    _refused(client, lambda b: b["trigger"].update(type="compound"), "trigger.type")
    _refused(client, lambda b: b["trigger"].update(match={"prefect.resource.id": "prefect.work-pool.*"}), "trigger.match")
    _refused(client, lambda b: b.update(actions=[{"type": "cancel-flow-run"}]), "actions.0.type")
    _refused(client, lambda b: b["actions"][0].update(body="{% for %}"), "actions.0.body")
    _refused(client, lambda b: b["actions"][0].pop("body"), "actions.0.body")


def test_defaults_completed_for_the_sdk(client):
    body = copy.deepcopy(BODY)
    body["trigger"] = {"type": "event", "match": {"prefect.resource.id": "prefect.flow-run.*"},
                       "expect": ["prefect.flow-run.Crashed"], "posture": "Reactive", "threshold": 1}
    del body["actions"][0]["subject"]
    created = client.simulate_post(A, json=body).json
    assert created["actions"][0]["subject"] == "Prefect automated notification"
    from prefect.events.schemas.automations import Automation

    model = Automation.model_validate(created)
    assert model.trigger.within.total_seconds() == 0 and model.trigger.for_each == set()
