"""`pgwarden inspect`: what a database holds (tables, rows, sizes, schema summary), counted at one moment."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pgwarden.api.sizes import human_size
from pgwarden.cli.output import add_database_arg, add_json_flag, table
from pgwarden.streams import print_json, print_text, progress

if TYPE_CHECKING:
    from pgwarden.api.schema import InspectReport

# Below this many tables counting is quick and progress lines would only be noise.
PROGRESS_FROM_TABLES = 100


NAME = "inspect"
HELP = "count tables and rows, summarise the schema"
DESCRIPTION = (
    "Count the user's tables and rows (exact, in parallel at one snapshot, or estimated) "
    "and summarise the schema."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_database_arg(parser)
    parser.add_argument(
        "--counts",
        choices=["exact", "estimate", "none"],
        default="exact",
        help="exact counts every row; estimate reads planner statistics (default: exact)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=4, metavar="N", help="tables counted at once (default 4)"
    )
    add_json_flag(parser)


def _report_progress(done: int, total: int) -> None:
    step = max(1, total // 10)
    if total >= PROGRESS_FROM_TABLES and (done % step == 0 or done == total):
        progress(f"counted {done}/{total} tables")


def render(report: InspectReport) -> list[str]:
    """The report as a summary and an aligned table of tables."""
    rows = "rows not counted"
    if report.rows is not None:
        rows = f"{report.rows:,} rows ({'estimated' if report.estimated else 'exact'})"
    lines = [
        f"{report.database}  PostgreSQL {report.server_version}  {human_size(report.size_bytes)}",
        f"{report.tables} tables, {rows}",
        f"{report.schemas} schemas, {report.partitions} partitions, {report.indexes} indexes "
        f"({report.invalid_indexes} invalid), {report.constraints} constraints, {report.views} views, "
        f"{report.materialized_views} materialized views, {report.functions} functions, "
        f"{report.sequences} sequences, {report.triggers} triggers",
        f"schema fingerprint {report.schema_fingerprint}",
    ]
    if report.per_table:
        prefix = "~" if report.estimated else ""
        lines.append("")
        lines += table(
            ["TABLE", "ROWS", "SIZE"],
            [
                [
                    t.table + (" (partitioned)" if t.kind == "partitioned" else ""),
                    "" if t.rows is None else f"{prefix}{t.rows:,}",
                    human_size(t.size_bytes),
                ]
                for t in report.per_table
            ],
        )
    return lines


def run(args: argparse.Namespace) -> int:
    from pgwarden.engine.postgres.connect import resolve_url
    from pgwarden.engine.postgres.inspect import inspect_database

    url = resolve_url(args.database_url)
    report = inspect_database(
        url, counts=args.counts, concurrency=max(1, args.concurrency), on_counted=_report_progress
    )
    if args.json:
        print_json(report)
    else:
        print_text(render(report))
    return 0
