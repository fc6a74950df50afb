"""`pgwarden recover`: settle what dead runs left on a database, and nothing else."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pgwarden.cli.output import add_database_arg, add_json_flag, describe_recovered, duration_flag
from pgwarden.streams import print_json, print_text, progress

if TYPE_CHECKING:
    from pgwarden.api.reports import RecoveryReport

NAME = "recover"
HELP = "settle what a dead run left (a swap, a rollback, scratch databases)"
DESCRIPTION = (
    "Settle what runs that died (killed, out of memory, their Pod or node gone) left on the "
    "database: finish or undo a restore rollback's swap, open a database a dead run closed, finish or "
    "undo a dead migration run with the rollback strategy and backup it recorded, drop scratch databases "
    "whose owner is gone. Works when the database is missing (from the maintenance database). Exit 0 "
    "when the database is settled, 1 when something is left (the report says what to do), 2 when a "
    "rollback needs a backup that is gone."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_database_arg(parser)
    parser.add_argument(
        "--history-schema",
        metavar="SCHEMA",
        help="settle only the journal in this schema (default: every pgwarden journal in the database)",
    )
    parser.add_argument(
        "--lock-wait-timeout",
        default="10m",
        metavar="DURATION",
        help="how long to wait for a live run to release the migrator lock (default 10m)",
    )
    add_json_flag(parser)


def run(args: argparse.Namespace) -> int:
    from pgwarden.api.durations import milliseconds
    from pgwarden.engine.migrate.migrate import version_of
    from pgwarden.engine.postgres.connect import resolve_url
    from pgwarden.engine.recovery.recover import recover

    url = resolve_url(args.database_url)
    report = recover(
        url,
        schema=args.history_schema,
        wait_seconds=milliseconds(duration_flag("--lock-wait-timeout", args.lock_wait_timeout)) / 1000,
        progress=progress,
    )
    report.current_version = version_of(url, args.history_schema or "pgwarden")
    if args.json:
        print_json(report)
    else:
        print_text(render(report))
    return 0 if report.outcome == "Succeeded" else 1


def render(report: RecoveryReport) -> list[str]:
    lines = [f"database  {report.database}", *describe_recovered(report.recovered)]
    lines.append(f"version   {report.current_version or '(none)'}")
    if report.error:
        lines.append(f"error     {report.error.message}")
    return lines
