"""The `pgwarden` console script: the command line's commands and `pgwarden operator`, in one parser.

It stands above both so that neither imports the other: the command line never imports the operator, and
the operator's flags live with the operator (`pgwarden.operator.command`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pgwarden import cli
from pgwarden.operator import command as operator_command


def build_parser() -> argparse.ArgumentParser:
    return cli.build_parser({"operator": operator_command.register})


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(argv, build_parser)


def entrypoint() -> None:
    sys.exit(main())
