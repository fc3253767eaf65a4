"""The Ansible playbooks, run for real against this machine and its PostgreSQL, as an operator
runs them: an inventory shaped like ops/inventory.example.yml (every host is localhost),
group_vars from ops/group_vars/all.example.yml plus the CI values, the secrets in an
ansible-vault file. A dedicated database and role, dropped after. Outcomes are checked
through the database and the `appliance` CLI: pg_trgm present, second runs changed=0,
--check reporting without changing, verified backups, the migration run once across two
hosts, upgrade/downgrade revisions, the reset guard refusing and then resetting.

No systemd here: the inventory sets appliance_manage_service=false, so deploy.yml writes the
settings and units into a scratch prefix and the test starts what the units would start."""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import importlib.metadata
import json
import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from tests import support

OPS = support.REPO / "ops"
BIN = Path(sys.executable).parent
REVISIONS = sorted(p.stem for p in (support.REPO / "db" / "migrations").glob("[0-9][0-9][0-9]_*.py"))
HEAD = REVISIONS[-1]
KEY = support.TEST_SECRET_KEY
PASSWORD = "s3cret-pw"
# Modules run under the system Python when there is one (faster start than a virtualenv's).
HOST_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


class Ops:
    """ansible-playbook with this runner's inventory, group_vars and vault."""

    def __init__(self, tmp: Path, name: str, vault: dict | None = None, **overrides):
        self.tmp, self.db_name = tmp, name
        pg = urlsplit(support.PG_ADMIN_URL)
        self.root = tmp / "root"
        self.port = support.free_port()
        example = yaml.safe_load((OPS / "group_vars" / "all.example.yml").read_text())
        self.vars = {
            **example,
            "appliance_db_name": name, "appliance_db_user": name,
            "appliance_db_host": pg.hostname, "appliance_db_port": pg.port or 5432,
            # The shared server: superuser over TCP, and its access settings left alone.
            "appliance_pg_admin_host": pg.hostname, "appliance_pg_admin_port": pg.port or 5432,
            "appliance_pg_admin_user": pg.username or "postgres",
            "appliance_pg_listen_addresses": "", "appliance_pg_hba_allow": [],
            # This checkout's virtualenv is the installed package.
            "appliance_venv": str(BIN.parent), "appliance_version": importlib.metadata.version("appliance"),
            "appliance_prefix": str(self.root), "appliance_port": self.port,
            "appliance_manage_service": False, "appliance_backup_min_free_mb": 1,
            **overrides,
        }
        self.vars.pop("appliance_backup_dir", None)  # the default: under the prefix
        inventory = tmp / "inventory"
        (inventory / "group_vars" / "all").mkdir(parents=True)
        (inventory / "group_vars" / "all" / "main.yml").write_text(yaml.safe_dump(self.vars))
        self.vault_pass = tmp / "vault-pass"
        self.vault_pass.write_text(uuid.uuid4().hex + "\n")
        secrets = {"appliance_db_password": PASSWORD, "appliance_secret_key": KEY} if vault is None else vault
        vault_file = inventory / "group_vars" / "all" / "vault.yml"
        vault_file.write_text(yaml.safe_dump(secrets))
        subprocess.run([str(BIN / "ansible-vault"), "encrypt", str(vault_file)], check=True, capture_output=True,
                       env=self.env)
        assert vault_file.read_text().startswith("$ANSIBLE_VAULT")
        self.inventory = self._inventory(inventory / "hosts.yml", ["localhost"])
        self.two_hosts = self._inventory(inventory / "two-hosts.yml", ["app1", "app2"])

    def _inventory(self, path: Path, appliance_hosts: list[str]) -> Path:
        shape = yaml.safe_load((OPS / "inventory.example.yml").read_text())
        groups = shape["all"]["children"]
        assert set(groups) == {"db", "appliance"}
        groups["db"]["hosts"] = {"localhost": None}
        groups["appliance"]["hosts"] = dict.fromkeys(appliance_hosts)
        shape["all"]["vars"] = {"ansible_connection": "local", "ansible_python_interpreter": HOST_PYTHON}
        path.write_text(yaml.safe_dump(shape))
        return path

    @property
    def env(self) -> dict:
        return {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "0", "ANSIBLE_PIPELINING": "1",
                "ANSIBLE_HOME": str(self.tmp / "ansible-home"), "ANSIBLE_LOCAL_TEMP": str(self.tmp / "ansible-tmp"),
                "ANSIBLE_REMOTE_TEMP": str(self.tmp / "ansible-tmp"), "PATH": f"{BIN}:{os.environ['PATH']}",
                "ANSIBLE_VAULT_PASSWORD_FILE": str(self.vault_pass)}

    def run(self, playbook: str, *args: str, ok: bool = True, inventory: Path | None = None, **extra):
        """(result, {host: {ok, changed, unreachable, failed}})"""
        command = [str(BIN / "ansible-playbook"), "-i", str(inventory or self.inventory),
                   str(OPS / "playbooks" / playbook), *args]
        if extra:
            command += ["-e", json.dumps(extra)]
        result = subprocess.run(command, capture_output=True, text=True, env=self.env, timeout=300)
        if ok:
            assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
        recaps = {host: dict(zip(("ok", "changed", "unreachable", "failed"), map(int, counts), strict=True))
                  for host, *counts in RECAP.findall(result.stdout)}
        return result, recaps

    def counts(self, playbook: str, *args: str, **extra) -> dict:
        return self.run(playbook, *args, **extra)[1]["localhost"]

    def current(self, url: str | None = None) -> str:
        """The revision, through the CLI (as the superuser by default)."""
        env = support.appliance_env(url or support.pg_url_for(self.db_name), self.tmp / "cli-home")
        result = support.run_cli(["database", "current"], env)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def backups(self, suffix: str = "dump") -> list[Path]:
        return sorted((self.root / "var" / "backups" / "appliance").glob(f"*.{suffix}"))

    def settings(self) -> dict:
        """The settings file as systemd's EnvironmentFile reads it (for the values written)."""
        lines = (self.root / "etc" / "appliance" / "appliance.env").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))

    def unit(self, name: str) -> str:
        return (self.root / "etc" / "systemd" / "system" / name).read_text()


