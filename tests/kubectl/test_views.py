"""What kubectl pgwarden prints and the approval it writes, from resources as the API server returns them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pgwarden.kubectl import views
from pgwarden.kubectl.main import build_parser

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
Obj = dict[str, Any]


def at(**delta: float) -> str:
    return (NOW - timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


def resource(
    kind: str, name: str, spec: Obj | None = None, status: Obj | None = None, generation: int = 1
) -> Obj:
    return {
        "kind": kind,
        "metadata": {"name": name, "namespace": "shop", "generation": generation, "uid": "u"},
        "spec": spec or {},
        "status": status or {},
    }


def test_ages_read_like_kubectls() -> None:
    assert [views.human_age(NOW - timedelta(seconds=s), NOW) for s in (5, 90, 7200, 3 * 86400)] == [
        "5s",
        "1m",
        "2h",
        "3d",
    ]
    assert views.human_age(None, NOW) == "-"


def test_a_backup_row_shows_its_last_backup_age_and_size_and_verified_age() -> None:
    backup = resource(
        "DatabaseBackup",
        "nightly",
        status={
            "phase": "Scheduled",
            "lastBackup": {"completedAt": at(minutes=5), "sizeBytes": 3140},
            "lastVerifiedTime": at(hours=3),
            "nextScheduleTime": (NOW + timedelta(hours=7)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    )
    assert views.status_row(backup, NOW) == [
        "dbbackup",
        "nightly",
        "Scheduled",
        "-",
        "5m ago (3.1 KiB)",
        "3h ago",
        "next backup in 7h",
    ]


@pytest.mark.parametrize(
    ("kind", "status", "expected"),
    [
        ("DatabaseMigration", {"phase": "AwaitingApproval"}, "review, then: kubectl pgwarden approve x"),
        ("DatabaseMigration", {"phase": "RolledBack"}, "read its message; kubectl pgwarden logs x"),
        ("DatabaseRestore", {"phase": "Running"}, "running: kubectl pgwarden logs x"),
        ("DatabaseMigration", {"phase": "Succeeded"}, "-"),
        (
            "DatabaseBackup",
            {
                "phase": "Scheduled",
                "conditions": [{"type": "Stale", "status": "True", "reason": "NoRecentBackup"}],
            },
            "no recent backup: kubectl pgwarden backup x --now",
        ),
        (
            "DatabaseBackup",
            {"phase": "Scheduled", "lastVerifiedBackup": {"outcome": "Failed"}},
            "restore drill failed or overdue: kubectl pgwarden drill x --now",
        ),
        (
            "DatabaseBackup",
            {
                "phase": "Pending",
                "conditions": [{"type": "Ready", "status": "False", "reason": "JobCannotStart"}],
            },
            "waiting (JobCannotStart)",
        ),
    ],
)
def test_what_to_do_next(kind: str, status: Obj, expected: str) -> None:
    assert views.next_step(resource(kind, "x", status=status), NOW) == expected


def awaiting(digest: str | None, shown_generation: int = 2, phase: str = "AwaitingApproval") -> Obj:
    approval = {
        "generation": shown_generation,
        "approved": False,
        "source": "ConfigMap shop-sql",
        "files": [
            {"name": "0001_init.sql", "sha256": "a" * 64},
            {"name": "0002_orders.sql", "sha256": "b" * 64},
        ],
    }
    if digest:
        approval["digest"] = digest
    return resource(
        "DatabaseMigration",
        "gated",
        {"approval": "Manual"},
        {"phase": phase, "approval": approval},
        generation=2,
    )


def test_a_configmap_approval_names_the_generation_and_the_digest_of_the_files() -> None:
    approval = views.approval_of(awaiting("3f2a9c"))
    assert approval.annotation == "pgwarden.io/approved=2-3f2a9c"
    summary = approval.summary("gated", "shop")
    assert "generation 2" in summary and "from: ConfigMap shop-sql" in summary
    assert f"{'a' * 64}  0001_init.sql" in summary and f"{'b' * 64}  0002_orders.sql" in summary


def test_an_inline_approval_names_the_generation() -> None:
    assert views.approval_of(awaiting(None)).annotation == "pgwarden.io/approved=2"


@pytest.mark.parametrize(
    ("migration", "why"),
    [
        (awaiting("d", phase="Succeeded"), "not AwaitingApproval"),
        (awaiting("d", shown_generation=1), "status shows generation 1 but the spec is at generation 2"),
        (resource("DatabaseMigration", "auto", {"approval": "Automatic"}), "approval: Automatic"),
    ],
)
def test_nothing_is_approved_that_the_operator_does_not_show_for_this_generation(
    migration: Obj, why: str
) -> None:
    with pytest.raises(views.NotAwaitingApproval, match=why):
        views.approval_of(migration)


def test_history_lists_a_backups_runs_and_its_drill() -> None:
    backup = resource(
        "DatabaseBackup",
        "nightly",
        status={
            "history": [
                {
                    "job": "b2",
                    "outcome": "Failed",
                    "completedAt": at(hours=1),
                    "message": "boom",
                    "durationSeconds": 2,
                },
                {"job": "b1", "outcome": "Succeeded", "completedAt": at(hours=25), "sizeBytes": 3140},
                {"job": "b0", "outcome": "Succeeded", "sizeBytes": 3140, "message": "backup x: 3.1 KiB"},
            ],
            "lastVerifiedBackup": {
                "job": "d1",
                "outcome": "Succeeded",
                "time": at(hours=2),
                "durationSeconds": 4.5,
            },
        },
    )
    assert views.runs_of(backup, NOW) == [
        ["backup b2", "Failed", "1h ago", "2s", "boom"],
        ["backup b1", "Succeeded", "25h ago", "-", "3.1 KiB"],
        ["backup b0", "Succeeded", "-", "-", "backup x: 3.1 KiB"],
        ["drill d1", "Succeeded", "2h ago", "4.5s", ""],
    ]


def test_a_jobs_row_says_how_it_ended_and_how_long_it_took() -> None:
    job = {
        "metadata": {"name": "nightly-drill-now-1", "labels": {"pgwarden.io/task": "drill"}},
        "status": {
            "startTime": at(minutes=3),
            "completionTime": at(minutes=2),
            "conditions": [{"type": "Complete", "status": "True"}],
        },
    }
    assert views.job_row(job, NOW) == ["nightly-drill-now-1", "drill", "Complete", "3m ago", "60s"]


def test_the_table_aligns_columns() -> None:
    assert views.table(("A", "BB"), [["xyz", "1"]]) == "A     BB\nxyz   1"


@pytest.mark.parametrize(
    "argv",
    [
        ["-n", "shop", "status"],
        ["status", "-n", "shop"],
        ["--context", "c", "status", "--namespace", "shop"],
    ],
)
def test_the_connection_flags_go_before_or_after_the_command(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert args.namespace == "shop"


def test_backup_needs_now_and_restore_needs_a_target(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["backup", "nightly"], ["restore", "nightly"]):
        with pytest.raises(SystemExit) as exited:
            build_parser().parse_args(argv)
        assert exited.value.code == 2
    args = build_parser().parse_args(
        ["restore", "nightly", "--to", "copy-db", "--id", "20261123T120646Z-b3014e"]
    )
    assert (args.backup, args.to, args.id, args.wait) == (
        "nightly",
        "copy-db",
        "20261123T120646Z-b3014e",
        True,
    )
