"""Blocks over HTTP on both backends: the built-in catalogue, types, schemas, documents,
secrets masked and kept, nested references, protection, and bad input (Prefect §5.1–5.6)."""

from __future__ import annotations

import uuid

import pytest

from db import blocks
from db import database as dbmod
from db.models_blocks import BlockDocument, BlockSchema, BlockType

SECRET_FIELDS = {
    "block_schema_references": {}, "block_type_slug": "my-creds", "title": "MyCreds", "type": "object",
    "properties": {
        "username": {"title": "Username", "type": "string", "position": 0},
        "password": {"format": "password", "title": "Password", "type": "string", "writeOnly": True, "position": 1},
        "extra": {"title": "Extra", "type": "object", "position": 2},
    },
    "required": ["username", "password"], "secret_fields": ["password", "extra.*"],
}


@pytest.fixture
def api(client):
    with dbmod.write_tx():
        blocks.register_catalogue()
    return client


def make_type(api, slug="my-creds", name="MyCreds"):
    resp = api.simulate_post("/api/block_types/", json={"name": name, "slug": slug, "description": None})
    assert resp.status_code == 201, resp.text
    return resp.json


def make_schema(api, type_id, fields=SECRET_FIELDS):
    resp = api.simulate_post(
        "/api/block_schemas/", json={"fields": fields, "block_type_id": type_id, "capabilities": [], "version": "1"}
    )
    assert resp.status_code in (200, 201), resp.text
    return resp.json


def make_doc(api, type_id, schema_id, name="creds", data=None):
    body = {"name": name, "data": data or {"username": "u", "password": "p", "extra": {"token": "t"}},
            "block_schema_id": schema_id, "block_type_id": type_id, "is_anonymous": False}
    return api.simulate_post("/api/block_documents/", json=body)


@pytest.fixture
def creds(api):
    block_type = make_type(api)
    schema = make_schema(api, block_type["id"])
    doc = make_doc(api, block_type["id"], schema["id"])
    assert doc.status_code == 201, doc.text
    return block_type, schema, doc.json


def test_catalogue_is_registered_protected_and_idempotent(api):
    slugs = {t["slug"]: t for t in api.simulate_post("/api/block_types/filter", json={}).json}
    for slug in ("secret", "local-file-system", "remote-file-system", "smb", "webhook", "custom-webhook",
                 "discord-webhook", "mattermost-webhook", "ms-teams-webhook", "opsgenie-webhook",
                 "pager-duty-webhook", "sendgrid-email", "slack-webhook", "twilio-sms"):
        assert slugs[slug]["is_protected"] is True, slug
    assert "aws-credentials" in slugs and slugs["aws-credentials"]["is_protected"] is False
    secret = api.simulate_get("/api/block_schemas/checksum/sha256:c078ed9c1e813e224c0b353d7ad4564a11d51d3198d9ac0686478165a1911c78",
                              params={"version": "3.8.8"})
    assert secret.status_code == 200 and secret.json["block_type"]["slug"] == "secret"
    before = (BlockType.select().count(), BlockSchema.select().count())
    with dbmod.write_tx():
        assert blocks.register_catalogue() == 0
    assert (BlockType.select().count(), BlockSchema.select().count()) == before
    assert set(api.simulate_get("/api/block_capabilities/").json) >= {"notify", "read-path", "write-path"}


def test_protected_types_refuse_change_and_deletion(api):
    secret = api.simulate_get("/api/block_types/slug/secret").json
    resp = api.simulate_patch(f"/api/block_types/{secret['id']}", json={"description": "mine now"})
    assert resp.status_code == 403 and "protected" in resp.json["detail"]
    # An unchanged PATCH (what the SDK may send) is accepted and changes nothing.
    same = api.simulate_patch(f"/api/block_types/{secret['id']}", json={"description": secret["description"]})
    assert same.status_code == 204
    gone = api.simulate_delete(f"/api/block_types/{secret['id']}")
    assert gone.status_code == 403 and gone.json["detail"] == "protected block types cannot be deleted."
    schema = api.simulate_post("/api/block_schemas/filter",
                               json={"block_schemas": {"block_type_id": {"any_": [secret["id"]]}}}).json[0]
    assert api.simulate_delete(f"/api/block_schemas/{schema['id']}").status_code == 403


def test_type_rules(api):
    made = make_type(api)
    assert set(made) == {"id", "created", "updated", "name", "slug", "logo_url", "documentation_url",
                         "description", "code_example", "is_protected"}
    dup = api.simulate_post("/api/block_types/", json={"name": "MyCreds", "slug": "my-creds"})
    assert dup.status_code == 409 and dup.json["detail"] == 'Block type with name "MyCreds" already exists'
    reserved = api.simulate_post("/api/block_types/", json={"name": "PrefectThing", "slug": "prefect-thing"})
    assert reserved.status_code == 403
    assert api.simulate_patch(f"/api/block_types/{made['id']}", json={"description": "d"}).status_code == 204
    assert api.simulate_get("/api/block_types/slug/my-creds").json["description"] == "d"
    like = api.simulate_post("/api/block_types/filter", json={"block_types": {"name": {"like_": "MyCr"}}}).json
    assert [t["slug"] for t in like] == ["my-creds"]
    assert api.simulate_delete(f"/api/block_types/{made['id']}").status_code == 204
    assert api.simulate_get("/api/block_types/slug/my-creds").json == {"detail": "Block type not found"}


