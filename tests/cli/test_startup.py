"""`pgwarden --version` and `--help` load no heavy library: a command line that starts at once (issue 22).

The real console script runs in a fresh interpreter with PYTHONPROFILEIMPORTTIME, which names on stderr every
module the process imported; none of the libraries a command needs only once it runs may be among them."""

from __future__ import annotations

import subprocess

import pytest
from helpers import PGWARDEN, clean_env

# What only running a command needs: the database driver, the models, object storage, SQL parsing, the
# Kubernetes client and the operator's framework, compression, YAML, cron and age.
HEAVY = (
    "psycopg",
    "pydantic",
    "boto3",
    "botocore",
    "pglast",
    "kubernetes",
    "kopf",
    "zstandard",
    "yaml",
    "croniter",
    "pyrage",
)


def imported_by(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run `pgwarden ARGS`; its result and the top-level packages it imported."""
    result = subprocess.run(
        [PGWARDEN, *args],
        capture_output=True,
        text=True,
        env=clean_env({"PYTHONPROFILEIMPORTTIME": "1"}),
        timeout=60,
        check=False,
    )
    names = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return result, names


def test_the_import_trace_is_read() -> None:
    """The trace names what a command that runs does import: the check below could not pass by reading
    nothing."""
    result, names = imported_by("inspect", "--json", "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1")
    assert result.returncode == 1, result.stderr
    assert "psycopg" in names


@pytest.mark.parametrize(
    "args",
    [
        ("--version",),
        ("--help",),
        *[
            (command, "--help")
            for command in (
                "inspect",
                "migrate",
                "diff",
                "backup",
                "restore",
                "backups",
                "prune",
                "verify-backup",
                "recover",
                "operator",
                "job",
            )
        ],
    ],
    ids=lambda args: " ".join(args),
)
def test_version_and_help_import_nothing_heavy(args: tuple[str, ...]) -> None:
    result, names = imported_by(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("pgwarden 0.1.0" if args == ("--version",) else "usage: pgwarden")
    assert sorted(names & set(HEAVY)) == []
