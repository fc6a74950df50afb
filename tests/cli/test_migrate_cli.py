"""`pgwarden migrate` from the outside (DESIGN.md 4): the real console script, its exit codes, its JSON
report, its refusals, and what it leaves in the database (read back with psycopg, never from the report).

Exit codes: 0 success, 1 the run failed (after rollback), 2 input refused and nothing changed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest
from helpers import (
    DEMO,
    clone_database,
    execute,
    history,
    json_report,
    migrations_dir,
    query,
    run_pgwarden,
    schemas,
    start_pgwarden,
    table_counts,
)
from pgwarden_testing.localpg import LocalPostgres, free_port

DEMO_VERSIONS = ["0001", "0002", "0003", "0004", "0005", "0006"]
DEMO_UPS = sorted(p for p in DEMO.glob("*.sql") if not p.name.endswith(".down.sql"))

# A migration after the demo's last one: a new table and one new customer.
NOTES = """CREATE TABLE shop.notes (id int PRIMARY KEY, body text NOT NULL);
INSERT INTO shop.customers (email, name) VALUES ('new@example.com', 'New customer');
"""
# Breaks at its second statement: 'lost' violates the CHECK on orders.status.
BROKEN = """CREATE TABLE shop.audit (id int);
UPDATE shop.orders SET status = 'lost' WHERE id = 1;
"""


@dataclass(frozen=True)
class DemoRun:
    url: str
    result: CompletedProcess[str]


@pytest.fixture(scope="module")
def demo_run(pg: LocalPostgres) -> DemoRun:
    """The demo migrations applied once with --json to a fresh database; other tests work on copies."""
    url = pg.create_database()
    return DemoRun(url, run_pgwarden("migrate", url, "--dir", DEMO, "--json"))


@pytest.fixture
def demo_copy(pg: LocalPostgres, demo_run: DemoRun) -> str:
    """A fresh copy of a database the demo migrations were applied to (schema, 17k rows, history)."""
    assert demo_run.result.returncode == 0, demo_run.result.stderr
    return clone_database(demo_run.url, pg.url())


def migrate(url: str, directory: Path, *args: str) -> tuple[CompletedProcess[str], dict[str, Any]]:
    """`pgwarden migrate URL --dir DIR ARGS --json`: the process and its JSON report."""
    result = run_pgwarden("migrate", url, "--dir", directory, *args, "--json")
    return result, json_report(result)


def verify_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "verify.yaml"
    path.write_text(text)
    return path


# --- a successful run and its report ----------------------------------------------------------------


def test_json_report_of_a_first_run_names_what_was_applied_and_counts_before_and_after(
    demo_run: DemoRun,
) -> None:
    result = demo_run.result
    assert result.returncode == 0, result.stderr
    report = json_report(result)  # one document on stdout, nothing else there
    live = table_counts(demo_run.url)

    assert report["outcome"] == "Succeeded"
    assert report["tables"] == {"before": 0, "after": 4} == {"before": 0, "after": len(live)}
    assert report["rows"] == {"before": 0, "after": sum(live.values())}
    assert sum(live.values()) > 0
    assert [a["version"] for a in report["applied"]] == DEMO_VERSIONS
    for applied, path in zip(report["applied"], DEMO_UPS, strict=True):
        assert applied["description"] == path.stem[5:].replace("_", " ")
        assert applied["checksum"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert isinstance(applied["durationMs"], int) and applied["durationMs"] >= 0
    assert report["pending"] == []
    assert report["verification"]["passed"] is True
    assert isinstance(report["verification"]["checks"], list)
    assert all(check["passed"] for check in report["verification"]["checks"])
    assert history(demo_run.url) == [(v, "SQL", True) for v in DEMO_VERSIONS]


def test_a_second_run_applies_nothing_and_reports_nothing_pending(demo_copy: str) -> None:
    before = table_counts(demo_copy)
    recorded = history(demo_copy)

    result, report = migrate(demo_copy, DEMO)

    assert result.returncode == 0, result.stderr
    assert report["outcome"] == "Succeeded"
    assert report["applied"] == [] and report["pending"] == []
    assert report["tables"] == {"before": len(before), "after": len(before)}
    assert report["rows"] == {"before": sum(before.values()), "after": sum(before.values())}
    assert report["verification"]["passed"] is True
    assert report["drift"] == {"detected": False, "differences": []}
    assert history(demo_copy) == recorded
    assert table_counts(demo_copy) == before


def test_human_output_of_an_up_to_date_database_says_so(demo_copy: str) -> None:
    result = run_pgwarden("migrate", demo_copy, "--dir", DEMO)
    assert result.returncode == 0, result.stderr
    assert "Succeeded" in result.stdout
    assert "up to date" in result.stdout


def test_plan_prints_the_plan_and_changes_nothing(pg: LocalPostgres) -> None:
    url = pg.create_database()

    human = run_pgwarden("migrate", url, "--dir", DEMO, "--plan")
    result, report = migrate(url, DEMO, "--plan")

    assert human.returncode == 0, human.stderr
    for path in DEMO_UPS:
        assert path.stem[:4] in human.stdout and path.stem[5:].replace("_", " ") in human.stdout
    assert result.returncode == 0, result.stderr
    assert report["outcome"] == "Succeeded"
    assert report["pending"] == DEMO_VERSIONS
    assert report["applied"] == []
    assert schemas(url) == {"public"}, "the plan created a schema (pgwarden's history or the demo's)"
    assert table_counts(url) == {}


# --- --target and --baseline ------------------------------------------------------------------------


def test_target_applies_only_up_to_that_version(pg: LocalPostgres) -> None:
    url = pg.create_database()

    result, report = migrate(url, DEMO, "--target", "0003")

    assert result.returncode == 0, result.stderr
    assert [a["version"] for a in report["applied"]] == ["0001", "0002", "0003"]
    assert [v for v, _, _ in history(url)] == ["0001", "0002", "0003"]
    assert query(url, "SELECT to_regproc('shop.recompute_order_total') IS NOT NULL") is True
    assert table_counts(url) == dict.fromkeys(
        ["shop.customers", "shop.order_lines", "shop.orders", "shop.products"], 0
    ), "0004 (seed) ran"
    assert query(url, "SELECT to_regclass('shop.orders_created_at_idx')") is None, "0005 ran"


def test_baseline_records_objects_made_by_hand_as_applied_without_running_them(pg: LocalPostgres) -> None:
    url = pg.create_database()
    for path in DEMO_UPS[:2]:  # 0001 and 0002 made by hand, as on a database that predates pgwarden
        execute(url, path.read_text())
    execute(url, "INSERT INTO shop.customers (email, name) VALUES ('kept@example.com', 'Made by hand')")

    # Running 0001 or 0002 again would fail (CREATE TABLE of tables that exist).
    result, report = migrate(url, DEMO, "--baseline", "0002", "--target", "0003")

    assert result.returncode == 0, result.stderr
    assert report["outcome"] == "Succeeded"
    assert [a["version"] for a in report["applied"]] == ["0003"]
    assert [(v, ok) for v, _, ok in history(url)] == [("0001", True), ("0002", True), ("0003", True)]
    assert query(url, "SELECT count(*) FROM shop.customers WHERE email = 'kept@example.com'") == 1


# --- failures and rollback --------------------------------------------------------------------------


def test_a_failing_run_is_rolled_back_and_leaves_the_database_as_it_was(
    demo_copy: str, tmp_path: Path
) -> None:
    directory = migrations_dir(
        tmp_path / "m", demo="all", extra={"0007_notes.sql": NOTES, "0008_broken.sql": BROKEN}
    )
    before, recorded = table_counts(demo_copy), history(demo_copy)

    result, report = migrate(demo_copy, directory)

    assert result.returncode == 1, result.stderr
    assert report["outcome"] == "RolledBack"
    assert report["rollback"]["strategy"] == "transaction"
    assert report["rollback"]["outcome"] == "Succeeded"
    assert report["rollback"]["message"]
    assert "0008" in report["error"]["message"]
    assert "status" in report["error"]["message"] or "check" in report["error"]["message"].lower()
    assert report["applied"] == []
    assert report["tables"] == {"before": len(before), "after": len(before)}
    assert report["rows"] == {"before": sum(before.values()), "after": sum(before.values())}
    # The database itself, not the report: same tables, same counts, same history, no shop.notes.
    assert table_counts(demo_copy) == before
    assert history(demo_copy) == recorded
    assert query(demo_copy, "SELECT to_regclass('shop.notes')") is None


def test_a_failed_first_run_leaves_not_even_the_history_schema(pg: LocalPostgres, tmp_path: Path) -> None:
    url = pg.create_database()
    divide_by_zero = "CREATE TABLE shop.audit (id int);\nSELECT 1 / 0;\n"
    directory = migrations_dir(tmp_path / "m", demo="0003", extra={"0004_broken.sql": divide_by_zero})

    result, report = migrate(url, directory)

    assert result.returncode == 1, result.stderr
    assert report["outcome"] == "RolledBack"
    assert "0004" in report["error"]["message"] and "division by zero" in report["error"]["message"]
    assert report["tables"] == {"before": 0, "after": 0}
    assert schemas(url) == {"public"}
    assert table_counts(url) == {}


# Three migrations whose down scripts write down that they ran; 0002 runs outside a transaction.
DOWN_LOGGED = {
    "0001_items.sql": "CREATE TABLE items (id int PRIMARY KEY, name text);\nINSERT INTO items VALUES (1, 'a');\n",
    "0001_items.down.sql": "-- pgwarden:allow-destructive\nDROP TABLE items;\n"
    "INSERT INTO down_log (version) VALUES ('0001');\n",
    "0002_items_name_index.sql": "-- pgwarden:no-transaction\n"
    "CREATE INDEX CONCURRENTLY items_name_idx ON items (name);\n",
    "0002_items_name_index.down.sql": "-- pgwarden:no-transaction\n"
    "DROP INDEX CONCURRENTLY items_name_idx;\nINSERT INTO down_log (version) VALUES ('0002');\n",
    "0003_more_items.sql": "CREATE TABLE more_items (id int);\nINSERT INTO items VALUES (1, 'duplicate');\n",
    "0003_more_items.down.sql": "DROP TABLE more_items;\nINSERT INTO down_log (version) VALUES ('0003');\n",
}


def test_rollback_down_runs_the_down_scripts_of_committed_migrations_newest_first(
    pg: LocalPostgres, tmp_path: Path
) -> None:
    url = pg.create_database()
    execute(url, "CREATE TABLE down_log (n int GENERATED ALWAYS AS IDENTITY, version text)")
    directory = migrations_dir(tmp_path / "m", extra=DOWN_LOGGED)

    result, report = migrate(url, directory, "--rollback", "down")

    assert result.returncode == 1, result.stderr
    assert report["outcome"] == "RolledBack"
    assert report["rollback"]["strategy"] == "down"
    assert report["rollback"]["outcome"] == "Succeeded"
    assert report["rollback"]["message"]
    assert "0003" in report["error"]["message"]
    assert report["applied"] == []
    with_log = {"public.down_log": 2}
    assert table_counts(url) == with_log, "items or more_items survived the rollback"
    assert query(url, "SELECT string_agg(version, ',' ORDER BY n) FROM down_log") == "0002,0001"
    assert query(url, "SELECT to_regclass('public.items_name_idx')") is None
    assert history(url) == [], "history keeps rows of a run that was undone"


def test_a_failure_after_a_committed_non_transactional_group_without_down_is_reported_as_failed(
    pg: LocalPostgres, tmp_path: Path
) -> None:
    url = pg.create_database()
    execute(url, "CREATE TABLE down_log (n int GENERATED ALWAYS AS IDENTITY, version text)")
    directory = migrations_dir(tmp_path / "m", extra=DOWN_LOGGED)

    result, report = migrate(url, directory)  # default strategy: transaction

    assert result.returncode == 1, result.stderr
    # 0001 and 0002 were committed (0002 cannot run in a transaction): the database differs, and says so.
    assert report["outcome"] == "Failed"
    assert report["rollback"]["outcome"] == "Failed"
    assert "0002" in report["rollback"]["message"]
    assert [a["version"] for a in report["applied"]] == ["0001", "0002"]
    assert [v for v, _, ok in history(url) if ok] == ["0001", "0002"]
    assert query(url, "SELECT to_regclass('public.more_items')") is None
    assert query(url, "SELECT count(*) FROM down_log") == 0


def test_a_failed_concurrent_index_build_leaves_no_invalid_index_behind(
    demo_copy: str, tmp_path: Path
) -> None:
    unique_status = (
        "-- pgwarden:no-transaction\n"
        "CREATE UNIQUE INDEX CONCURRENTLY orders_status_key ON shop.orders (status);\n"
    )
    directory = migrations_dir(tmp_path / "m", demo="all", extra={"0007_unique_status.sql": unique_status})
    recorded = history(demo_copy)

    result, report = migrate(demo_copy, directory)

    assert result.returncode == 1, result.stderr
    assert report["outcome"] == "RolledBack"
    assert "0007" in report["error"]["message"]
    assert query(demo_copy, "SELECT to_regclass('shop.orders_status_key')") is None
    assert query(demo_copy, "SELECT count(*) FROM pg_index WHERE NOT indisvalid") == 0
    # A statement outside a transaction is bracketed by history rows: the attempt is recorded as failed.
    assert history(demo_copy) == [*recorded, ("0007", "SQL", False)]


# --- --verify ---------------------------------------------------------------------------------------


def test_a_failing_check_rolls_the_run_back(demo_copy: str, tmp_path: Path) -> None:
    directory = migrations_dir(tmp_path / "m", demo="all", extra={"0007_notes.sql": NOTES})
    spec = verify_file(
        tmp_path,
        """verify:
  checks:
    - name: every customer is gold
      sql: SELECT count(*) FROM shop.customers WHERE tier <> 'gold'
      equals: 0
