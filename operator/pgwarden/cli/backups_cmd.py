"""`pgwarden backups`: the complete backups under a prefix (those with a manifest), newest first."""

from __future__ import annotations

import argparse

from pgwarden.cli.inspect_cmd import human_size
from pgwarden.cli.output import add_json_flag, print_json, print_text, table
from pgwarden.engine.errors import BadInput, PgwardenError
from pgwarden.engine.restore import register_storage_secrets
from pgwarden.storage import InvalidLocation, Storage, StorageError, open_storage
from pgwarden.storage.manifest import BackupListReport, list_report


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "backups",
        help="list complete backups under a prefix",
        description="List the complete backups under s3://bucket/prefix or a path, newest first.",
    )
    parser.add_argument("location", metavar="URI", help="s3://bucket/prefix or a filesystem path")
    add_json_flag(parser)
    parser.set_defaults(run=run)


def open_location(uri: str) -> Storage:
    """Storage for a command-line URI: a malformed one is bad input (exit 2)."""
    register_storage_secrets()
    try:
        return open_storage(uri)
    except InvalidLocation as exc:
        raise BadInput(str(exc)) from None


def render(report: BackupListReport) -> list[str]:
    if not report.backups:
        lines = [f"no complete backups under {report.location}"]
    else:
        lines = table(
            ["ID", "COMPLETED", "SIZE", "FORMAT", "TABLES", "ROWS", "VERIFIED"],
            [
                [
                    b.id,
                    b.completed_at.strftime("%Y-%m-%d %H:%M:%S"),
                    human_size(b.size_bytes),
                    f"{b.format}/{b.compression}",
                    b.tables,
                    f"{b.rows:,}",
                    "yes" if b.verified else "no",
                ]
                for b in report.backups
            ],
        )
    if report.incomplete:
        lines.append(f"({report.incomplete} incomplete backup(s) not listed; `pgwarden prune` removes them)")
    return lines


def run(args: argparse.Namespace) -> int:
    storage = open_location(args.location)
    try:
        report = list_report(storage)
    except StorageError as exc:
        raise PgwardenError(str(exc)) from None
    if args.json:
        print_json(report)
    else:
        print_text(render(report))
    return 0
