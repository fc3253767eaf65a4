"""Block data encrypted at rest: where the key comes from, what happens without it or with
the wrong one (clear start-up errors, never garbage or a 500), and `appliance secrets
rotate-key` re-encrypting every row in one transaction — on both backends."""

from __future__ import annotations

import stat

import pytest
from cryptography.fernet import Fernet

from appliance.settings import Settings
from db import blocks, secrets_crypto
from db import database as dbmod
from db.models_blocks import BlockDocument
from tests import support


def _save_secret(value: str) -> str:
    with dbmod.write_tx():
        blocks.register_catalogue()
        secret_type = blocks.read_block_type_by_slug("secret")
        schema = [s for s in blocks.list_block_schemas(
            {"block_schemas": {"block_type_id": {"any_": [secret_type["id"]]}}}, 10, 0)][0]
        doc = blocks.create_block_document({
            "name": "pw", "data": {"value": value}, "block_schema_id": schema["id"],
            "block_type_id": secret_type["id"], "is_anonymous": False,
        })
    return doc["id"]


@pytest.fixture
def keyed(migrated, tmp_home):
    key = Fernet.generate_key().decode()
    secrets_crypto.configure(Settings(database_url=migrated, home=tmp_home, secret_key=key))
    yield migrated, key
    secrets_crypto.configure(Settings(database_url=migrated, home=tmp_home, secret_key=support.TEST_SECRET_KEY))


def test_round_trip_and_no_plaintext_in_the_table(keyed):
    doc_id = _save_secret("hunter2-plaintext")
    raw = BlockDocument.get_by_id(doc_id).data
    assert "hunter2" not in raw and raw.startswith("gAAAA")  # a Fernet token
    assert blocks.read_block_document(doc_id, include_secrets=True)["data"] == {"value": "hunter2-plaintext"}
    assert blocks.read_block_document(doc_id)["data"] == {"value": "********"}


def test_sqlite_key_file_is_created_once_with_mode_0600(tmp_home):
    settings = Settings(database_url=f"sqlite:///{tmp_home / 'x.db'}", home=tmp_home)
    first = secrets_crypto.load_keys(settings)
    path = tmp_home / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secrets_crypto.load_keys(settings)[0].encrypt(b"x")  # same file, readable again
    assert first[0].decrypt(secrets_crypto.load_keys(settings)[0].encrypt(b"x")) == b"x"


def test_postgres_without_a_key_says_how_to_make_one(tmp_home):
    settings = Settings(database_url="postgresql://postgres@127.0.0.1/whatever", home=tmp_home)
    with pytest.raises(secrets_crypto.KeyError_, match="APPLIANCE_SECRET_KEY is not set.*generate-key"):
        secrets_crypto.load_keys(settings)


def test_malformed_key_is_refused(tmp_home):
    settings = Settings(database_url=f"sqlite:///{tmp_home / 'x.db'}", home=tmp_home, secret_key="not-a-key")
    with pytest.raises(secrets_crypto.KeyError_, match="not a valid Fernet key"):
        secrets_crypto.load_keys(settings)


def test_rotate_key_cli_reencrypts_every_row(keyed, tmp_home):
    url, old_key = keyed
    doc_id = _save_secret("before-rotation")
    before = BlockDocument.get_by_id(doc_id).data
    env = support.appliance_env(url, tmp_home, APPLIANCE_SECRET_KEY=old_key)
    new_key = Fernet.generate_key().decode()
    # "=" form: a generated key may start with "-", which argparse would take for an option.
    result = support.run_cli(["secrets", "rotate-key", f"--new-key={new_key}"], env)
    assert result.returncode == 0, result.stderr
    assert f"APPLIANCE_SECRET_KEY={new_key}" in result.stdout and "re-encrypted 1" in result.stdout
    after = BlockDocument.get_by_id(doc_id).data
    assert after != before
    assert Fernet(new_key.encode()).decrypt(after.encode()) == b'{"value":"before-rotation"}'
    # The old key alone no longer opens it.
    with pytest.raises(Exception):  # noqa: B017 - cryptography's InvalidToken
        Fernet(old_key.encode()).decrypt(after.encode())


def test_serve_refuses_a_wrong_key_when_documents_exist(keyed, tmp_home):
    url, _ = keyed
    _save_secret("x")
    env = support.appliance_env(url, tmp_home, APPLIANCE_SECRET_KEY=Fernet.generate_key().decode())
    server = support.LiveServer(url, tmp_home)
    server.env = env
    with pytest.raises(RuntimeError, match="does not decrypt the stored block documents"):
        server.start(wait=20)
    server.stop()


def test_serve_on_postgres_without_a_key_stops_with_the_fix(tmp_home):
    name, url = support.create_pg_database()
    try:
        env = support.appliance_env(url, tmp_home)
        env.pop("APPLIANCE_SECRET_KEY")
        server = support.LiveServer(url, tmp_home)
        server.env = env
        with pytest.raises(RuntimeError, match="APPLIANCE_SECRET_KEY is not set"):
            server.start(wait=20)
        server.stop()
    finally:
        support.drop_pg_database(name)
