"""Run the real `pgwarden` console script and look at the database it worked on, from the outside."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, LiteralString

import psycopg
from psycopg import sql

PGWARDEN = str(Path(sys.executable).with_name("pgwarden"))
# The command line with its pause points live: the test harness's wrapper (pgwarden_testing.paused).
PAUSED_PGWARDEN = (sys.executable, "-m", "pgwarden_testing.paused")
PAUSE_ENV = "PGWARDEN_TEST_PAUSE_AT"
REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "migrations" / "demo"


def clean_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The test process's environment without libpq's PG* variables or DATABASE_URL, plus `env`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("PG") and k != "DATABASE_URL"}
    return {**base, **(env or {})}


def run_pgwarden(
    *args: str | Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `pgwarden ARGS` with a clean environment (no PG* variables unless given in `env`)."""
    return subprocess.run(
        [PGWARDEN, *map(str, args)],
        capture_output=True,
        text=True,
        env=clean_env(env),
        timeout=timeout,
        check=False,
    )


def pgwarden_command(pause_at: str | None = None) -> list[str]:
    """The console script, or with `pause_at` the test wrapper that makes the run stop at that pause point
    ("" runs through the wrapper without stopping: for its trace)."""
    return list(PAUSED_PGWARDEN) if pause_at is not None else [PGWARDEN]


def pause_env(pause_at: str | None, env: dict[str, str] | None = None) -> dict[str, str]:
    """`env`, plus what tells the test wrapper where to pause."""
    return {**(env or {}), **({PAUSE_ENV: pause_at} if pause_at else {})}


def start_pgwarden(
    *args: str | Path, env: dict[str, str] | None = None, pause_at: str | None = None
) -> subprocess.Popen[str]:
    """Start `pgwarden ARGS` without waiting for it (for concurrent runs); with `pause_at`, through the test
    wrapper, stopping at that pause point."""
    return subprocess.Popen(
        [*pgwarden_command(pause_at), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(pause_env(pause_at, env)),
    )


def json_report(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The single JSON document `--json` prints on stdout (nothing else may be there)."""
    text = result.stdout.strip()
    assert text, f"no JSON on stdout; stderr:\n{result.stderr}"
    decoder = json.JSONDecoder()
    report, end = decoder.raw_decode(text)
    assert text[end:].strip() == "", f"more than one JSON document on stdout:\n{result.stdout}"
    assert isinstance(report, dict), report
    return report


def migrations_dir(target: Path, *, demo: str | None = None, extra: dict[str, str] | None = None) -> Path:
    """A migration directory: the demo files up to version `demo` (all when "all"), plus `extra` files."""
    target.mkdir(parents=True, exist_ok=True)
    if demo is not None:
        for path in sorted(DEMO.glob("*.sql")):
            if demo == "all" or path.name[:4] <= demo:
                shutil.copy(path, target / path.name)
    for name, text in (extra or {}).items():
        (target / name).write_text(text)
    return target


def clone_database(template_url: str, admin_url: str) -> str:
    """A copy of the database at `template_url` (CREATE DATABASE ... TEMPLATE); returns its URL."""
    template = template_url.rsplit("/", 1)[1]
    name = f"{template}_c{os.urandom(4).hex()}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return template_url.rsplit("/", 1)[0] + "/" + name


def table_counts(url: str) -> dict[str, int]:
    """Every user table (any schema but the system ones and pgwarden's) with its exact row count."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [
            f"{schema}.{name}"
            for schema, name in conn.execute(
                "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
                " AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname <> 'pgwarden'"
                " ORDER BY 1, 2"
            ).fetchall()
        ]
        counts: dict[str, int] = {}
        for table in tables:
            schema, name = table.split(".", 1)
            row = conn.execute(
                sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(name))
            ).fetchone()
            counts[table] = int(row[0]) if row else 0
        return counts


def schemas(url: str) -> set[str]:
    """The non-system schemas of the database."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace"
            " WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg\\_%'"
        ).fetchall()
    return {str(r[0]) for r in rows}


def history(url: str) -> list[tuple[str, str, bool]]:
    """Rows of pgwarden.schema_history as (version, type, success), in installation order; [] when absent."""
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('pgwarden.schema_history') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return []
        rows = conn.execute(
            "SELECT version, type, success FROM pgwarden.schema_history ORDER BY installed_rank"
        ).fetchall()
    return [(str(v), str(t), bool(s)) for v, t, s in rows]


def query(url: str, statement: LiteralString) -> Any:
    """The single value of a query."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(statement).fetchone()
    return row[0] if row else None


def execute(url: str, statements: LiteralString) -> None:
    """Run SQL by hand, outside pgwarden (autocommit)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statements)