""",
    )
    before, recorded = table_counts(demo_copy), history(demo_copy)

    result, report = migrate(demo_copy, directory, "--verify", str(spec))

    assert result.returncode == 1, result.stderr
    assert report["outcome"] == "RolledBack"
    assert report["verification"]["passed"] is False
    failed = [c for c in report["verification"]["checks"] if not c["passed"]]
    assert [c["name"] for c in failed] == ["every customer is gold"]
    assert report["applied"] == []
    assert report["error"]["message"]
    assert table_counts(demo_copy) == before
    assert history(demo_copy) == recorded
    assert query(demo_copy, "SELECT to_regclass('shop.notes')") is None


def test_expected_objects_that_exist_and_a_check_that_holds_pass(demo_copy: str, tmp_path: Path) -> None:
    directory = migrations_dir(tmp_path / "m", demo="all", extra={"0007_notes.sql": NOTES})
    spec = verify_file(
        tmp_path,
        """rowCounts: exact
expect:
  tables: [shop.notes, shop.customers]
  columns: [shop.notes.body, shop.customers.tier]
  indexes: [shop.orders_created_at_idx]
checks:
  - name: customers
    sql: SELECT count(*) FROM shop.customers
    atLeast: 2001
""",
    )

    result, report = migrate(demo_copy, directory, "--verify", str(spec))

    assert result.returncode == 0, result.stderr
    assert report["outcome"] == "Succeeded"
    assert [a["version"] for a in report["applied"]] == ["0007"]
    assert report["verification"]["passed"] is True
    names = " ".join(c["name"] for c in report["verification"]["checks"])
    for expected in ("shop.notes", "shop.notes.body", "shop.orders_created_at_idx", "customers"):
        assert expected in names
    assert query(demo_copy, "SELECT to_regclass('shop.notes') IS NOT NULL") is True


def test_an_expected_table_that_does_not_exist_fails_the_run(demo_copy: str, tmp_path: Path) -> None:
    directory = migrations_dir(tmp_path / "m", demo="all", extra={"0007_notes.sql": NOTES})
    spec = verify_file(tmp_path, "expect:\n  tables: [shop.notes, shop.nowhere]\n")

    result, report = migrate(demo_copy, directory, "--verify", str(spec))

    assert result.returncode == 1, result.stderr
    assert report["outcome"] == "RolledBack"
    assert any("shop.nowhere" in c["name"] and not c["passed"] for c in report["verification"]["checks"])
    assert query(demo_copy, "SELECT to_regclass('shop.notes')") is None


# Removes the order lines of quantity 3 (a qualified DELETE: not destructive, but it loses rows).
PRUNE_LINES = "DELETE FROM shop.order_lines WHERE quantity = 3;\n"


def test_allow_row_loss_in_lets_a_delete_that_removes_rows_through(demo_copy: str, tmp_path: Path) -> None:
    directory = migrations_dir(tmp_path / "m", demo="all", extra={"0007_prune_lines.sql": PRUNE_LINES})
    spec = verify_file(tmp_path, "verify:\n  allowRowLossIn: [shop.order_lines]\n")
    before = table_counts(demo_copy)
    doomed = query(demo_copy, "SELECT count(*) FROM shop.order_lines WHERE quantity = 3")
    assert doomed > 0

    result, report = migrate(demo_copy, directory, "--verify", str(spec))

    assert result.returncode == 0, result.stderr
    assert report["outcome"] == "Succeeded"
    assert report["rows"] == {"before": sum(before.values()), "after": sum(before.values()) - doomed}
    assert table_counts(demo_copy)["shop.order_lines"] == before["shop.order_lines"] - doomed


def test_without_allow_row_loss_in_the_same_delete_fails_for_row_loss(demo_copy: str, tmp_path: Path) -> None:
    directory = migrations_dir(tmp_path / "m", demo="all", extra={"0007_prune_lines.sql": PRUNE_LINES})
    before, recorded = table_counts(demo_copy), history(demo_copy)

    result, report = migrate(demo_copy, directory)

    assert result.returncode == 1, result.stderr
    assert report["outcome"] == "RolledBack"
    assert report["verification"]["passed"] is False
    assert "shop.order_lines" in report["error"]["message"]
    assert "allowRowLossIn" in report["error"]["message"]
    assert table_counts(demo_copy) == before
    assert history(demo_copy) == recorded


# --- refusals: exit 2, nothing changed, a message that says what to do --------------------------------

DROP_NAME = "ALTER TABLE shop.customers DROP COLUMN name;\n"


def assert_refused(result: CompletedProcess[str], *hints: str) -> None:
    """Exit 2, and stderr says what to do (each hint appears, case-insensitively)."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    message = result.stderr.lower()
    for hint in hints:
        assert hint.lower() in message, f"{hint!r} not in: {result.stderr}"


