"""The `appliance` command as an operator runs it (a subprocess), on both backends."""

from __future__ import annotations

import json

from tests import support


def cli(args, url, home, **env):
    return support.run_cli(args, support.appliance_env(url, home, **env))


def test_upgrade_current_history_downgrade_reset(database_url, tmp_home):
    from db.migrate import all_revisions

    head = all_revisions()
    assert cli(["database", "current"], database_url, tmp_home).stdout.strip() == "base"
    up = cli(["database", "upgrade", "-y"], database_url, tmp_home)
    assert up.returncode == 0, up.stderr
    assert f"current revision: {head[-1]}" in up.stdout
    assert cli(["database", "current"], database_url, tmp_home).stdout.strip() == head[-1]
    history = cli(["database", "history"], database_url, tmp_home).stdout.splitlines()
    assert history == [f"{name}\tapplied" for name in head]

    down = cli(["database", "downgrade", "-y", "-r", "-1"], database_url, tmp_home)
    assert down.returncode == 0, down.stderr
    expected = head[-2] if len(head) > 1 else "base"
    assert cli(["database", "current"], database_url, tmp_home).stdout.strip() == expected
    assert cli(["database", "history"], database_url, tmp_home).stdout.splitlines()[-1] == f"{head[-1]}\tpending"

    base = cli(["database", "downgrade", "-y", "-r", "base"], database_url, tmp_home)
    assert base.returncode == 0, base.stderr
    assert cli(["database", "current"], database_url, tmp_home).stdout.strip() == "base"

    assert cli(["database", "upgrade", "-y", "-r", head[0]], database_url, tmp_home).returncode == 0
    assert cli(["database", "current"], database_url, tmp_home).stdout.strip() == head[0]
    reset = cli(["database", "reset", "-y"], database_url, tmp_home)
    assert reset.returncode == 0, reset.stderr
    assert cli(["database", "current"], database_url, tmp_home).stdout.strip() == head[-1]


def test_refuses_without_yes_and_without_terminal(database_url, tmp_home):
    for args in (["database", "upgrade"], ["database", "downgrade"], ["database", "reset"]):
        result = cli(args, database_url, tmp_home)
        assert result.returncode != 0
        assert "-y" in result.stderr
    assert cli(["database", "current"], database_url, tmp_home).stdout.strip() == "base"


def test_unknown_revision_is_one_line_and_changes_nothing(database_url, tmp_home):
    cli(["database", "upgrade", "-y"], database_url, tmp_home)
    before = cli(["database", "current"], database_url, tmp_home).stdout
    for args in (["database", "downgrade", "-y", "-r", "042_nope"], ["database", "upgrade", "-y", "-r", "042_nope"]):
        result = cli(args, database_url, tmp_home)
        assert result.returncode == 1
        assert result.stderr.strip().count("\n") == 0 and "unknown revision" in result.stderr
    assert cli(["database", "current"], database_url, tmp_home).stdout == before


def test_bad_url_and_unreachable_database(tmp_home):
    bad = cli(["database", "upgrade", "-y"], "mysql://x/y", tmp_home)
    assert bad.returncode != 0 and "unsupported database URL" in bad.stderr
    assert "Traceback" not in bad.stderr
    down = cli(
        ["database", "upgrade", "-y"], "postgresql://postgres@127.0.0.1:1/nowhere", tmp_home,
        APPLIANCE_DB_WAIT_SECONDS=0,
    )
    assert down.returncode == 1
    assert down.stderr.startswith("error: cannot reach the database")
    assert len(down.stderr.strip().splitlines()) == 1
    missing_db = cli(["database", "current"], support.pg_url_for("appliance_no_such_db"), tmp_home)
    assert missing_db.returncode == 1 and "Traceback" not in missing_db.stderr


def test_config_masks_secrets(tmp_home):
    url = "postgresql://appl:hunter2@db.example:5432/app"
    result = cli(["config"], url, tmp_home, APPLIANCE_AUTH_STRING="admin:s3cret")
    assert result.returncode == 0
    shown = json.loads(result.stdout)
    assert "hunter2" not in result.stdout and "s3cret" not in result.stdout
    assert shown["database_url"] == "postgresql://appl:********@db.example:5432/app"
    assert shown["auth_string"] == "admin:********"
    assert shown["port"] == 4200 and shown["api_prefix"] == "/api"


def test_invalid_setting_is_reported(tmp_home):
    result = cli(["config"], "sqlite:///x.db", tmp_home, APPLIANCE_PORT="not-a-port")
    assert result.returncode == 2
    assert "APPLIANCE_PORT" in result.stderr
