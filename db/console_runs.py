"""Read queries of the console's dashboard, runs list and flows pages.

Read-only and bounded, like db.console_admin: never OFFSET, never an unbounded COUNT, and
every query walks one index range of ``flow_run``:

- ``ix_flow_run_expected`` (expected_start_time NULLS FIRST, id): the runs list's order,
  newest first (expected_start_time DESC NULLS LAST, id DESC) is a backward scan of it; a
  time range (``since`` / ``until``) narrows that range;
- ``ix_flow_run_state_expected`` (state_type, expected_start_time, id): the same order for
  one state type; several state types are one short range each, merged here (the same
  number of rows per page whatever the table's size);
- ``ix_flow_run_deployment_expected`` / ``ix_flow_run_flow_expected`` ((deployment_id |
  flow_id, expected_start_time, id), migration 008): the same order for one deployment or
  flow, one range however many runs it has (state types are then tested on the walk);
- on PostgreSQL the trigram index on the name, for a search of 3+ characters: when it
  matches at most ``SMALL_SET`` runs (a capped count through that index), all of them are
  read through it and sorted here (exact, at most SMALL_SET rows); a bigger match set is
  filtered while walking the ordering index as below;
- filters no index serves (``tag``: tags are a JSON list; ``q``: a name substring) are
  applied while walking the ordering range in chunks of
  ``CHUNK`` rows, at most ``SCAN_BUDGET`` rows per page. When the budget runs out before a
  page is full the page says so (``partial``) and its "older" link continues from the last
  run examined, so a rare match costs more clicks, never a long query.

Cursors are the (expected_start_time, id) of a run, naive UTC; runs that never had a
state (no expected start) come after all the others, by id.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import heapq

import peewee as pw

from db import database as dbmod
from db.console_admin import bounded_count, keyset_after, worker_counts
from db.models import Flow, FlowRun
from db.models_deployments import Deployment, WorkPool
from db.models_notifications import Notification
from db.states import STATE_TYPES

PAGE_SIZE = 50
CHUNK = 500
SCAN_BUDGET = 2000  # rows one page may examine (a filter no index serves); ~50 ms on SQLite
SMALL_SET = 2000
COUNT_CAP = 10_000  # dashboard counts per state type
LIST_CAP = 10  # dashboard lists
FAILED_STATES = ("FAILED", "CRASHED")

RUN_COLUMNS = (FlowRun.id, FlowRun.name, FlowRun.flow_id, FlowRun.deployment_id, FlowRun.state_type,
               FlowRun.state_name, FlowRun.state_timestamp, FlowRun.expected_start_time, FlowRun.start_time,
               FlowRun.end_time, FlowRun.total_run_time, FlowRun.tags)


@dataclasses.dataclass
class RunFilter:
    """What the runs list shows. ``states`` are state types; ``since`` / ``until`` naive UTC
    bounds of expected_start_time (since inclusive, until exclusive)."""

    states: tuple[str, ...] = ()
    flow_id: str | None = None
    deployment_id: str | None = None
    tag: str | None = None
    name: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None


def _key(row: dict) -> tuple:
    return (row["expected_start_time"], row["id"])


def _sort_key(key: tuple) -> tuple:
    """A key comparable in the list's order: (has a time, time, id); greater = newer."""
    moment, run_id = key
    return (moment is not None, moment or dt.datetime.min, run_id)


def _desc(field):
    # SQLite sorts NULLs first ascending, so DESC already puts them last; PostgreSQL needs it said.
    return field.desc(nulls="LAST") if dbmod.is_postgres() else field.desc()


def _asc(field):
    return field.asc(nulls="FIRST") if dbmod.is_postgres() else field.asc()


def _segments(base, cursor: tuple | None, backwards: bool, timed_only: bool):
    """The ordering index range after (or, backwards, before) ``cursor`` as queries in walk
    order: the runs with a time, then (forwards) those without."""
    moment, run_id = cursor if cursor is not None else (None, None)
    with_time = base.where(FlowRun.expected_start_time.is_null(False))
    without = base.where(FlowRun.expected_start_time.is_null(True))
    t, i = FlowRun.expected_start_time, FlowRun.id
    if not backwards:
        if cursor is None or moment is not None:
            q = with_time
            if cursor is not None:
                q = q.where(keyset_after((t, i), (moment, run_id), ascending=False))
            yield q.order_by(_desc(t), i.desc())
            if not timed_only:
                yield without.order_by(i.desc())
        elif not timed_only:
            yield without.where(i < run_id).order_by(i.desc())
        return
    if cursor is None:
        return
    if moment is None:
        if not timed_only:
            yield without.where(i > run_id).order_by(i.asc())
        yield with_time.order_by(_asc(t), i.asc())
    else:
        yield with_time.where(keyset_after((t, i), (moment, run_id), ascending=True)).order_by(_asc(t), i.asc())


