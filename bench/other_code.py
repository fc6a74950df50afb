"""`--also LABEL=DIR`: a bench measures another checkout's (or copy's) code beside this one, in the same run.

Each code is run in a fresh interpreter with `DIR/operator` first on its path (None: this checkout's own)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_also_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="LABEL=DIR",
        help="also measure the code of the checkout (or copy) at DIR, labelled LABEL (repeatable)",
    )


def codes_to_measure(parser: argparse.ArgumentParser, also: list[str]) -> dict[str, Path | None]:
    """{label: its checkout}, this checkout's own first as "this"; a DIR without operator/pgwarden is refused."""
    codes: dict[str, Path | None] = {"this": None}
    for item in also:
        label, _, directory = item.partition("=")
        if not (Path(directory) / "operator" / "pgwarden").is_dir():
            parser.error(f"--also {item}: no operator/pgwarden under {directory}")
        codes[label] = Path(directory).resolve()
    return codes
