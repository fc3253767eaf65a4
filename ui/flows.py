"""``/flows``: the flows (name search ``q``, keyset pages by name) with each one's number of
deployments; ``/flows/flow/<id>``: a flow's details, its deployments, its latest runs (the
runs list's query with the flow filter, db.console_runs) and a link to all of them on
``/runs?flow=<id>``. A malformed or unknown id answers a 404 page.

The list shows no "last run" per flow: finding it is a sort of all the flow's runs (no index
on (flow_id, expected start)), which a page of 50 flows cannot afford on a big table.
"""

from __future__ import annotations

from db import console_runs as reads
from db import database as db
from db.console_run_detail import elapsed
from db.fields import utcnow
from ui.admin_common import pager_urls, require_uuid
from ui.errors import PageError
from ui.render import render

RECENT_RUNS = 20


class FlowList:
    async def on_get(self, req, resp):
        search = (req.get_param("q") or "").strip()
        if len(search) > 200:
            raise PageError(400, "q is too long (at most 200 characters).")
        after, before = req.get_param("after"), req.get_param("before")
        page = await db.run(reads.flows_page, search, after, before)
        next_url, prev_url = pager_urls("/flows", page, q=search)
        render(req, resp, "flows.html", page=page, search=search, next_url=next_url, prev_url=prev_url)


def _read_flow(flow_id: str) -> dict | None:
    flow = reads.flow(flow_id)
    if flow is None:
        return None
    runs = reads.runs_page(reads.RunFilter(flow_id=flow_id), limit=RECENT_RUNS)
    reads.names_for(runs["rows"])
    return {"flow": flow, "deployments": reads.flow_deployments(flow_id), "runs": runs}


class FlowPage:
    async def on_get(self, req, resp, flow_id):
        view = await db.run(_read_flow, require_uuid(flow_id, "flow"))
        if view is None:
            raise PageError(404, "Flow not found.")
        now = utcnow()
        for row in view["runs"]["rows"]:
            row["duration"] = elapsed(row, now)
        render(req, resp, "flow.html", **view, deployment_cap=200)


def register(app) -> None:
    app.add_route("/flows", FlowList())
    app.add_route("/flows/flow/{flow_id}", FlowPage())
