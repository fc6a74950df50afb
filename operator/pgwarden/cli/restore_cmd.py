"""`pgwarden restore`: restore a backup after checking its checksum, then compare rows with its manifest."""

from __future__ import annotations

import argparse

from pgwarden.api.reports import RestoreReport
from pgwarden.cli.backup_cmd import terminate_as_interrupt
from pgwarden.cli.output import add_database_arg, add_json_flag, print_json, print_text, progress, table
from pgwarden.engine.restore import restore_backup


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "restore",
        help="restore a backup into a database",
        description="Restore a backup (a backup's location, or the newest complete backup under a prefix). "
        "The dump's SHA-256 is checked before pg_restore runs; restored row counts are compared with the "
        "manifest.",
    )
    add_database_arg(parser)
    parser.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="URI",
        help="a backup's location, or a prefix (its newest complete backup is used)",
    )
    parser.add_argument("--id", dest="backup_id", metavar="ID", help="a backup id under the --from prefix")
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
    add_json_flag(parser)
    parser.set_defaults(run=run)


def render(report: RestoreReport) -> list[str]:
    info = report.backup
    verification = report.verification
    lines = [
        f"restored backup {info.id if info else '?'} into {report.database}"
        + (" (created)" if report.created_database else ""),
        f"  from         {report.restored_from}",
        f"  contents     {report.tables} tables, {report.rows:,} rows" if report.rows is not None else "",
    ]
    if report.terminated_connections:
        lines.append(f"  terminated   {report.terminated_connections} other session(s)")
    if verification is not None:
        if verification.matches_backup:
            lines.append(
                f"  verified     every row count matches the backup ({verification.tables_compared} tables)"
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
    return [line for line in lines if line]


def run(args: argparse.Namespace) -> int:
    with terminate_as_interrupt():
        report = restore_backup(
            args.database_url,
            args.source,
            backup_id=args.backup_id,
            create=args.create,
            clean=args.clean,
            terminate=args.terminate_connections,
            jobs=args.jobs,
            progress=progress,
        )
    if args.json:
        print_json(report)
    else:
        print_text(render(report))
    return 0 if report.outcome == "Succeeded" else 1
