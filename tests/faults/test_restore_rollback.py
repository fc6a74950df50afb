"""`migrate --backup-to … --rollback restore` (issue 9, item 1): a restore rollback can only make things better.

The backup is opened and checked, and the role's privileges are known to suffice, before anything is
dropped; the backup is restored into a new database and swapped in by rename, and the failed database
is kept under a reported name. Real servers, a real role without superuser, the real console script.
"""

from __future__ import annotations

import dataclasses
import secrets
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from subprocess import CompletedProcess, Popen
from typing import Any

import psycopg
import pytest
from pgwarden_testing.localpg import LocalPostgres
from psycopg import sql

from cli.helpers import (
    execute,
    json_report,
    migrations_dir,
    query,
    run_pgwarden,
    start_pgwarden,
    table_counts,
)
from pgwarden.api.policy import RollbackStrategy
from pgwarden.api.reports import RollbackOutcome
from pgwarden.engine.postgres.databases import split_list_setting
from pgwarden.engine.restore.privileges import RoleFacts, missing_for_restore
from pgwarden.engine.restore.safety_net import BackupSafetyNet
from pgwarden.engine.restore.swap import names_for
from pgwarden.errors import BadInput

# Commits outside a transaction (demo 0005 builds an index CONCURRENTLY), then this one fails.
FAILING = """CREATE TABLE shop.extra (id int);
DELETE FROM shop.order_lines WHERE order_id > 0;
SELECT 1/0;
"""


@dataclass(frozen=True)
class OwnedDatabase:
    """A database owned by a login role that is not a superuser (as on managed PostgreSQL)."""

    pg: LocalPostgres
    name: str
    role: str
    password: str

    @property
    def url(self) -> str:
        return f"postgresql://{self.role}:{self.password}@127.0.0.1:{self.pg.port}/{self.name}"

    @property
    def admin_url(self) -> str:
        return self.pg.url(self.name)


def owned_database(pg: LocalPostgres, *, createdb: bool) -> OwnedDatabase:
    role, password = f"app_{secrets.token_hex(4)}", secrets.token_hex(12)
    name = f"shop_{secrets.token_hex(4)}"
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} {}").format(
                sql.Identifier(role), sql.Literal(password), sql.SQL("CREATEDB" if createdb else "NOCREATEDB")
            )
        )
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(role))
        )
    return OwnedDatabase(pg, name, role, password)


def databases(pg: LocalPostgres, pattern: str) -> list[str]:
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY 1", [pattern])
        return [str(name) for (name,) in rows.fetchall()]


