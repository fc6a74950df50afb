"""One real prune: retention keeps the newest and the newest verified backup, deletes the rest."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from backup_support import BackupPlace, run_cli, start_paused, wait_for_pause

from pgwarden.engine.backup.backup import take_backup
from pgwarden.engine.backup.options import BackupOptions
from pgwarden.engine.restore.verify import verify_backup
from pgwarden.storage import Storage
from pgwarden.storage.manifest import MANIFEST, list_backups, read_manifest, write_manifest


def test_prune_keeps_the_newest_and_the_newest_verified_backup(shop_db: str, place: BackupPlace) -> None:
    verified = take_backup(shop_db, place.open(), BackupOptions(verify=verify_backup)).backup
    middle = take_backup(shop_db, place.open()).backup
    newest = take_backup(shop_db, place.open()).backup
    assert verified and middle and newest

    dry = run_cli("prune", place.uri, "--keep-last", "1", "--dry-run", "--json", env=place.env)
    assert [d["id"] for d in json.loads(dry.stdout)["deleted"]] == [middle.id]
    assert len(list_backups(place.open())) == 3

    done = run_cli("prune", place.uri, "--keep-last", "1", "--json", env=place.env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert {item["id"]: item["reason"] for item in report["kept"]} == {
        newest.id: "newest complete backup; among the 1 newest",
        verified.id: "newest verified backup",
    }
    assert [d["id"] for d in report["deleted"]] == [middle.id]
    assert [b.id for b in list_backups(place.open())] == [newest.id, verified.id]
    assert not [obj for obj in place.open().list_objects() if obj.key.startswith(middle.id)]

    again = run_cli("prune", place.uri, "--max-age", "1h", "--json", env=place.env)
    assert json.loads(again.stdout)["deleted"] == []


def _completed(storage: Storage, backup_id: str, when: datetime) -> None:
    """Move a real backup in time: its manifest says it was taken and completed at `when`."""
    backup = storage.child(backup_id)
    manifest = read_manifest(backup)
    write_manifest(backup, manifest.model_copy(update={"started_at": when, "completed_at": when}))


def test_calendar_retention_counts_days_in_the_time_zone_it_is_given(
    shop_db: str, place: BackupPlace
) -> None:
    """21:30 and 22:30 UTC on 30 March 2025 are one day in UTC and two in Berlin (CEST began that night):
    keep-daily keeps both only on Berlin's calendar, and every decision names its rules."""
    made = [take_backup(shop_db, place.open()).backup for _ in range(4)]
    assert all(made)
    times = [
        "2024-06-01T10:00:00+00:00",
        "2025-03-30T10:00:00+00:00",
        "2025-03-30T21:30:00+00:00",
        "2025-03-30T22:30:00+00:00",
    ]
    ids = {}
    for backup, when in zip(made, times, strict=True):
        assert backup is not None
        _completed(place.open(), backup.id, datetime.fromisoformat(when))
        ids[when[:16]] = backup.id

    def dry(*flags: str) -> dict[str, Any]:
        done = run_cli("prune", place.uri, "--dry-run", "--json", *flags, env=place.env)
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    berlin = dry("--keep-daily", "2", "--keep-monthly", "2", "--time-zone", "Europe/Berlin")
    assert berlin["timeZone"] == "Europe/Berlin"
    assert {item["id"]: item["rules"] for item in berlin["kept"]} == {
        ids["2025-03-30T22:30"]: ["newestComplete", "keepDaily", "keepMonthly"],
        ids["2025-03-30T21:30"]: ["keepDaily"],
        ids["2024-06-01T10:00"]: ["keepMonthly"],
    }
    assert [item["id"] for item in berlin["deleted"]] == [ids["2025-03-30T10:00"]]
    assert {item["id"]: item["reason"] for item in berlin["kept"]}[ids["2025-03-30T22:30"]] == (
        "newest complete backup; newest of day 2025-03-31; newest of month 2025-03"
    )
    utc = dry("--keep-daily", "2", "--keep-monthly", "1")
    assert utc["timeZone"] == "UTC"
    assert {item["id"]: item["rules"] for item in utc["kept"]} == {
        ids["2025-03-30T22:30"]: ["newestComplete", "keepDaily", "keepMonthly"],
        ids["2024-06-01T10:00"]: ["keepDaily"],
    }
    deleted = {item["id"]: item for item in utc["deleted"]}
    assert deleted[ids["2025-03-30T21:30"]]["rules"] == []
    assert deleted[ids["2025-03-30T21:30"]]["reason"] == (
        "keepDaily 2: day 2025-03-30 has a newer backup and keepMonthly 1: month 2025-03 has a newer backup"
    )
    assert len(list_backups(place.open())) == 4, "a dry run deletes nothing"

    done = run_cli(
        "prune", place.uri, "--keep-daily", "1", "--time-zone", "Europe/Berlin", "--json", env=place.env
    )
    assert done.returncode == 0, done.stderr
    assert [b.id for b in list_backups(place.open())] == [ids["2025-03-30T22:30"]]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--keep-daily", "1", "--time-zone", "Mars/Olympus"], "is not an IANA time zone"),
        (["--keep-weekly", "0"], "keepWeekly must be at least 1"),
    ],
)
def test_a_bad_calendar_is_refused_before_anything_is_deleted(
    shop_db: str, fs_place: BackupPlace, flags: list[str], message: str
) -> None:
    take_backup(shop_db, fs_place.open())
    take_backup(shop_db, fs_place.open())
    done = run_cli("prune", fs_place.uri, *flags, env=fs_place.env)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert len(list_backups(fs_place.open())) == 2