def lint() -> dict:
    """yamllint, the playbooks' syntax, ansible-lint (ops/.ansible-lint: profile production, offline)."""
    env = {**os.environ, "ANSIBLE_HOME": "/tmp/ansible-lint-home", "NO_COLOR": "1"}
    playbooks = sorted(str(p) for p in (OPS / "playbooks").glob("*.yml"))
    return {
        "playbooks": [Path(p).name for p in playbooks],
        "yamllint": subprocess.run([str(BIN / "yamllint"), "-c", str(OPS / ".yamllint.yml"), str(OPS)],
                                   capture_output=True, text=True),
        "syntax": subprocess.run([str(BIN / "ansible-playbook"), "--syntax-check", "-i", "localhost,", *playbooks],
                                 capture_output=True, text=True, env=env),
        "ansible-lint": subprocess.run([str(BIN / "ansible-lint")], capture_output=True, text=True, cwd=OPS, env=env),
    }


def sqlite_flow(tmp: Path) -> dict:
    """The SQLite flow (one host, no key, no notifier): deploy, backup.yml, a downgrade, deploy
    refusing the pending migrations, a reset without a backup. Records what the test checks."""
    ops = Ops(tmp, "appliance", vault={}, appliance_database="sqlite", appliance_notifier=False)
    path = ops.root / "var" / "lib" / "appliance" / "appliance.db"
    flow = {"ops": ops, "deploy": ops.run("deploy.yml")[1], "deployed at": ops.current(f"sqlite:///{path}")}
    flow["backup"] = ops.run("backup.yml")[0].stdout
    ops.run("downgrade.yml", appliance_revision="002_variables_concurrency")
    flow["downgraded at"] = ops.current(f"sqlite:///{path}")
    flow["deploy refused"] = ops.run("deploy.yml", ok=False)[0].stdout
    flow["backups before reset"] = ops.backups("sqlite")
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE ops_marker (id int)")
    ops.run("reset.yml", confirm_reset="appliance", reset_backup=False)
    with contextlib.closing(sqlite3.connect(path)) as db:
        flow["tables after reset"] = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    flow["reset at"], flow["backups after reset"] = ops.current(f"sqlite:///{path}"), ops.backups("sqlite")
    return flow