def _walk(base, cursor, backwards, timed_only, keep, need: int, budget: int):
    """Walk the range in chunks; (matching rows in walk order up to ``need``, key of the last
    row examined when stopped before the range's end, else None)."""
    found: list[dict] = []
    examined = 0
    chunk = CHUNK if keep is not None else need
    last = None
    for query in _segments(base, cursor, backwards, timed_only):
        seg_cursor = None
        while True:
            q = query
            if seg_cursor is not None:  # continue the segment after the chunk already read
                m, i = seg_cursor
                t, idc = FlowRun.expected_start_time, FlowRun.id
                if m is None:
                    q = q.where(idc > i if backwards else idc < i)
                else:
                    q = q.where(keyset_after((t, idc), (m, i), ascending=backwards))
            take = min(chunk, budget - examined)
            rows = list(q.limit(take).dicts())
            for row in rows:
                examined += 1
                last = _key(row)
                if keep is None or keep(row):
                    found.append(row)
                    if len(found) >= need:
                        return found, last
            if len(rows) < take:
                break  # the segment is exhausted
            seg_cursor = last
            if examined >= budget:
                return found, last
    return found, None


def _keep(flt: RunFilter, skip_states: bool):
    """The row test of the filters the walked range does not apply (None: nothing to test)."""
    tests = []
    if flt.states and not skip_states:
        tests.append(lambda r: r["state_type"] in flt.states)
    if flt.flow_id:
        tests.append(lambda r: r["flow_id"] == flt.flow_id)
    if flt.deployment_id:
        tests.append(lambda r: r["deployment_id"] == flt.deployment_id)
    if flt.tag:
        tests.append(lambda r: flt.tag in (r["tags"] or []))
    if flt.name:
        needle = flt.name.lower()
        tests.append(lambda r: needle in (r["name"] or "").lower())
    if not tests:
        return None
    return lambda r: all(t(r) for t in tests)


def _time_bounds(query, flt: RunFilter):
    if flt.since is not None:
        query = query.where(FlowRun.expected_start_time >= flt.since)
    if flt.until is not None:
        query = query.where(FlowRun.expected_start_time < flt.until)
    return query


def _ilike(expr, term: str):
    """``expr`` ILIKE '%term%' (PostgreSQL's trigram index on the name serves it)."""
    escaped = term.replace("!", "!!").replace("%", "!%").replace("_", "!_")
    return pw.NodeList((expr, pw.SQL("ILIKE"), pw.Value(f"%{escaped}%"), pw.SQL("ESCAPE '!'")))


def _small_set(flt: RunFilter):
    """On PostgreSQL, a name search of 3+ characters matching at most SMALL_SET runs (a
    capped count through the trigram index): its condition, else None. Not when a
    deployment or flow is given: their own range is walked instead."""
    if flt.deployment_id or flt.flow_id or not flt.name or len(flt.name) < 3 or not dbmod.is_postgres():
        return None
    condition = _ilike(FlowRun.name, flt.name)
    return condition if bounded_count(FlowRun.select().where(condition), SMALL_SET) <= SMALL_SET else None


def _drivers(flt: RunFilter) -> tuple[list, bool]:
    """The index ranges to walk, as conditions (None: the whole order), and whether they
    apply the state filter themselves."""
    if flt.deployment_id:
        return [FlowRun.deployment_id == flt.deployment_id], False
    if flt.flow_id:
        return [FlowRun.flow_id == flt.flow_id], False
    if flt.states:
        return [FlowRun.state_type == st for st in flt.states], True
    return [None], False


def _page_small(condition, flt: RunFilter, cursor, backwards: bool, limit: int):
    """All the (at most SMALL_SET) runs of ``condition``, the other filters applied here."""
    rows = list(_time_bounds(FlowRun.select(*RUN_COLUMNS).where(condition), flt).limit(SMALL_SET + 1).dicts())
    keep = _keep(flt, False)
    rows = [r for r in rows if keep is None or keep(r)]
    rows.sort(key=lambda r: _sort_key(_key(r)), reverse=not backwards)
    if cursor is not None:
        c = _sort_key(cursor)
        rows = [r for r in rows if (_sort_key(_key(r)) > c if backwards else _sort_key(_key(r)) < c)]
    return rows[:limit + 1]


