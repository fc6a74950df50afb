"""`pgwarden verify-backup`: a restore drill. Restore the newest complete backup under a prefix into a scratch
database, compare it with its manifest, record the result there, and drop the scratch database."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pgwarden.cli.backups_cmd import add_owner_arg
from pgwarden.cli.output import add_json_flag, describe_recovered, table
from pgwarden.streams import print_json, print_text, progress

if TYPE_CHECKING:
    from pgwarden.api.drill import DrillReport

NAME = "verify-backup"
HELP = "restore drill: prove the newest backup restores, and how long that takes"
DESCRIPTION = (
    "Restore the newest complete backup under URI (or --id) into a scratch database on the "
    "server --on names, compare its tables, exact per-table row counts and schema fingerprint with the "
    "manifest, record it as verified there when they match, and drop the scratch database. The database "
    "the backup was taken from is never touched. Exit 0 when it matched, 1 when not."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "location", metavar="URI", help="s3://bucket/prefix, a path, or one backup's location"
    )
    parser.add_argument(
        "--on",
        dest="server_url",
        metavar="DATABASE_URL",
        help="the server for the scratch database (a connection string; its database part is not used); "
        "default: libpq's PG* environment",
    )
    parser.add_argument(
        "--id", dest="backup_id", metavar="ID", help="drill this backup instead of the newest"
    )
    add_owner_arg(parser, "drill this owner's newest backup")
    parser.add_argument(
        "--identity", metavar="FILE", help="age identity file, for a backup taken with --encrypt-to"
    )
    parser.add_argument(
        "--jobs", type=int, default=1, metavar="N", help="parallel pg_restore jobs (local copy)"
    )
    add_json_flag(parser)


def render(report: DrillReport) -> list[str]:
    info = report.backup
    verdict = "matches its manifest" if report.outcome == "Succeeded" else "FAILED"
    lines = [f"backup {info.id if info else '?'}: restore drill {verdict}"]
    if info is not None:
        lines.append(f"  location     {info.location}")
    lines.append(
        f"  scratch      {report.server} (dropped)"
        if report.scratch_dropped
        else f"  scratch      {report.server}"
    )
    if report.restore_seconds is not None:
        lines.append(f"  restore      {report.restore_seconds:.1f}s")
    if report.rows is not None:
        lines.append(f"  contents     {report.tables} tables, {report.rows:,} rows")
    if report.error:
        lines.append(f"  error        {report.error.message}")
    verification = report.verification
    if verification is not None and verification.differences:
        lines += [
            "  " + line
            for line in table(
                ["TABLE", "BACKUP", "RESTORED", "DETAIL"],
                [[d.table, d.expected, d.actual, d.detail] for d in verification.differences],
            )
        ]
    return lines


def run(args: argparse.Namespace) -> int:
    from pgwarden.engine.backup.encryption import load_identities
    from pgwarden.engine.postgres.connect import resolve_url
    from pgwarden.engine.recovery.settle import settle_scratch
    from pgwarden.engine.restore.drill import run_drill

    notes = settle_scratch(resolve_url(args.server_url), progress)
    report = run_drill(
        args.location,
        args.server_url,
        backup_id=args.backup_id,
        owner=args.owner,
        identities=load_identities(args.identity) if args.identity else (),
        jobs=args.jobs,
        progress=progress,
    )
    report.recovered = notes.recovered()
    if args.json:
        print_json(report)
    else:
        print_text([*describe_recovered(report.recovered), *render(report)])
    return 0 if report.outcome == "Succeeded" else 1
