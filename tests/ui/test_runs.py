"""/runs on both backends (falcon.testing): the list's order, every filter, keyset pages
forward and back (no duplicates, no gaps, also when the scan budget cuts a page short),
the live fragment, 400 pages for bad filters, escaping. Data is made through the REST API."""

from __future__ import annotations

import datetime as dt
import html
import re

import pytest

from db import console_runs as reads
from tests.ui.admin_helpers import api_json, main_html

T0 = dt.datetime(2026, 11, 1, 12, 0, 0, tzinfo=dt.UTC)


def flow(client, name="etl") -> dict:
    return client.simulate_post("/api/flows/", json={"name": name}).json


def scheduled_run(client, minutes: float, flow_name="etl", **body) -> dict:
    """A run SCHEDULED at T0 + minutes (its expected start)."""
    when = (T0 + dt.timedelta(minutes=minutes)).isoformat()
    state = {"type": "SCHEDULED", "state_details": {"scheduled_time": when}}
    return api_json(client.simulate_post("/api/flow_runs/", json={
        "flow_id": flow(client, flow_name)["id"], "state": state, **body}), 201)


def set_state(client, run_id, type_):
    result = client.simulate_post(f"/api/flow_runs/{run_id}/set_state", json={"state": {"type": type_}, "force": True})
    assert result.status_code in (200, 201), result.text


def get(client, path="/runs", status=200, **params):
    result = client.simulate_get(path, params=params or None)
    assert result.status_code == status, (result.status_code, result.text[:3000])
    return result


def run_ids(text: str) -> list[str]:
    """Run ids of the rows, in order (each row links its run once)."""
    return re.findall(r'<td><a href="/runs/flow-run/([0-9a-f-]{36})">', text)


def rel_link(text: str, rel: str) -> str | None:
    found = re.search(rf'<a class="btn" href="([^"]+)" rel="{rel}">', text)
    return html.unescape(found.group(1)) if found else None


def walk(client, path: str) -> tuple[list[list[str]], list[str]]:
    """Follow rel=next from ``path`` to the end: (pages of ids, the last page's URL)."""
    pages, url = [], path
    while True:
        text = get(client, url).text
        pages.append(run_ids(text))
        nxt = rel_link(text, "next")
        if nxt is None:
            return pages, url
        url = nxt


def walk_back(client, url: str) -> list[list[str]]:
    pages = []
    while True:
        text = get(client, url).text
        pages.insert(0, run_ids(text))
        prev = rel_link(text, "prev")
        if prev is None:
            return pages
        url = prev


def test_empty_list(client):
    text = main_html(get(client))
    assert "No flow runs yet" in text
    assert 'rel="next"' not in text


def test_newest_first_with_row_details(client):
    dep = api_json(client.simulate_post("/api/deployments/", json={"name": "nightly", "flow_id": flow(client)["id"]}),
                   201)
    old = scheduled_run(client, 0, tags=["prod", "eu"])
    new = scheduled_run(client, 10, flow_name="other", deployment_id=dep["id"])
    set_state(client, new["id"], "RUNNING")
    text = main_html(get(client))
    assert run_ids(text) == [new["id"], old["id"]]
    assert 'class="badge st-running"' in text and 'class="badge st-scheduled"' in text
    assert f'href="/flows/flow/{new["flow_id"]}">other</a>' in text
    assert f'href="/deployments/deployment/{dep["id"]}">nightly</a>' in text
    assert '<span class="badge">prod</span>' in text
    assert "2026-11-01 12:00:00" in text  # the expected start of the run not started


def test_runs_without_state_come_last(client):
    timed = scheduled_run(client, 0)
    bare = api_json(client.simulate_post("/api/flow_runs/", json={"flow_id": flow(client)["id"]}), 201)
    ids = run_ids(get(client).text)
    assert set(ids) == {timed["id"], bare["id"]}
    if api_json(client.simulate_get(f"/api/flow_runs/{bare['id']}"))["expected_start_time"] is None:
        assert ids == [timed["id"], bare["id"]]