def objects(url: str) -> list[tuple[str, str]]:
    """Every relation, function and trigger outside the system schemas, as (kind, qualified name)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT c.relkind::text, n.nspname || '.' || c.relname FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'"
            " UNION ALL SELECT 'function', p.oid::regprocedure::text FROM pg_proc p"
            " JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')"
            " UNION ALL SELECT 'trigger', tgrelid::regclass::text || '.' || tgname FROM pg_trigger WHERE NOT tgisinternal"
            " ORDER BY 1, 2"
        ).fetchall()
    return [(str(kind), str(name)) for kind, name in rows]


def history_versions(url: str) -> list[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT version FROM pgwarden.schema_history WHERE success ORDER BY installed_rank"
        )
        return [str(v) for (v,) in rows.fetchall()]


@pytest.fixture
def migrations(tmp_path: Path) -> Path:
    """The demo up to 0005 (CREATE INDEX CONCURRENTLY, committed on its own), then a file that fails."""
    return migrations_dir(tmp_path / "migrations", demo="0005", extra={"0006_fails.sql": FAILING})


def at_version_0004(db: OwnedDatabase, directory: Path) -> None:
    result = run_pgwarden("migrate", db.url, "--dir", directory, "--target", "0004")
    assert result.returncode == 0, result.stderr


def migrate_with_restore(
    db: OwnedDatabase, directory: Path, backups: Path, *extra: str
) -> tuple[CompletedProcess[str], dict[str, Any]]:
    result = run_pgwarden(
        "migrate",
        db.url,
        "--dir",
        directory,
        "--backup-to",
        backups,
        "--rollback",
        "restore",
        "--json",
        *extra,
    )
    return result, json_report(result)


# --- the role cannot create a database: refused before anything changes ---------------------------------


def test_restore_rollback_without_createdb_is_refused_up_front_and_the_database_is_untouched(
    pg: LocalPostgres, migrations: Path, tmp_path: Path
) -> None:
    db = owned_database(pg, createdb=False)
    at_version_0004(db, migrations)
    counts, schema = table_counts(db.url), objects(db.url)

    result, report = migrate_with_restore(db, migrations, tmp_path / "backups")

    assert databases(pg, db.name) == [db.name], f"the database is gone; report: {report}"
    assert result.returncode == 2, result.stderr
    assert "CREATEDB" in report["error"]["message"]
    assert f"ALTER ROLE {db.role} CREATEDB" in report["error"]["message"]
    assert table_counts(db.url) == counts
    assert objects(db.url) == schema
    assert history_versions(db.url) == ["0001", "0002", "0003", "0004"]
    assert databases(pg, f"{db.name}_pgw_%") == []
    assert db.password not in result.stdout + result.stderr


def test_objects_of_a_role_the_owner_cannot_become_are_refused_up_front(
    pg: LocalPostgres, migrations: Path, tmp_path: Path
) -> None:
    db = owned_database(pg, createdb=True)
    at_version_0004(db, migrations)
    other = f"other_{secrets.token_hex(4)}"
    with psycopg.connect(db.admin_url, autocommit=True) as conn:  # the restore could not give it back
        conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(other)))
        conn.execute(sql.SQL("CREATE TABLE shop.audit (id int)"))
        conn.execute(sql.SQL("ALTER TABLE shop.audit OWNER TO {}").format(sql.Identifier(other)))
    counts = table_counts(db.admin_url)

    result, report = migrate_with_restore(db, migrations, tmp_path / "backups")

    assert result.returncode == 2, result.stderr
    assert f"GRANT {other} TO {db.role}" in report["error"]["message"]
    assert table_counts(db.admin_url) == counts
    assert history_versions(db.url) == ["0001", "0002", "0003", "0004"]
    assert databases(pg, f"{db.name}_pgw_%") == []


# --- the role may: the backup is restored beside the database and swapped in ----------------------------


def database_level(db: OwnedDatabase) -> dict[str, Any]:
    """The database's own properties, which a dump does not carry: owner, grants, settings, comment."""
    with psycopg.connect(db.pg.url(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT pg_get_userbyid(d.datdba), (SELECT array_agg(a ORDER BY a) FROM unnest(d.datacl::text[]) a),"
            " d.datallowconn, d.datconnlimit,"
            " shobj_description(d.oid, 'pg_database'),"
            " (SELECT array_agg(c ORDER BY c) FROM pg_db_role_setting s, unnest(s.setconfig) c"
            "   WHERE s.setdatabase = d.oid)"
            " FROM pg_database d WHERE d.datname = %s",
            [db.name],
        ).fetchone()
    assert row is not None, f"database {db.name} does not exist"
    return dict(zip(["owner", "acl", "allowConnections", "limit", "comment", "settings"], row, strict=True))


def test_failed_split_run_is_restored_into_a_new_database_and_swapped_in(
    pg: LocalPostgres, migrations: Path, tmp_path: Path
) -> None:
    db = owned_database(pg, createdb=True)
    at_version_0004(db, migrations)
    reader = f"reader_{secrets.token_hex(4)}"
    with psycopg.connect(db.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(reader)))
    with psycopg.connect(db.url, autocommit=True) as conn:  # what the owner itself set on its database
        name = sql.Identifier(db.name)
        conn.execute(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(name))
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(name, sql.Identifier(reader)))
        conn.execute(sql.SQL('ALTER DATABASE {} SET search_path = shop, "$user", public').format(name))
        conn.execute(sql.SQL("ALTER DATABASE {} SET work_mem = '8MB'").format(name))
        conn.execute(sql.SQL("COMMENT ON DATABASE {} IS 'the shop'").format(name))
    counts, schema, level = table_counts(db.url), objects(db.url), database_level(db)

    result, report = migrate_with_restore(db, migrations, tmp_path / "backups")

    assert result.returncode == 1, result.stderr
    assert report["outcome"] == "RolledBack", report
    rollback = report["rollback"]
    assert rollback["strategy"] == "restore" and rollback["outcome"] == "Succeeded", rollback
    assert rollback["versionAfter"] == "0004"
    assert table_counts(db.url) == counts
    assert objects(db.url) == schema
    assert history_versions(db.url) == ["0001", "0002", "0003", "0004"]
    assert database_level(db) == level
    failed = databases(pg, f"{db.name}\\_pgw\\_failed\\_%")
    assert len(failed) == 1 and failed[0] in rollback["message"], (failed, rollback["message"])
    failed_url = db.pg.url(failed[0])
    assert ("i", "shop.orders_created_at_idx") in objects(failed_url)  # what the run left, for inspection
    assert history_versions(failed_url) == ["0001", "0002", "0003", "0004", "0005"]
    assert databases(pg, f"{db.name}\\_pgw\\_restore\\_%") == []
    assert db.password not in result.stdout + result.stderr


