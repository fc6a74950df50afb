"""`kubectl pgwarden` (the console script kubectl-pgwarden): its arguments, parsed as kubectl users expect
(`-n/--namespace`, `--context`, `--kubeconfig` before or after the command), and its exit codes: 0 done,
1 the run failed or the API refused, 2 bad arguments."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pgwarden.kubectl import commands
from pgwarden.kubectl.client import Client, PluginError

KIND_NAMES = {
    "dbmig": "DatabaseMigration",
    "databasemigration": "DatabaseMigration",
    "dbbackup": "DatabaseBackup",
    "databasebackup": "DatabaseBackup",
    "dbrestore": "DatabaseRestore",
    "databaserestore": "DatabaseRestore",
}


def _connection(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The flags kubectl users pass anywhere; on a command they only override what was given before it."""
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("-n", "--namespace", default=default, help="the namespace (default: the context's)")
    parser.add_argument("--context", default=default, help="the kubeconfig context to use")
    parser.add_argument(
        "--kubeconfig", default=default, help="the kubeconfig file (default: KUBECONFIG, ~/.kube/config)"
    )


def _kind(value: str) -> str:
    try:
        return KIND_NAMES[value.lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"{value!r}: one of dbmig, dbbackup, dbrestore") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl pgwarden",
        description="See and drive pgwarden's DatabaseMigrations, DatabaseBackups and DatabaseRestores.",
    )
    _connection(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        found = sub.add_parser(name, help=help, description=help)
        _connection(found, suppress=True)
        return found

    status = command(
        "status", "every pgwarden resource of the namespace (or one): phase, version, ages, what next"
    )
    status.add_argument("name", nargs="?")
    status.add_argument("-A", "--all-namespaces", action="store_true")

    approve = command("approve", "show the files and checksums awaiting approval, then approve them")
    approve.add_argument("name")
    approve.add_argument("-y", "--yes", action="store_true", help="approve without asking")

    for name, what in (("backup", "back up now"), ("drill", "run a restore drill now")):
        now = command(name, f"{what}: a Job from the DatabaseBackup's CronJob, followed to its end")
        now.add_argument("name")
        now.add_argument("--now", action="store_true", required=True, help="run it now (required)")
        _waiting(now)

    restore = command("restore", "restore a DatabaseBackup's backup into the database of a Secret, followed")
    restore.add_argument("backup", help="the DatabaseBackup")
    restore.add_argument(
        "--to", required=True, metavar="SECRET", help="the Secret of the database to restore into"
    )
    restore.add_argument("--id", help="the backup's id (default: the newest)")
    restore.add_argument("--name", help="the DatabaseRestore's name (default: <backup>-restore-<time>)")
    restore.add_argument("--create-database", action="store_true", help="create the database first")
    restore.add_argument("--clean", action="store_true", help="drop what the backup holds before restoring")
    _waiting(restore)

    for name, what in (
        ("history", "the runs and Jobs of a resource"),
        ("logs", "the logs of a resource's latest Job"),
    ):
        found = command(name, what)
        found.add_argument("name")
        found.add_argument(
            "--kind", type=_kind, help="dbmig, dbbackup or dbrestore, when a name is ambiguous"
        )
        if name == "logs":
            found.add_argument("--tail", type=int, help="only the last N lines")
    return parser


def _waiting(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-wait", dest="wait", action="store_false", help="do not follow it to its end")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to follow it (default 1800)")


def run(args: argparse.Namespace) -> int:
    client = Client.connect(args.kubeconfig, args.context, args.namespace)
    out = sys.stdout
    if args.command == "status":
        return commands.status(client, args.name, args.all_namespaces, out)
    if args.command == "approve":
        return commands.approve(client, args.name, args.yes, out)
    if args.command in ("backup", "drill"):
        return commands.run_now(client, args.name, args.command == "drill", args.wait, args.timeout, out)
    if args.command == "restore":
        options: dict[str, object] = {"name": args.name} if args.name else {}
        if args.create_database:
            options["createDatabase"] = True
        if args.clean:
            options["clean"] = True
        return commands.restore(client, args.backup, args.to, args.id, options, args.wait, args.timeout, out)
    if args.command == "history":
        return commands.history(client, args.name, args.kind, out)
    return commands.logs(client, args.name, args.kind, args.tail, out)


def entrypoint(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except PluginError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def console() -> None:
    sys.exit(entrypoint())
