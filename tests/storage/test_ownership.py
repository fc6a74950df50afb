"""Whose backup is it, as pure decisions over manifests: owners, old manifests, `latest`, retention per owner."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pgwarden.storage.base import ObjectNotFound
from pgwarden.storage.manifest import BackupManifest, Catalog, plan_by_owner, prefer_verified
from pgwarden.storage.ownership import (
    UNKNOWN_OWNER,
    NotTheOwners,
    Owner,
    OwnerNotChosen,
    check_owner,
    choose_latest,
    group_by_owner,
    owner_of,
)
from pgwarden.storage.retention import RetentionPolicy

NOW = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
SHOP = "db.example:5432/shop"
BILLING = "db.example:5432/billing"
NIGHTLY = "DatabaseBackup/prod/shop-nightly"


def manifest(
    number: int, *, owner: str | None = None, db: str = "shop", old: bool = False, verified: bool = False
) -> BackupManifest:
    """Backup `number` hours old; `old`: written before owners were recorded (no owner or database fields)."""
    fields: dict[str, Any] = {
        "id": f"20260131T{12 - number:02d}0000Z-{number:06x}",
        "format": "custom",
        "compression": "zstd:3",
        "dump_file": "dump.pgc.zst",
        "size_bytes": 1,
        "sha256": "0" * 64,
        "database": f"app@db.example:5432/{db}",
        "server_version": "18.1",
        "pg_dump_version": "18.1",
        "tables": 1,
        "rows": 1,
        "started_at": NOW - timedelta(hours=number),
        "completed_at": NOW - timedelta(hours=number),
        "duration_seconds": 1.0,
        "verified": verified,
    }
    if not old:
        fields.update(owner=owner, database_name=db, database_server="db.example:5432")
    return BackupManifest.model_validate(fields)


def test_a_resource_owns_its_backups_and_without_one_the_database_does() -> None:
    assert owner_of(manifest(1, owner=NIGHTLY)) == Owner(NIGHTLY)
    assert owner_of(manifest(1)) == Owner(SHOP)


def test_an_old_manifest_still_reads_and_its_owner_is_derived_from_its_database_and_marked() -> None:
    old = BackupManifest.model_validate_json(
        manifest(1, old=True).model_dump_json(by_alias=True, exclude_none=True)
    )
    assert old.owner is None and old.database_name is None
    assert owner_of(old) == Owner(SHOP, recorded=False)


@pytest.mark.parametrize(
    ("database", "label"),
    [
        ("admin@myserver@db.example:5432/shop", "db.example:5432/shop"),  # Azure's user@server names
        ("/var/run/postgresql:5432/shop", "/var/run/postgresql:5432/shop"),  # a socket, no user
        ("app@h1,h2:5432,5433/shop", "h1,h2:5432,5433/shop"),
        ("the database", UNKNOWN_OWNER),
    ],
)
def test_old_database_descriptions_give_their_server_and_name(database: str, label: str) -> None:
    old = manifest(1, old=True).model_copy(update={"database": database})
    assert owner_of(old).label == label


def test_an_old_and_a_new_backup_of_the_same_database_have_one_owner() -> None:
    groups = group_by_owner([manifest(1), manifest(2, old=True), manifest(3, db="billing")])
    assert {label: [m.id for m in items] for label, items in groups.items()} == {
        SHOP: [manifest(1).id, manifest(2).id],
        BILLING: [manifest(3).id],
    }


def test_latest_of_a_prefix_with_one_owner_is_its_newest() -> None:
    assert choose_latest([manifest(1), manifest(2)], None, "s3://b/p", advice="x").id == manifest(1).id


def test_latest_of_a_prefix_with_several_owners_needs_one_named() -> None:
    backups = [manifest(1, db="billing"), manifest(2)]
    with pytest.raises(OwnerNotChosen) as refused:
        choose_latest(backups, None, "s3://b/p", advice="choose one with --owner OWNER")
    assert refused.value.owners == [BILLING, SHOP]
    assert str(refused.value) == (
        f"s3://b/p holds the backups of 2 owners: {BILLING} (1 backup, newest {manifest(1).id}), "
        f"{SHOP} (1 backup, newest {manifest(2).id}); choose one with --owner OWNER"
    )
    assert choose_latest(backups, SHOP, "s3://b/p", advice="x").id == manifest(2).id


def test_latest_of_an_owner_without_backups_there_names_the_owners_that_are() -> None:
    with pytest.raises(
        ObjectNotFound, match=f"no complete backup of {NIGHTLY} at s3://b/p; owners there: {SHOP} "
    ):
        choose_latest([manifest(1)], NIGHTLY, "s3://b/p", advice="x")


def test_a_rehearsal_prefers_the_owners_newest_verified_backup_to_a_newer_unverified_one() -> None:
    newest, verified = manifest(1, owner=NIGHTLY), manifest(3, owner=NIGHTLY, verified=True)
    others = manifest(2, owner="DatabaseBackup/prod/billing", verified=True)  # verified, but not ours
    backups = [newest, others, verified, manifest(5, owner=NIGHTLY, verified=True)]

    assert prefer_verified(backups, NIGHTLY, "s3://b/p") == (verified, None)


def test_a_rehearsal_without_a_verified_backup_takes_the_newest_and_says_it_is_unverified() -> None:
    newest = manifest(1)
    chosen, warning = prefer_verified(
        [newest, manifest(2), manifest(3, db="billing", verified=True)], SHOP, "/b"
    )

    assert chosen == newest
    assert warning is not None and newest.id in warning and "unverified" in warning and SHOP in warning


def test_a_named_backup_of_another_recorded_owner_is_refused_an_old_one_is_not() -> None:
    with pytest.raises(NotTheOwners, match=f"belongs to {SHOP}, not {NIGHTLY}"):
        check_owner(manifest(1), NIGHTLY, "s3://b/p/x")
    check_owner(manifest(1, owner=NIGHTLY), NIGHTLY, "s3://b/p/x")
    check_owner(manifest(1, old=True), NIGHTLY, "s3://b/p/x")
    check_owner(manifest(1), None, "s3://b/p/x")


def catalog(*backups: BackupManifest) -> Catalog:
    ordered = sorted(backups, key=lambda m: m.completed_at, reverse=True)
    return Catalog(backups=ordered, debris=[], keys={})


def test_retention_over_a_shared_prefix_is_refused_unless_told_whose() -> None:
    shared = catalog(manifest(1, db="billing"), manifest(2), manifest(3))
    with pytest.raises(OwnerNotChosen):
        plan_by_owner(shared, RetentionPolicy(keep_last=1), NOW, owner=None, every_owner=False, where="p")


def test_retention_of_one_owner_never_touches_another_owners_backups() -> None:
    shared = catalog(manifest(1, db="billing"), manifest(2), manifest(3), manifest(4, db="billing"))
    plan, owners = plan_by_owner(
        shared, RetentionPolicy(keep_last=1), NOW, owner=SHOP, every_owner=False, where="p"
    )
    assert [d.id for d in plan.keep] == [manifest(2).id]
    assert [d.id for d in plan.delete] == [manifest(3).id]
    assert set(owners.values()) == {SHOP}


def test_retention_of_every_owner_keeps_each_owners_newest_and_newest_verified() -> None:
    shared = catalog(
        manifest(1, db="billing"),
        manifest(2),
        manifest(3, verified=True),
        manifest(4),
        manifest(5, db="billing"),
    )
    plan, owners = plan_by_owner(
        shared, RetentionPolicy(keep_last=1), NOW, owner=None, every_owner=True, where="p"
    )
    assert sorted(d.id for d in plan.keep) == sorted([manifest(1).id, manifest(2).id, manifest(3).id])
    assert sorted(d.id for d in plan.delete) == sorted([manifest(4).id, manifest(5).id])
    assert owners[manifest(5).id] == BILLING


def test_retention_of_a_prefix_with_one_owner_needs_no_owner_named() -> None:
    plan, _ = plan_by_owner(
        catalog(manifest(1), manifest(2, old=True)),
        RetentionPolicy(keep_last=1),
        NOW,
        owner=None,
        every_owner=False,
        where="p",
    )
    assert [d.id for d in plan.delete] == [manifest(2).id]
