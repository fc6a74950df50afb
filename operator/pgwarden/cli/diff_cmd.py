"""`pgwarden diff`: how one database's schema differs from another's; exit 0 when the same, 1 when not."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pgwarden.cli.output import add_database_arg, add_json_flag, table
from pgwarden.errors import BadInput
from pgwarden.streams import print_json, print_text

if TYPE_CHECKING:
    from pgwarden.api.schema import DiffReport

NAME = "diff"
HELP = "compare two databases' schemas"
DESCRIPTION = (
    "Compare the schema of DATABASE_URL (A) with the one of --against (B). "
    "Exit 0 when identical, 1 when they differ, 2 on bad input."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_database_arg(parser)
    parser.add_argument(
        "--against", required=True, metavar="DATABASE_URL", help="the database to compare with"
    )
    add_json_flag(parser)


def render(report: DiffReport) -> list[str]:
    if report.identical:
        return [f"identical: {report.a} and {report.b} (fingerprint {report.fingerprint_a})"]
    rows = [[d.kind, d.object, d.detail] for d in report.differences]
    return [
        *table(["KIND", "OBJECT", "DIFFERENCE"], rows),
        "",
        f"{len(rows)} difference{'s' if len(rows) != 1 else ''} between A {report.a} and B {report.b}",
    ]


def run(args: argparse.Namespace) -> int:
    from pgwarden.api.schema import DiffReport
    from pgwarden.engine.postgres.connect import describe, resolve_url
    from pgwarden.engine.postgres.inspect import snapshot_database
    from pgwarden.engine.postgres.schema_diff import diff_snapshots, fingerprint

    url_a = resolve_url(args.database_url)
    if not args.against:
        raise BadInput("--against needs a DATABASE_URL to compare with")
    url_b = resolve_url(args.against)
    a, b = snapshot_database(url_a), snapshot_database(url_b)
    differences = diff_snapshots(a, b)
    report = DiffReport(
        identical=not differences,
        differences=differences,
        a=describe(url_a),
        b=describe(url_b),
        fingerprint_a=fingerprint(a),
        fingerprint_b=fingerprint(b),
    )
    if args.json:
        print_json(report)
    else:
        print_text(render(report))
    return 0 if report.identical else 1