def test_filters(client):
    other_flow = flow(client, "other")
    dep = api_json(client.simulate_post("/api/deployments/", json={"name": "nightly", "flow_id": other_flow["id"]}),
                   201)
    a = scheduled_run(client, 0, name="alpha-One", tags=["prod"])
    b = scheduled_run(client, 1, name="beta-two", tags=["dev"])
    c = scheduled_run(client, 2, flow_name="other", name="gamma-ALPHA", deployment_id=dep["id"], tags=["prod", "x"])
    d = scheduled_run(client, 60 * 24 * 3, name="delta")
    set_state(client, a["id"], "FAILED")
    set_state(client, b["id"], "COMPLETED")
    set_state(client, c["id"], "CRASHED")

    assert run_ids(get(client, state="FAILED").text) == [a["id"]]
    assert run_ids(get(client, state=["FAILED", "CRASHED"]).text) == [c["id"], a["id"]]
    assert run_ids(get(client, state="failed,crashed").text) == [c["id"], a["id"]]
    assert run_ids(get(client, state="SCHEDULED").text) == [d["id"]]
    assert run_ids(get(client, flow=other_flow["id"]).text) == [c["id"]]
    assert run_ids(get(client, deployment=dep["id"]).text) == [c["id"]]
    assert run_ids(get(client, tag="prod").text) == [c["id"], a["id"]]
    assert run_ids(get(client, q="alpha").text) == [c["id"], a["id"]]
    assert run_ids(get(client, q="ALPHA", state="FAILED").text) == [a["id"]]
    assert run_ids(get(client, q="%").text) == []  # wildcards are literal
    since = (T0 + dt.timedelta(minutes=1)).isoformat()
    until = (T0 + dt.timedelta(minutes=3)).isoformat()
    assert run_ids(get(client, since=since).text) == [d["id"], c["id"], b["id"]]
    assert run_ids(get(client, since=since, until=until).text) == [c["id"], b["id"]]
    assert run_ids(get(client, until="2026-11-01T12:01:00Z").text) == [a["id"]]
    # T0 is in the past: nothing expected to start in the last hour but the far-future one is not
    assert run_ids(get(client, since="1h", until="now").text) == []
    assert run_ids(get(client, since="5000d").text) == [d["id"], c["id"], b["id"], a["id"]]
    text = main_html(get(client, flow=other_flow["id"], q="gam"))
    assert "Flow: other" in text and 'value="gam"' in text
    assert 'href="/runs?q=gam">remove flow filter' in text.replace("&amp;", "&")
    assert 'name="state" value="FAILED" checked' in main_html(get(client, state="FAILED"))
    assert "No runs match these filters" in main_html(get(client, tag="nope"))


@pytest.mark.parametrize("params, message", [
    ({"state": "BOGUS"}, "is not a state type"),
    ({"flow": "not-a-uuid"}, "is not a valid flow id"),
    ({"deployment": "123"}, "is not a valid deployment id"),
    ({"since": "yesterday"}, "is not a time"),
    ({"until": "12x"}, "is not a time"),
    ({"since": "1h", "until": "2h"}, "since must be before until"),
    ({"after": "garbage"}, "page position"),
    ({"before": "2026-01-01T00:00:00_nope"}, "page position"),
    ({"q": "x" * 300}, "too long"),
    ({"tag": "a\x00b"}, "NUL"),
])
def test_bad_filters_are_400_pages(client, params, message):
    result = get(client, status=400, **params)
    assert message in html.unescape(result.text)
    assert result.headers["content-type"].startswith("text/html")


def test_escaping(client):
    scheduled_run(client, 0, name="<script>alert(1)</script>", tags=["<b>t</b>"])
    text = get(client).text
    assert "<script>alert(1)" not in text and "<b>t</b>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    result = get(client, q="<script>")
    assert "&lt;script&gt;" in result.text and len(run_ids(result.text)) == 1


