"""`pgwarden backups`: the complete backups under a prefix (those with a manifest), newest first, by owner."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pgwarden.api.sizes import human_size
from pgwarden.cli.output import add_json_flag, table
from pgwarden.errors import BadInput, PgwardenError
from pgwarden.redact import register_environment
from pgwarden.streams import print_json, print_text

if TYPE_CHECKING:
    from pgwarden.storage import Storage
    from pgwarden.storage.listing import BackupListReport

OLD_MANIFEST_MARK = "*"


NAME = "backups"
HELP = "list complete backups under a prefix"
DESCRIPTION = (
    "List the complete backups under s3://bucket/prefix or a path, newest first, with "
    "their owner: the resource or --owner label that made them, else their database (host:port/dbname)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("location", metavar="URI", help="s3://bucket/prefix or a filesystem path")
    add_owner_arg(parser, "list only this owner's backups")
    add_json_flag(parser)


def add_owner_arg(parser: argparse._ActionsContainer, help: str) -> None:
    parser.add_argument(
        "--owner", metavar="OWNER", help=f"{help} (as `pgwarden backups` shows it, e.g. db.example:5432/shop)"
    )


def open_location(uri: str) -> Storage:
    """Storage for a command-line URI: a malformed one is bad input (exit 2)."""
    from pgwarden.storage import InvalidLocation, open_storage

    register_environment()
    try:
        return open_storage(uri)
    except InvalidLocation as exc:
        raise BadInput(str(exc)) from exc


def render(report: BackupListReport) -> list[str]:
    if not report.backups:
        whose = f" of {report.owner}" if report.owner else ""
        lines = [f"no complete backups{whose} under {report.location}"]
    else:
        lines = table(
            ["ID", "OWNER", "COMPLETED", "SIZE", "FORMAT", "TABLES", "ROWS", "VERIFIED"],
            [
                [
                    b.id,
                    b.owner + ("" if b.owner_recorded else OLD_MANIFEST_MARK),
                    b.completed_at.strftime("%Y-%m-%d %H:%M:%S"),
                    human_size(b.size_bytes),
                    f"{b.format}/{b.compression}" + ("+age" if b.encryption else ""),
                    b.tables,
                    f"{b.rows:,}",
                    "yes" if b.verified else "no",
                ]
                for b in report.backups
            ],
        )
    if any(not b.owner_recorded for b in report.backups):
        lines.append(
            f"{OLD_MANIFEST_MARK} owner not recorded (a backup from an older pgwarden): its database, "
            "from the manifest"
        )
    if report.owner is None and len(report.owners) > 1:
        lines.append(
            f"{len(report.owners)} owners share this prefix; prune and restore --from act on one "
            "(--owner OWNER)"
        )
    if report.folders:
        where = ", ".join(f"{folder} ({count})" for folder, count in report.folders.items())
        lines.append(
            f"more backups in folders below, each listed on its own (pgwarden backups URI/FOLDER): {where}"
        )
    if report.incomplete:
        lines.append(f"({report.incomplete} incomplete backup(s) not listed; `pgwarden prune` removes them)")
    return lines


def run(args: argparse.Namespace) -> int:
    from pgwarden.storage import StorageError
    from pgwarden.storage.listing import list_report

    storage = open_location(args.location)
    try:
        report = list_report(storage, owner=args.owner)
    except StorageError as exc:
        raise PgwardenError(str(exc)) from exc
    if args.json:
        print_json(report)
    else:
        print_text(render(report))
    return 0
