"""`pgwarden job KIND`: the entrypoint of the Jobs the operator creates (the task comes from PGWARDEN_TASK)."""

from __future__ import annotations

import argparse

from pgwarden.api.choices import JobKind

NAME = "job"
HELP = "run one task inside a Job (used by the operator)"
DESCRIPTION = (
    "Run the task in PGWARDEN_TASK with the database from DATABASE_URL or PG* variables; "
    "write the compact report to the termination message and the full report to stdout."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=[kind.value for kind in JobKind], help="what the Job does")


def run(args: argparse.Namespace) -> int:
    from pgwarden.job.runner import run as run_job

    return run_job(args.kind)
