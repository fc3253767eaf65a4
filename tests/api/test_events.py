"""Events on both backends.

- The task-run recorder (spec §3.4): `prefect.task-run.*` events -> task-run rows and state
  history, deduplicated by event id, never rolled back by an older event, tolerant of events
  before their flow run exists or after it ended (in-process client, POST /events: the same
  recorder the websocket feeds).
- Server-side `prefect.flow-run.<State>` events on every flow-run state write.
- Reads: /events/filter, /events/filter/next, /events/count-by/{countable}.
- The websockets on a live `appliance serve`: /events/in (the `prefect` subprotocol, the auth
  handshake with and without APPLIANCE_AUTH_STRING, pings, bad frames, re-sends after a
  reconnect, legacy mode) and /events/out (backfill and live flow-run events).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import uuid

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from db.models import Event, TaskRun, TaskRunState
from tests import support

AUTH = "admin:s3cret"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def z(value: dt.datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def task_event(task_run_id, state_type, state_name, occurred, *, flow_run_id=None, run_count=1,
               event_id=None, details=None, task_key="add-096757fa", dynamic_key=None, client=True, **task_run):
    """A task-run event as the 3.8.8 engine sends it (shape of ex:01#16). The dynamic key is
    unique per task run unless given (runs sharing flow run, task key and dynamic key are one)."""
    body = {
        "name": "add-594",
        "task_key": task_key,
        "dynamic_key": dynamic_key or task_run_id,
        "empirical_policy": {"max_retries": 0, "retry_delay_seconds": 0.0, "retries": 2, "retry_delay": 0},
        "tags": ["flaky"],
        "labels": {},
        "task_inputs": {"x": [], "y": []},
        "run_count": run_count,
        "flow_run_run_count": 1,
        "expected_start_time": z(occurred - dt.timedelta(seconds=1)),
        "total_run_time": 0.0,
        **task_run,
    }
    resource = {
        "prefect.resource.id": f"prefect.task-run.{task_run_id}",
        "prefect.resource.name": "add-594",
        "prefect.run-count": str(run_count),
        "prefect.state-message": "",
        "prefect.state-name": state_name,
        "prefect.state-timestamp": occurred.replace(tzinfo=dt.UTC).isoformat(),
        "prefect.state-type": state_type,
    }
    if client:
        resource["prefect.orchestration"] = "client"
    related = [{"prefect.resource.id": "prefect.tag.flaky", "prefect.resource.role": "tag"}]
    if flow_run_id:
        related.append(
            {"prefect.resource.id": f"prefect.flow-run.{flow_run_id}", "prefect.resource.role": "flow-run",
             "prefect.resource.name": "denim-chamois"}
        )
    return {
        "occurred": z(occurred),
        "event": f"prefect.task-run.{state_name}",
        "resource": resource,
        "related": related,
        "payload": {
            "intended": {"from": None, "to": state_type},
            "initial_state": None,
            "validated_state": {"type": state_type, "name": state_name, "message": "",
                                "state_details": details or {}, "data": None},
            "task_run": body,
        },
        "id": event_id or str(uuid.uuid4()),
        "follows": None,
    }


def lifecycle(task_run_id, flow_run_id, start):
    """Pending -> Running -> Completed, one millisecond apart."""
    return [
        task_event(task_run_id, "PENDING", "Pending", start, flow_run_id=flow_run_id, run_count=0),
        task_event(task_run_id, "RUNNING", "Running", start + dt.timedelta(milliseconds=1), flow_run_id=flow_run_id,
                   start_time=z(start + dt.timedelta(milliseconds=1))),
        task_event(task_run_id, "COMPLETED", "Completed", start + dt.timedelta(milliseconds=2),
                   flow_run_id=flow_run_id, start_time=z(start + dt.timedelta(milliseconds=1)),
                   end_time=z(start + dt.timedelta(milliseconds=2)), total_run_time=0.001),
    ]


def post_events(client, events):
    resp = client.simulate_post("/api/events", json=events)
    assert resp.status_code == 204, resp.text
    return resp


def task_states(client, task_run_id):
    resp = client.simulate_get("/api/task_run_states/", params={"task_run_id": task_run_id})
    assert resp.status_code == 200, resp.text
    return resp.json


def make_flow_run(client, **extra):
    flow = client.simulate_post("/api/flows/", json={"name": "pipeline"}).json
    resp = client.simulate_post("/api/flow_runs/", json={"flow_id": flow["id"], **extra})
    assert resp.status_code == 201, resp.text
    return resp.json


def set_state(client, run_id, state_type, name=None, force=False):
    state = {"type": state_type}
    if name:
        state["name"] = name
    resp = client.simulate_post(f"/api/flow_runs/{run_id}/set_state", json={"state": state, "force": force})
    assert resp.status_code in (200, 201), resp.text
    return resp.json


def read_events(client, flt, limit=50):
    resp = client.simulate_post("/api/events/filter", json={"filter": flt, "limit": limit})
    assert resp.status_code == 200, resp.text
    return resp.json


# --- the task-run recorder -------------------------------------------------------------


def test_task_run_events_make_the_row_and_its_history(client):
    task_run_id, flow_run_id = str(uuid.uuid4()), str(uuid.uuid4())
    events = lifecycle(task_run_id, flow_run_id, utcnow() - dt.timedelta(seconds=5))
    post_events(client, events)
    row = client.simulate_get(f"/api/task_runs/{task_run_id}").json
    assert (row["state_type"], row["state_name"], row["state_id"]) == ("COMPLETED", "Completed", events[2]["id"])
    assert (row["name"], row["task_key"], row["dynamic_key"]) == ("add-594", "add-096757fa", task_run_id)
    assert row["flow_run_id"] == flow_run_id and row["tags"] == ["flaky"]
    assert row["run_count"] == 1 and row["total_run_time"] == 0.001
    assert row["start_time"] == events[1]["payload"]["task_run"]["start_time"]
    assert row["end_time"] == events[2]["occurred"]
    assert row["empirical_policy"]["retries"] == 2
    assert row["task_inputs"] == {"x": [], "y": []}
    assert row["state"]["id"] == events[2]["id"] and row["state"]["timestamp"] == events[2]["occurred"]
    states = task_states(client, task_run_id)
    assert [s["id"] for s in states] == [e["id"] for e in events]  # the state id is the event id
    assert [s["type"] for s in states] == ["PENDING", "RUNNING", "COMPLETED"]
    assert all(s["state_details"]["task_run_id"] == task_run_id for s in states)
    assert all(s["state_details"]["flow_run_id"] == flow_run_id for s in states)
    # The task run is filterable through its flow run id like any other.
    found = client.simulate_post("/api/task_runs/filter", json={"task_runs": {"flow_run_id": {"any_": [flow_run_id]}}})
    assert [t["id"] for t in found.json] == [task_run_id]


def test_replayed_events_are_deduplicated_by_id(client):
    task_run_id = str(uuid.uuid4())
    events = lifecycle(task_run_id, None, utcnow() - dt.timedelta(seconds=5))
    post_events(client, events)
    post_events(client, events)  # the client re-sends everything unconfirmed after a reconnect
    post_events(client, [events[1], events[1], events[2]])  # and duplicates within one batch
    assert [s["type"] for s in task_states(client, task_run_id)] == ["PENDING", "RUNNING", "COMPLETED"]
    assert TaskRun.select().count() == 1 and TaskRunState.select().count() == 3
    assert Event.select().where(Event.id.in_([e["id"] for e in events])).count() == 3
    assert read_events(client, {"resource": {"id": [f"prefect.task-run.{task_run_id}"]}})["total"] == 3


def test_an_older_event_never_rolls_the_state_back(client):
    task_run_id = str(uuid.uuid4())
    pending, running, completed = lifecycle(task_run_id, None, utcnow() - dt.timedelta(seconds=5))
    post_events(client, [pending, completed])
    post_events(client, [running])  # arrives late, occurred earlier
    row = client.simulate_get(f"/api/task_runs/{task_run_id}").json
    assert (row["state_type"], row["state_id"]) == ("COMPLETED", completed["id"])
    assert row["end_time"] == completed["occurred"]
    # History still gets the late state, in time order.
    assert [s["type"] for s in task_states(client, task_run_id)] == ["PENDING", "RUNNING", "COMPLETED"]


def test_a_shuffled_batch_ends_in_the_newest_state(client):
    task_run_id = str(uuid.uuid4())
    pending, running, completed = lifecycle(task_run_id, None, utcnow() - dt.timedelta(seconds=5))
    post_events(client, [completed, pending, running])
    row = client.simulate_get(f"/api/task_runs/{task_run_id}").json
    assert row["state_type"] == "COMPLETED" and row["start_time"] is not None


def test_retry_sequence_takes_run_count_and_details_from_the_client(client):
    tid, start = str(uuid.uuid4()), utcnow() - dt.timedelta(seconds=10)
    at = [start + dt.timedelta(milliseconds=i) for i in range(5)]
    scheduled = z(at[2] + dt.timedelta(seconds=1))
    post_events(
        client,
        [
            task_event(tid, "PENDING", "Pending", at[0], run_count=0),
            task_event(tid, "RUNNING", "Running", at[1], run_count=1),
            task_event(tid, "SCHEDULED", "AwaitingRetry", at[2], run_count=1, details={"scheduled_time": scheduled}),
            task_event(tid, "RUNNING", "Retrying", at[3], run_count=2),
            task_event(tid, "COMPLETED", "Completed", at[4], run_count=2),
        ],
    )
    row = client.simulate_get(f"/api/task_runs/{tid}").json
    assert (row["run_count"], row["state_name"]) == (2, "Completed")
    states = task_states(client, tid)
    assert [s["name"] for s in states] == ["Pending", "Running", "AwaitingRetry", "Retrying", "Completed"]
    assert states[2]["state_details"]["scheduled_time"] == scheduled


def test_events_before_the_flow_run_exists_and_after_it_ended(client):
    start = utcnow() - dt.timedelta(seconds=30)
    early = str(uuid.uuid4())
    unknown_run = str(uuid.uuid4())
    post_events(client, lifecycle(early, unknown_run, start))  # no flow run row at all
    assert client.simulate_get(f"/api/task_runs/{early}").json["flow_run_id"] == unknown_run

    run = make_flow_run(client)
    set_state(client, run["id"], "RUNNING")
    set_state(client, run["id"], "COMPLETED")
    late = str(uuid.uuid4())
    post_events(client, lifecycle(late, run["id"], start))  # the events worker drains after the flow ended
    row = client.simulate_get(f"/api/task_runs/{late}").json
    assert (row["flow_run_id"], row["state_type"]) == (run["id"], "COMPLETED")
    assert client.simulate_get(f"/api/flow_runs/{run['id']}").json["state_type"] == "COMPLETED"

    assert client.simulate_delete(f"/api/flow_runs/{run['id']}").status_code == 204
    after_delete = str(uuid.uuid4())
    post_events(client, lifecycle(after_delete, run["id"], start))
    assert client.simulate_get(f"/api/task_runs/{after_delete}").status_code == 200


def test_a_task_outside_any_flow_has_no_flow_run(client):
    tid = str(uuid.uuid4())
    post_events(client, lifecycle(tid, None, utcnow() - dt.timedelta(seconds=5)))
    assert client.simulate_get(f"/api/task_runs/{tid}").json["flow_run_id"] is None


def test_server_side_or_foreign_task_events_are_only_stored(client):
    tid = str(uuid.uuid4())
    event = task_event(tid, "RUNNING", "Running", utcnow() - dt.timedelta(seconds=5), client=False)
    other = {"occurred": z(utcnow()), "event": "prefect.flow-run.heartbeat",
             "resource": {"prefect.resource.id": f"prefect.flow-run.{uuid.uuid4()}"}, "id": str(uuid.uuid4())}
    post_events(client, [event, other])
    assert client.simulate_get(f"/api/task_runs/{tid}").status_code == 404
    assert TaskRun.select().count() == 0
    assert Event.select().count() == 2


def test_events_join_a_rest_created_task_run_by_natural_key(client):
    run = make_flow_run(client)
    rest = client.simulate_post(
        "/api/task_runs/",
        json={"flow_run_id": run["id"], "task_key": "add-096757fa", "dynamic_key": "7", "name": "add-594"},
    )
    assert rest.status_code == 201, rest.text
    event_tid = str(uuid.uuid4())
    # Newer than the REST row's server-stamped Pending, so it becomes the current state.
    events = [task_event(event_tid, "RUNNING", "Running", utcnow() + dt.timedelta(milliseconds=50),
                         flow_run_id=run["id"], dynamic_key="7")]
    post_events(client, events)
    row = client.simulate_get(f"/api/task_runs/{rest.json['id']}").json
    assert (row["state_type"], row["state_id"]) == ("RUNNING", events[0]["id"])
    assert client.simulate_get(f"/api/task_runs/{event_tid}").status_code == 404
    assert task_states(client, rest.json["id"])[-1]["id"] == events[0]["id"]


def test_a_poison_event_does_not_block_the_rest_of_its_batch(live):
    """An event whose natural key collides with another task run cannot be applied; the
    websocket drops it (logged) and records the others instead of failing the batch forever."""
    first, second, third = (str(uuid.uuid4()) for _ in range(3))
    flow_run_id = str(uuid.uuid4())
    start = utcnow() - dt.timedelta(seconds=5)
    ws = open_ws(live, "/events/in")
    ws.send(json.dumps(task_event(first, "PENDING", "Pending", start, flow_run_id=flow_run_id, dynamic_key="a")))
    ws.send(json.dumps(task_event(second, "PENDING", "Pending", start, flow_run_id=flow_run_id, dynamic_key="b")))
    assert wait_for(lambda: task_run_state(live, second) == "PENDING")
    later = start + dt.timedelta(seconds=1)
    batch = [
        task_event(second, "RUNNING", "Running", later, flow_run_id=flow_run_id, dynamic_key="a"),  # collides
        task_event(third, "RUNNING", "Running", later, flow_run_id=flow_run_id, dynamic_key="c"),
    ]
    ws.send(json.dumps(batch[0]))
    ws.send(json.dumps(batch[1]))
    assert ws.ping().wait(5)
    assert wait_for(lambda: task_run_state(live, third) == "RUNNING")
    assert task_run_state(live, second) == "PENDING"
    ws.close()


# --- server-side flow-run events -------------------------------------------------------


def test_every_flow_run_state_write_emits_an_event(client):
    run = make_flow_run(client, tags=["nightly"])
    running = set_state(client, run["id"], "RUNNING")["state"]
    completed = set_state(client, run["id"], "COMPLETED")["state"]
    forced = set_state(client, run["id"], "FAILED", force=True)["state"]
    found = read_events(client, {"resource": {"id": [f"prefect.flow-run.{run['id']}"]}, "order": "ASC"})
    events = found["events"]
    assert [e["event"] for e in events] == [
        "prefect.flow-run.Pending", "prefect.flow-run.Running", "prefect.flow-run.Completed",
        "prefect.flow-run.Failed",
    ]
    assert [e["id"] for e in events] == [run["state"]["id"], running["id"], completed["id"], forced["id"]]
    first, second = events[0], events[1]
    assert first["follows"] is None and second["follows"] == first["id"]
    assert first["payload"] == {"intended": {"from": None, "to": "PENDING"}, "initial_state": None,
                                "validated_state": {"type": "PENDING", "name": "Pending"}}
    assert second["payload"]["intended"] == {"from": "PENDING", "to": "RUNNING"}
    assert second["payload"]["initial_state"] == {"type": "PENDING", "name": "Pending"}
    resource = second["resource"]
    assert resource["prefect.resource.id"] == f"prefect.flow-run.{run['id']}"
    assert resource["prefect.resource.name"] == run["name"]
    assert (resource["prefect.state-type"], resource["prefect.state-name"]) == ("RUNNING", "Running")
    assert resource["prefect.run-count"] == "1"
    assert resource["prefect.state-timestamp"] == running["timestamp"].replace("Z", "+00:00")
    assert second["occurred"] == running["timestamp"]
    roles = {(r["prefect.resource.role"], r["prefect.resource.id"]) for r in second["related"]}
    assert ("flow", f"prefect.flow.{run['flow_id']}") in roles and ("tag", "prefect.tag.nightly") in roles
    assert second["received"].endswith("Z")


def test_rejected_or_aborted_proposals_emit_nothing_new(client):
    run = make_flow_run(client)
    result = set_state(client, run["id"], "PENDING")  # PENDING -> PENDING is aborted
    assert result["status"] == "ABORT"
    found = read_events(client, {"resource": {"id": [f"prefect.flow-run.{run['id']}"]}})
    assert [e["event"] for e in found["events"]] == ["prefect.flow-run.Pending"]


# --- reads -------------------------------------------------------------------------------


def _seed(client):
    """Six events over the last hour, with resources, related resources and payloads."""
    now = utcnow()
    flow_run = str(uuid.uuid4())

    def ev(name, minutes_ago, rid, labels=None, related=None, payload=None):
        return {"occurred": z(now - dt.timedelta(minutes=minutes_ago)), "event": name,
                "resource": {"prefect.resource.id": rid, **(labels or {})}, "related": related or [],
                "payload": payload or {}, "id": str(uuid.uuid4())}

    rel = [{"prefect.resource.id": f"prefect.flow-run.{flow_run}", "prefect.resource.role": "flow-run"}]
    events = [
        ev("probe.alpha.started", 50, "probe.r.1", {"prefect.resource.name": "one", "env": "prod"}, rel),
        ev("probe.alpha.done", 40, "probe.r.1", {"prefect.resource.name": "one", "env": "prod"}, rel,
           {"message": "connection timeout"}),
        ev("probe.beta.started", 30, "probe.r.2", {"env": "staging"}),
        ev("probe.beta.done", 20, "probe.r.2", {"env": "staging"}),
        ev("probe.gamma", 10, "other.r.3", {"env": "prod-eu"},
           [{"prefect.resource.id": "prefect.tag.x", "prefect.resource.role": "tag"}]),
        ev("probe.alpha.started", 5, "probe.r.4", {"prefect.name": "legacy-name"}),
    ]
    post_events(client, events)
    return now, flow_run, events


def test_filter_grammar(client):
    now, flow_run, events = _seed(client)
    ids = [e["id"] for e in events]

    def got(flt):
        return [e["id"] for e in read_events(client, {**flt, "order": "ASC"})["events"]]

    everything = {"event": {"prefix": ["probe."]}}
    assert got(everything) == ids
    assert [e["id"] for e in read_events(client, everything)["events"]] == ids[::-1]  # DESC by default
    assert got({"event": {"name": ["probe.beta.done"]}}) == [ids[3]]
    assert got({"event": {"prefix": ["probe.alpha."]}}) == [ids[0], ids[1], ids[5]]
    assert got({"event": {"prefix": ["probe."], "exclude_prefix": ["probe.alpha"]}}) == ids[2:5]
    assert got({"event": {"prefix": ["probe."], "exclude_name": ["probe.gamma"]}}) == ids[:4] + [ids[5]]
    assert got({"resource": {"id": ["probe.r.2"]}}) == [ids[2], ids[3]]
    assert got({"resource": {"id_prefix": ["other."]}}) == [ids[4]]
    assert got({"resource": {"labels": {"env": "prod"}}}) == [ids[0], ids[1]]
    assert got({"resource": {"labels": {"env": "prod*"}}}) == [ids[0], ids[1], ids[4]]
    assert got({**everything, "resource": {"labels": {"env": ["!prod", "!staging"]}}}) == [ids[4], ids[5]]
    assert got({"related": {"role": ["flow-run"]}}) == [ids[0], ids[1]]
    assert got({"related": [{"id": [f"prefect.flow-run.{flow_run}"]}]}) == [ids[0], ids[1]]
    assert got({"related": {"resources_in_roles": [["prefect.tag.x", "tag"]]}}) == [ids[4]]
    assert got({"any_resource": {"id": ["prefect.tag.x"]}}) == [ids[4]]
    assert got({"any_resource": [{"id_prefix": ["probe.r.4"]}]}) == [ids[5]]
    assert got({"id": {"id": [ids[2], ids[0]]}}) == [ids[0], ids[2]]
    assert got({**everything, "id": {"id": []}}) == ids  # an empty id list is no constraint
    assert got({**everything, "text": {"query": "timeout"}}) == [ids[1]]
    assert got({**everything, "text": {"query": "staging -done"}}) == [ids[2]]
    since, until = z(now - dt.timedelta(minutes=35)), z(now - dt.timedelta(minutes=15))
    assert got({**everything, "occurred": {"since": since, "until": until}}) == [ids[2], ids[3]]
    # What runners send to /events/out, explicit nulls included, also works as a read.
    runner = {"occurred": {"since": z(now - dt.timedelta(hours=2)), "until": z(now + dt.timedelta(days=365))},
              "event": {"prefix": None, "exclude_prefix": None, "name": ["probe.gamma"], "exclude_name": None},
              "resource": None, "related": None, "any_resource": None, "id": {"id": []}, "text": None,
              "order": "DESC"}
    assert [e["id"] for e in read_events(client, runner)["events"]] == [ids[4]]
    one = read_events(client, {"id": {"id": [ids[1]]}})["events"][0]
    assert one == {**events[1], "follows": None, "received": one["received"]}


def test_filter_pages_through_next(client):
    _, _, events = _seed(client)
    first = client.simulate_post("/api/events/filter", json={"filter": {"event": {"prefix": ["probe."]}}, "limit": 4})
    assert first.status_code == 200
    body = first.json
    assert body["total"] == 6 and len(body["events"]) == 4
    assert body["next_page"].startswith("http") and "/api/events/filter/next?page-token=" in body["next_page"]
    path, _, query = body["next_page"].partition("://")[2].partition("/")[2].partition("?")
    second = client.simulate_get(f"/{path}", query_string=query)
    assert second.status_code == 200, second.text
    assert second.json["total"] == 6 and second.json["next_page"] is None
    seen = [e["id"] for e in body["events"] + second.json["events"]]
    assert seen == [e["id"] for e in events][::-1]
    assert client.simulate_get("/api/events/filter/next", params={"page-token": "garbage"}).status_code == 403
    missing = client.simulate_get("/api/events/filter/next")
    assert missing.status_code == 422 and missing.json["exception_detail"][0]["loc"] == ["query", "page-token"]
    default = client.simulate_post("/api/events/filter").json
    assert default["total"] == 6 and len(default["events"]) == 6 and default["next_page"] is None


def test_count_by_event_and_resource(client):
    now, _, events = _seed(client)
    flt = {"event": {"prefix": ["probe."]}}
    by_event = client.simulate_post("/api/events/count-by/event", json={"filter": flt}).json
    assert [(r["value"], r["count"]) for r in by_event] == [  # most frequent first, then by label
        ("probe.alpha.started", 2), ("probe.alpha.done", 1), ("probe.beta.done", 1), ("probe.beta.started", 1),
        ("probe.gamma", 1),
    ]
    started = by_event[0]
    assert started["label"] == "probe.alpha.started"
    assert (started["start_time"], started["end_time"]) == (events[0]["occurred"], events[5]["occurred"])
    by_resource = client.simulate_post("/api/events/count-by/resource", json={"filter": flt}).json
    labels = {r["value"]: (r["label"], r["count"]) for r in by_resource}
    assert labels == {"probe.r.1": ("one", 2), "probe.r.2": ("probe.r.2", 2), "other.r.3": ("other.r.3", 1),
                      "probe.r.4": ("legacy-name", 1)}


def test_count_by_time_fills_every_bucket(client):
    now, _, _ = _seed(client)
    since = now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=2)
    flt = {"event": {"prefix": ["probe."]}, "occurred": {"since": z(since), "until": z(now)}}
    rows = client.simulate_post("/api/events/count-by/time",
                                json={"filter": flt, "time_unit": "minute", "time_interval": 15}).json
    assert [r["value"] for r in rows] == [str(i) for i in range(len(rows))]
    assert 9 <= len(rows) <= 12 and sum(r["count"] for r in rows) == 6
    assert rows[0]["start_time"] == z(since) and rows[0]["label"] == since.replace(tzinfo=dt.UTC).isoformat()
    assert rows[0]["end_time"] == z(since + dt.timedelta(minutes=15) - dt.timedelta(microseconds=1))
    for row in rows:  # each event falls in its own bucket
        start, end = dt.datetime.fromisoformat(row["start_time"][:-1]), dt.datetime.fromisoformat(row["end_time"][:-1])
        assert end - start == dt.timedelta(minutes=15) - dt.timedelta(microseconds=1)
    day = client.simulate_post("/api/events/count-by/day", json={"filter": {"event": {"prefix": ["probe."]}}}).json
    assert len(day) == 181 and sum(r["count"] for r in day) == 6  # default since: 180 days before today
    assert day[-1]["start_time"] == z(utcnow().replace(hour=0, minute=0, second=0, microsecond=0))


def test_bad_reads_are_422(client):
    cases = [
        ("/api/events/filter", {"limit": 51}, ["body", "limit"]),
        ("/api/events/filter", {"limit": -1}, ["body", "limit"]),
        ("/api/events/filter", {"filter": {"bogus": 1}}, ["body", "filter", "bogus"]),
        ("/api/events/filter", {"filter": {"event": {"name": "x"}}}, ["body", "filter", "event", "name"]),
        ("/api/events/filter", {"filter": {"order": "SIDEWAYS"}}, ["body", "filter", "order"]),
        ("/api/events/filter", {"filter": {"occurred": {"since": "nope"}}}, ["body", "filter", "occurred", "since"]),
        ("/api/events/filter", {"filter": {"text": {"query": "x" * 201}}}, ["body", "filter", "text", "query"]),
        ("/api/events/filter", {"filter": {"id": {"id": ["not-a-uuid"]}}}, ["body", "filter", "id", "id", 0]),
        ("/api/events/filter", {"filter": []}, ["body", "filter"]),
        ("/api/events/filter", [], ["body"]),
        ("/api/events/count-by/nope", {"filter": {}}, ["path", "countable"]),
        ("/api/events/count-by/time", {"filter": {}, "time_unit": "year"}, ["body", "time_unit"]),
        ("/api/events/count-by/time", {"filter": {}, "time_interval": 0.001}, ["body", "time_interval"]),
        ("/api/events/count-by/event", {"filter": {"resource": {"labels": []}}}, ["body", "filter", "resource", "labels"]),
    ]
    for path, body, loc in cases:
        resp = client.simulate_post(path, json=body)
        assert resp.status_code == 422, (path, body, resp.text)
        assert resp.json["exception_detail"][0]["loc"] == loc, (path, body, resp.json)
        assert resp.json["detail"]
    too_many = client.simulate_post("/api/events/count-by/time", json={"filter": {}, "time_unit": "hour"})
    assert too_many.status_code == 422
    assert too_many.json["detail"].startswith("The given interval would create 43")


def test_bad_event_batches_are_422_and_store_nothing(client):
    good = {"occurred": z(utcnow()), "event": "x.y", "resource": {"prefect.resource.id": "x.1"},
            "id": str(uuid.uuid4())}
    for body in (
        {},
        [{"event": "x"}],
        [good, {**good, "id": "not-a-uuid"}],
        [good, {**good, "id": str(uuid.uuid4()), "occurred": "nope"}],
        [good, {**good, "id": str(uuid.uuid4()), "resource": {}}],
        [good, {**good, "id": str(uuid.uuid4()), "event": ""}],
        [good, {**good, "id": str(uuid.uuid4()), "related": [{"prefect.resource.id": "a"}]}],
        [good, {**good, "id": str(uuid.uuid4()), "payload": []}],
    ):
        resp = client.simulate_post("/api/events", json=body)
        assert resp.status_code == 422, (body, resp.text)
        assert resp.json["detail"]
    assert Event.select().count() == 0
    post_events(client, [good])
    assert Event.select().count() == 1


# --- websockets on a live server ------------------------------------------------------


def _live(request, tmp_path_factory, **env):
    home = tmp_path_factory.mktemp("events-live")
    name = None
    if request.param == "sqlite":
        url = f"sqlite:///{home / 'appliance.db'}"
    else:
        name, url = support.create_pg_database()
    server = support.LiveServer(url, home, **env).start()
    yield server
    server.stop()
    if name:
        support.drop_pg_database(name)
    assert server.errors_in_log() == [], server.log()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def live(request, tmp_path_factory):
    yield from _live(request, tmp_path_factory)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def live_auth(request, tmp_path_factory):
    yield from _live(request, tmp_path_factory, APPLIANCE_AUTH_STRING=AUTH)


def ws_url(server, path):
    return server.url.replace("http://", "ws://", 1) + path


def open_ws(server, path, token=None, headers=None):
    ws = connect(ws_url(server, path), subprotocols=["prefect"], open_timeout=5, additional_headers=headers)
    assert ws.subprotocol == "prefect"
    assert ws.ping().wait(5)  # the client pings before authenticating
    ws.send(json.dumps({"type": "auth", "token": token}))
    assert json.loads(ws.recv(timeout=5)) == {"type": "auth_success"}
    return ws


def close_code(ws) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as info:
        ws.recv(timeout=5)
    return info.value.rcvd.code, info.value.rcvd.reason


def wait_for(check, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def task_run_state(server, task_run_id, headers=None):
    resp = httpx.get(f"{server.url}/task_runs/{task_run_id}", headers=headers, timeout=5)
    return resp.json()["state_type"] if resp.status_code == 200 else None


def test_events_in_records_task_runs_and_answers_pings(live):
    task_run_id, flow_run_id = str(uuid.uuid4()), str(uuid.uuid4())
    events = lifecycle(task_run_id, flow_run_id, utcnow() - dt.timedelta(seconds=5))
    ws = open_ws(live, "/events/in")
    for event in events[:2]:
        ws.send(json.dumps(event))
    assert ws.ping().wait(5)  # the client's delivery confirmation: pings keep being answered
    assert wait_for(lambda: task_run_state(live, task_run_id) == "RUNNING")
    ws.close()
    # Reconnect and re-send everything unconfirmed plus the rest: duplicates are ignored.
    ws = open_ws(live, "/events/in")
    for event in events:
        ws.send(json.dumps(event))
    assert ws.ping().wait(5)
    assert wait_for(lambda: task_run_state(live, task_run_id) == "COMPLETED")
    ws.close()
    states = httpx.get(f"{live.url}/task_run_states/", params={"task_run_id": task_run_id}).json()
    assert [s["id"] for s in states] == [e["id"] for e in events]


def test_events_in_skips_bad_frames_and_keeps_the_connection(live):
    task_run_id = str(uuid.uuid4())
    ws = open_ws(live, "/events/in")
    for frame in ("not json", "[]", json.dumps({"event": "x"}), json.dumps({"id": "nope"})):
        ws.send(frame)
    ws.send(json.dumps(task_event(task_run_id, "RUNNING", "Running", utcnow())))
    assert ws.ping().wait(5)
    assert wait_for(lambda: task_run_state(live, task_run_id) == "RUNNING")
    ws.close()


def test_events_in_handshake_refusals(live):
    ws = connect(ws_url(live, "/events/in"), subprotocols=["prefect"], open_timeout=5)
    ws.send(json.dumps({"type": "hello"}))
    assert close_code(ws) == (1008, "Expected 'auth' message")
    ws = connect(ws_url(live, "/events/in"), subprotocols=["prefect"], open_timeout=5)
    ws.send("not json")
    assert close_code(ws)[0] == 1008
    # Without auth configured any token is fine.
    open_ws(live, "/events/in", token="whatever").close()


def test_events_in_legacy_mode_without_subprotocol(live):
    task_run_id = str(uuid.uuid4())
    ws = connect(ws_url(live, "/events/in"), open_timeout=5)
    assert ws.subprotocol is None
    ws.send(json.dumps(task_event(task_run_id, "PENDING", "Pending", utcnow())))  # no auth message
    assert ws.ping().wait(5)
    assert wait_for(lambda: task_run_state(live, task_run_id) == "PENDING")
    ws.close()


def test_events_out_backfills_then_streams_flow_run_events(live):
    http = httpx.Client(base_url=live.url, timeout=10)
    flow = http.post("/flows/", json={"name": "watched"}).json()
    early = http.post("/flow_runs/", json={"flow_id": flow["id"]}).json()
    http.post(f"/flow_runs/{early['id']}/set_state", json={"state": {"type": "CANCELLING"}}).raise_for_status()
    late = http.post("/flow_runs/", json={"flow_id": flow["id"]}).json()

    now = utcnow()
    runner_filter = {
        "occurred": {"since": z(now - dt.timedelta(minutes=1)), "until": z(now + dt.timedelta(days=365))},
        "event": {"prefix": None, "exclude_prefix": None, "name": ["prefect.flow-run.Cancelling"],
                  "exclude_name": None},
        "resource": None, "related": None, "any_resource": None, "id": {"id": []}, "text": None, "order": "DESC",
    }
    ws = open_ws(live, "/events/out")
    ws.send(json.dumps({"type": "filter", "filter": runner_filter}))
    backfilled = json.loads(ws.recv(timeout=5))
    assert backfilled["type"] == "event"
    assert backfilled["event"]["resource"]["prefect.resource.id"] == f"prefect.flow-run.{early['id']}"
    assert backfilled["event"]["event"] == "prefect.flow-run.Cancelling"

    http.post(f"/flow_runs/{late['id']}/set_state", json={"state": {"type": "RUNNING"}}).raise_for_status()
    started = time.monotonic()
    http.post(f"/flow_runs/{late['id']}/set_state", json={"state": {"type": "CANCELLING"}}).raise_for_status()
    pushed = json.loads(ws.recv(timeout=5))
    assert time.monotonic() - started < 2.5  # woken at commit, not on the next poll tick only
    assert pushed["event"]["resource"]["prefect.resource.id"] == f"prefect.flow-run.{late['id']}"
    assert pushed["event"]["payload"]["intended"] == {"from": "RUNNING", "to": "CANCELLING"}
    assert pushed["event"]["received"].endswith("Z")
    # The Running event in between did not match the filter and was not sent.
    with pytest.raises(TimeoutError):
        ws.recv(timeout=1.2)
    ws.close()


def test_events_out_refuses_a_bad_subscription(live):
    ws = open_ws(live, "/events/out")
    ws.send(json.dumps({"type": "nope"}))
    assert close_code(ws) == (1002, "Expected 'filter' message")
    ws = open_ws(live, "/events/out")
    ws.send(json.dumps({"type": "filter", "filter": {"bogus": 1}}))
    assert close_code(ws)[0] == 1002


def test_auth_string_gates_http_and_both_websockets(live_auth):
    basic = {"Authorization": "Basic " + base64.b64encode(AUTH.encode()).decode()}
    assert httpx.get(f"{live_auth.url}/health").status_code == 200
    refused = httpx.post(f"{live_auth.url}/flows/filter", json={})
    assert refused.status_code == 401 and refused.json() == {"exception_message": "Unauthorized"}
    assert httpx.post(f"{live_auth.url}/flows/filter", json={}, headers=basic).status_code == 200

    task_run_id = str(uuid.uuid4())
    ws = open_ws(live_auth, "/events/in", token=AUTH, headers=basic)
    ws.send(json.dumps(task_event(task_run_id, "RUNNING", "Running", utcnow())))
    assert ws.ping().wait(5)
    assert wait_for(lambda: task_run_state(live_auth, task_run_id, basic) == "RUNNING")
    ws.close()

    for path in ("/events/in", "/events/out"):
        for token, reason in ((None, "Auth required but no token provided"), ("admin:wrong", "Invalid token")):
            ws = connect(ws_url(live_auth, path), subprotocols=["prefect"], open_timeout=5)
            ws.send(json.dumps({"type": "auth", "token": token}))
            assert close_code(ws) == (1008, reason)
        # Legacy mode (no subprotocol, hence no auth message) is refused when auth is configured.
        with pytest.raises(InvalidStatus) as info:
            connect(ws_url(live_auth, path), open_timeout=5)
        assert info.value.response.status_code == 403
    ws = open_ws(live_auth, "/events/out", token=AUTH)
    ws.send(json.dumps({"type": "filter", "filter": {"event": {"name": ["nothing.here"]}}}))
    with pytest.raises(TimeoutError):
        ws.recv(timeout=0.5)
    ws.close()
