"""Filterable fields, joins and sort orders of each entity, for db.filters."""

from __future__ import annotations

import peewee as pw

from db import database as dbmod
from db.filters import Entity, FieldSpec, FilterError, _bool, _list, _text, _uuid, register
from db.models import Artifact, ArtifactCollection, Flow, FlowRun, Log, TaskRun


def _created_by(ops: dict, path: str):
    parts = []
    for op, value in ops.items():
        if value is None or op == "operator":
            continue
        p = f"{path}.{op}"
        if op in ("id_", "type_"):
            key = "id" if op == "id_" else "type"
            items = [_text(str(v), f"{p}.{i}") for i, v in enumerate(_list(value, p))]
            if dbmod.is_postgres():
                expr = pw.NodeList((FlowRun.created_by, pw.SQL(f"->> '{key}'")), glue=" ")
            else:
                expr = pw.fn.json_extract(FlowRun.created_by, f"$.{key}")
            parts.append(expr.in_(items) if items else pw.SQL("1 = 0"))
        elif op == "is_null_":
            parts.append(FlowRun.created_by.is_null() if _bool(value, p) else FlowRun.created_by.is_null(False))
        else:
            raise FilterError(p, f"unknown filter operator {op!r}", value)
    from db.filters import _combine

    return _combine(ops, parts, path)


def _parent_flow_run_id(ops: dict, path: str):
    any_ = ops.get("any_")
    if any_ is None:
        return None
    ids = [_uuid(v, f"{path}.any_.{i}") for i, v in enumerate(_list(any_, f"{path}.any_"))]
    sub = TaskRun.select(TaskRun.id).where(TaskRun.flow_run_id.in_(ids))
    return FlowRun.parent_task_run_id.in_(sub)


def _subflow_runs(ops: dict, path: str):
    exists = ops.get("exists_")
    if exists is None:
        return None
    _bool(exists, f"{path}.exists_")
    sub = FlowRun.select(FlowRun.parent_task_run_id).where(FlowRun.parent_task_run_id.is_null(False))
    return TaskRun.id.in_(sub) if exists else TaskRun.id.not_in(sub)


def _flow_deployment(ops: dict, path: str):
    is_null = ops.get("is_null_")
    if is_null is None:
        return None
    _bool(is_null, f"{path}.is_null_")
    with_deployment = FlowRun.select(FlowRun.flow_id).where(FlowRun.deployment_id.is_null(False))
    return Flow.id.not_in(with_deployment) if is_null else Flow.id.in_(with_deployment)


def parse_text_query(query: str) -> tuple[list[str], list[str], list[str]]:
    """Prefect's log search grammar -> (include, exclude, required) terms.

    Space-separated terms are OR'd; ``-term``/``!term`` exclude; ``+term`` is required;
    ``"quoted phrases"`` (with ``\\"`` escapes) are one term. A prefix followed by a space
    is ignored (as Prefect's parser does).
    """
    include: list[str] = []
    exclude: list[str] = []
    required: list[str] = []
    i, n = 0, len(query)
    while i < n:
        if query[i].isspace():
            i += 1
            continue
        prefix = None
        if query[i] in "-!+":
            if i + 1 < n and not query[i + 1].isspace():
                prefix = query[i]
            i += 1
            if prefix is None:
                continue
        if i < n and query[i] == '"':
            i += 1
            chars = []
            while i < n and query[i] != '"':
                if query[i] == "\\" and i + 1 < n and query[i + 1] in '"\\':
                    i += 1
                chars.append(query[i])
                i += 1
            i += 1  # the closing quote (or the end)
            term = "".join(chars)
            if not term.strip():
                continue
        else:
            start = i
            while i < n and not query[i].isspace() and query[i] != '"':
                i += 1
            term = query[start:i]
        if term:
            {"-": exclude, "!": exclude, "+": required}.get(prefix, include).append(term)
    return include, exclude, required


def _contains_ci(expr, term: str):
    """``expr`` contains ``term``, case-insensitively, with LIKE wildcards taken literally."""
    escaped = term.lower().replace("!", "!!").replace("%", "!%").replace("_", "!_")
    return pw.NodeList((pw.fn.LOWER(expr), pw.SQL("LIKE"), pw.Value(f"%{escaped}%"), pw.SQL("ESCAPE '!'")))