def test_schema_created_once_by_checksum(api):
    block_type = make_type(api)
    first = api.simulate_post("/api/block_schemas/",
                              json={"fields": SECRET_FIELDS, "block_type_id": block_type["id"], "version": "1"})
    again = api.simulate_post("/api/block_schemas/",
                              json={"fields": SECRET_FIELDS, "block_type_id": block_type["id"], "version": "1"})
    assert (first.status_code, again.status_code) == (201, 200) and first.json["id"] == again.json["id"]
    by_checksum = api.simulate_get(f"/api/block_schemas/checksum/{first.json['checksum']}", params={"version": "1"})
    assert by_checksum.json["id"] == first.json["id"]
    assert api.simulate_get(f"/api/block_schemas/checksum/{first.json['checksum']}",
                            params={"version": "2"}).status_code == 404
    unknown = api.simulate_post("/api/block_schemas/", json={"fields": {}, "block_type_id": str(uuid.uuid4())})
    assert unknown.status_code == 404


def test_secrets_masked_on_every_read_and_plain_when_asked(api, creds):
    block_type, _, doc = creds
    masked = {"username": "u", "password": "********", "extra": {"token": "********"}}
    assert doc["data"] == masked
    by_id = api.simulate_get(f"/api/block_documents/{doc['id']}").json
    by_name = api.simulate_get("/api/block_types/slug/my-creds/block_documents/name/creds").json
    listed = api.simulate_post("/api/block_documents/filter", json={}).json
    of_type = api.simulate_get("/api/block_types/slug/my-creds/block_documents").json
    assert by_id["data"] == by_name["data"] == listed[0]["data"] == of_type[0]["data"] == masked
    plain = api.simulate_get(f"/api/block_documents/{doc['id']}", params={"include_secrets": "true"}).json
    assert plain["data"] == {"username": "u", "password": "p", "extra": {"token": "t"}}
    assert by_id["block_type_name"] == "MyCreds" and by_id["block_type"]["id"] == block_type["id"]
    assert api.simulate_post("/api/block_documents/count", json={}).json == 1


def test_no_plaintext_at_rest(api, creds):
    raw = [row[0] for row in dbmod.database.obj.execute_sql("SELECT data FROM block_document").fetchall()]
    assert raw and all("p" != r and '"password"' not in r and "username" not in r for r in raw)


def test_patch_keeps_obfuscated_secrets_and_merges(api, creds):
    _, schema, doc = creds
    url = f"/api/block_documents/{doc['id']}"
    resp = api.simulate_patch(url, json={"data": {"username": "u2", "password": "********",
                                                  "extra": {"token": "********"}}})
    assert resp.status_code == 204
    plain = api.simulate_get(url, params={"include_secrets": "true"}).json["data"]
    assert plain == {"username": "u2", "password": "p", "extra": {"token": "t"}}
    api.simulate_patch(url, json={"data": {"password": "new"}})  # merge_existing_data defaults to true
    assert api.simulate_get(url, params={"include_secrets": "true"}).json["data"]["username"] == "u2"
    api.simulate_patch(url, json={"data": {"username": "only"}, "merge_existing_data": False})
    assert api.simulate_get(url, params={"include_secrets": "true"}).json["data"] == {"username": "only"}
    other_type = make_type(api, "other", "Other")
    other_schema = make_schema(api, other_type["id"], {**SECRET_FIELDS, "block_type_slug": "other"})
    wrong = api.simulate_patch(url, json={"block_schema_id": other_schema["id"], "data": {}})
    assert wrong.status_code == 400 and "same block type" in wrong.json["detail"]


def test_duplicate_name_409_and_overwrite_flow(api, creds):
    block_type, schema, _ = creds
    dup = make_doc(api, block_type["id"], schema["id"])
    assert dup.status_code == 409 and dup.json == {"detail": "Block already exists"}
    anonymous = api.simulate_post("/api/block_documents/", json={
        "data": {"username": "a", "password": "b"}, "block_schema_id": schema["id"],
        "block_type_id": block_type["id"], "is_anonymous": True})
    assert anonymous.status_code == 201 and anonymous.json["name"].startswith("anonymous-")
    # Anonymous documents are hidden from a block_documents filter by default.
    named = api.simulate_post("/api/block_documents/filter", json={"block_documents": {}}).json
    assert [d["name"] for d in named] == ["creds"]


