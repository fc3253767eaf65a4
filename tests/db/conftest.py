"""Fixtures of the database tests that need one backend on purpose (query plans, SQLite's
vacuum): a copy of the session's migrated template, on that backend only."""

from __future__ import annotations

import shutil

import pytest

from db import database as dbmod
from tests import support


@pytest.fixture
def sqlite_db(tmp_home, migrated_templates):
    path = tmp_home / "appliance.db"
    shutil.copyfile(migrated_templates["sqlite"], path)
    dbmod.init(f"sqlite:///{path}")
    yield path
    dbmod.close_all()


@pytest.fixture
def pg_db(migrated_templates):
    name, url = support.create_pg_database()
    support.drop_pg_database(name)
    support.pg_execute(f'CREATE DATABASE "{name}" TEMPLATE "{migrated_templates["postgres"]}"')
    dbmod.init(url)
    yield url
    dbmod.close_all()
    support.drop_pg_database(name)