def assert_untouched(url: str) -> None:
    assert schemas(url) == {"public"}, "a refused run created a schema"
    assert table_counts(url) == {}


def test_a_destructive_statement_is_refused_without_permission(pg: LocalPostgres, tmp_path: Path) -> None:
    url = pg.create_database()
    directory = migrations_dir(tmp_path / "m", demo="0003", extra={"0004_drop_name.sql": DROP_NAME})

    result = run_pgwarden("migrate", url, "--dir", directory)
    as_json = run_pgwarden("migrate", url, "--dir", directory, "--json")

    assert_refused(result, "0004_drop_name.sql", "--allow-destructive", "pgwarden:allow-destructive")
    assert as_json.returncode == 2
    assert "0004_drop_name.sql" in json_report(as_json)["error"]["message"]
    assert_untouched(url)


def test_a_destructive_statement_runs_with_allow_destructive(pg: LocalPostgres, tmp_path: Path) -> None:
    url = pg.create_database()
    directory = migrations_dir(tmp_path / "m", demo="0003", extra={"0004_drop_name.sql": DROP_NAME})

    result, report = migrate(url, directory, "--allow-destructive")

    assert result.returncode == 0, result.stderr
    assert [a["version"] for a in report["applied"]][-1] == "0004"
    assert (
        query(
            url,
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'shop.customers'::regclass AND attname = 'name' AND NOT attisdropped",
        )
        == 0
    )