def test_a_backup_corrupted_before_the_rollback_leaves_the_database_as_the_run_left_it(
    pg: LocalPostgres, tmp_path: Path
) -> None:
    db = owned_database(pg, createdb=True)
    # 0006 waits for a lock the test holds, so the dump can be damaged between the backup and the rollback.
    directory = migrations_dir(
        tmp_path / "migrations",
        demo="0005",
        extra={"0006_waits_then_fails.sql": "SELECT pg_advisory_xact_lock(4242);\nSELECT 1/0;\n"},
    )
    at_version_0004(db, directory)
    counts = table_counts(db.url)
    backups = tmp_path / "backups"

    with psycopg.connect(db.admin_url, autocommit=True) as gate:
        gate.execute("SELECT pg_advisory_lock(4242)")
        run = start_pgwarden(
            "migrate", db.url, "--dir", directory, "--backup-to", backups, "--rollback", "restore",
            "--lock-timeout", "120s", "--json",
        )  # fmt: skip
        wait_for(lambda: waiting_on_advisory_lock(db), "pgwarden to reach 0006", run)
        (dump,) = list(backups.glob("*/dump.*"))
        data = bytearray(dump.read_bytes())
        data[len(data) // 2] ^= 0xFF
        dump.write_bytes(bytes(data))
        gate.execute("SELECT pg_advisory_unlock(4242)")
    stdout, stderr = run.communicate(timeout=120)
    report = json_report(CompletedProcess(run.args, run.returncode, stdout, stderr))

    assert run.returncode == 1, stderr
    assert report["outcome"] == "Failed"
    rollback = report["rollback"]
    assert rollback["outcome"] == "Failed"
    assert "corrupted" in rollback["message"]
    assert f"{db.name} is as the failed run left it" in rollback["message"]
    assert history_versions(db.url) == ["0001", "0002", "0003", "0004", "0005"]
    assert ("i", "shop.orders_created_at_idx") in objects(db.url)
    assert table_counts(db.url) == counts  # 0006 itself was rolled back with its transaction
    assert databases(pg, f"{db.name}\\_pgw\\_%") == []


def waiting_on_advisory_lock(db: OwnedDatabase) -> bool:
    with psycopg.connect(db.pg.url(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'"
            " AND query LIKE '%%pg_advisory_xact_lock%%'",
            [db.name],
        ).fetchone()
    return bool(row and row[0])


def wait_for(condition: Callable[[], bool], what: str, process: Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"pgwarden ended before {what}: {process.communicate()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def sessions(url: str, count: int) -> list[psycopg.Connection[tuple[Any, ...]]]:
    return [psycopg.connect(url, autocommit=True) for _ in range(count)]


def test_application_sessions_on_the_database_do_not_stop_the_swap(
    pg: LocalPostgres, migrations: Path, tmp_path: Path
) -> None:
    db = owned_database(pg, createdb=True)
    at_version_0004(db, migrations)
    other = f"worker_{secrets.token_hex(4)}"
    with psycopg.connect(pg.url(), autocommit=True) as conn:  # another application role, which app may signal
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'w'").format(sql.Identifier(other)))
        conn.execute(sql.SQL("GRANT pg_signal_backend TO {}").format(sql.Identifier(db.role)))
    counts = table_counts(db.url)
    app = sessions(db.url, 3) + sessions(f"postgresql://{other}:w@127.0.0.1:{pg.port}/{db.name}", 2)
    try:
        result, report = migrate_with_restore(db, migrations, tmp_path / "backups")
    finally:
        for conn in app:
            conn.close()

    assert result.returncode == 1, result.stderr
    assert report["outcome"] == "RolledBack", report
    assert report["rollback"]["outcome"] == "Succeeded"
    assert table_counts(db.url) == counts
    assert history_versions(db.url) == ["0001", "0002", "0003", "0004"]
    assert databases(pg, f"{db.name}\\_pgw\\_restore\\_%") == []


def test_a_session_the_role_may_not_end_fails_the_rollback_and_puts_the_database_back(
    pg: LocalPostgres, migrations: Path, tmp_path: Path
) -> None:
    db = owned_database(pg, createdb=True)
    at_version_0004(db, migrations)
    counts = table_counts(db.url)
    with psycopg.connect(db.admin_url, autocommit=True):  # a superuser's session: no owner may end it
        result, report = migrate_with_restore(db, migrations, tmp_path / "backups")

    assert result.returncode == 1, result.stderr
    assert report["outcome"] == "Failed"
    rollback = report["rollback"]
    assert rollback["outcome"] == "Failed"
    assert "GRANT pg_signal_backend" in rollback["message"]
    assert f"{db.name} is back as the failed run left it" in rollback["message"]
    assert database_level(db)["allowConnections"] is True
    assert history_versions(db.url) == ["0001", "0002", "0003", "0004", "0005"]
    assert table_counts(db.url) == counts
    assert databases(pg, f"{db.name}\\_pgw\\_%") == []


@pytest.mark.parametrize(
    ("point", "state"),
    [
        ("rollback-restored", "is as the failed run left it"),  # the restored copy exists, nothing swapped
        ("rollback-renamed-away", "is back as the failed run left it"),  # no database has the name
    ],
)
def test_sigterm_during_the_rollback_puts_the_failed_database_back_under_its_name(
    pg: LocalPostgres, migrations: Path, tmp_path: Path, point: str, state: str
) -> None:
    db = owned_database(pg, createdb=True)
    at_version_0004(db, migrations)
    counts = table_counts(db.url)
    run = start_pgwarden(
        "migrate", db.url, "--dir", migrations, "--backup-to", tmp_path / "backups", "--rollback", "restore",
        "--json", pause_at=point,
    )  # fmt: skip
    assert run.stderr is not None
    seen = []
    for line in run.stderr:  # progress on stderr, until the rollback stops at the point
        seen.append(line)
        if f"paused at {point}" in line:
            break
    else:
        raise AssertionError(f"pgwarden never paused at {point}: {''.join(seen)}")
    run.send_signal(signal.SIGTERM)
    stdout, stderr = run.communicate(timeout=120)
    report = json_report(CompletedProcess(run.args, run.returncode, stdout, stderr))

    assert run.returncode == 1, stderr
    assert report["outcome"] == "Failed"
    rollback = report["rollback"]
    assert rollback["outcome"] == "Failed"
    assert "SIGTERM" in rollback["message"] and f"{db.name} {state}" in rollback["message"], rollback
    assert database_level(db)["allowConnections"] is True
    assert history_versions(db.url) == ["0001", "0002", "0003", "0004", "0005"]
    assert table_counts(db.url) == counts
    assert databases(pg, f"{db.name}\\_pgw\\_%") == [], rollback["message"]


# --- the parts, without the command line ----------------------------------------------------------------


def test_scratch_and_failed_names_fit_postgresqls_63_bytes_without_splitting_a_character() -> None:
    long = "é" * 40  # 80 bytes
    names = names_for(long, datetime(2026, 11, 30, 4, 5, 6, tzinfo=UTC), "a1b2c3")

    assert names.failed.endswith("_pgw_failed_20261130_040506")
    assert names.scratch.endswith("_pgw_restore_a1b2c3")
    for name in (names.failed, names.scratch):
        assert len(name.encode()) <= 63
        assert name.startswith("é")
    assert (
        names_for("shop", datetime(2026, 1, 1, tzinfo=UTC), "x").failed == "shop_pgw_failed_20260101_000000"
    )


def test_the_failed_name_never_takes_one_that_exists() -> None:
    taken = {"shop_pgw_failed_20260101_000000", "shop_pgw_failed_20260101_000000_2"}

    names = names_for("shop", datetime(2026, 1, 1, tzinfo=UTC), "x", taken=taken.__contains__)

    assert names.failed == "shop_pgw_failed_20260101_000000_3"


@pytest.mark.parametrize(
    ("stored", "elements"),
    [
        ('shop, "$user", public', ["shop", "$user", "public"]),
        ('"a ""quoted"" schema"', ['a "quoted" schema']),
        ("8MB", ["8MB"]),
        ("ISO, MDY", ["ISO", "MDY"]),
        ('x"y', None),
        ('"unterminated', None),
    ],
)
def test_list_settings_split_as_postgresql_stores_them(stored: str, elements: list[str] | None) -> None:
    assert split_list_setting(stored) == elements


def facts(**changes: Any) -> RoleFacts:
    base = RoleFacts(
        role="app", superuser=False, createdb=True, database="shop", owner="app", acts_as_owner=True
    )
    return dataclasses.replace(base, **changes)


def test_a_role_that_can_create_and_owns_everything_lacks_nothing() -> None:
    assert missing_for_restore(facts()) == []
    assert missing_for_restore(facts(superuser=True, createdb=False, acts_as_owner=False)) == []


def test_each_missing_privilege_is_named_with_the_statement_that_grants_it() -> None:
    missing = missing_for_restore(
        facts(
            createdb=False,
            acts_as_owner=False,
            owner="Admin",
            foreign_owners=("etl",),
            untrusted_extensions=("plpython3u",),
        )
    )

    assert len(missing) == 4
    assert "ALTER ROLE app CREATEDB" in missing[0]
    assert 'ALTER DATABASE shop OWNER TO app, or GRANT "Admin" TO app' in missing[1]
    assert "GRANT etl TO app" in missing[2]
    assert "plpython3u" in missing[3] and "superuser" in missing[3]


def test_the_safety_net_restores_beside_the_database_on_the_oldest_and_newest_servers(
    any_pg: LocalPostgres, tmp_path: Path
) -> None:
    db = owned_database(any_pg, createdb=True)
    execute(db.url, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100)")
    # A trusted extension, created by the owner itself: the restore creates it again as that role.
    execute(db.url, "CREATE EXTENSION citext; CREATE TABLE emails (address citext PRIMARY KEY)")
    execute(db.url, "INSERT INTO emails VALUES ('A@example.com')")
    execute(db.url, f'ALTER DATABASE {db.name} SET search_path = "$user", public')
    net = BackupSafetyNet(db.url, str(tmp_path / "backups"))
    net.preflight(RollbackStrategy.RESTORE)
    backup = net.take()
    execute(db.url, "DELETE FROM t WHERE id > 10; CREATE TABLE after_the_backup (id int)")
    said: list[str] = []

    result = net.restore(backup, said.append)

    assert result.outcome == RollbackOutcome.SUCCEEDED, result.message
    assert table_counts(db.url) == {"public.emails": 1, "public.t": 100}
    assert query(db.url, "SELECT count(*) FROM emails WHERE address = 'a@EXAMPLE.com'") == 1
    (failed,) = databases(any_pg, f"{db.name}\\_pgw\\_failed\\_%")
    assert table_counts(any_pg.url(failed)) == {
        "public.after_the_backup": 0,
        "public.emails": 1,
        "public.t": 10,
    }
    assert failed in (result.message or "")
    assert query(db.url, "SHOW search_path") == '"$user", public'
    assert databases(any_pg, f"{db.name}\\_pgw\\_restore\\_%") == []
    assert any("swapping" in line for line in said)


def test_an_extension_only_a_superuser_may_create_is_refused_up_front(
    pg: LocalPostgres, tmp_path: Path
) -> None:
    db = owned_database(pg, createdb=True)
    execute(db.admin_url, "CREATE EXTENSION bloom")

    with pytest.raises(BadInput) as refused:
        BackupSafetyNet(db.url, str(tmp_path / "backups")).preflight(RollbackStrategy.RESTORE)

    assert "bloom" in str(refused.value) and "superuser" in str(refused.value)
    assert not (tmp_path / "backups").exists() or not any((tmp_path / "backups").iterdir())
