"""Names are data (issue 18, item 6): a database, role, schema, table, column and index named with spaces,
double quotes, capitals, non-ASCII letters and reserved words go through every command, and every statement a
report hands the user (DROP DATABASE …, ALTER DATABASE …, ALTER ROLE …, DROP INDEX …, the journal's UPDATE)
is executed as printed: it must be valid SQL that does what it says."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from pgwarden_testing.localpg import LocalPostgres
from psycopg import sql

from cli.helpers import json_report, migrations_dir, run_pgwarden
from faults import Pgwarden, accepts_connections, databases, invalid_indexes, scratch_databases
from pgwarden.engine.recovery.journal import abandon_statement
from pgwarden.engine.restore.swap import names_for, stranded

ROLE = 'App "Rôle" select'  # and a token: a role per test
SCHEMA = 'Order "Böok"'
TABLE = f'"{SCHEMA.replace(chr(34), chr(34) * 2)}"."select"'
BASE = {
    "0001_weird.sql": f'CREATE SCHEMA "{SCHEMA.replace(chr(34), chr(34) * 2)}";\n'
    f'CREATE TABLE {TABLE} (id int PRIMARY KEY, "User Name" text NOT NULL, "Total ""€""" numeric);\n'
    f"INSERT INTO {TABLE} SELECT g, 'user ' || g, g * 2 FROM generate_series(1, 300) g;\n",
    "0002_indexes.sql": f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "Idx ""ä"" Select" ON {TABLE} ("User Name");\n'
    f'CREATE INDEX CONCURRENTLY "lower Idx" ON {TABLE} (lower("User Name"));\n',
}
# A split run: 0003 commits on its own, then 0004 fails, so its restore rollback swaps.
FAILS = {
    "0003_more.sql": f'CREATE INDEX CONCURRENTLY "Total ""€"" Idx" ON {TABLE} ("Total ""€""");\n',
    "0004_fails.sql": f"UPDATE {TABLE} SET \"User Name\" = 'x' WHERE id > 0;\nSELECT 1 / 0;\n",
}
# A statement as a report prints it: a verb, then names (quoted where they need it) up to the semicolon.
HINT = re.compile(
    r'(?:DROP DATABASE|ALTER DATABASE|ALTER ROLE|DROP INDEX CONCURRENTLY|UPDATE)\s(?:"(?:[^"]|"")*"|[^";])*;'
)


@dataclass(frozen=True)
class Weird:
    pg: LocalPostgres
    name: str
    role: str
    password: str

    def url(self, name: str | None = None) -> str:
        user, database = quote(self.role, safe=""), quote(name or self.name, safe="")
        return f"postgresql://{user}:{self.password}@127.0.0.1:{self.pg.port}/{database}"

    @property
    def admin(self) -> str:
        return self.pg.url()


def admin(url: str, statement: str | sql.Composable, params: list[Any] | None = None) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement, params)  # type: ignore[arg-type]


@pytest.fixture
def weird(pg: LocalPostgres) -> Weird:
    token = secrets.token_hex(3)
    name, role = f'Shop "Ö" Select {token}', f"{ROLE} {token}"
    password = secrets.token_hex(8)
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        create = sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}")
        conn.execute(create.format(sql.Identifier(role), sql.Literal(password)))
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(role))
        )
    return Weird(pg, name, role, password)


# Or in parentheses, as the refusals that name a missing privilege print it.
GRANT = re.compile(r'\((ALTER ROLE (?:"(?:[^"]|"")*"|[^";)])*)\)')


def hints(text: str) -> list[str]:
    return [*HINT.findall(text), *GRANT.findall(text)]


def ok(*args: str | Path, code: int = 0) -> dict[str, Any]:
    result = run_pgwarden(*args, timeout=300)
    assert "unexpected error" not in result.stdout + result.stderr, result.stderr
    assert result.returncode == code, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return json_report(result)


def test_every_command_takes_names_that_need_quoting(weird: Weird, tmp_path: Path) -> None:
    directory = migrations_dir(tmp_path / "migrations", extra=BASE)
    backups = tmp_path / "backups"

    migrated = ok("migrate", weird.url(), "--dir", directory, "--json")
    assert migrated["currentVersion"] == "0002"
    assert [a["statements"] for a in migrated["applied"]] == [
        {"applied": 3, "total": 3},
        {"applied": 2, "total": 2},
    ]
    inspected = ok("inspect", weird.url(), "--json")
    assert f"{TABLE}" in str(inspected) or '"select"' in str(inspected)
    assert ok("diff", weird.url(), "--against", weird.url(), "--json")["identical"] is True

    backup = ok("backup", weird.url(), "--to", backups, "--verify", "--json")
    assert backup["backup"]["verified"] is True
    assert ok("backups", str(backups), "--json")["backups"]
    assert ok("verify-backup", str(backups), "--on", weird.url(), "--json")["outcome"] == "Succeeded"
    ok("prune", str(backups), "--keep-last", "5", "--dry-run", "--json")

    created = f'Néw "DB" Table {secrets.token_hex(3)}'
    restored = ok("restore", weird.url(created), "--from", str(backups), "--create", "--json")
    assert restored["createdDatabase"] is True
    assert accepts_connections(weird.admin, created)
    ok("restore", weird.url(created), "--from", str(backups), "--clean", "--json")

    recovered = ok("recover", weird.url(), "--json")
    assert recovered["recovered"]["state"] == "Clean"
    assert scratch_databases(weird.admin, weird.name) == []
    assert invalid_indexes(weird.url()) == []