def test_a_destructive_statement_runs_with_the_file_directive(pg: LocalPostgres, tmp_path: Path) -> None:
    url = pg.create_database()
    allowed = "-- pgwarden:allow-destructive\n" + DROP_NAME
    directory = migrations_dir(tmp_path / "m", demo="0003", extra={"0004_drop_name.sql": allowed})

    result, report = migrate(url, directory)

    assert result.returncode == 0, result.stderr
    assert [a["version"] for a in report["applied"]][-1] == "0004"
    assert (
        query(
            url,
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'shop.customers'::regclass AND attname = 'name' AND NOT attisdropped",
        )
        == 0
    )


def test_an_applied_migration_whose_file_was_edited_is_refused(pg: LocalPostgres, tmp_path: Path) -> None:
    url = pg.create_database()
    directory = migrations_dir(tmp_path / "m", demo="0003")
    first = run_pgwarden("migrate", url, "--dir", directory)
    assert first.returncode == 0, first.stderr
    before, recorded = table_counts(url), history(url)
    edited = directory / "0002_products_and_orders.sql"
    edited.write_text(edited.read_text() + "\nCREATE TABLE shop.sneaky (id int);\n")
    (directory / "0004_notes.sql").write_text("CREATE TABLE shop.notes (id int);\n")

    result = run_pgwarden("migrate", url, "--dir", directory)

    assert_refused(result, "0002_products_and_orders.sql", "changed", "new migration")
    assert table_counts(url) == before
    assert history(url) == recorded


