"""/artifacts: create, read, update, delete, filter, count, latest by key and the
latest-per-key collection (/artifacts/latest/filter|count)."""

from __future__ import annotations

import uuid

from api import shapes
from api.errors import not_found
from api.http import no_content, read_model, send
from api.listing import build_query, count_query, filter_failed, read_filter_body
from api.schemas import ArtifactCreate, ArtifactUpdate
from db import artifacts
from db import database as db
from db.filters import FilterError, paging, sort_for
from db.models import Artifact, ArtifactCollection
from db.queries import ARTIFACT_COLLECTIONS, FLOW_RUNS, TASK_RUNS, artifact_sorts

FILTER_KEYS = {"artifacts", "flow_runs", "task_runs"}


class Artifacts:
    async def on_post(self, req, resp):
        body = await read_model(req, ArtifactCreate)
        row = await db.run_write(artifacts.create_artifact, body.domain())
        send(resp, shapes.artifact(row), 201)


def _artifact_id(ident: str) -> str:
    """Falcon routes ``/artifacts/{ident}`` and ``/artifacts/{ident}/latest`` on one field name,
    so the id is checked here: a non-UUID is an unknown route, as in Prefect."""
    try:
        return str(uuid.UUID(ident))
    except ValueError:
        raise not_found("Not Found") from None


class ArtifactById:
    async def on_get(self, req, resp, ident):
        artifact_id = _artifact_id(ident)
        row = await db.run(lambda: Artifact.select().where(Artifact.id == str(artifact_id)).dicts().first())
        if row is None:
            raise not_found("Artifact not found.")
        send(resp, shapes.artifact(row))

    async def on_patch(self, req, resp, ident):
        artifact_id = _artifact_id(ident)
        body = await read_model(req, ArtifactUpdate)
        try:
            await db.run_write(artifacts.update_artifact, str(artifact_id), body.values())
        except artifacts.NotFound as exc:
            raise not_found(str(exc)) from None
        no_content(resp)

    async def on_delete(self, req, resp, ident):
        artifact_id = _artifact_id(ident)
        try:
            await db.run_write(artifacts.delete_artifact, str(artifact_id))
        except artifacts.NotFound as exc:
            raise not_found(str(exc)) from None
        no_content(resp)


class LatestByKey:
    async def on_get(self, req, resp, ident):
        key = ident
        row = await db.run(artifacts.latest_by_key, key)
        if row is None:
            raise not_found("Artifact not found.")
        send(resp, shapes.artifact(row))


class ArtifactFilter:
    async def on_post(self, req, resp):
        body = await read_filter_body(req)
        query, _, _ = build_query(Artifact, "artifacts", body, FILTER_KEYS, artifact_sorts(Artifact), "ID_DESC")
        rows = await db.run(lambda: list(query.dicts()))
        send(resp, [shapes.artifact(r) for r in rows])


class ArtifactCount:
    async def on_post(self, req, resp):
        body = await read_filter_body(req)
        query = count_query(Artifact, "artifacts", body, FILTER_KEYS)
        send(resp, await db.run(query.count))


def _collection_query(body: dict):
    """The latest-per-key query: the collection entity stands in for ``artifacts``."""
    from db.filters import REGISTRY, _and, entity_condition

    try:
        parts = [entity_condition(ARTIFACT_COLLECTIONS, body.get("artifacts"), "artifacts")]
        for key, entity in (("flow_runs", FLOW_RUNS), ("task_runs", TASK_RUNS)):
            cond = entity_condition(REGISTRY[entity.name], body.get(key), key)
            if cond is not None:
                parts.append(ARTIFACT_COLLECTIONS.links[key](cond))
        where = _and(parts)
        query = ArtifactCollection.select()
        if where is not None:
            query = query.where(where)
        return query
    except FilterError as exc:
        raise filter_failed(exc, body) from None


class CollectionFilter:
    async def on_post(self, req, resp):
        body = await read_filter_body(req)
        query = _collection_query(body)
        try:
            limit, offset = paging(body)
            order = sort_for(artifact_sorts(ArtifactCollection), body.get("sort"), "ID_DESC")
        except FilterError as exc:
            raise filter_failed(exc, body) from None
        query = query.order_by(*order).limit(limit).offset(offset)
        rows = await db.run(lambda: list(query.dicts()))
        send(resp, [shapes.artifact_collection(r) for r in rows])


class CollectionCount:
    async def on_post(self, req, resp):
        body = await read_filter_body(req)
        query = _collection_query(body)
        send(resp, await db.run(query.count))


def register(app, prefix: str) -> None:
    app.add_route(f"{prefix}/artifacts", Artifacts())
    app.add_route(f"{prefix}/artifacts/filter", ArtifactFilter())
    app.add_route(f"{prefix}/artifacts/count", ArtifactCount())
    app.add_route(f"{prefix}/artifacts/latest/filter", CollectionFilter())
    app.add_route(f"{prefix}/artifacts/latest/count", CollectionCount())
    app.add_route(f"{prefix}/artifacts/{{ident}}", ArtifactById())
    app.add_route(f"{prefix}/artifacts/{{ident}}/latest", LatestByKey())

