"""A target's drift, read only, against a real server: its live schema against what its last migration run
recorded, and against what a reference database recorded at the same version."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from pgwarden_testing.localpg import LocalPostgres

from pgwarden.api.fleet_drift import DriftVerdict
from pgwarden.api.reports import Outcome
from pgwarden.engine.migrate.drift_check import judge, read_schema
from pgwarden.engine.migrate.migrate import MigrateOptions, migrate
from pgwarden.errors import PgwardenError

FILES = {
    "0001_invoices.sql": "CREATE TABLE invoices (id int PRIMARY KEY, total numeric NOT NULL DEFAULT 0);",
    "0002_index.sql": "CREATE INDEX invoices_total ON invoices (total);",
}


@pytest.fixture
def migrations(tmp_path: Path) -> Path:
    for name, sql in FILES.items():
        (tmp_path / name).write_text(sql)
    return tmp_path


def migrated(pg: LocalPostgres, directory: Path) -> str:
    url = pg.create_database()
    assert migrate(url, MigrateOptions(directory=directory)).outcome == Outcome.SUCCEEDED
    return url


def pgwarden_rows(url: str) -> tuple[object, ...]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM pgwarden.schema_history), (SELECT count(*) FROM pgwarden.schema_state)"
        ).fetchone()
        assert row is not None
        return tuple(row)


def test_a_database_as_its_last_run_left_it_is_in_sync(pg: LocalPostgres, migrations: Path) -> None:
    url = migrated(pg, migrations)
    before = pgwarden_rows(url)
    verdict, differences = judge("tenant-1", read_schema(url), None)
    assert (verdict.verdict, verdict.version, differences) == (DriftVerdict.IN_SYNC, "0002", [])
    assert pgwarden_rows(url) == before, "a check writes nothing"


def test_a_column_added_by_hand_is_drift_since_the_last_run_named_in_one_line(
    pg: LocalPostgres, migrations: Path
) -> None:
    url = migrated(pg, migrations)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER TABLE invoices ADD COLUMN note text")
        conn.execute("DROP INDEX invoices_total")
    verdict, differences = judge("tenant-3", read_schema(url), None)
    assert verdict.verdict == DriftVerdict.DRIFTED and verdict.against == "lastRun"
    assert verdict.differences == 2 == len(differences)
    assert {(d.kind, d.object) for d in differences} == {
        ("column", "public.invoices.note"),
        ("index", "public.invoices_total"),
    }
    assert verdict.message is not None
    assert "since its last migration run (version 0002)" in verdict.message
    assert "public.invoices.note added since the last run" in verdict.message


def test_a_database_unlike_the_reference_at_the_same_version_has_drifted_even_if_its_run_recorded_it(
    pg: LocalPostgres, migrations: Path, tmp_path: Path
) -> None:
    """A change made before the migration ran is in what that run recorded: only the reference sees it."""
    reference = migrated(pg, migrations)
    url = pg.create_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE audit (at timestamptz)")  # there before pgwarden ever ran
    assert migrate(url, MigrateOptions(directory=migrations)).outcome == Outcome.SUCCEEDED
    recorded = read_schema(reference).recorded
    assert recorded is not None

    verdict, differences = judge("tenant-2", read_schema(url), ("tenant-1", recorded))
    assert verdict.verdict == DriftVerdict.DRIFTED and verdict.against == "tenant-1"
    assert [(d.kind, d.object, d.detail) for d in differences] == [
        ("table", "public.audit", "not in tenant-1")
    ]
    assert verdict.message is not None and "from tenant-1 at the same version" in verdict.message
    # The reference itself, and a target at another version, are not compared with it.
    assert (
        judge("tenant-1", read_schema(reference), ("tenant-1", recorded))[0].verdict == DriftVerdict.IN_SYNC
    )
    older = tmp_path / "older"
    older.mkdir()
    (older / "0001_invoices.sql").write_text(FILES["0001_invoices.sql"])
    behind = migrated(pg, older)
    assert judge("tenant-4", read_schema(behind), ("tenant-1", recorded))[0].verdict == DriftVerdict.IN_SYNC


def test_a_database_pgwarden_never_migrated_is_not_checked_and_not_written_to(pg: LocalPostgres) -> None:
    url = pg.create_database()
    verdict, _ = judge("tenant-9", read_schema(url), None)
    assert verdict.verdict == DriftVerdict.NOT_MIGRATED
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT to_regnamespace('pgwarden')").fetchone() == (None,)


def test_a_target_locked_by_a_long_migration_is_read_or_named_busy_never_waited_on_for_ever(
    pg: LocalPostgres, migrations: Path
) -> None:
    """Someone's ALTER holds ACCESS EXCLUSIVE on a table for minutes: the read-only check does not queue
    behind it (and so block that table's readers behind itself); it reads the catalogs or says why not."""
    url = migrated(pg, migrations)
    with psycopg.connect(url) as holder:
        holder.execute("LOCK TABLE invoices IN ACCESS EXCLUSIVE MODE")
        with ThreadPoolExecutor(1) as pool:
            reading = pool.submit(read_schema, url)
            try:
                live = reading.result(timeout=30)
            except PgwardenError as exc:
                assert "lock" in exc.message, exc.message
            else:
                verdict, differences = judge("tenant-busy", live, None)
                assert (verdict.verdict, differences) == (DriftVerdict.IN_SYNC, [])
            finally:
                holder.rollback()
