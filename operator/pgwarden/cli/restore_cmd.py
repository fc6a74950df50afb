"""`pgwarden restore`: restore a backup after checking its checksum, then compare rows with its manifest."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, get_args

from pgwarden.api.choices import DEFAULT_LOCK_WAIT_TIMEOUT, RestoreRowCounts
from pgwarden.cli.backups_cmd import add_owner_arg, open_location
from pgwarden.cli.output import add_database_arg, add_json_flag, describe_recovered, duration_flag, table
from pgwarden.errors import BadInput, PgwardenError
from pgwarden.streams import print_json, print_text, progress

if TYPE_CHECKING:
    from pgwarden.api.reports import RestoreReport
    from pgwarden.storage import Storage

NAME = "restore"
HELP = "restore a backup into a database"
DESCRIPTION = (
    "Restore a backup (a backup's location, or the newest complete backup under a prefix). "
    "A prefix holding several owners' backups needs --owner (or --id). The dump's SHA-256 is checked "
    "before pg_restore runs; restored row counts are compared with the manifest. With --schema or "
    "--table only those are restored (with their indexes, constraints, triggers, owned sequences and "
    "data) into the existing database, in one transaction; names it has already are refused unless "
    "--rename-to-suffix puts the restored ones beside them, or --clean replaces them."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_database_arg(parser)
    parser.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="URI",
        help="a backup's location, or a prefix (its owner's newest complete backup is used)",
    )
    parser.add_argument("--id", dest="backup_id", metavar="ID", help="a backup id under the --from prefix")
    add_owner_arg(
        parser,
        "restore this owner's newest backup; with --id or a backup's location, refuse "
        "a backup of another owner",
    )
    parser.add_argument("--create", action="store_true", help="create the database named in DATABASE_URL")
    parser.add_argument(
        "--clean", action="store_true", help="drop the backup's objects from the database before restoring"
    )
    parser.add_argument(
        "--terminate-connections", action="store_true", help="end other sessions on the database first"
    )
    parser.add_argument(
        "--jobs", type=int, default=1, metavar="N", help="parallel pg_restore jobs (uses a local copy)"
    )
    parser.add_argument(
        "--identity",
        metavar="FILE",
        help="age identity file (AGE-SECRET-KEY-1… lines) to open a backup taken with --encrypt-to",
    )
    parser.add_argument(
        "--lock-wait-timeout",
        default=DEFAULT_LOCK_WAIT_TIMEOUT,
        metavar="DURATION",
        help="stop pg_restore when another session's lock holds it up this long (default "
        f"{DEFAULT_LOCK_WAIT_TIMEOUT}; 30s, 1m30s; 0s waits for ever)",
    )
    parser.add_argument(
        "--row-counts",
        choices=get_args(RestoreRowCounts),
        default="exact",
        help="how the restored rows are compared with the backup: exact (count every row, the default), "
        "estimate (ANALYZE, then planner estimates; only missing or extra tables differ) or none (no "
        "counting; only missing or extra tables differ)",
    )
    parser.add_argument(
        "--schema",
        dest="schemas",
        action="append",
        default=[],
        metavar="SCHEMA",
        help='restore only this schema, whole (repeatable; as in SQL: "Sales Ops" keeps case and spaces)',
    )
    parser.add_argument(
        "--table",
        dest="tables",
        action="append",
        default=[],
        metavar="[SCHEMA.]TABLE",
        help="restore only this table, with its indexes, constraints, triggers, owned sequences and data "
        "(repeatable; unquoted names fold to lower case, as in SQL)",
    )
    parser.add_argument(
        "--rename-to-suffix",
        dest="rename_suffix",
        metavar="SUFFIX",
        help="with --schema/--table: append SUFFIX (e.g. _restored) to the restored tables, their indexes, "
        "constraints and sequences (or to a schema restored whole), so they stand beside today's",
    )
    add_json_flag(parser)


def _rows(rows: int | None, row_counts: RestoreRowCounts) -> str:
    if rows is None:
        return " (rows not counted)"
    return f", about {rows:,} rows (estimated)" if row_counts == "estimate" else f", {rows:,} rows"


def render(report: RestoreReport, row_counts: RestoreRowCounts = "exact") -> list[str]:
    info = report.backup
    verification = report.verification
    lines = [
        f"restored backup {info.id if info else '?'} into {report.database}"
        + (" (created)" if report.created_database else ""),
        f"  from         {report.restored_from}",
        f"  contents     {report.tables} tables" + _rows(report.rows, row_counts),
    ]
    if report.terminated_connections:
        lines.append(f"  terminated   {report.terminated_connections} other session(s)")
    if verification is not None:
        if verification.matches_backup and row_counts == "exact":
            lines.append(
                f"  verified     every row count matches the backup ({verification.tables_compared} tables)"
            )
        elif verification.matches_backup:
            lines.append(
                f"  verified     every table of the backup is there ({verification.tables_compared} tables; "
                f"row counts {row_counts}: not compared)"
            )
        else:
            lines.append(f"  MISMATCH     {report.error.message if report.error else ''}")
            lines += [
                "  " + line
                for line in table(
                    ["TABLE", "BACKUP", "RESTORED", "DETAIL"],
                    [[d.table, d.expected, d.actual, d.detail] for d in verification.differences],
                )
            ]
    for restored in report.restored_tables:
        rows = f"{restored.actual:,}" if restored.actual is not None else "?"
        expected = f"{restored.expected:,}" if restored.expected is not None else "?"
        lines.append(
            f"  table        {restored.table} <- {restored.backup_table}: {rows} rows (backup {expected})"
            + ("" if restored.matches else "  MISMATCH")
        )
    lines += [f"  left out     {item}" for item in report.left_out]
    return [line for line in lines if line]


def choose_backup(uri: str, backup_id: str | None, owner: str | None) -> Storage:
    """The one backup `--from` (with --id and --owner) names; BadInput listing the owners when a prefix
    holds several owners' backups and neither says which, or when the one named belongs to another."""
    from pgwarden.storage import ObjectNotFound, StorageError, locate_backup

    try:
        backup, _manifest = locate_backup(open_location(uri), backup_id, owner=owner)
    except ObjectNotFound as exc:
        raise BadInput(f"{exc}; nothing was restored") from exc
    except StorageError as exc:
        raise PgwardenError(f"{exc}; nothing was restored") from exc
    return backup


