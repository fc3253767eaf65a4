"""The `appliance` command: serve, config and the database lifecycle."""

from __future__ import annotations

import argparse
import json
import os
import sys

from pydantic import ValidationError


def _settings(overrides: dict | None = None):
    from appliance.settings import Settings

    # Overrides go through the environment so gunicorn workers see the same values.
    for key, value in (overrides or {}).items():
        if value is not None:
            os.environ[f"APPLIANCE_{key.upper()}"] = str(value)
    return Settings()


def _confirm(args, question: str) -> None:
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise SystemExit(f"error: {question} needs confirmation: pass -y (no terminal to ask on)")
    answer = input(f"{question} [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise SystemExit("aborted")


def cmd_serve(args) -> int:
    from appliance import boot, server

    settings = _settings({"host": args.host, "port": args.port, "workers": args.workers})
    _configure_logging(settings)
    migrate_now = settings.migrate_on_start and not args.no_migrate
    boot.prepare(settings, migrate_now=migrate_now)
    server.serve(settings)
    return 0


def cmd_config(args) -> int:
    print(json.dumps(_settings().masked(), indent=2, default=str))
    return 0


def _open_db(wait: float = 0.0):
    from appliance import boot

    settings = _settings()
    db = boot.open_database(settings)
    boot.connect(db, wait)
    return settings, db


def cmd_db_upgrade(args) -> int:
    from db import migrate

    settings, db = _open_db()
    _confirm(args, f"Upgrade the database {_describe(settings)}?")
    applied = migrate.upgrade(args.revision)
    print(f"applied: {', '.join(applied)}" if applied else "already up to date")
    print(f"current revision: {migrate.current()}")
    return 0


def cmd_db_downgrade(args) -> int:
    from db import migrate

    settings, db = _open_db()
    _confirm(args, f"Downgrade the database {_describe(settings)} to {args.revision}?")
    reverted = migrate.downgrade(args.revision)
    print(f"reverted: {', '.join(reverted)}" if reverted else "nothing to downgrade")
    print(f"current revision: {migrate.current()}")
    return 0


def cmd_db_reset(args) -> int:
    from db import migrate

    settings, db = _open_db()
    _confirm(args, f"Drop ALL data in {_describe(settings)} and reapply the schema?")
    applied = migrate.reset()
    print(f"reset; applied: {', '.join(applied)}")
    return 0


def cmd_db_current(args) -> int:
    from db import migrate

    _open_db()
    print(migrate.current())
    return 0


def cmd_db_history(args) -> int:
    from db import migrate

    _open_db()
    for rev in migrate.history():
        print(f"{rev.name}\t{'applied' if rev.applied else 'pending'}")
    return 0


def cmd_db_prune(args) -> int:
    """Delete (or, with --dry-run, count) what the retention settings say is old, with the
    background service's code and under its lock."""
    from appliance.settings import format_duration, parse_duration
    from db import database as dbmod
    from db import retention

    older_than = None
    if args.older_than is not None:
        try:
            older_than = parse_duration(args.older_than)
        except ValueError as exc:
            raise SystemExit(f"error: --older-than: {exc}") from None
        if older_than is None:
            raise SystemExit("error: --older-than needs a duration (e.g. 30d)")
    if args.vacuum and args.dry_run:
        raise SystemExit("error: --vacuum deletes nothing in a dry run; leave one of them out")
    settings, _ = _open_db()
    if args.vacuum and not dbmod.is_sqlite():
        raise SystemExit("error: --vacuum is for SQLite; on PostgreSQL autovacuum makes the space reusable "
                         "and pg_repack shrinks the files (README, Retention)")
    plan = retention.Plan.from_settings(settings, kinds=args.kind, older_than=older_than)
    try:
        counts = retention.prune(plan, dry_run=args.dry_run)
    except retention.Busy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    vacuum = retention.enable_incremental_vacuum() if args.vacuum else None
    kinds = {
        kind: {"retention": format_duration(age),
               "cutoff": plan.cutoffs[kind].isoformat() + "Z" if kind in plan.cutoffs else None,
               "rows": counts.get(kind, {})}
        for kind, age in plan.retention.items()
    }
    if args.json:
        print(json.dumps({"dry_run": args.dry_run, "kinds": kinds, "vacuum": vacuum}))
        return 0
    print(f"{'kind':<14} {'retention':<10} {'table':<15} {'would delete' if args.dry_run else 'deleted':>12}")
    for kind, report in kinds.items():
        rows = report["rows"] or {"-": "-"}
        for i, (table, n) in enumerate(rows.items()):
            print(f"{kind if i == 0 else '':<14} {report['retention'] if i == 0 else '':<10} {table:<15} {n:>12}")
    if vacuum is not None:
        action = "switched to auto_vacuum=INCREMENTAL (VACUUM)" if vacuum["switched"] else "auto_vacuum=INCREMENTAL"
        print(f"sqlite: {action}; {vacuum['bytes_before']} -> {vacuum['bytes_after']} bytes")
    return 0


def cmd_notifier(args) -> int:
    from notifier import main as notifier_main

    settings = _settings()
    if args.check:
        return notifier_main.check(settings)
    _configure_logging(settings)
    return notifier_main.main(settings)


def cmd_notifications_ls(args) -> int:
    from db import notifications as notes

    _open_db()
    for row in notes.list_notifications(args.status, limit=args.limit):
        print("\t".join(str(x) for x in (row["id"], row["status"], row["channel"] or "-", row["attempts"],
                                          row["last_status_code"] or "-", row["flow_run_id"], row["state_name"],
                                          row["last_error"] or "")))
    return 0


def cmd_notifications_retry(args) -> int:
    from db import database as dbmod
    from db import notifications as notes

    _open_db()
    if not args.dead and not args.id:
        raise SystemExit("error: give a notification ID or --dead")
    with dbmod.write_tx():
        count = notes.retry(args.id, dead=args.dead)
    print(f"requeued {count}")
    return 0 if count else 1


def cmd_secrets_generate_key(args) -> int:
    from db import secrets_crypto

    print(secrets_crypto.generate_key())
    return 0


def cmd_secrets_rotate_key(args) -> int:
    """Re-encrypt every block document with a new key in one transaction. With a key file
    (SQLite without APPLIANCE_SECRET_KEY) the file is replaced after the commit; with
    APPLIANCE_SECRET_KEY the new key is printed for the operator to roll out."""
    from appliance.boot import BootError
    from db import blocks, secrets_crypto
    from db import database as dbmod

    settings, _ = _open_db()
    secrets_crypto.configure(settings)
    new_key = args.new_key or secrets_crypto.generate_key()
    try:
        secrets_crypto.cipher()
        secrets_crypto._parse(new_key, "--new-key")
        key_file = None if settings.secret_key else secrets_crypto.key_file(settings)
        staged = None
        if key_file is not None:
            # Stage the new key before the commit: a crash after it leaves both on disk.
            staged = key_file.with_suffix(".key.new")
            staged.write_text(new_key + "\n")
            staged.chmod(0o600)
        with dbmod.write_tx():
            count = blocks.rotate_key(new_key)
    except secrets_crypto.KeyError_ as exc:
        raise BootError(str(exc)) from None
    if staged is not None:
        staged.replace(key_file)
        print(f"re-encrypted {count} block documents; new key written to {key_file}")
    else:
        print(f"re-encrypted {count} block documents with the new key; set it on every server and notifier:")
        print(f"APPLIANCE_SECRET_KEY={new_key}")
    return 0


def _describe(settings) -> str:
    from appliance.settings import mask_url

    return mask_url(settings.effective_database_url)


def _configure_logging(settings) -> None:
    from appliance import logging_setup

    logging_setup.configure_from(settings)  # text or JSON lines (APPLIANCE_LOG_FORMAT), secrets masked


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="appliance", description="Prefect-compatible orchestration server")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="migrate (unless disabled) and serve the API")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.add_argument("--no-migrate", action="store_true", help="do not apply migrations at start")
    serve.set_defaults(func=cmd_serve)

    config = sub.add_parser("config", help="print the effective settings (secrets masked)")
    config.set_defaults(func=cmd_config)

    database = sub.add_parser("database", help="database lifecycle")
    dbsub = database.add_subparsers(dest="db_command", required=True)
    up = dbsub.add_parser("upgrade", help="apply migrations (default: all)")
    up.add_argument("-y", "--yes", action="store_true")
    up.add_argument("-r", "--revision", default=None, help="revision to upgrade to (default: head)")
    up.set_defaults(func=cmd_db_upgrade)
    down = dbsub.add_parser("downgrade", help="revert migrations")
    down.add_argument("-y", "--yes", action="store_true")
    down.add_argument("-r", "--revision", default="-1", help="-1 (default), a revision name, or base")
    down.set_defaults(func=cmd_db_downgrade)
    reset = dbsub.add_parser("reset", help="drop everything and reapply all migrations")
    reset.add_argument("-y", "--yes", action="store_true")
    reset.set_defaults(func=cmd_db_reset)
    cur = dbsub.add_parser("current", help="print the current revision")
    cur.set_defaults(func=cmd_db_current)
    hist = dbsub.add_parser("history", help="list revisions and which are applied")
    hist.set_defaults(func=cmd_db_history)
    prune = dbsub.add_parser("prune", help="delete what the retention settings say is old (README, Retention)")
    prune.add_argument("--dry-run", action="store_true", help="count what would go; delete nothing")
    prune.add_argument("--kind", nargs="+", action="extend", choices=["flow_runs", "events", "notifications", "workers"],
                       help="only these kinds (default: every kind with a retention set)")
    prune.add_argument("--older-than", help="override the retention of the chosen kinds, e.g. 90d")
    prune.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    prune.add_argument("--vacuum", action="store_true",
                       help="SQLite: switch the file to auto_vacuum=INCREMENTAL (one VACUUM) so that freed pages "
                       "return to the file system")
    prune.set_defaults(func=cmd_db_prune)

    secrets = sub.add_parser("secrets", help="the key that encrypts block documents at rest")
    ssub = secrets.add_subparsers(dest="secrets_command", required=True)
    gen = ssub.add_parser("generate-key", help="print a new Fernet key (for APPLIANCE_SECRET_KEY)")
    gen.set_defaults(func=cmd_secrets_generate_key)
    rotate = ssub.add_parser("rotate-key", help="re-encrypt every block document with a new key, in one transaction")
    rotate.add_argument("--new-key", help="the new Fernet key, as --new-key=KEY (a key may start with -); "
                        "default: a generated one, printed")
    rotate.set_defaults(func=cmd_secrets_rotate_key)

    notifier = sub.add_parser("notifier", help="run the notification sidecar")
    notifier.add_argument("--check", action="store_true", help="exit 0 only while the heartbeat is fresh")
    notifier.set_defaults(func=cmd_notifier)
    notifications = sub.add_parser("notifications", help="the notification delivery log")
    nsub = notifications.add_subparsers(dest="notifications_command", required=True)
    nls = nsub.add_parser("ls", help="list notifications (newest first)")
    nls.add_argument("--status", choices=["pending", "sending", "sent", "failed", "dead"])
    nls.add_argument("--limit", type=int, default=100)
    nls.set_defaults(func=cmd_notifications_ls)
    nretry = nsub.add_parser("retry", help="requeue a failed/dead notification, or all dead ones")
    nretry.add_argument("id", nargs="?")
    nretry.add_argument("--dead", action="store_true")
    nretry.set_defaults(func=cmd_notifications_retry)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # argparse would read "-r -1" as a flag; accept it as the value it means.
    argv = list(sys.argv[1:] if argv is None else argv)
    for i, token in enumerate(argv[:-1]):
        if token in ("-r", "--revision") and argv[i + 1].startswith("-"):
            argv[i : i + 2] = [f"{token}={argv[i + 1]}" if token.startswith("--") else f"-r{argv[i + 1]}"]
            break
    args = parser.parse_args(argv)
    from appliance.boot import BootError
    from db.migrate import MigrationError

    try:
        return args.func(args) or 0
    except (BootError, MigrationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValidationError as exc:
        problems = "; ".join(
            f"APPLIANCE_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
        )
        print(f"error: invalid settings: {problems}", file=sys.stderr)
        return 2
    except Exception as exc:  # a database error at the CLI: one line, non-zero exit
        import peewee

        if isinstance(exc, peewee.DatabaseError) or type(exc).__module__.startswith("psycopg2"):
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            print(f"error: database: {first}", file=sys.stderr)
            return 1
        if exc.__class__.__name__ == "PgTrgmUnavailable":
            print(f"error: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