def runs_page(flt: RunFilter, after: tuple | None = None, before: tuple | None = None,
              limit: int | None = None, budget: int | None = None) -> dict:
    """One page of flow runs, newest first. ``after`` / ``before`` are (expected_start_time,
    id) cursors. Returns {"rows", "next", "prev" (cursors or None), "partial" (the scan
    budget ran out before the page was full), "scanned_to" (where it stopped)}."""
    limit = PAGE_SIZE if limit is None else limit
    budget = SCAN_BUDGET if budget is None else budget
    backwards = before is not None
    cursor = before if backwards else after
    timed_only = flt.since is not None or flt.until is not None
    need = limit + 1
    small = _small_set(flt)
    if small is not None:
        found, stop = _page_small(small, flt, cursor, backwards, limit), None
    else:
        # One walk per index range: the deployment's or flow's, one per state type, or the
        # whole order; the other filters are tested on the rows walked.
        drivers, states_applied = _drivers(flt)
        per_budget = max(budget // len(drivers), CHUNK)
        keep = _keep(flt, skip_states=states_applied)
        results = []
        for driver in drivers:
            base = FlowRun.select(*RUN_COLUMNS)
            if driver is not None:
                base = base.where(driver)
            results.append(_walk(_time_bounds(base, flt), cursor, backwards, timed_only, keep, need, per_budget))
        # Rows are certain only up to the nearest place a walk stopped early.
        stops = [stop for _, stop in results if stop is not None]
        newer_first = not backwards
        stop = None
        if stops:
            stop = (max if newer_first else min)(stops, key=_sort_key)
        merged = heapq.merge(*[rows for rows, _ in results], key=lambda r: _sort_key(_key(r)), reverse=newer_first)
        found = []
        for row in merged:
            if stop is not None and (_sort_key(_key(row)) < _sort_key(stop) if newer_first
                                     else _sort_key(_key(row)) > _sort_key(stop)):
                break
            found.append(row)
            if len(found) >= need:
                break
    partial = False
    if len(found) > limit:
        found = found[:limit]
        edge = _key(found[-1])
    elif stop is not None:
        edge, partial = stop, True  # the budget ran out: continue from the last run examined
    else:
        edge = None
    # The way back starts at the first row shown (an empty page, possible only when the scan
    # budget ran out, goes back from its cursor: the row the cursor names is not shown again).
    back = (_key(found[0]) if found else cursor) if cursor is not None else None
    if backwards:
        found.reverse()
        return {"rows": found, "next": back, "prev": edge, "partial": partial, "scanned_to": edge}
    return {"rows": found, "next": edge, "prev": back, "partial": partial, "scanned_to": edge}


def names_for(rows: list[dict]) -> None:
    """Add ``flow_name`` and ``deployment_name`` to run rows (two primary-key lookups)."""
    flow_ids = list({r["flow_id"] for r in rows if r.get("flow_id")})
    dep_ids = list({r["deployment_id"] for r in rows if r.get("deployment_id")})
    flows = dict(Flow.select(Flow.id, Flow.name).where(Flow.id.in_(flow_ids)).tuples()) if flow_ids else {}
    deps = (dict(Deployment.select(Deployment.id, Deployment.name).where(Deployment.id.in_(dep_ids)).tuples())
            if dep_ids else {})
    for r in rows:
        r["flow_name"] = flows.get(r.get("flow_id"))
        r["deployment_name"] = deps.get(r.get("deployment_id"))


def flow_name(flow_id: str) -> str | None:
    row = Flow.select(Flow.name).where(Flow.id == flow_id).tuples().first()
    return row[0] if row else None


def deployment_name(deployment_id: str) -> str | None:
    row = Deployment.select(Deployment.name).where(Deployment.id == deployment_id).tuples().first()
    return row[0] if row else None


# --- dashboard --------------------------------------------------------------------------------


def state_counts(since: dt.datetime, until: dt.datetime, cap: int = COUNT_CAP) -> dict[str, int]:
    """Runs per state type expected to start in [since, until): one capped range of
    ix_flow_run_state_expected each (a value above ``cap`` means "cap+")."""
    return {
        st: bounded_count(FlowRun.select().where((FlowRun.state_type == st) & (FlowRun.expected_start_time >= since)
                                                 & (FlowRun.expected_start_time < until)), cap)
        for st in STATE_TYPES
    }


def late_runs(now: dt.datetime, limit: int = LIST_CAP, cap: int = 1000) -> dict:
    """SCHEDULED runs whose expected start has passed: how many (capped) and the most
    overdue few (the SCHEDULED range of ix_flow_run_state_expected below ``now``)."""
    query = FlowRun.select(*RUN_COLUMNS).where((FlowRun.state_type == "SCHEDULED")
                                               & (FlowRun.expected_start_time < now))
    rows = list(query.order_by(_asc(FlowRun.expected_start_time), FlowRun.id).limit(limit).dicts())
    return {"count": bounded_count(query, cap), "rows": rows, "cap": cap}


def recent_failures(since: dt.datetime, limit: int = LIST_CAP) -> list[dict]:
    """The newest FAILED / CRASHED runs since ``since`` (one short range per state type)."""
    found: list[dict] = []
    for st in FAILED_STATES:
        found.extend(
            FlowRun.select(*RUN_COLUMNS)
            .where((FlowRun.state_type == st) & (FlowRun.expected_start_time >= since))
            .order_by(_desc(FlowRun.expected_start_time), FlowRun.id.desc()).limit(limit).dicts()
        )
    found.sort(key=lambda r: _sort_key(_key(r)), reverse=True)
    return found[:limit]


def pool_health(limit: int = 50) -> list[dict]:
    """Work pools by name with status and workers online / total (pools are few)."""
    pools = list(WorkPool.select(WorkPool.id, WorkPool.name, WorkPool.type, WorkPool.status, WorkPool.is_paused)
                 .order_by(WorkPool.name).limit(limit + 1).dicts())
    online, total = worker_counts([p["id"] for p in pools])
    for p in pools:
        p["workers_online"] = online.get(p["id"], 0)
        p["worker_count"] = total.get(p["id"], 0)
    return pools


def notification_failures(limit: int = LIST_CAP, cap: int = 1000) -> dict:
    """Failed (refused for good) and dead (out of retries) deliveries: the newest few by last update (the
    (status, updated) index, one range per status) and a capped count of each."""
    cols = (Notification.id, Notification.updated, Notification.flow_run_id, Notification.state_name,
            Notification.state_type, Notification.channel, Notification.status, Notification.attempts,
            Notification.last_status_code, Notification.last_error)
    rows: list[dict] = []
    counts = {}
    for status in ("failed", "dead"):
        query = Notification.select(*cols).where(Notification.status == status)
        rows.extend(query.order_by(Notification.updated.desc()).limit(limit).dicts())
        counts[status] = bounded_count(Notification.select().where(Notification.status == status), cap)
    rows.sort(key=lambda r: r["updated"], reverse=True)
    return {"rows": rows[:limit], "counts": counts, "cap": cap}


# --- flows ------------------------------------------------------------------------------------


def flows_page(search: str = "", after: str | None = None, before: str | None = None,
               limit: int = PAGE_SIZE) -> dict:
    """Flows by name (unique); ``after`` / ``before`` are names. Each row has its
    deployment count (the deployment (flow_id, name) index, for the page's flows only)."""
    from db.console_admin import _page, _pager, contains

    query = Flow.select(Flow.id, Flow.name, Flow.created, Flow.tags)
    if search:
        query = query.where(contains(Flow.name, search))
    cursor_name = after if after is not None else before
    cursor = (cursor_name,) if cursor_name is not None else None
    rows, more_after, more_before = _page(query, [Flow.name], cursor, before is not None, limit)
    ids = [r["id"] for r in rows]
    counts = {}
    if ids:
        counts = dict(Deployment.select(Deployment.flow_id, pw.fn.COUNT(Deployment.id))
                      .where(Deployment.flow_id.in_(ids)).group_by(Deployment.flow_id).tuples())
    for r in rows:
        r["deployment_count"] = counts.get(r["id"], 0)
    return _pager(rows, more_after, more_before, key="name")


def flow(flow_id: str) -> dict | None:
    return Flow.select().where(Flow.id == flow_id).dicts().first()


def flow_deployments(flow_id: str, limit: int = 200) -> list[dict]:
    return list(Deployment.select(Deployment.id, Deployment.name, Deployment.paused, Deployment.status,
                                  Deployment.work_pool_name, Deployment.tags)
                .where(Deployment.flow_id == flow_id).order_by(Deployment.name).limit(limit + 1).dicts())