def test_the_restore_rollback_and_its_hints_with_such_names(weird: Weird, tmp_path: Path) -> None:
    directory = migrations_dir(tmp_path / "migrations", extra={**BASE, **FAILS})
    ok("migrate", weird.url(), "--dir", directory, "--target", "0002", "--json")
    args = ["--backup-to", str(tmp_path / "backups"), "--rollback", "restore", "--json"]

    report = ok("migrate", weird.url(), "--dir", directory, *args, code=1)

    assert report["outcome"] == "RolledBack", report
    message = report["rollback"]["message"]
    (drop,) = hints(message)
    failed = [d for d in databases(weird.admin) if d.startswith(weird.name) and "_pgw_failed_" in d]
    assert len(failed) == 1
    admin(weird.admin, drop)  # the hint, exactly as printed
    assert failed[0] not in databases(weird.admin)

    # Killed between the renames of the swap: recover puts the database back under its name.
    with Pgwarden("migrate", weird.url(), "--dir", directory, *args, pause_at="rollback-renamed-away") as run:
        run.wait_until(run.stderr_says("paused at rollback-renamed-away"), "the swap", timeout=240)
        run.kill_tree()
        run.finish()
    assert not accepts_connections(weird.admin, weird.name)
    back = ok("recover", weird.url(), "--json")
    assert back["recovered"]["state"] == "Recovered", back
    assert accepts_connections(weird.admin, weird.name)
    assert scratch_databases(weird.admin, weird.name) == []


def test_a_stranded_swap_is_finished_by_the_statements_it_prints(weird: Weird) -> None:
    names = names_for(weird.name, datetime.now(UTC), secrets.token_hex(3))
    admin(
        weird.admin,
        sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
            sql.Identifier(weird.name), sql.Identifier(names.failed)
        ),
    )
    admin(
        weird.admin, sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(names.failed))
    )

    back, _complete, reopen = [h for h in hints(stranded(names)) if "RENAME" in h or "ALLOW" in h][:3]
    admin(weird.admin, back)  # "to go back"
    admin(weird.admin, reopen)

    assert accepts_connections(weird.admin, weird.name)


def test_the_hints_for_missing_privileges_grant_them_as_printed(weird: Weird, tmp_path: Path) -> None:
    admin(weird.admin, sql.SQL("ALTER ROLE {} NOCREATEDB").format(sql.Identifier(weird.role)))
    directory = migrations_dir(tmp_path / "migrations", extra={**BASE, **FAILS})
    refused = ok(
        "migrate",
        weird.url(),
        "--dir",
        directory,
        "--backup-to",
        str(tmp_path / "b"),
        "--rollback",
        "restore",
        "--json",
        code=2,
    )
    grant = [h for h in hints(refused["error"]["message"]) if h.startswith("ALTER ROLE")]
    assert grant, refused["error"]["message"]
    admin(weird.admin, grant[0])
    with psycopg.connect(weird.admin, autocommit=True) as conn:
        row = conn.execute("SELECT rolcreatedb FROM pg_roles WHERE rolname = %s", [weird.role]).fetchone()
    assert row == (True,)


def test_an_invalid_index_not_ours_is_dropped_by_the_statement_printed(weird: Weird, tmp_path: Path) -> None:
    directory = migrations_dir(tmp_path / "migrations", extra={"0001_weird.sql": BASE["0001_weird.sql"]})
    ok("migrate", weird.url(), "--dir", directory, "--json")
    # A unique build on duplicates: left INVALID.
    with psycopg.connect(weird.url(), autocommit=True) as conn, pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(f'CREATE UNIQUE INDEX CONCURRENTLY "Idx ""ä"" Select" ON {TABLE} ((id / 2))')
    assert invalid_indexes(weird.url())
    directory.joinpath("0002_indexes.sql").write_text(BASE["0002_indexes.sql"])

    failed = ok("migrate", weird.url(), "--dir", directory, "--json", code=1)

    (drop,) = [h for h in hints(failed["error"]["message"]) if h.startswith("DROP INDEX")]
    admin(weird.url(), drop)
    assert invalid_indexes(weird.url()) == []
    assert ok("migrate", weird.url(), "--dir", directory, "--json")["currentVersion"] == "0002"


def test_the_abandon_statement_of_a_journal_in_a_schema_that_needs_quoting_runs(
    weird: Weird, tmp_path: Path
) -> None:
    schema = 'Hist "Ö" table'
    directory = migrations_dir(tmp_path / "migrations", extra={"0001_weird.sql": BASE["0001_weird.sql"]})
    ok("migrate", weird.url(), "--dir", directory, "--history-schema", schema, "--json")
    with psycopg.connect(weird.url(), autocommit=True) as conn:
        row = conn.execute(sql.SQL("SELECT id FROM {}.run_journal").format(sql.Identifier(schema))).fetchone()
    assert row is not None
    statement = abandon_statement(schema, str(row[0]))

    admin(weird.url(), statement)

    with psycopg.connect(weird.url(), autocommit=True) as conn:
        state = conn.execute(
            sql.SQL("SELECT state FROM {}.run_journal").format(sql.Identifier(schema))
        ).fetchone()
    assert state == ("abandoned",)