def _many(client, n, **extra):
    made = []
    for i in range(n):
        # two runs share each expected start: the id breaks the tie
        made.append(scheduled_run(client, i // 2, name=f"run-{i:02d}", tags=["even" if i % 2 == 0 else "odd"],
                                  **extra))
    return made


def _expected_order(client, runs):
    rows = [api_json(client.simulate_get(f"/api/flow_runs/{r['id']}")) for r in runs]
    rows.sort(key=lambda r: (r["expected_start_time"], r["id"]), reverse=True)
    return [r["id"] for r in rows]


@pytest.mark.parametrize("small_set", [0, 2000])
def test_pages_forward_and_back(client, monkeypatch, small_set):
    monkeypatch.setattr(reads, "PAGE_SIZE", 5)
    monkeypatch.setattr(reads, "SMALL_SET", small_set)
    made = _many(client, 13)
    order = _expected_order(client, made)
    pages, last = walk(client, "/runs")
    assert [len(p) for p in pages] == [5, 5, 3]
    assert sum(pages, []) == order
    assert walk_back(client, last) == pages
    first = get(client).text
    assert 'rel="prev"' not in first and 'data-live="rows"' in first
    second = get(client, rel_link(first, "next")).text
    assert 'data-live="rows"' not in second and "Newest runs" in second
    # filtered pages: by flow (through its index, or walking the order), by tag, by two states
    flow_id = made[0]["flow_id"]
    pages, last = walk(client, f"/runs?flow={flow_id}")
    assert sum(pages, []) == order
    even = [i for i in order if i in {r["id"] for r in made[::2]}]
    pages, last = walk(client, "/runs?tag=even")
    assert sum(pages, []) == even and [len(p) for p in pages] == [5, 2]
    assert walk_back(client, last) == pages


def test_pages_with_two_states(client, monkeypatch):
    monkeypatch.setattr(reads, "PAGE_SIZE", 4)
    made = _many(client, 11)
    for i, r in enumerate(made):
        set_state(client, r["id"], ("FAILED", "CRASHED", "COMPLETED")[i % 3])
    wanted = {r["id"] for i, r in enumerate(made) if i % 3 != 2}
    order = [i for i in _expected_order(client, made) if i in wanted]
    pages, last = walk(client, "/runs?state=FAILED&state=CRASHED")
    assert sum(pages, []) == order
    assert all(len(p) == 4 for p in pages[:-1])
    assert walk_back(client, last) == pages


def test_scan_budget_cuts_pages_short_without_gaps(client, monkeypatch):
    monkeypatch.setattr(reads, "PAGE_SIZE", 3)
    monkeypatch.setattr(reads, "CHUNK", 2)
    monkeypatch.setattr(reads, "SCAN_BUDGET", 4)
    made = _many(client, 14)
    odd = {r["id"] for r in made[1::2]}
    order = [i for i in _expected_order(client, made) if i in odd]
    pages, last = walk(client, "/runs?tag=odd")
    assert sum(pages, []) == order
    assert any(len(p) < 3 for p in pages[:-1])  # the budget ended some pages early...
    text = get(client, "/runs?tag=odd").text
    assert "without filling the page" in text or len(run_ids(text)) == 3
    back = walk_back(client, last)
    assert sum(back, []) == order  # ...and going back finds the same runs


def test_live_fragment(client):
    get(client)
    scheduled_run(client, 5, name="arrived-later")
    result = get(client, fragment="rows")
    assert "arrived-later" in result.text
    assert "<html" not in result.text and "<table" in result.text
    assert get(client, status=404, fragment="nope").status_code == 404


def test_a_full_page_of_long_names_stays_small(client):
    for i in range(50):
        scheduled_run(client, i, name=f"{i:02d}-" + "n" * 2000, tags=[f"tag-{k}-" + "t" * 100 for k in range(15)])
    result = get(client)
    assert len(run_ids(result.text)) == 50 and 'rel="next"' not in result.text
    assert len(result.text.encode()) < 150_000
