"""Migrations on both backends: round trips, downgrade targets, reset, no model drift, pg_trgm."""

from __future__ import annotations

import importlib
import pkgutil

import peewee
import pytest

import db
from db import database as dbmod
from db import migrate
from tests import support


@pytest.fixture
def fresh_db(database_url):
    dbmod.init(database_url)
    yield database_url
    dbmod.close_all()


def _tables():
    return set(dbmod.database.obj.get_tables())


def all_models():
    """Every model class of every db/models*.py module (each exports MODELS or ALL_MODELS)."""
    models = []
    for info in pkgutil.iter_modules(db.__path__):
        if info.name == "models" or info.name.startswith("models_"):
            module = importlib.import_module(f"db.{info.name}")
            models.extend(getattr(module, "MODELS", None) or getattr(module, "ALL_MODELS", []))
    return models


def test_round_trip_head_base_head(fresh_db):
    head = migrate.all_revisions()
    assert migrate.upgrade() == head
    assert migrate.current() == head[-1]
    model_tables = {m._meta.table_name for m in all_models()}
    assert model_tables <= _tables()
    reverted = migrate.downgrade("base")
    assert reverted == list(reversed(head))
    assert migrate.current() == "base"
    assert not (model_tables & _tables())
    assert migrate.upgrade() == head
    assert migrate.is_at_head()


def test_downgrade_one_step_and_to_named_revision(fresh_db):
    head = migrate.all_revisions()
    migrate.upgrade()
    assert migrate.downgrade("-1") == [head[-1]]
    assert migrate.current() == (head[-2] if len(head) > 1 else "base")
    migrate.upgrade()
    first = head[0]
    reverted = migrate.downgrade(first)
    assert reverted == list(reversed(head[1:]))
    assert migrate.current() == first
    migrate.upgrade(head[-1])
    assert migrate.is_at_head()


def test_upgrade_to_named_revision_stops_there(fresh_db):
    head = migrate.all_revisions()
    assert migrate.upgrade(head[0]) == [head[0]]
    assert migrate.current() == head[0]
    assert migrate.upgrade(head[0]) == []


def test_unknown_revision_changes_nothing(fresh_db):
    migrate.upgrade()
    before = migrate.current()
    with pytest.raises(migrate.MigrationError, match="unknown revision"):
        migrate.downgrade("999_nope")
    with pytest.raises(migrate.MigrationError, match="unknown revision"):
        migrate.upgrade("999_nope")
    assert migrate.current() == before


def test_reset_drops_data_and_reapplies(fresh_db):
    from db.models import Flow

    migrate.upgrade()
    Flow.create(name="doomed", tags=[])
    assert Flow.select().count() == 1
    assert migrate.reset() == migrate.all_revisions()
    assert Flow.select().count() == 0
    assert migrate.is_at_head()


def _columns(table):
    return {c.name: c for c in dbmod.database.obj.get_columns(table)}


def test_models_match_migrated_schema(fresh_db):
    """No drift: every model column exists with the same nullability, and nothing extra."""
    migrate.upgrade()
    for model in all_models():
        table = model._meta.table_name
        actual = _columns(table)
        expected = {f.column_name: f for f in model._meta.sorted_fields}
        assert set(actual) == set(expected), f"{table}: columns differ"
        for name, field in expected.items():
            if field.primary_key:
                continue
            assert actual[name].null == field.null, f"{table}.{name}: nullability differs"
        actual_indexes = {tuple(i.columns) for i in dbmod.database.obj.get_indexes(table)}
        for fields, _unique in model._meta.indexes:
            columns = tuple(model._meta.fields[f].column_name if f in model._meta.fields else f for f in fields)
            assert columns in actual_indexes, f"{table}: index {fields} missing"
        for field in model._meta.sorted_fields:
            if (field.index or field.unique) and not field.primary_key:
                assert (field.column_name,) in actual_indexes, f"{table}.{field.column_name}: index missing"


@pytest.fixture
def fresh_pg():
    name, url = support.create_pg_database()
    dbmod.init(url)
    yield url
    dbmod.close_all()
    support.drop_pg_database(name)


def test_pg_trgm_and_trigram_indexes(fresh_pg):
    migrate.upgrade()
    db_ = dbmod.database.obj
    assert db_.execute_sql("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'").fetchone()
    indexes = {row[0] for row in db_.execute_sql("SELECT indexname FROM pg_indexes WHERE indexname LIKE '%%_trgm'")}
    assert {"ix_flow_name_trgm", "ix_flow_run_name_trgm", "ix_task_run_name_trgm"} <= indexes
    plan = db_.execute_sql("EXPLAIN SELECT id FROM flow_run WHERE name ILIKE '%%amber-fox%%'").fetchall()
    assert plan  # the query plans; with enough rows PostgreSQL picks the GIN index


def test_clear_error_when_pg_trgm_cannot_be_created(tmp_home):
    """A role that may create tables but not extensions gets a message naming the fix."""
    name, _ = support.create_pg_database("appliance_notrgm")
    role = f"appl_{name[-10:]}"
    try:
        support.pg_execute(f'CREATE ROLE "{role}" LOGIN')
        support.pg_execute(f'REVOKE CREATE ON DATABASE "{name}" FROM PUBLIC')
        support.pg_execute(f'GRANT CONNECT ON DATABASE "{name}" TO "{role}"')
        support.pg_execute(f'GRANT USAGE, CREATE ON SCHEMA public TO "{role}"', database=name)
        url = support.pg_url_for(name, user=role)
        result = support.run_cli(["database", "upgrade", "-y"], support.appliance_env(url, tmp_home))
        assert result.returncode != 0
        assert "pg_trgm" in result.stderr and name in result.stderr
        assert "CREATE EXTENSION" in result.stderr
        assert "Traceback" not in result.stderr
        tables = support.pg_execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'", database=name)
        assert [t for (t,) in tables if t != "migratehistory"] == []
    finally:
        support.drop_pg_database(name)
        support.pg_execute(f'DROP ROLE IF EXISTS "{role}"')


def test_peewee_errors_do_not_leak_from_unknown_table(fresh_db):
    with pytest.raises(peewee.DatabaseError):
        dbmod.database.obj.execute_sql("SELECT * FROM no_such_table")