@pytest.mark.parametrize("bad_name", ["0004-notes.sql", "notes.sql", "V4notes.sql"])
def test_a_malformed_file_name_is_refused(pg: LocalPostgres, tmp_path: Path, bad_name: str) -> None:
    url = pg.create_database()
    directory = migrations_dir(
        tmp_path / "m", demo="0003", extra={bad_name: "CREATE TABLE notes (id int);\n"}
    )

    result = run_pgwarden("migrate", url, "--dir", directory)

    assert_refused(result, bad_name, "<version>_<description>.sql")
    assert_untouched(url)


BOTH_COMPARISONS = """checks:
  - name: customers
    sql: SELECT count(*) FROM shop.customers
    equals: 1
    atLeast: 1
"""


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        pytest.param("checks: [name: x\n  - : :\n", "verify.yaml", id="not-yaml"),
        pytest.param(BOTH_COMPARISONS, "atLeast", id="equals-and-atLeast"),
        pytest.param("checks:\n  - name: no sql\n    equals: 1\n", "sql", id="check-without-sql"),
        pytest.param("rowCount: exact\n", "rowCount", id="misspelt-field"),
    ],
)
def test_an_invalid_verify_file_is_refused(pg: LocalPostgres, tmp_path: Path, text: str, hint: str) -> None:
    url = pg.create_database()
    spec = verify_file(tmp_path, text)

    result = run_pgwarden("migrate", url, "--dir", DEMO, "--verify", spec)

    assert_refused(result, "--verify", hint)
    assert_untouched(url)


