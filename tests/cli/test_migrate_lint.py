"""`pgwarden migrate` lints the migrations it would apply with the real squawk (issue 13): `--plan` and the
report list each finding with its rule, file and line; `--lint-fail-on RULE` refuses with exit 2 before
anything changes, and refuses only what it names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from helpers import history, json_report, migrations_dir, run_pgwarden, table_counts

BASE = {
    "0001_orders.sql": "CREATE TABLE orders (id bigint PRIMARY KEY, customer bigint, total numeric);\n"
    "CREATE TABLE customers (id bigint PRIMARY KEY);\n"
    "INSERT INTO orders SELECT g, g, g FROM generate_series(1, 50) g;\n"
}
# One statement per lock risk the issue names, each on a known line (line 1 is a comment).
RISKY = """-- pgwarden:allow-destructive (every statement below locks orders for longer than it should)
CREATE INDEX orders_customer ON orders (customer);
ALTER TABLE orders ALTER COLUMN total TYPE bigint;
ALTER TABLE orders ADD COLUMN note text NOT NULL;
ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer) REFERENCES customers (id);
ALTER TABLE orders ADD CONSTRAINT orders_total_positive CHECK (total > 0);
ALTER TABLE orders ADD COLUMN token uuid DEFAULT gen_random_uuid();
ALTER TABLE orders RENAME COLUMN customer TO customer_id;
"""
EXPECTED = {
    ("require-concurrent-index-creation", 2),
    ("changing-column-type", 3),
    ("adding-required-field", 4),
    ("constraint-missing-not-valid", 5),
    ("adding-foreign-key-constraint", 5),
    ("constraint-missing-not-valid", 6),
    ("adding-field-with-default", 7),
    ("renaming-column", 8),
    # pgwarden's own rule (issue 20): both rewrite the whole table while they hold ACCESS EXCLUSIVE.
    ("rewrites-table-under-access-exclusive", 3),
    ("rewrites-table-under-access-exclusive", 7),
}


def applied_base(db_url: str, tmp_path: Path) -> Path:
    """A database at version 0001 with rows in `orders`, and a directory that adds the risky 0002."""
    directory = migrations_dir(tmp_path / "m", extra=BASE)
    first = run_pgwarden("migrate", db_url, "--dir", directory, "--json")
    assert first.returncode == 0, first.stderr
    (directory / "0002_risky.sql").write_text(RISKY)
    return directory


def findings(report: dict[str, Any]) -> set[tuple[str, str, int]]:
    return {(f["rule"], f["file"], f["line"]) for f in report.get("lint", [])}


def test_plan_lists_each_lock_risk_with_its_rule_file_and_line(db_url: str, tmp_path: Path) -> None:
    directory = applied_base(db_url, tmp_path)

    result = run_pgwarden("migrate", db_url, "--dir", directory, "--plan", "--json")

    assert result.returncode == 0, result.stderr
    report = json_report(result)
    assert findings(report) == {(rule, "0002_risky.sql", line) for rule, line in EXPECTED}
    assert all(f["message"] for f in report["lint"])
    text = run_pgwarden("migrate", db_url, "--dir", directory, "--plan")
    assert text.returncode == 0, text.stderr
    assert "0002_risky.sql:3 changing-column-type" in text.stdout
    assert "0002_risky.sql:2 require-concurrent-index-creation" in text.stdout


def test_applied_files_and_a_table_created_in_the_same_file_are_not_findings(
    db_url: str, tmp_path: Path
) -> None:
    directory = migrations_dir(tmp_path / "m", extra=BASE)
    (directory / "0002_new_table.sql").write_text(
        "CREATE TABLE notes (id bigint PRIMARY KEY, body text NOT NULL);\nCREATE INDEX notes_body ON notes (body);\n"
    )

    result = run_pgwarden("migrate", db_url, "--dir", directory, "--plan", "--json")

    assert result.returncode == 0, result.stderr
    assert json_report(result)["lint"] == []


def test_lint_fail_on_refuses_with_exit_2_and_changes_nothing(db_url: str, tmp_path: Path) -> None:
    directory = applied_base(db_url, tmp_path)
    before = (history(db_url), table_counts(db_url))

    result = run_pgwarden(
        "migrate", db_url, "--dir", directory, "--lint-fail-on", "changing-column-type", "--json"
    )

    assert result.returncode == 2, result.stderr
    assert "0002_risky.sql:3 changing-column-type" in result.stderr
    assert "adding-required-field" not in result.stderr  # only what it names is a reason
    assert (history(db_url), table_counts(db_url)) == before
    assert json_report(result)["outcome"] == "Failed"


def test_lint_fail_on_refuses_only_the_rules_it_names(db_url: str, tmp_path: Path) -> None:
    directory = migrations_dir(tmp_path / "m", extra=BASE)
    first = run_pgwarden("migrate", db_url, "--dir", directory, "--json")
    assert first.returncode == 0, first.stderr
    (directory / "0002_note.sql").write_text("ALTER TABLE orders RENAME COLUMN customer TO customer_id;\n")

    result = run_pgwarden(
        "migrate", db_url, "--dir", directory, "--lint-fail-on", "changing-column-type", "--json"
    )

    assert result.returncode == 0, result.stderr
    report = json_report(result)
    assert findings(report) == {("renaming-column", "0002_note.sql", 1)}
    assert [a["version"] for a in report["applied"]] == ["0002"]
    assert ("0002", "SQL", True) in history(db_url)


def test_a_rule_squawk_does_not_know_is_refused_before_anything_changes(db_url: str, tmp_path: Path) -> None:
    directory = applied_base(db_url, tmp_path)
    before = history(db_url)

    result = run_pgwarden("migrate", db_url, "--dir", directory, "--lint-fail-on", "no-such-rule")

    assert result.returncode == 2
    assert "no-such-rule" in result.stderr
    assert history(db_url) == before
