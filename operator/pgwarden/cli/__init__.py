"""The `pgwarden` command line: one module per command, each with NAME, HELP, DESCRIPTION, `add_arguments(parser)`
and `run(args)`."""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
from typing import TYPE_CHECKING, NoReturn, cast

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

from pgwarden import __version__
from pgwarden.cli.output import configure_logging, print_failure
from pgwarden.errors import PgwardenError, Terminated
from pgwarden.redact import redact, register_environment, register_url

# Commands, in the order `pgwarden --help` lists them: each `pgwarden.cli.<name>_cmd`, unless the caller
# registers it from elsewhere (`operator`: pgwarden.console). A command found nowhere is simply absent.
COMMANDS = (
    "inspect",
    "migrate",
    "diff",
    "backup",
    "restore",
    "backups",
    "prune",
    "verify_backup",
    "recover",
    "operator",
    "job",
)

log = logging.getLogger("pgwarden")


class RedactingParser(argparse.ArgumentParser):
    """An argument parser whose usage errors (which echo the bad argument, often a URL) are redacted."""

    def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
        super()._print_message(redact(message), file)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        super().exit(status, redact(message) if message else message)


Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def build_parser(elsewhere: Mapping[str, Register] | None = None) -> argparse.ArgumentParser:
    """The parser of every command; `elsewhere` registers the commands that live outside the command line."""
    parser = RedactingParser(
        prog="pgwarden",
        description="Declarative PostgreSQL migrations, backups, verification and rollback.",
    )
    parser.add_argument("--version", action="version", version=f"pgwarden {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    # Subcommand parsers are RedactingParsers too (argparse makes them of the parent's class).
    subparsers = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", metavar="COMMAND", required=True),
    )
    for name in COMMANDS:
        register = (elsewhere or {}).get(name) or _own_command(name)
        if register is not None:
            register(subparsers)
    return parser


def _own_command(name: str) -> Register | None:
    """`pgwarden.cli.<name>_cmd` as a command: its NAME, HELP and DESCRIPTION, its arguments and `run`."""
    try:
        module = importlib.import_module(f"pgwarden.cli.{name}_cmd")
    except ModuleNotFoundError as exc:
        if exc.name != f"pgwarden.cli.{name}_cmd":
            raise
        return None

    def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        parser = subparsers.add_parser(module.NAME, help=module.HELP, description=module.DESCRIPTION)
        module.add_arguments(parser)
        parser.set_defaults(run=module.run)

    return register


def stop_on_sigterm() -> None:
    """The first SIGTERM unwinds the command like Ctrl-C (rollback, report, aborted upload); later ones are
    ignored, so a second signal cannot cut the rollback the first one started. SIGKILL follows if it hangs."""

    def on_sigterm(_signum: int, _frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, lambda *_: log.warning("SIGTERM again: still rolling back"))
        raise Terminated

    signal.signal(signal.SIGTERM, on_sigterm)


def main(
    argv: Sequence[str] | None = None, parser_of: Callable[[], argparse.ArgumentParser] = build_parser
) -> int:
    """Run one command; exit 0 on success, 1 when the operation failed, 2 when the input was refused."""
    register_environment()
    arguments = list(sys.argv[1:] if argv is None else argv)
    for argument in arguments:  # argparse echoes bad arguments back: learn the secrets in them first
        register_url(argument)
    parser = parser_of()
    args = parser.parse_args(arguments)
    configure_logging(verbose=args.verbose)
    stop_on_sigterm()
    try:
        code: int = args.run(args)
    except PgwardenError as exc:
        print_failure(args, exc.message)
        return exc.exit_code
    except Terminated as exc:
        print_failure(args, str(exc))
        return 143
    except KeyboardInterrupt:
        print("pgwarden: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        print_failure(args, describe_unexpected(exc))
        return 1
    return code


def describe_unexpected(exc: Exception) -> str:
    """A failure the command did not put in context, without a secret: a server's error still is no
    "unexpected" one (psycopg is imported here, not before: only a command that ran can have raised it)."""
    import psycopg

    from pgwarden.engine.postgres.pgerror import describe_error

    if isinstance(exc, psycopg.Error):
        return f"the database refused: {describe_error(exc)}"
    log.debug("unexpected failure", exc_info=exc)
    return f"unexpected error: {type(exc).__name__}: {redact(str(exc))}"


def entrypoint() -> None:
    sys.exit(main())