@pytest.fixture(scope="module", autouse=True)
def alongside(tmp_path_factory):
    """What does not need the PostgreSQL flow starts first and runs beside it, on the other
    core: the linters, then the SQLite flow. Their tests collect the results."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        yield {"lint": pool.submit(lint), "sqlite": pool.submit(sqlite_flow, tmp_path_factory.mktemp("sqlite"))}


@pytest.fixture(scope="module")
def ops(tmp_path_factory):
    runner = Ops(tmp_path_factory.mktemp("ops"), f"appliance_ops_{uuid.uuid4().hex[:8]}")
    yield runner
    support.drop_pg_database(runner.db_name)
    support.pg_execute(f'DROP ROLE IF EXISTS "{runner.db_name}"')


@pytest.fixture(scope="module")
def provisioned(ops):
    """provision-postgres.yml: --check on nothing yet (with remote access asked for), then
    twice for real. Results for the provision test; the database for the others."""
    hba = support.pg_execute("SHOW hba_file")[0][0]
    digest = (lambda: hashlib.sha256(Path(hba).read_bytes()).hexdigest()) if os.access(hba, os.R_OK) else str
    before = digest()
    check = ops.run("provision-postgres.yml", "--check", appliance_pg_hba_allow=["10.9.8.0/24"],
                    appliance_pg_listen_addresses="127.0.0.1,10.9.8.1")
    after_check = {
        "role": support.pg_execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ops.db_name,)),
        "database": support.pg_execute("SELECT 1 FROM pg_database WHERE datname = %s", (ops.db_name,)),
        "hba unchanged": digest() == before,
    }
    return {"check": check, "after_check": after_check, "first": ops.run("provision-postgres.yml"),
            "second": ops.run("provision-postgres.yml")}


@pytest.fixture(scope="module")
def deployed(ops, provisioned):
    """deploy.yml once, on the provisioned database."""
    return ops.run("deploy.yml")


def test_provision_checks_then_creates_role_database_and_pg_trgm_idempotently(ops, provisioned):
    # --check on nothing yet: reports every change, makes none (remote access included).
    result, recap = provisioned["check"]
    assert recap["localhost"]["changed"] >= 2
    for planned in (f"create role {ops.db_name}", f"create database {ops.db_name}", "enable pg_trgm",
                    "set listen_addresses"):
        assert planned in result.stdout
    assert provisioned["after_check"] == {"role": [], "database": [], "hba unchanged": True}
    _, first = provisioned["first"]
    assert first["localhost"]["changed"] >= 3  # role, database, extension
    assert support.pg_execute("SELECT extname FROM pg_extension WHERE extname = 'pg_trgm'",
                              database=ops.db_name) == [("pg_trgm",)]
    assert support.pg_execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                              (ops.db_name,)) == [(ops.db_name,)]
    assert support.pg_execute("SELECT rolcanlogin, rolsuper FROM pg_roles WHERE rolname = %s",
                              (ops.db_name,)) == [(True, False)]
    result, second = provisioned["second"]
    assert second["localhost"]["changed"] == 0, result.stdout[-3000:]
    assert "pg_trgm 1." in result.stdout  # asserted from the probe


def test_deploy_writes_private_settings_and_units_that_run(ops, deployed):
    _, first = deployed
    assert first["localhost"]["changed"] >= 5  # directories, settings, pgpass, units, schema
    assert ops.current() == HEAD  # an empty database gets the schema
    env_file = ops.root / "etc" / "appliance" / "appliance.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((ops.root / "etc" / "appliance" / "pgpass").stat().st_mode) == 0o600
    settings = ops.settings()
    assert settings["APPLIANCE_SECRET_KEY"] == KEY  # from the vault
    assert settings["APPLIANCE_DATABASE_URL"] == (
        f"postgresql://{ops.db_name}:{PASSWORD}@{ops.vars['appliance_db_host']}:{ops.vars['appliance_db_port']}/{ops.db_name}")
    assert settings["APPLIANCE_MIGRATE_ON_START"] == "false"
    service, notifier = ops.unit("appliance.service"), ops.unit("appliance-notifier.service")
    for unit in (service, notifier):
        assert f"EnvironmentFile={env_file}" in unit and "User=appliance" in unit
    assert f"ExecStart={BIN.parent}/bin/appliance serve" in service
    assert f"ExecStart={BIN.parent}/bin/appliance notifier" in notifier
    check = ops.unit("appliance-notifier-check.service")
    assert "appliance notifier --check" in check and "systemctl restart appliance-notifier.service" in check
    assert "OnUnitActiveSec=30" in ops.unit("appliance-notifier-check.timer")

    # Second run: nothing to change, and no secret in even the most verbose output.
    result, recap = ops.run("deploy.yml", "-vvv")
    assert recap["localhost"]["changed"] == 0, result.stdout[-3000:]
    assert PASSWORD not in result.stdout + result.stderr and KEY not in result.stdout + result.stderr
    refused, _ = ops.run("deploy.yml", ok=False, appliance_secret_key="")
    assert refused.returncode != 0 and "appliance_secret_key is required" in refused.stdout

    # What the units start, with what they are given (systemd reads the same file).
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}, **settings}
    probe = re.search(r"(\S+/appliance notifier --check)", check).group(1).split()
    assert subprocess.run(probe, env=env, capture_output=True).returncode == 1  # no heartbeat yet
    (Path(settings["APPLIANCE_HOME"]) / "notifier.heartbeat").touch()
    assert subprocess.run(probe, env=env, capture_output=True).returncode == 0
    log = ops.tmp / "serve.log"
    with open(log, "w") as out:
        server = subprocess.Popen(re.search(r"^ExecStart=(.*)$", service, re.M).group(1).split(), env=env,
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{ops.port}/api/ready", timeout=1).status_code == 200:
                    break
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.1)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            code = server.wait()
    assert code == 0, log.read_text()[-2000:]  # SIGTERM: a clean stop


def test_downgrade_upgrade_once_across_hosts_and_reset_with_backups(ops, deployed):
    missing, _ = ops.run("downgrade.yml", ok=False)
    assert missing.returncode != 0 and "give the target revision" in missing.stdout
    assert ops.counts("downgrade.yml", appliance_revision="002_variables_concurrency")["changed"] == 2  # backup, downgrade
    assert ops.current() == "002_variables_concurrency" and len(ops.backups()) == 1
    assert ops.counts("downgrade.yml", appliance_revision="002_variables_concurrency")["changed"] == 0

    result, recap = ops.run("upgrade.yml", "--check")
    assert recap["localhost"]["changed"] >= 1 and "migrate: 004_deployments" in result.stdout
    assert ops.current() == "002_variables_concurrency" and len(ops.backups()) == 1

    # Two hosts, one at a time: the first backs up and migrates, the second finds nothing to do.
    result, recap = ops.run("upgrade.yml", inventory=ops.two_hosts)
    assert ops.current() == HEAD and len(ops.backups()) == 2
    assert recap["app1"]["changed"] == 2 and recap["app2"]["changed"] == 0, result.stdout[-4000:]
    batches = [m.start() for m in re.finditer(r"PLAY \[Upgrade, one host at a time\]", result.stdout)]
    assert len(batches) == 2 and "app2" not in result.stdout[batches[0]:batches[1]]
    listing = subprocess.run(["pg_restore", "--list", str(ops.backups()[-1])], capture_output=True, text=True)
    assert listing.returncode == 0 and "TABLE DATA public migratehistory" in listing.stdout
    assert ops.counts("upgrade.yml")["changed"] == 0

    # The reset guard: a wrong name changes nothing; the right one backs up, then resets.
    support.pg_execute(f'CREATE TABLE ops_marker (id int); ALTER TABLE ops_marker OWNER TO "{ops.db_name}"',
                       database=ops.db_name)
    refused, _ = ops.run("reset.yml", ok=False, confirm_reset="wrong-name")
    assert refused.returncode != 0 and f"confirm with -e confirm_reset={ops.db_name}" in refused.stdout
    marker = "SELECT 1 FROM pg_tables WHERE tablename = 'ops_marker'"
    assert support.pg_execute(marker, database=ops.db_name) == [(1,)]
    ops.run("reset.yml", confirm_reset=ops.db_name)
    assert not support.pg_execute(marker, database=ops.db_name)
    assert ops.current() == HEAD and len(ops.backups()) == 3


def test_sqlite_deploy_backup_downgrade_and_reset_without_backup(alongside):
    flow = alongside["sqlite"].result()
    ops = flow["ops"]
    assert flow["deploy"]["localhost"]["changed"] >= 4  # directories, settings, the server's unit, schema
    assert sorted(p.name for p in (ops.root / "etc" / "systemd" / "system").iterdir()) == ["appliance.service"]
    settings = ops.settings()
    assert "APPLIANCE_DATABASE_URL" not in settings and "APPLIANCE_SECRET_KEY" not in settings  # the defaults
    assert flow["deployed at"] == HEAD
    # backup.yml: SQLite's online backup, checked; the downgrade took another.
    first, _ = flow["backups before reset"]
    assert str(first) in flow["backup"]
    with contextlib.closing(sqlite3.connect(first)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert [r[0] for r in db.execute("SELECT name FROM migratehistory ORDER BY id")] == REVISIONS
    assert flow["downgraded at"] == "002_variables_concurrency"
    assert "pending migrations" in flow["deploy refused"] and "run upgrade.yml" in flow["deploy refused"]
    # reset -e reset_backup=false: no backup, everything dropped, the schema reapplied.
    assert flow["backups after reset"] == flow["backups before reset"]
    assert "ops_marker" not in flow["tables after reset"] and flow["reset at"] == HEAD


def test_lint_and_syntax(alongside):
    results = alongside["lint"].result()
    assert results["playbooks"] == ["backup.yml", "deploy.yml", "downgrade.yml", "provision-postgres.yml",
                                    "reset.yml", "upgrade.yml"]
    assert results["yamllint"].returncode == 0, results["yamllint"].stdout
    assert results["syntax"].returncode == 0, results["syntax"].stdout + results["syntax"].stderr
    lint = results["ansible-lint"]
    assert lint.returncode == 0, lint.stdout[-4000:] + lint.stderr[-2000:]
    assert yaml.safe_load((OPS / ".ansible-lint").read_text())["profile"] == "production"
    # ansible-core's builtin modules only (no Galaxy collection would resolve offline anyway).
    modules = set(re.findall(r"^\s+(?:- )?([a-z_]+\.[a-z_]+)\.[a-z_]+:", "\n".join(
        p.read_text() for p in (OPS / "playbooks").rglob("*.yml")), re.M))
    assert modules == {"ansible.builtin"}, modules