def _log_text(ops: dict, path: str):
    query = ops.get("query")
    if query is None:
        return None
    query = _text(query, f"{path}.query")
    if len(query) > 200:
        raise FilterError(f"{path}.query", "String should have at most 200 characters", query)
    include, exclude, required = parse_text_query(query)
    searchable = Log.message.concat(" ").concat(Log.name)  # Prefect searches message and logger name
    from db.filters import _and, _or

    parts = [_or([_contains_ci(searchable, t) for t in include])]
    parts += [~_contains_ci(searchable, t) for t in exclude]
    parts += [_contains_ci(searchable, t) for t in required]
    return _and(parts)


FLOWS = register(
    Entity(
        "flows",
        Flow,
        {
            "id": FieldSpec(Flow.id, "uuid"),
            "name": FieldSpec(Flow.name, "text"),
            "tags": FieldSpec(Flow.tags, "tags"),
            "deployment": FieldSpec(None, "custom", custom=_flow_deployment),
        },
        links={
            "flow_runs": lambda c: Flow.id.in_(FlowRun.select(FlowRun.flow_id).where(c)),
            "task_runs": lambda c: Flow.id.in_(
                FlowRun.select(FlowRun.flow_id).where(
                    FlowRun.id.in_(TaskRun.select(TaskRun.flow_run_id).where(c))
                )
            ),
        },
    )
)

FLOW_RUNS = register(
    Entity(
        "flow_runs",
        FlowRun,
        {
            "id": FieldSpec(FlowRun.id, "uuid"),
            "name": FieldSpec(FlowRun.name, "text"),
            "tags": FieldSpec(FlowRun.tags, "tags"),
            "deployment_id": FieldSpec(FlowRun.deployment_id, "uuid"),
            "work_queue_name": FieldSpec(FlowRun.work_queue_name, "text"),
            "work_queue_id": FieldSpec(FlowRun.work_queue_id, "uuid"),
            "state": FieldSpec(None, "state"),
            "flow_version": FieldSpec(FlowRun.flow_version, "text"),
            "start_time": FieldSpec(FlowRun.start_time, "datetime"),
            "end_time": FieldSpec(FlowRun.end_time, "datetime"),
            "expected_start_time": FieldSpec(FlowRun.expected_start_time, "datetime"),
            "next_scheduled_start_time": FieldSpec(FlowRun.next_scheduled_start_time, "datetime"),
            "parent_flow_run_id": FieldSpec(None, "custom", custom=_parent_flow_run_id),
            "parent_task_run_id": FieldSpec(FlowRun.parent_task_run_id, "uuid"),
            "idempotency_key": FieldSpec(FlowRun.idempotency_key, "text"),
            "created_by": FieldSpec(None, "custom", custom=_created_by),
        },
        links={
            "flows": lambda c: FlowRun.flow_id.in_(Flow.select(Flow.id).where(c)),
            "task_runs": lambda c: FlowRun.id.in_(TaskRun.select(TaskRun.flow_run_id).where(c)),
        },
    )
)

TASK_RUNS = register(
    Entity(
        "task_runs",
        TaskRun,
        {
            "id": FieldSpec(TaskRun.id, "uuid"),
            "name": FieldSpec(TaskRun.name, "text"),
            "tags": FieldSpec(TaskRun.tags, "tags"),
            "state": FieldSpec(None, "state"),
            "start_time": FieldSpec(TaskRun.start_time, "datetime"),
            "end_time": FieldSpec(TaskRun.end_time, "datetime"),
            "expected_start_time": FieldSpec(TaskRun.expected_start_time, "datetime"),
            "subflow_runs": FieldSpec(None, "custom", custom=_subflow_runs),
            "flow_run_id": FieldSpec(TaskRun.flow_run_id, "uuid"),
        },
        links={
            "flow_runs": lambda c: TaskRun.flow_run_id.in_(FlowRun.select(FlowRun.id).where(c)),
            "flows": lambda c: TaskRun.flow_run_id.in_(
                FlowRun.select(FlowRun.id).where(FlowRun.flow_id.in_(Flow.select(Flow.id).where(c)))
            ),
        },
    )
)

