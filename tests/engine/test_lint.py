"""The pure half of the lint: squawk's 0-based positions become the file's own lines, syntax errors become
warnings, and a policy refuses exactly the rules it names."""

from __future__ import annotations

import json

from pgwarden.engine.migrate.lint import HANDLED_BY_PGWARDEN, parse_findings, squawk_arguments

OUTPUT = json.dumps(
    [
        {
            "file": "/m/0002_x.sql",
            "line": 0,
            "column": 0,
            "message": "m1",
            "help": None,
            "rule_name": "renaming-table",
        },
        {
            "file": "/m/0002_x.sql",
            "line": 4,
            "column": 19,
            "message": "m2",
            "help": "h",
            "rule_name": "changing-column-type",
        },
        {
            "file": "/m/0003_y.sql",
            "line": 2,
            "column": 8,
            "message": "expected R_PAREN",
            "rule_name": "syntax-error",
        },
    ]
)


def test_squawk_positions_become_the_files_lines_and_columns_counted_from_one() -> None:
    result = parse_findings(OUTPUT, {"/m/0002_x.sql": "0002_x.sql"})

    assert [(f.rule, f.file, f.line, f.column) for f in result.findings] == [
        ("renaming-table", "0002_x.sql", 1, 1),
        ("changing-column-type", "0002_x.sql", 5, 20),
    ]
    assert result.warnings == (
        "lint: squawk could not read 0003_y.sql:3 (expected R_PAREN); that statement was not linted",
    )


def test_a_policy_refuses_only_the_rules_it_names() -> None:
    result = parse_findings(OUTPUT, {})

    assert [f.rule for f in result.refused(["changing-column-type", "ban-drop-table"])] == [
        "changing-column-type"
    ]
    assert result.refused([]) == ()


def test_rules_pgwarden_handles_are_left_out_unless_the_policy_names_them() -> None:
    plain = squawk_arguments([], "15.0")
    named = squawk_arguments(["require-lock-timeout"], None)

    assert all(f"--exclude={rule}" in plain for rule in HANDLED_BY_PGWARDEN)
    assert "--pg-version=15.0" in plain
    assert "--exclude=require-lock-timeout" not in named
    assert "--include=require-lock-timeout" in named