def test_rollback_restore_without_backup_to_is_refused(pg: LocalPostgres) -> None:
    url = pg.create_database()
    result = run_pgwarden("migrate", url, "--dir", DEMO, "--rollback", "restore")
    assert_refused(result, "--backup-to")
    assert_untouched(url)


def test_a_directory_that_does_not_exist_is_refused(pg: LocalPostgres, tmp_path: Path) -> None:
    url = pg.create_database()
    missing = tmp_path / "no-such-dir"
    result = run_pgwarden("migrate", url, "--dir", missing)
    assert_refused(result, str(missing))
    assert_untouched(url)


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--no-such-flag"], id="unknown-flag"),
        pytest.param(["--rollback", "sometimes"], id="unknown-strategy"),
        pytest.param([], id="no-dir"),
    ],
)
def test_bad_flags_are_refused(pg: LocalPostgres, args: list[str]) -> None:
    url = pg.create_database()
    extra = [] if not args or args[0] == "--dir" else ["--dir", str(DEMO)]
    result = run_pgwarden("migrate", url, *extra, *args)
    assert result.returncode == 2, result.stderr
    assert "usage:" in result.stderr
    assert_untouched(url)


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        pytest.param(["--target", "latest"], "latest", id="target-not-a-version"),
        pytest.param(["--baseline", "v-two"], "v-two", id="baseline-not-a-version"),
    ],
)
def test_a_version_that_is_not_a_version_is_refused(pg: LocalPostgres, args: list[str], hint: str) -> None:
    url = pg.create_database()
    result = run_pgwarden("migrate", url, "--dir", DEMO, *args)
    assert_refused(result, hint, "digits")
    assert_untouched(url)


