"""Include/exclude selections follow pg_dump's -n/-N/-t/-T rules, so the counts cover exactly the dump."""

from __future__ import annotations

import json
import re
import secrets

import pytest
from backup_support import BackupPlace, run_cli
from pgwarden_testing import localpg

from pgwarden.engine.backup.selection import DumpSelection, pattern_parts, select_tables

TABLES = [
    ("public", "orders", True),
    ("public", "customers", True),
    ("audit", "log_2024", False),
    ("audit", "log_2025", False),
    ("Sales Ops", "Quarterly Targets", False),
]


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        ("orders", "orders", True),
        ("Orders", "orders", True),  # unquoted folds to lower case
        ('"Orders"', "orders", False),
        ("log_*", "log_2024", True),
        ("log_202?", "log_2025", True),
        ("a.b", "a.b", False),  # the dot separates parts
        ('"a.b"', "a.b", True),
        ('"say ""hi"""', 'say "hi"', True),
        ("x$", "x$", True),  # regex characters are literal
    ],
)
def test_patterns_follow_psql_rules(pattern: str, text: str, matches: bool) -> None:
    assert (re.match(pattern_parts(pattern)[-1], text) is not None) == matches


def names(selection: DumpSelection) -> list[str]:
    return [f"{s}.{n}" for s, n in select_tables(TABLES, selection)]


def test_no_selection_dumps_everything() -> None:
    assert len(names(DumpSelection())) == len(TABLES)


def test_schema_patterns_include_and_exclude() -> None:
    assert names(DumpSelection(schemas=("audit",))) == ["audit.log_2024", "audit.log_2025"]
    assert names(DumpSelection(exclude_schemas=("audit", '"Sales Ops"'))) == [
        "public.orders",
        "public.customers",
    ]


def test_table_patterns_win_over_schema_patterns_and_excludes_always_apply() -> None:
    selection = DumpSelection(
        schemas=("public",), tables=("audit.log_*",), exclude_tables=("audit.log_2024",)
    )
    assert names(selection) == ["audit.log_2025"]


def test_an_unqualified_table_pattern_matches_only_tables_on_the_search_path() -> None:
    assert names(DumpSelection(tables=("log_2024", "orders"))) == ["public.orders"]


def test_a_backup_of_selected_tables_counts_and_verifies_just_those(
    shop_db: str, pg: localpg.LocalPostgres, place: BackupPlace
) -> None:
    done = run_cli(
        "backup",
        shop_db,
        "--to",
        place.uri,
        "--table",
        "orders",
        "--table",
        "customers",
        "--table",
        '"Sales Ops".*',
        "--verify",
        "--json",
        env=place.env,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["tables"], report["rows"]) == (3, 2503)
    assert report["verification"]["matchesBackup"] is True

    target = pg.url(f"r_{secrets.token_hex(4)}")
    excluded = run_cli(
        "backup",
        shop_db,
        "--to",
        place.uri,
        "--exclude-schema",
        '"Sales Ops"',
        "--exclude-table",
        "events*",  # the partitioned table and its partitions (pg_dump -T names each relation)
        "--json",
        env=place.env,
    )
    assert json.loads(excluded.stdout)["tables"] == 3
    restored = run_cli("restore", target, "--from", place.uri, "--create", "--json", env=place.env)
    assert restored.returncode == 0, restored.stderr
    assert json.loads(restored.stdout)["verification"]["matchesBackup"] is True
