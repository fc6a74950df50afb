"""The command line's own printing: logs and failures on stderr, tables, the flags every command shares.

Reports and progress lines are `pgwarden.streams`, shared with the in-Pod runner."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pgwarden.errors import BadInput
from pgwarden.redact import redact
from pgwarden.streams import print_json

if TYPE_CHECKING:
    from pgwarden.api.reports import Recovered


class RedactingFormatter(logging.Formatter):
    """Formats log records, then masks secrets in the finished line (message, args and traceback alike)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class LibraryTracebacksInOneLine(logging.Filter):
    """A library's warning that carries an exception (botocore's failed credential refresh does) becomes one
    line ending in the exception's own message: the command's failure says the rest, in its own words."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None and not record.name.startswith("pgwarden"):
            error = record.exc_info[1]
            record.msg, record.args = f"{record.getMessage()} ({type(error).__name__}: {error})", None
            record.exc_info, record.exc_text = None, None
        return True


def configure_logging(*, verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    if not verbose:
        handler.addFilter(LibraryTracebacksInOneLine())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logging.getLogger("pgwarden").setLevel(logging.DEBUG if verbose else logging.INFO)


def print_failure(args: argparse.Namespace, message: str) -> None:
    """Report a failure: as a JSON report when --json was asked for, and always on stderr."""
    if getattr(args, "json", False):
        print_json({"outcome": "Failed", "error": {"message": message}})
    print(f"pgwarden: {redact(message)}", file=sys.stderr)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A plain-text table with aligned columns."""
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def duration_flag(flag: str, text: str) -> str:
    """A flag's duration, in the one grammar of `pgwarden.api.durations`; refused as BadInput naming the flag
    (exit 2, and a JSON report with --json) before anything runs."""
    from pgwarden.api.durations import milliseconds

    try:
        milliseconds(text)
    except ValueError as exc:
        raise BadInput(f"{flag}: {exc}") from exc
    return text.strip()


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON report on stdout")


def add_database_arg(parser: argparse.ArgumentParser, name: str = "database_url") -> None:
    parser.add_argument(
        name,
        nargs="?",
        default=None,
        metavar="DATABASE_URL",
        help="postgresql:// URL or libpq keywords; omit to use the PG* environment variables",
    )


def describe_recovered(recovered: Recovered | None) -> list[str]:
    """What a dead run had left and what was done about it, as lines a person reads (none: nothing left)."""
    if recovered is None:
        return []
    lines = [f"recovered {recovered.state}" + ("" if recovered.found else ": nothing was left")]
    lines.extend(f"  found   {line}" for line in recovered.found)
    lines.extend(f"  done    {line}" for line in recovered.done)
    return lines
