"""What a command writes: one JSON report on stdout, progress lines on stderr, both redacted.

Below every layer, so the command line and the in-Pod runner print alike without importing each other."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from typing import Protocol

from pgwarden.redact import redact, redact_obj


class JsonReport(Protocol):
    """A report model (`pgwarden.api.base.ApiModel`): its camelCase JSON form."""

    def to_json_dict(self) -> dict[str, object]: ...


def print_json(report: JsonReport | Mapping[str, object]) -> None:
    """Print one report as a single JSON line on stdout."""
    data = dict(report) if isinstance(report, Mapping) else report.to_json_dict()
    print(json.dumps(redact_obj(data), default=str))


def print_text(lines: Iterable[str]) -> None:
    for line in lines:
        print(redact(line))


def progress(message: str) -> None:
    """A progress line on stderr, for long runs."""
    print(redact(message), file=sys.stderr, flush=True)
