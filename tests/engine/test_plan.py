"""Planning a run from files and history: what is pending, how it is grouped, and what is refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pgwarden.api.policy import TransactionMode
from pgwarden.engine.migrate.files import InvalidVersion, MigrationFile, load_migrations
from pgwarden.engine.migrate.history import statements_digest
from pgwarden.engine.migrate.plan import (
    AppliedMigration,
    DestructiveStatements,
    EditedMigration,
    MigrationPlan,
    NonTransactionalMigration,
    OutOfOrderMigration,
    PlanRefused,
    Resume,
    plan_migrations,
)

Make = Callable[[dict[str, str]], tuple[MigrationFile, ...]]

CONCURRENT_INDEX = "CREATE INDEX CONCURRENTLY orders_created_idx ON orders (created_at);"


@pytest.fixture
def make(tmp_path: Path) -> Make:
    """Write migration files and load them."""

    def make(files: dict[str, str]) -> tuple[MigrationFile, ...]:
        for name, sql in files.items():
            (tmp_path / name).write_text(sql)
        return load_migrations(tmp_path)

    return make


def applied(*files: MigrationFile) -> list[AppliedMigration]:
    return [AppliedMigration(f.version, f.description, f.checksum, success=True) for f in files]


def groups(plan: MigrationPlan) -> list[list[tuple[str, bool]]]:
    return [[(s.file.version, s.runs_in_transaction) for s in group] for group in plan.groups()]


FOUR = {
    "0001_a.sql": "CREATE TABLE a (id int);",
    "0002_b.sql": "CREATE TABLE b (id int);",
    "0003_c.sql": "CREATE TABLE c (id int);",
    "0004_d.sql": "CREATE TABLE d (id int);",
}


# Pending, applied, target, baseline


def test_a_fresh_database_gets_every_migration_in_version_order(make: Make) -> None:
    files = make({"10_ten.sql": "SELECT 10;", "2_two.sql": "SELECT 2;", "1_one.sql": "SELECT 1;"})
    plan = plan_migrations(files, [])
    assert plan.pending == ("1", "2", "10")
    assert plan.already_applied == ()
    assert plan.current_version is None
    assert not plan.refused


def test_applied_migrations_are_skipped(make: Make) -> None:
    files = make(FOUR)
    plan = plan_migrations(files, applied(*files[:2]))
    assert plan.pending == ("0003", "0004")
    assert plan.already_applied == ("0001", "0002")
    assert plan.current_version == "0002"


def test_history_versions_match_files_numerically(make: Make) -> None:
    files = make(FOUR)
    history = [AppliedMigration("1", "a", files[0].checksum, success=True)]
    assert plan_migrations(files, history).pending == ("0002", "0003", "0004")


def test_a_target_stops_the_run_at_that_version(make: Make) -> None:
    files = make(FOUR)
    assert plan_migrations(files, [], target="2").pending == ("0001", "0002")
    assert plan_migrations(files, [], target="0003").pending == ("0001", "0002", "0003")


def test_a_target_below_the_applied_version_does_nothing_and_says_so(make: Make) -> None:
    files = make(FOUR)
    plan = plan_migrations(files, applied(*files[:3]), target="1")
    assert plan.pending == ()
    assert not plan.refused
    assert any("only migrates up" in w for w in plan.warnings)


def test_versions_up_to_the_baseline_are_recorded_not_run(make: Make) -> None:
    files = make(FOUR)
    plan = plan_migrations(files, [], baseline="2")
    assert [f.version for f in plan.baselined] == ["0001", "0002"]
    assert plan.pending == ("0003", "0004")


def test_a_baseline_does_not_rerecord_what_the_history_already_has(make: Make) -> None:
    files = make(FOUR)
    plan = plan_migrations(files, applied(files[0]), baseline="2")
    assert [f.version for f in plan.baselined] == ["0002"]
    assert plan.pending == ("0003", "0004")


def test_baseline_and_target_together(make: Make) -> None:
    files = make(FOUR)
    plan = plan_migrations(files, [], baseline="1", target="3")
    assert [f.version for f in plan.baselined] == ["0001"]
    assert plan.pending == ("0002", "0003")


def test_a_target_or_baseline_that_is_not_a_version_is_bad_input(make: Make) -> None:
    files = make(FOUR)
    with pytest.raises(InvalidVersion, match="target 'latest' is not a version"):
        plan_migrations(files, [], target="latest")
    with pytest.raises(InvalidVersion, match="baseline"):
        plan_migrations(files, [], baseline="v1x")


def test_a_failed_history_row_is_retried_with_a_warning(make: Make) -> None:
    files = make(FOUR)
    history = [*applied(files[0]), AppliedMigration("0002", "b", files[1].checksum, success=False)]
    plan = plan_migrations(files, history)
    assert plan.pending == ("0002", "0003", "0004")
    assert plan.warnings == ("0002_b.sql failed on an earlier run and will be retried",)


def test_the_last_history_row_of_a_version_counts(make: Make) -> None:
    files = make(FOUR)
    history = [AppliedMigration("0001", "a", files[0].checksum, success=False), *applied(files[0])]
    plan = plan_migrations(files, history)
    assert plan.pending == ("0002", "0003", "0004")
    assert plan.warnings == ()


# Refusals and warnings about history


def test_an_applied_migration_whose_file_changed_is_refused(make: Make) -> None:
    files = make(FOUR)
    history = [AppliedMigration("0001", "a", "0" * 64, success=True)]
    plan = plan_migrations(files, history)
    (refusal,) = plan.refusals
    assert refusal == EditedMigration("0001_a.sql", "0001", "0" * 64, files[0].checksum)
    assert "0001_a.sql (version 0001) was changed after it was applied" in refusal.message
    assert "restore the original file and put the change in a new migration" in refusal.message
    with pytest.raises(PlanRefused, match="was changed after it was applied"):
        plan.raise_if_refused()


def test_an_applied_version_without_its_file_is_a_warning_not_a_refusal(make: Make) -> None:
    files = make(FOUR)
    history = [*applied(*files), AppliedMigration("0005", "e", "abc", success=True)]
    plan = plan_migrations(files, history)
    assert not plan.refused
    assert plan.warnings == (
        "version 0005 (e) is recorded as applied but its file is missing from the migration directory",
    )


def test_a_pending_migration_older_than_the_newest_applied_is_refused(make: Make) -> None:
    files = make(FOUR)
    plan = plan_migrations(files, applied(files[0], files[2]))
    (refusal,) = plan.refusals
    assert refusal == OutOfOrderMigration("0002_b.sql", "0002", "0003")
    assert "renumber it above 0003" in refusal.message


def test_the_plan_is_refused_before_anything_runs_when_any_check_fails(make: Make) -> None:
    files = make(FOUR)
    plan = plan_migrations(files, [AppliedMigration("0003", "c", "x", success=True)])
    with pytest.raises(PlanRefused) as raised:
        plan.raise_if_refused()
    assert [type(r) for r in raised.value.refusals] == [
        EditedMigration,
        OutOfOrderMigration,
        OutOfOrderMigration,
    ]


# Transaction grouping


MIXED = {
    "0001_a.sql": "CREATE TABLE orders (id int, created_at timestamptz);",
    "0002_b.sql": "ALTER TABLE orders ADD COLUMN note text;",
    "0003_index.sql": f"-- pgwarden:no-transaction\n{CONCURRENT_INDEX}",
    "0004_c.sql": "CREATE TABLE c (id int);",
    "0005_d.sql": "CREATE TABLE d (id int);",
}


def test_auto_runs_everything_in_one_transaction_when_it_can(make: Make) -> None:
    plan = plan_migrations(make(FOUR), [], mode=TransactionMode.AUTO)
    assert groups(plan) == [[("0001", True), ("0002", True), ("0003", True), ("0004", True)]]


def test_auto_splits_the_run_around_a_migration_that_cannot_run_in_a_transaction(make: Make) -> None:
    plan = plan_migrations(make(MIXED), [], mode=TransactionMode.AUTO)
    assert groups(plan) == [
        [("0001", True), ("0002", True)],
        [("0003", False)],
        [("0004", True), ("0005", True)],
    ]
    assert [s.transaction_group for s in plan.steps] == [1, 1, 2, 3, 3]


def test_auto_detects_a_non_transactional_statement_without_the_directive(make: Make) -> None:
    files = make({"0001_a.sql": "SELECT 1;", "0002_index.sql": CONCURRENT_INDEX, "0003_c.sql": "SELECT 3;"})
    plan = plan_migrations(files, [])
    assert groups(plan) == [[("0001", True)], [("0002", False)], [("0003", True)]]
    assert plan.warnings == ()


def test_a_mixed_file_that_cannot_run_in_a_transaction_runs_statement_by_statement(make: Make) -> None:
    files = make({"0001_mixed.sql": f"CREATE TABLE orders (created_at timestamptz);\n{CONCURRENT_INDEX}"})
    plan = plan_migrations(files, [])
    assert plan.refusals == ()
    assert groups(plan) == [[("0001", False)]]
    assert "outside a transaction, statement by statement (2)" in "\n".join(plan.describe())


def test_a_no_transaction_file_of_several_statements_is_planned_statement_by_statement(make: Make) -> None:
    files = make({"0001_vacuum.sql": "-- pgwarden:no-transaction\nSELECT 1;\nSELECT 2;"})
    plan = plan_migrations(files, [])
    assert plan.refusals == ()
    assert plan.steps[0].resume is None


def test_a_one_statement_no_transaction_file_is_planned(make: Make) -> None:
    files = make({"0001_vacuum.sql": "-- pgwarden:no-transaction\nSELECT 1;"})
    plan = plan_migrations(files, [])
    assert plan.refusals == ()
    assert "statement by statement (1), verified right after" in "\n".join(plan.describe())


def partly(
    file: MigrationFile, applied: int, *, running: int | None = None, digest: str | None = None
) -> AppliedMigration:
    """The history row of a file an earlier run applied in part."""
    texts = [s.text for s in file.statements[:applied]]
    return AppliedMigration(
        file.version,
        file.description,
        file.checksum,
        False,
        applied,
        running,
        statements_digest(texts) if digest is None else digest,
    )


def test_a_file_an_earlier_run_applied_in_part_resumes_at_the_statement_that_did_not_finish(
    make: Make,
) -> None:
    files = make({"0001_idx.sql": "-- pgwarden:no-transaction\nSELECT 1;\nSELECT 2;\nSELECT 3;"})
    plan = plan_migrations(files, [partly(files[0], 2, running=3)])
    assert plan.refusals == ()
    assert plan.steps[0].resume == Resume(applied=2, interrupted=True)
    assert "resumes at statement 3" in "\n".join(plan.describe())


def test_a_partly_applied_file_whose_applied_statements_changed_is_refused(make: Make) -> None:
    files = make({"0001_idx.sql": "-- pgwarden:no-transaction\nSELECT 1;\nSELECT 2;"})
    (refusal,) = plan_migrations(files, [partly(files[0], 1, digest="not the same")]).refusals
    assert "partly applied by an earlier run (1 statement(s))" in refusal.message


def test_a_partly_applied_file_may_change_after_its_applied_statements(make: Make) -> None:
    first = make({"0001_idx.sql": "-- pgwarden:no-transaction\nSELECT 1;\nSELECT 2;"})
    row = partly(first[0], 1)
    edited = make({"0001_idx.sql": "-- pgwarden:no-transaction\nSELECT 1;\nSELECT 22;"})
    plan = plan_migrations(edited, [row])
    assert plan.refusals == ()
    assert plan.steps[0].resume == Resume(applied=1, interrupted=False)


def test_two_non_transactional_migrations_in_a_row_each_stand_alone(make: Make) -> None:
    files = make({"0001_a.sql": CONCURRENT_INDEX, "0002_b.sql": "-- pgwarden:no-transaction\nSELECT 1;"})
    assert groups(plan_migrations(files, [])) == [[("0001", False)], [("0002", False)]]


def test_per_migration_commits_each_migration_on_its_own(make: Make) -> None:
    plan = plan_migrations(make(MIXED), [], mode=TransactionMode.PER_MIGRATION)
    assert groups(plan) == [
        [("0001", True)],
        [("0002", True)],
        [("0003", False)],
        [("0004", True)],
        [("0005", True)],
    ]


def test_all_puts_the_run_in_one_transaction(make: Make) -> None:
    plan = plan_migrations(make(FOUR), [], mode=TransactionMode.ALL)
    assert groups(plan) == [[("0001", True), ("0002", True), ("0003", True), ("0004", True)]]
    assert not plan.refused


def test_all_refuses_a_migration_that_cannot_run_in_a_transaction(make: Make) -> None:
    files = make({"0001_a.sql": "SELECT 1;", "0002_index.sql": f"SELECT 1;\n{CONCURRENT_INDEX}"})
    plan = plan_migrations(files, [], mode=TransactionMode.ALL)
    (refusal,) = plan.refusals
    assert refusal == NonTransactionalMigration("0002_index.sql", 2, "CREATE INDEX")
    assert refusal.message.startswith("0002_index.sql:2: CREATE INDEX cannot run inside a transaction")


def test_all_refuses_a_no_transaction_directive(make: Make) -> None:
    files = make({"0001_a.sql": "-- pgwarden:no-transaction\nSELECT 1;"})
    (refusal,) = plan_migrations(files, [], mode="all").refusals
    assert isinstance(refusal, NonTransactionalMigration)
    assert "no-transaction directive" in refusal.message


def test_the_mode_may_be_given_as_the_policy_string(make: Make) -> None:
    plan = plan_migrations(make(FOUR), [], mode="perMigration")
    assert plan.mode is TransactionMode.PER_MIGRATION
    assert len(plan.groups()) == 4


# Destructive statements


DESTRUCTIVE = {
    "0001_a.sql": "CREATE TABLE orders (id int, email text);",
    "0002_cleanup.sql": "ALTER TABLE orders DROP COLUMN email;\nDELETE FROM orders;",
    "0003_gone.sql": "\n\nTRUNCATE orders;",
}


def test_destructive_statements_are_refused_with_file_line_and_reason(make: Make) -> None:
    plan = plan_migrations(make(DESTRUCTIVE), [])
    (refusal,) = plan.refusals
    assert isinstance(refusal, DestructiveStatements)
    assert [(s.script_name, s.line, s.reason) for s in refusal.statements] == [
        ("0002_cleanup.sql", 1, "DROP COLUMN orders.email"),
        ("0002_cleanup.sql", 2, "DELETE without WHERE on orders"),
        ("0003_gone.sql", 3, "TRUNCATE orders"),
    ]
    assert "add `-- pgwarden:allow-destructive` to the file or pass --allow-destructive" in refusal.message


def test_allow_destructive_for_the_run_allows_them_all(make: Make) -> None:
    assert not plan_migrations(make(DESTRUCTIVE), [], allow_destructive=True).refused


def test_the_file_directive_allows_only_that_file(make: Make) -> None:
    files = make(
        {
            **DESTRUCTIVE,
            "0002_cleanup.sql": "-- pgwarden:allow-destructive\n" + DESTRUCTIVE["0002_cleanup.sql"],
        }
    )
    (refusal,) = plan_migrations(files, []).refusals
    assert isinstance(refusal, DestructiveStatements)
    assert [s.script_name for s in refusal.statements] == ["0003_gone.sql"]


def test_destructive_statements_already_applied_or_beyond_target_are_not_refused(make: Make) -> None:
    files = make(DESTRUCTIVE)
    assert not plan_migrations(files, applied(*files)).refused
    assert not plan_migrations(files, [], target="1").refused


# Describing


def test_a_plan_describes_each_step_with_its_group_and_transaction(make: Make) -> None:
    files = make(MIXED)
    plan = plan_migrations(files, applied(files[0]))
    assert plan.describe() == [
        "database at version 0001; transaction mode auto; 4 to apply",
        "  3 commits: rows are checked for loss before each; expectations and checks before the last; "
        "a failure after a commit is undone by the rollback strategy",
        "  0002  b  (group 1, in a transaction)",
        "  0003  index  (group 2, outside a transaction, statement by statement (1), verified right after)",
        "  0004  c  (group 3, in a transaction)",
        "  0005  d  (group 3, in a transaction)",
    ]


def test_a_description_shows_baseline_warnings_and_refusals(make: Make) -> None:
    files = make(DESTRUCTIVE)
    lines = plan_migrations(
        files, [AppliedMigration("9", "later", "x", success=True)], baseline="1"
    ).describe()
    assert lines[0] == "database at version 9; transaction mode auto; 2 to apply"
    assert lines[1] == "  0001  a  baseline: recorded as applied, not run"
    assert any(line.startswith("warning: version 9 (later) is recorded as applied") for line in lines)
    assert sum(line.startswith("refused: ") for line in lines) == 3  # two out of order, one destructive


def test_nothing_to_apply_is_said_plainly(make: Make) -> None:
    files = make(FOUR)
    assert plan_migrations(files, applied(*files)).describe()[1:] == ["  nothing to apply"]