def test_a_pending_migration_older_than_the_newest_applied_one_is_refused(
    pg: LocalPostgres, tmp_path: Path
) -> None:
    url = pg.create_database()
    directory = migrations_dir(tmp_path / "m", demo="0003")
    assert run_pgwarden("migrate", url, "--dir", directory).returncode == 0
    before, recorded = table_counts(url), history(url)
    (directory / "0002.5_late.sql").write_text("CREATE TABLE shop.late (id int);\n")

    result = run_pgwarden("migrate", url, "--dir", directory)

    assert_refused(result, "0002.5_late.sql", "renumber")
    assert table_counts(url) == before
    assert history(url) == recorded


# --- where the database comes from ------------------------------------------------------------------


def test_pg_environment_variables_stand_in_for_the_url(pg: LocalPostgres) -> None:
    url = pg.create_database()
    directory = DEMO
    result = run_pgwarden(
        "migrate", "--dir", directory, "--target", "0002", "--json", env=pg.env(url.rsplit("/", 1)[1])
    )
    assert result.returncode == 0, result.stderr
    assert [a["version"] for a in json_report(result)["applied"]] == ["0001", "0002"]
    assert [v for v, _, _ in history(url)] == ["0001", "0002"]


def test_no_url_and_no_pg_environment_is_refused() -> None:
    result = run_pgwarden("migrate", "--dir", DEMO)
    assert_refused(result, "DATABASE_URL")


@pytest.mark.parametrize("via", ["url", "environment"])
def test_a_connection_failure_exits_1_without_the_password(pg: LocalPostgres, via: str) -> None:
    port = str(free_port())  # nothing listens there
    if via == "url":
        url = pg.url("postgres").replace(f":{pg.port}/", f":{port}/")
        result = run_pgwarden("migrate", url, "--dir", DEMO)
        as_json = run_pgwarden("migrate", url, "--dir", DEMO, "--json")
    else:
        env = {**pg.env(), "PGPORT": port}
        result = run_pgwarden("migrate", "--dir", DEMO, env=env)
        as_json = run_pgwarden("migrate", "--dir", DEMO, "--json", env=env)

    assert result.returncode == 1, result.stderr
    assert port in result.stderr
    assert as_json.returncode == 1
    report = json_report(as_json)
    assert report["outcome"] == "Failed"
    assert report["error"]["message"]
    for output in (result.stdout, result.stderr, as_json.stdout, as_json.stderr):
        assert pg.password not in output


# --- concurrency and drift --------------------------------------------------------------------------


def test_two_concurrent_runs_apply_each_migration_exactly_once(pg: LocalPostgres) -> None:
    url = pg.create_database()

    first = start_pgwarden("migrate", url, "--dir", DEMO, "--json")
    second = start_pgwarden("migrate", url, "--dir", DEMO, "--json")
    results = [
        CompletedProcess(p.args, p.returncode, out, err)
        for p in (first, second)
        for out, err in [p.communicate(timeout=180)]
    ]

    for result in results:
        assert result.returncode == 0, result.stderr
    applied = [[a["version"] for a in json_report(r)["applied"]] for r in results]
    assert sorted(applied[0] + applied[1]) == DEMO_VERSIONS, applied
    assert [v for v, _, _ in history(url)] == DEMO_VERSIONS


def test_a_change_made_by_hand_between_runs_is_reported_as_drift(demo_copy: str) -> None:
    execute(demo_copy, "ALTER TABLE shop.customers ADD COLUMN nickname text")

    result, report = migrate(demo_copy, DEMO)
    human = run_pgwarden("migrate", demo_copy, "--dir", DEMO)

    assert result.returncode == 0, result.stderr
    assert report["drift"]["detected"] is True
    named = [d for d in report["drift"]["differences"] if "nickname" in d["object"]]
    assert named, report["drift"]
    assert named[0]["kind"] == "column"
    assert "nickname" in human.stdout


def test_json_report_of_a_first_run_reports_no_drift(demo_run: DemoRun) -> None:
    report = json_report(demo_run.result)
    assert report["drift"] == {"detected": False, "differences": []}