LOGS = register(
    Entity(
        "logs",
        Log,
        {
            "level": FieldSpec(Log.level, "int"),
            "timestamp": FieldSpec(Log.timestamp, "datetime"),
            "flow_run_id": FieldSpec(Log.flow_run_id, "uuid"),
            "task_run_id": FieldSpec(Log.task_run_id, "uuid"),
            "text": FieldSpec(None, "custom", custom=_log_text),
        },
    )
)


def _artifact_fields(model):
    return {
        "id": FieldSpec(model.id, "uuid"),
        "key": FieldSpec(model.key, "text"),
        "flow_run_id": FieldSpec(model.flow_run_id, "uuid"),
        "task_run_id": FieldSpec(model.task_run_id, "uuid"),
        "type": FieldSpec(model.type, "text"),
    }


def _key_exists(model):
    def build(ops, path):
        exists = ops.get("exists_")
        rest = {k: v for k, v in ops.items() if k != "exists_"}
        from db.filters import _and, _scalar_ops

        parts = [_scalar_ops(model.key, "text", rest, path)] if rest else []
        if exists is not None:
            _bool(exists, f"{path}.exists_")
            parts.append(model.key.is_null(False) if exists else model.key.is_null())
        return _and(parts)

    return FieldSpec(None, "custom", custom=build)


_artifact = _artifact_fields(Artifact)
_artifact["key"] = _key_exists(Artifact)
ARTIFACTS = register(
    Entity(
        "artifacts",
        Artifact,
        _artifact,
        links={
            "flow_runs": lambda c: Artifact.flow_run_id.in_(FlowRun.select(FlowRun.id).where(c)),
            "task_runs": lambda c: Artifact.task_run_id.in_(TaskRun.select(TaskRun.id).where(c)),
        },
    )
)

_collection = _artifact_fields(ArtifactCollection)
_collection["key"] = _key_exists(ArtifactCollection)
_collection["latest_id"] = FieldSpec(ArtifactCollection.latest_id, "uuid")
ARTIFACT_COLLECTIONS = Entity(
    "artifacts",
    ArtifactCollection,
    _collection,
    links={
        "flow_runs": lambda c: ArtifactCollection.flow_run_id.in_(FlowRun.select(FlowRun.id).where(c)),
        "task_runs": lambda c: ArtifactCollection.task_run_id.in_(TaskRun.select(TaskRun.id).where(c)),
    },
)


def _nulls_last_desc(field):
    # SQLite sorts NULLs first ascending, so DESC already puts them last; PostgreSQL needs it said.
    return field.desc(nulls="LAST") if dbmod.is_postgres() else field.desc()


def flow_run_sorts():
    m = FlowRun
    started = pw.fn.COALESCE(m.start_time, m.expected_start_time)  # Prefect: runs not started yet sort by their expected start
    return {
        "ID_DESC": [m.id.desc()],
        "START_TIME_ASC": [started.asc(), m.id.desc()],
        "START_TIME_DESC": [_nulls_last_desc(started), m.id.desc()],
        "EXPECTED_START_TIME_ASC": [m.expected_start_time.asc(), m.id.desc()],
        "EXPECTED_START_TIME_DESC": [_nulls_last_desc(m.expected_start_time), m.id.desc()],
        "NAME_ASC": [m.name.asc(), m.id.desc()],
        "NAME_DESC": [m.name.desc(), m.id.desc()],
        "NEXT_SCHEDULED_START_TIME_ASC": [m.next_scheduled_start_time.asc(), m.id.desc()],
        "END_TIME_DESC": [_nulls_last_desc(m.end_time), m.id.desc()],
    }


def task_run_sorts():
    m = TaskRun
    return {
        "ID_DESC": [m.id.desc()],
        "EXPECTED_START_TIME_ASC": [m.expected_start_time.asc(), m.id.desc()],
        "EXPECTED_START_TIME_DESC": [_nulls_last_desc(m.expected_start_time), m.id.desc()],
        "NAME_ASC": [m.name.asc(), m.id.desc()],
        "NAME_DESC": [m.name.desc(), m.id.desc()],
        "NEXT_SCHEDULED_START_TIME_ASC": [m.next_scheduled_start_time.asc(), m.id.desc()],
        "END_TIME_DESC": [_nulls_last_desc(m.end_time), m.id.desc()],
    }


