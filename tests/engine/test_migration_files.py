"""Finding migration files: naming rules, ordering, checksums, and refusing a broken directory up front."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pgwarden.engine.migrate.files import (
    InvalidVersion,
    MigrationFilesRefused,
    MigrationName,
    load_migrations,
    parse_migration_name,
    version_key,
)

REPO = Path(__file__).resolve().parents[2]


def write(directory: Path, files: dict[str, str]) -> Path:
    for name, sql in files.items():
        (directory / name).write_text(sql)
    return directory


def refusal(directory: Path) -> MigrationFilesRefused:
    with pytest.raises(MigrationFilesRefused) as raised:
        load_migrations(directory)
    return raised.value


@pytest.mark.parametrize(
    ("file_name", "expected"),
    [
        ("0001_init.sql", MigrationName("0001", "init", is_down=False)),
        ("V2__add_index.sql", MigrationName("2", "add index", is_down=False)),
        ("v3_seed.sql", MigrationName("3", "seed", is_down=False)),
        ("0004_create_orders_table.sql", MigrationName("0004", "create orders table", is_down=False)),
        ("1.2_patch.sql", MigrationName("1.2", "patch", is_down=False)),
        ("0001_init.down.sql", MigrationName("0001", "init", is_down=True)),
        ("V2__add_index.down.sql", MigrationName("2", "add index", is_down=True)),
    ],
)
def test_good_file_names_give_version_and_description(file_name: str, expected: MigrationName) -> None:
    assert parse_migration_name(file_name) == expected


@pytest.mark.parametrize(
    "file_name",
    [
        "init.sql",
        "0001.sql",
        "0001_.sql",
        "0001-init.sql",
        "x0001_init.sql",
        "0001___init.sql",
        "0001_init.SQL",
    ],
)
def test_malformed_file_names_follow_no_rule(file_name: str) -> None:
    assert parse_migration_name(file_name) is None


def test_versions_compare_as_numbers() -> None:
    assert version_key("2") < version_key("10")
    assert version_key("0010") == version_key("10")
    assert version_key("1.0") == version_key("1")
    assert version_key("1.9") < version_key("1.10")
    with pytest.raises(InvalidVersion, match="expected digits"):
        version_key("latest")


def test_migrations_are_ordered_by_numeric_version_not_by_name(tmp_path: Path) -> None:
    write(tmp_path, {"10_ten.sql": "SELECT 10;", "2_two.sql": "SELECT 2;", "V1__one.sql": "SELECT 1;"})
    assert [m.version for m in load_migrations(tmp_path)] == ["1", "2", "10"]


def test_a_loaded_migration_carries_its_text_checksum_directives_and_statements(tmp_path: Path) -> None:
    sql = "-- pgwarden:allow-destructive\nDROP TABLE legacy;\nCREATE TABLE fresh (id int);\n"
    write(tmp_path, {"0001_replace_legacy.sql": sql, "0001_replace_legacy.down.sql": "DROP TABLE fresh;"})
    (migration,) = load_migrations(tmp_path)
    assert migration.version == "0001"
    assert migration.description == "replace legacy"
    assert migration.script_name == "0001_replace_legacy.sql"
    assert migration.path == tmp_path / "0001_replace_legacy.sql"
    assert migration.sql == sql
    assert migration.checksum == hashlib.sha256(sql.encode()).hexdigest()
    assert migration.directives.allow_destructive
    assert [s.kind for s in migration.statements] == ["DROP TABLE", "CREATE TABLE"]
    assert migration.down_sql == "DROP TABLE fresh;"
    assert [s.destructive for s in migration.down_statements] == ["DROP TABLE fresh"]


def test_a_migration_without_down_script_has_none(tmp_path: Path) -> None:
    write(tmp_path, {"0001_init.sql": "SELECT 1;"})
    (migration,) = load_migrations(tmp_path)
    assert migration.down_sql is None
    assert migration.down_statements == ()


def test_the_checksum_depends_only_on_the_file_bytes(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    write(first, {"0001_init.sql": "SELECT 1;\n"})
    write(second, {"V1__init.sql": "SELECT 1;\n", "0002_more.sql": "SELECT 2;"})
    assert load_migrations(first)[0].checksum == load_migrations(second)[0].checksum
    (first / "0001_init.sql").write_text("SELECT 1; \n")
    assert load_migrations(first)[0].checksum != load_migrations(second)[0].checksum


def test_other_files_and_hidden_files_are_ignored(tmp_path: Path) -> None:
    write(tmp_path, {"0001_init.sql": "SELECT 1;", "README.md": "# notes", ".#0002_wip.sql": "garbage"})
    (tmp_path / "archive").mkdir()
    assert [m.script_name for m in load_migrations(tmp_path)] == ["0001_init.sql"]


def test_every_malformed_name_is_listed_with_the_expected_pattern(tmp_path: Path) -> None:
    write(tmp_path, {"0001_init.sql": "SELECT 1;", "init.sql": "SELECT 1;", "0002-more.sql": "SELECT 2;"})
    problems = refusal(tmp_path).problems
    assert len(problems) == 2
    assert any(p.startswith("0002-more.sql: not a migration file name") for p in problems)
    assert any(p.startswith("init.sql: not a migration file name") for p in problems)
    assert all("<version>_<description>.sql" in p for p in problems)


def test_duplicate_versions_are_refused_even_when_spelled_differently(tmp_path: Path) -> None:
    write(tmp_path, {"0002_a.sql": "SELECT 1;", "V2__b.sql": "SELECT 2;"})
    (problem,) = refusal(tmp_path).problems
    assert "0002_a.sql and V2__b.sql" in problem
    assert "give each migration its own version" in problem


def test_a_down_script_without_its_up_script_is_refused(tmp_path: Path) -> None:
    write(tmp_path, {"0001_init.sql": "SELECT 1;", "0002_gone.down.sql": "SELECT 2;"})
    (problem,) = refusal(tmp_path).problems
    assert problem.startswith("0002_gone.down.sql: a down script without its up script 0002_gone.sql")


def test_an_empty_directory_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    write(tmp_path, {"README.md": "nothing yet"})
    (problem,) = refusal(tmp_path).problems
    assert problem.startswith(f"no migration files in {tmp_path}")


def test_a_missing_directory_is_refused(tmp_path: Path) -> None:
    (problem,) = refusal(tmp_path / "nope").problems
    assert "is not a directory" in problem


def test_syntax_errors_in_up_and_down_scripts_are_found_before_anything_runs(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "0001_ok.sql": "SELECT 1;",
            "0002_bad.sql": "SELECT 1;\nSELEC 2;",
            "0003_fine.sql": "SELECT 3;",
            "0003_fine.down.sql": "-- pgwarden:maybe\nSELECT 3;",
        },
    )
    problems = refusal(tmp_path).problems
    assert problems == (
        '0002_bad.sql:2: syntax error at or near "SELEC"',
        "0003_fine.down.sql:1: unknown directive pgwarden:maybe; known directives: "
        "pgwarden:no-transaction, pgwarden:allow-destructive",
    )


def test_every_kind_of_problem_is_reported_at_once(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "bad.sql": "",
            "1_a.sql": "SELECT 1;",
            "01_b.sql": "SELECT 1;",
            "9_x.down.sql": "",
            "5_s.sql": "SELEC",
        },
    )
    error = refusal(tmp_path)
    assert len(error.problems) == 4
    assert str(error).startswith(f"cannot use the migrations in {tmp_path}:\n  - ")


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_latin1.sql").write_bytes("SELECT 'café';".encode("latin-1"))
    (problem,) = refusal(tmp_path).problems
    assert "not UTF-8" in problem


def test_the_demo_set_loads_with_a_down_script_for_every_migration() -> None:
    migrations = load_migrations(REPO / "migrations" / "demo")
    assert [m.version for m in migrations] == ["0001", "0002", "0003", "0004", "0005", "0006"]
    assert all(m.down_sql is not None for m in migrations)
    index = migrations[4]
    assert index.directives.no_transaction
    assert not index.runs_in_transaction
    assert index.statements[0].concurrent_index == "shop.orders_created_at_idx"
    assert [m.runs_in_transaction for m in migrations] == [True, True, True, True, False, True]
    assert not any(s.destructive for m in migrations for s in m.statements)
