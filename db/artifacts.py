"""Artifacts and the per-key "latest" collection that points at the newest version."""

from __future__ import annotations

from db.fields import new_id, utcnow
from db.models import Artifact, ArtifactCollection

COPIED = ("key", "type", "description", "data", "metadata_", "flow_run_id", "task_run_id")


class NotFound(LookupError):
    pass


def create_artifact(data: dict) -> dict:
    now = utcnow()
    row = {"id": new_id(), "created": now, "updated": now, **{k: data.get(k) for k in COPIED}}
    Artifact.insert(row).execute()
    if row["key"]:
        _point_collection_at(row)
    return row


def _point_collection_at(row: dict) -> None:
    # The collection carries its artifact's own `updated` (as Prefect's does): re-pointing it
    # at an older version after a delete shows that version's time, not the time of the delete.
    values = {"latest_id": row["id"], "updated": row["updated"], **{k: row[k] for k in COPIED}}
    updated = ArtifactCollection.update(values).where(ArtifactCollection.key == row["key"]).execute()
    if not updated:
        ArtifactCollection.insert({"id": new_id(), "created": row["created"], **values}).execute()


def update_artifact(artifact_id: str, changes: dict) -> None:
    row = Artifact.select().where(Artifact.id == artifact_id).dicts().first()
    if row is None:
        raise NotFound("Artifact not found.")
    changes = {k: v for k, v in changes.items() if k in ("data", "description", "metadata_")}
    changes["updated"] = utcnow()
    Artifact.update(changes).where(Artifact.id == artifact_id).execute()
    if row["key"]:
        (
            ArtifactCollection.update(changes)
            .where((ArtifactCollection.key == row["key"]) & (ArtifactCollection.latest_id == artifact_id))
            .execute()
        )


def delete_artifact(artifact_id: str) -> None:
    row = Artifact.select().where(Artifact.id == artifact_id).dicts().first()
    if row is None:
        raise NotFound("Artifact not found.")
    Artifact.delete().where(Artifact.id == artifact_id).execute()
    if row["key"]:
        collection = ArtifactCollection.select().where(ArtifactCollection.key == row["key"]).first()
        if collection and collection.latest_id == artifact_id:
            previous = (
                Artifact.select()
                .where(Artifact.key == row["key"])
                .order_by(Artifact.created.desc(), Artifact.id.desc())
                .dicts()
                .first()
            )
            if previous is None:
                ArtifactCollection.delete().where(ArtifactCollection.key == row["key"]).execute()
            else:
                _point_collection_at(previous)


def latest_by_key(key: str) -> dict | None:
    """The key's collection row: Prefect's `/artifacts/{key}/latest` answers the collection
    (its own id, the first version's `created`), not the newest artifact row."""
    return ArtifactCollection.select().where(ArtifactCollection.key == key).dicts().first()