def flow_sorts():
    m = Flow
    return {
        "CREATED_DESC": [m.created.desc(), m.id.desc()],
        "UPDATED_DESC": [m.updated.desc(), m.id.desc()],
        "NAME_ASC": [m.name.asc()],
        "NAME_DESC": [m.name.desc()],
    }


LOG_SORTS = {
    "TIMESTAMP_ASC": [Log.timestamp.asc(), Log.id.asc()],
    "TIMESTAMP_DESC": [Log.timestamp.desc(), Log.id.desc()],
}


def artifact_sorts(model):
    return {
        "CREATED_DESC": [model.created.desc(), model.id.desc()],
        "UPDATED_DESC": [model.updated.desc(), model.id.desc()],
        "ID_DESC": [model.id.desc()],
        "KEY_DESC": [model.key.desc(), model.id.desc()],
        "KEY_ASC": [model.key.asc(), model.id.desc()],
    }


# --- deployments, work pools, work queues, workers (issue 9) ---------------------------------

from db.models_deployments import Deployment, Worker, WorkPool, WorkQueue  # noqa: E402

DEPLOYMENTS = register(
    Entity(
        "deployments",
        Deployment,
        {
            "id": FieldSpec(Deployment.id, "uuid"),
            "name": FieldSpec(Deployment.name, "text"),
            "flow_or_deployment_name": FieldSpec(Deployment.name, "text"),
            "paused": FieldSpec(Deployment.paused, "bool"),
            "tags": FieldSpec(Deployment.tags, "tags"),
            "work_queue_name": FieldSpec(Deployment.work_queue_name, "text"),
            "work_queue_id": FieldSpec(Deployment.work_queue_id, "uuid"),
            "concurrency_limit": FieldSpec(Deployment.concurrency_limit, "int"),
        },
        links={
            "flows": lambda c: Deployment.flow_id.in_(Flow.select(Flow.id).where(c)),
            "flow_runs": lambda c: Deployment.id.in_(FlowRun.select(FlowRun.deployment_id).where(c)),
            "work_pools": lambda c: Deployment.work_queue_id.in_(
                WorkQueue.select(WorkQueue.id).where(WorkQueue.work_pool_id.in_(WorkPool.select(WorkPool.id).where(c)))
            ),
            "work_pool_queues": lambda c: Deployment.work_queue_id.in_(WorkQueue.select(WorkQueue.id).where(c)),
        },
    )
)

WORK_POOLS = register(
    Entity(
        "work_pools",
        WorkPool,
        {
            "id": FieldSpec(WorkPool.id, "uuid"),
            "name": FieldSpec(WorkPool.name, "text"),
            "type": FieldSpec(WorkPool.type, "text"),
        },
    )
)

WORK_POOL_QUEUES = register(
    Entity(
        "work_pool_queues",
        WorkQueue,
        {
            "id": FieldSpec(WorkQueue.id, "uuid"),
            "name": FieldSpec(WorkQueue.name, "text"),
        },
    )
)

WORKERS = register(
    Entity(
        "workers",
        Worker,
        {
            "last_heartbeat_time": FieldSpec(Worker.last_heartbeat_time, "datetime"),
            "status": FieldSpec(Worker.status, "text"),
            "name": FieldSpec(Worker.name, "text"),
        },
    )
)

FLOW_RUNS.links["deployments"] = lambda c: FlowRun.deployment_id.in_(Deployment.select(Deployment.id).where(c))
FLOW_RUNS.links["work_pools"] = lambda c: FlowRun.work_queue_id.in_(
    WorkQueue.select(WorkQueue.id).where(WorkQueue.work_pool_id.in_(WorkPool.select(WorkPool.id).where(c)))
)
FLOW_RUNS.links["work_pool_queues"] = lambda c: FlowRun.work_queue_id.in_(WorkQueue.select(WorkQueue.id).where(c))
TASK_RUNS.links["deployments"] = lambda c: TaskRun.flow_run_id.in_(
    FlowRun.select(FlowRun.id).where(FLOW_RUNS.links["deployments"](c))
)
FLOWS.links["deployments"] = lambda c: Flow.id.in_(Deployment.select(Deployment.flow_id).where(c))
FLOWS.links["work_pools"] = lambda c: Flow.id.in_(
    FlowRun.select(FlowRun.flow_id).where(FLOW_RUNS.links["work_pools"](c))
)
