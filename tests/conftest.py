"""Fixtures: every database test runs on SQLite (a real file) and on the real PostgreSQL.

PostgreSQL is not optional: when it cannot be reached the session stops with an error
instead of skipping half the suite (set APPLIANCE_TEST_PG to point elsewhere).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from tests import support

BACKENDS = ["sqlite", "postgres"]


def pytest_sessionstart(session):
    problem = support.pg_available()
    if problem:
        pytest.exit(f"PostgreSQL for the tests is unreachable at {support.PG_ADMIN_URL}: {problem}", returncode=3)


@pytest.fixture
def tmp_home():
    path = Path(tempfile.mkdtemp(prefix="appliance-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=BACKENDS)
def database_url(request, tmp_home):
    """A fresh, empty database URL on each backend (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_home / 'appliance.db'}"
    else:
        name, url = support.create_pg_database()
        yield url
        support.drop_pg_database(name)


@pytest.fixture(scope="session")
def migrated_templates(tmp_path_factory):
    """One migrated database per backend, made once per session: each test's `migrated`
    database is a copy of it (a file copy; PostgreSQL's CREATE DATABASE … TEMPLATE), which
    costs a fraction of migrating afresh. The migrations themselves are tested on empty
    databases (tests/db/test_migrations.py)."""
    from db import database as dbmod
    from db import migrate

    sqlite_file = tmp_path_factory.mktemp("template") / "template.db"
    name, url = support.create_pg_database("appliance_template")
    for target in (f"sqlite:///{sqlite_file}", url):
        dbmod.init(target)
        migrate.upgrade()
        dbmod.close_all()  # the last connection: SQLite folds its WAL back into the file
    yield {"sqlite": sqlite_file, "postgres": name}
    support.drop_pg_database(name)


@pytest.fixture
def migrated(database_url, migrated_templates):
    """The process-wide database pointed at a fresh, migrated database."""
    from db import database as dbmod

    if database_url.startswith("sqlite:///"):
        shutil.copyfile(migrated_templates["sqlite"], database_url[len("sqlite:///"):])
    else:
        name = database_url.rsplit("/", 1)[1]
        support.drop_pg_database(name)
        support.pg_execute(f'CREATE DATABASE "{name}" TEMPLATE "{migrated_templates["postgres"]}"')
    dbmod.init(database_url)
    yield database_url
    dbmod.close_all()


@pytest.fixture
def client(migrated, tmp_home, monkeypatch):
    """falcon.testing client of the ASGI app on a migrated database."""
    import falcon.testing

    from api.app import create_app
    from appliance.settings import Settings

    monkeypatch.setenv("APPLIANCE_HOME", str(tmp_home))
    monkeypatch.setenv("APPLIANCE_SECRET_KEY", support.TEST_SECRET_KEY)
    settings = Settings(database_url=migrated)
    return falcon.testing.TestClient(create_app(settings, init_db=False))