def test_nested_references_reinlined_and_masked(api, creds):
    _, _, inner = creds
    outer_type = make_type(api, "outer", "Outer")
    outer_schema = make_schema(api, outer_type["id"], {
        "block_type_slug": "outer", "title": "Outer", "type": "object", "secret_fields": ["creds.password"],
        "properties": {"creds": {"$ref": "#/definitions/MyCreds"}, "label": {"type": "string"}},
        "definitions": {"MyCreds": {**SECRET_FIELDS}}, "block_schema_references": {},
    })
    outer = make_doc(api, outer_type["id"], outer_schema["id"], "outer",
                     {"label": "x", "creds": {"$ref": {"block_document_id": inner["id"]}}})
    assert outer.status_code == 201, outer.text
    ref = outer.json["block_document_references"]["creds"]["block_document"]
    assert ref["id"] == inner["id"] and ref["block_type"]["slug"] == "my-creds"
    assert outer.json["data"]["creds"]["password"] == "********"
    plain = api.simulate_get(f"/api/block_documents/{outer.json['id']}", params={"include_secrets": "true"}).json
    assert plain["data"]["creds"]["password"] == "p"
    missing = make_doc(api, outer_type["id"], outer_schema["id"], "broken",
                       {"creds": {"$ref": {"block_document_id": str(uuid.uuid4())}}})
    assert missing.status_code == 404
    assert BlockDocument.select().where(BlockDocument.name == "broken").count() == 0


def test_notifier_reads_decrypted_blocks(api):
    slack = api.simulate_get("/api/block_types/slug/slack-webhook").json
    schema = api.simulate_post("/api/block_schemas/filter",
                               json={"block_schemas": {"block_type_id": {"any_": [slack["id"]]}}}).json[0]
    made = make_doc(api, slack["id"], schema["id"], "alerts", {"url": "https://hooks.slack.com/services/T/B/X"})
    assert made.status_code == 201 and made.json["data"]["url"] == "********"
    from notifier import blocks_access

    assert blocks_access.load(made.json["id"]) == ("slack-webhook", {"url": "https://hooks.slack.com/services/T/B/X"})
    assert blocks_access.exists(str(uuid.uuid4())) is False


def test_delete_document(api, creds):
    _, _, doc = creds
    assert api.simulate_delete(f"/api/block_documents/{doc['id']}").status_code == 204
    assert api.simulate_get(f"/api/block_documents/{doc['id']}").json == {"detail": "Block document not found"}
    assert api.simulate_delete(f"/api/block_documents/{doc['id']}").status_code == 404


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("post", "/api/block_types/", {"name": "Bad/Name", "slug": "bad"}),
        ("post", "/api/block_types/", {"name": "Ok", "slug": "Not A Slug"}),
        ("post", "/api/block_types/", {"name": "Ok"}),
        ("post", "/api/block_types/", {"name": "Ok", "slug": "ok", "bogus": 1}),
        ("post", "/api/block_schemas/", {"fields": "nope", "block_type_id": "x"}),
        ("post", "/api/block_documents/", {"name": "Bad Name", "data": {}, "block_schema_id": str(uuid.uuid4()),
                                           "block_type_id": str(uuid.uuid4())}),
        ("post", "/api/block_documents/", {"data": {}, "block_schema_id": str(uuid.uuid4()),
                                           "block_type_id": str(uuid.uuid4())}),
        ("post", "/api/block_documents/", {"name": "x", "data": [], "block_schema_id": "nope", "block_type_id": 3}),
        ("post", "/api/block_documents/filter", {"block_types": {"slug": {"any_": "notalist"}}}),
        ("post", "/api/block_documents/filter", {"sort": "SIDEWAYS"}),
        ("post", "/api/block_documents/filter", {"limit": 10_000}),
        ("post", "/api/block_types/filter", {"block_schemas": {"block_type_id": {"any_": ["not-a-uuid"]}}}),
        ("post", "/api/block_documents/count", {"block_documents": {"id": {"any_": [1, 2]}}}),
    ],
)
def test_bad_input_is_4xx_with_detail_and_writes_nothing(api, method, path, body):
    before = (BlockType.select().count(), BlockSchema.select().count(), BlockDocument.select().count())
    resp = getattr(api, f"simulate_{method}")(path, json=body)
    assert 400 <= resp.status_code < 500, resp.text
    assert resp.json.get("detail")
    assert (BlockType.select().count(), BlockSchema.select().count(), BlockDocument.select().count()) == before


def test_unknown_ids_are_404(api):
    missing = str(uuid.uuid4())
    assert api.simulate_get(f"/api/block_types/{missing}").status_code == 404
    assert api.simulate_get(f"/api/block_schemas/{missing}").status_code == 404
    assert api.simulate_get(f"/api/block_documents/{missing}").status_code == 404
    assert api.simulate_patch(f"/api/block_documents/{missing}", json={"data": {}}).status_code == 404
    assert api.simulate_get("/api/block_types/slug/nope/block_documents").status_code == 404
    assert api.simulate_get("/api/block_types/slug/secret/block_documents/name/nope").status_code == 404