def test_a_prune_killed_between_deletes_leaves_only_whole_backups_and_the_next_one_finishes_its_plan(
    shop_db: str, place: BackupPlace
) -> None:
    """SIGKILLed after its first delete: every backup still listed is whole (manifest and dump), what the
    calendar keeps is all there, and the next prune deletes the rest of the same plan and leaves no debris."""
    made = [take_backup(shop_db, place.open()).backup for _ in range(6)]
    times = ["2025-01-15", "2025-02-10", "2025-02-20", "2025-03-01T10:00", "2025-03-01T12:00", "2025-03-02"]
    ids = []
    for backup, when in zip(made, times, strict=True):
        assert backup is not None
        _completed(place.open(), backup.id, datetime.fromisoformat(when).replace(tzinfo=UTC))
        ids.append(backup.id)
    rules = ("--keep-daily", "2", "--keep-monthly", "2", "--json")
    plan = json.loads(run_cli("prune", place.uri, *rules, "--dry-run", env=place.env).stdout)
    keep = {item["id"] for item in plan["kept"]}
    assert keep == {ids[5], ids[4], ids[2]}
    assert {item["id"] for item in plan["deleted"]} == {ids[0], ids[1], ids[3]}

    run = start_paused("prune", place.uri, *rules, env=place.env, pause_at="prune-deleted")
    try:
        wait_for_pause(run)
    finally:
        run.kill()
        run.communicate(timeout=30)

    listed = [b.id for b in list_backups(place.open())]
    assert keep <= set(listed) and len(listed) == 5, listed
    keys = {obj.key for obj in place.open().list_objects()}
    for backup_id in listed:
        assert {key.split("/", 1)[1] for key in keys if key.startswith(f"{backup_id}/")} >= {
            MANIFEST,
            read_manifest(place.open().child(backup_id)).dump_file,
        }, f"{backup_id} is listed, so it must be whole"

    done = run_cli("prune", place.uri, *rules, env=place.env)
    assert done.returncode == 0, done.stderr
    assert {item["id"] for item in json.loads(done.stdout)["kept"]} == keep
    assert {b.id for b in list_backups(place.open())} == keep
    gone = set(ids) - keep
    assert not [obj.key for obj in place.open().list_objects() if obj.key.split("/", 1)[0] in gone]