def run(args: argparse.Namespace) -> int:
    from pgwarden.engine.backup.encryption import load_identities
    from pgwarden.engine.recovery.recover import settle_first
    from pgwarden.engine.restore.partial import PartialOptions, restore_selected, selection_of
    from pgwarden.engine.restore.restore import restore_backup

    selection = selection_of(args.schemas, args.tables, args.rename_suffix)
    if selection and args.create:
        raise BadInput(
            "--schema/--table restore into a database that exists; create it first, without --create"
        )
    lock_wait = duration_flag("--lock-wait-timeout", args.lock_wait_timeout)
    backup = choose_backup(args.source, args.backup_id, args.owner)
    recovered = settle_first(args.database_url, progress)
    if selection:
        options = PartialOptions(
            selection,
            suffix=args.rename_suffix,
            clean=args.clean,
            terminate=args.terminate_connections,
            jobs=args.jobs,
            identities=load_identities(args.identity) if args.identity else (),
            lock_wait_timeout=lock_wait,
        )
        report = restore_selected(args.database_url, backup, options, progress=progress)
        report.recovered = recovered
        return _print(report, args, "exact")
    report = restore_backup(
        args.database_url,
        backup,
        create=args.create,
        clean=args.clean,
        terminate=args.terminate_connections,
        jobs=args.jobs,
        identities=load_identities(args.identity) if args.identity else (),
        lock_wait_timeout=lock_wait,
        progress=progress,
        row_counts=args.row_counts,
    )
    report.recovered = recovered
    return _print(report, args, args.row_counts)


def _print(report: RestoreReport, args: argparse.Namespace, row_counts: RestoreRowCounts) -> int:
    if args.json:
        print_json(report)
    else:
        print_text([*describe_recovered(report.recovered), *render(report, row_counts)])
    return 0 if report.outcome == "Succeeded" else 1
