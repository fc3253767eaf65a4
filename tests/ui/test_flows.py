"""/flows and /flows/flow/<id> on both backends (falcon.testing): search, keyset pages,
deployment counts, a flow's deployments and recent runs, 404s, escaping."""

from __future__ import annotations

import html
import re

from db import console_runs as reads
from tests.ui.admin_helpers import api_json, main_html

MISSING = "00000000-0000-0000-0000-000000000000"


def flow(client, name) -> dict:
    return client.simulate_post("/api/flows/", json={"name": name}).json


def flow_names(text: str) -> list[str]:
    return [html.unescape(n) for n in re.findall(r'<td><a href="/flows/flow/[0-9a-f-]{36}">([^<]*)</a>', text)]


def test_list_search_and_counts(client):
    etl = flow(client, "etl")
    flow(client, "Nightly-Report")
    flow(client, "o'neil \"x\"")
    for name in ("a", "b"):
        api_json(client.simulate_post("/api/deployments/", json={"name": name, "flow_id": etl["id"]}), 201)
    text = main_html(client.simulate_get("/flows"))
    assert flow_names(text) == sorted(["etl", "Nightly-Report", "o'neil \"x\""])
    assert "o&#39;neil &#34;x&#34;" in text
    row = text[text.index(f'/flows/flow/{etl["id"]}'):].split("</tr>")[0]
    assert "<td>2</td>" in row and f'href="/runs?flow={etl["id"]}"' in row
    assert flow_names(main_html(client.simulate_get("/flows", params={"q": "REPORT"}))) == ["Nightly-Report"]
    assert "No flows match." in main_html(client.simulate_get("/flows", params={"q": "zzz"}))
    assert "No flows yet" not in text


def test_list_pages(client, monkeypatch):
    monkeypatch.setattr(reads, "PAGE_SIZE", 4)
    monkeypatch.setattr(reads.flows_page, "__defaults__", ("", None, None, 4))
    names = [f"flow-{i:02d}" for i in range(10)]
    for n in reversed(names):
        flow(client, n)
    seen, url, urls = [], "/flows", []
    while url:
        text = client.simulate_get(url).text
        urls.append(url)
        seen.append(flow_names(text))
        found = re.search(r'href="([^"]+)" rel="next"', text)
        url = html.unescape(found.group(1)) if found else None
    assert sum(seen, []) == names and [len(p) for p in seen] == [4, 4, 2]
    back = re.search(r'href="([^"]+)" rel="prev"', client.simulate_get(urls[-1]).text)
    assert flow_names(client.simulate_get(html.unescape(back.group(1))).text) == seen[1]


def test_flow_page(client):
    etl = flow(client, "etl")
    other = flow(client, "other")
    dep = api_json(client.simulate_post("/api/deployments/", json={"name": "nightly", "flow_id": etl["id"]}), 201)
    runs = [api_json(client.simulate_post("/api/flow_runs/", json={
        "flow_id": etl["id"], "name": f"etl-run-<{i}>", "state": {"type": "RUNNING"}}), 201) for i in range(3)]
    dep_run = api_json(client.simulate_post(f"/api/deployments/{dep['id']}/create_flow_run", json={}), 201)
    api_json(client.simulate_post("/api/flow_runs/", json={"flow_id": other["id"], "name": "not-mine"}), 201)
    result = client.simulate_get(f"/flows/flow/{etl['id']}")
    assert result.status_code == 200
    text = main_html(result)
    assert "<h1>etl</h1>" in text and etl["id"] in text
    assert f'href="/deployments/deployment/{dep["id"]}">nightly</a>' in text
    for r in (*runs, dep_run):
        assert f'href="/runs/flow-run/{r["id"]}"' in text
    assert "not-mine" not in text and "etl-run-&lt;0&gt;" in text and "etl-run-<0>" not in text
    assert f'href="/runs?flow={etl["id"]}"' in text
    empty = main_html(client.simulate_get(f"/flows/flow/{other['id']}"))
    assert "No deployments of this flow." in empty and "not-mine" in empty


def test_flow_page_404s(client):
    for path in (f"/flows/flow/{MISSING}", "/flows/flow/nope", "/flows/flow/%3Cscript%3E"):
        result = client.simulate_get(path)
        assert result.status_code == 404, path
        assert result.headers["content-type"].startswith("text/html")
        assert "<script>" not in main_html(result)
