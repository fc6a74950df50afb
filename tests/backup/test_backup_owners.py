"""A backup belongs to its owner (DESIGN.md 3, Backups): two databases backed up to one prefix never prune
or restore each other's backups through `pgwarden prune`, `restore --from PREFIX` and `backups`.

Reproduced first through the command line: `prune --keep-last 1` deleted the only backup of the other
database, and `restore --from PREFIX` restored the other database's newer dump.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import psycopg
import pytest
from backup_support import BackupPlace, run_cli
from pgwarden_testing import localpg

from pgwarden.storage.manifest import list_backups


def database(pg: localpg.LocalPostgres, table: str, rows: int) -> str:
    url = pg.create_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY)")
        conn.execute(f"INSERT INTO {table} SELECT generate_series(1, {rows})")
    return url


def backup(url: str, place: BackupPlace, *flags: str) -> str:
    done = run_cli("backup", url, "--to", place.uri, "--json", *flags, env=place.env)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return str(report["backup"]["id"])


def owner_label(url: str) -> str:
    """The owner a backup made without --owner records: the database as host:port/dbname."""
    params = psycopg.conninfo.conninfo_to_dict(url)
    return f"{params['host']}:{params['port']}/{params['dbname']}"


def tables_of(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        names = [
            str(name)
            for (name,) in conn.execute(
                "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE relkind = 'r' AND nspname = 'public' ORDER BY 1"
            ).fetchall()
        ]
        return {name: int(conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0]) for name in names}  # type: ignore[index]


@pytest.fixture
def shop_and_billing(pg: localpg.LocalPostgres) -> tuple[str, str]:
    return database(pg, "orders", 30), database(pg, "invoices", 7)


def test_prune_of_a_prefix_shared_by_two_databases_refuses_and_deletes_nothing(
    shop_and_billing: tuple[str, str], place: BackupPlace
) -> None:
    shop, billing = shop_and_billing
    shop_id = backup(shop, place)
    billing_id = backup(billing, place)

    done = run_cli("prune", place.uri, "--keep-last", "1", "--json", env=place.env)

    assert done.returncode == 2, done.stdout + done.stderr
    message = json.loads(done.stdout)["error"]["message"]
    assert owner_label(shop) in message and owner_label(billing) in message
    assert "--owner" in message
    assert {b.id for b in list_backups(place.open())} == {shop_id, billing_id}


def test_prune_with_an_owner_acts_on_that_owners_backups_only(
    shop_and_billing: tuple[str, str], place: BackupPlace
) -> None:
    shop, billing = shop_and_billing
    old_shop = backup(shop, place)
    billing_id = backup(billing, place)
    new_shop = backup(shop, place)

    done = run_cli(
        "prune", place.uri, "--keep-last", "1", "--owner", owner_label(shop), "--json", env=place.env
    )

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [item["id"] for item in report["deleted"]] == [old_shop]
    assert [item["id"] for item in report["kept"]] == [new_shop]
    assert {b.id for b in list_backups(place.open())} == {new_shop, billing_id}


def test_prune_of_every_owner_keeps_each_owners_newest(
    shop_and_billing: tuple[str, str], place: BackupPlace
) -> None:
    shop, billing = shop_and_billing
    old_shop = backup(shop, place)
    old_billing = backup(billing, place)
    new_shop = backup(shop, place)
    new_billing = backup(billing, place)

    done = run_cli("prune", place.uri, "--keep-last", "1", "--all-owners", "--json", env=place.env)

    assert done.returncode == 0, done.stderr
    assert sorted(item["id"] for item in json.loads(done.stdout)["deleted"]) == sorted(
        [old_shop, old_billing]
    )
    assert {b.id for b in list_backups(place.open())} == {new_shop, new_billing}


def test_restore_from_a_prefix_shared_by_two_databases_refuses_until_told_whose(
    shop_and_billing: tuple[str, str], pg: localpg.LocalPostgres, place: BackupPlace
) -> None:
    shop, billing = shop_and_billing
    backup(shop, place)
    backup(billing, place)  # newer: the one an owner-blind `latest` picks
    target = pg.url(f"r_{secrets.token_hex(4)}")

    refused = run_cli("restore", target, "--from", place.uri, "--create", "--json", env=place.env)

    assert refused.returncode == 2, refused.stdout + refused.stderr
    message = json.loads(refused.stdout)["error"]["message"]
    assert owner_label(shop) in message and owner_label(billing) in message
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        name = target.rsplit("/", 1)[1]
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None

    chosen = run_cli(
        "restore",
        target,
        "--from",
        place.uri,
        "--owner",
        owner_label(shop),
        "--create",
        "--json",
        env=place.env,
    )
    assert chosen.returncode == 0, chosen.stderr
    assert tables_of(target) == {"orders": 30}


def test_backups_lists_every_owner_and_filters_by_one(
    shop_and_billing: tuple[str, str], place: BackupPlace
) -> None:
    shop, billing = shop_and_billing
    shop_id = backup(shop, place)
    billing_id = backup(billing, place, "--owner", "billing-nightly")

    listed = json.loads(run_cli("backups", place.uri, "--json", env=place.env).stdout)
    assert {b["id"]: b["owner"] for b in listed["backups"]} == {
        shop_id: owner_label(shop),
        billing_id: "billing-nightly",
    }
    assert all(b["ownerRecorded"] for b in listed["backups"])
    text = run_cli("backups", place.uri, env=place.env).stdout
    assert "OWNER" in text and "billing-nightly" in text and owner_label(shop) in text

    only = json.loads(
        run_cli("backups", place.uri, "--owner", "billing-nightly", "--json", env=place.env).stdout
    )
    assert [b["id"] for b in only["backups"]] == [billing_id]


def as_written_before_owners(place: BackupPlace, backup_id: str) -> None:
    """Rewrite a backup's manifest as an older pgwarden wrote it: no owner, no database name or server."""
    key = f"{backup_id}/manifest.json"
    data = json.loads(place.open().get_bytes(key))
    for field in ("owner", "databaseName", "databaseServer"):
        data.pop(field, None)
    place.open().put_bytes(key, json.dumps(data).encode())


def test_backups_from_before_owners_were_recorded_belong_to_their_database(
    pg: localpg.LocalPostgres, place: BackupPlace
) -> None:
    shop = database(pg, "orders", 30)
    old_id = backup(shop, place)
    as_written_before_owners(place, old_id)
    new_id = backup(shop, place)

    listed = json.loads(run_cli("backups", place.uri, "--json", env=place.env).stdout)
    assert {b["id"]: (b["owner"], b["ownerRecorded"]) for b in listed["backups"]} == {
        old_id: (owner_label(shop), False),
        new_id: (owner_label(shop), True),
    }
    text = run_cli("backups", place.uri, env=place.env).stdout
    assert f"{owner_label(shop)}*" in text and "owner not recorded" in text

    target = pg.url(f"r_{secrets.token_hex(4)}")
    restored = run_cli("restore", target, "--from", place.uri, "--create", "--json", env=place.env)
    assert restored.returncode == 0, restored.stderr
    assert json.loads(restored.stdout)["backup"]["id"] == new_id

    pruned = run_cli("prune", place.uri, "--keep-last", "1", "--json", env=place.env)
    assert pruned.returncode == 0, pruned.stderr
    assert [item["id"] for item in json.loads(pruned.stdout)["deleted"]] == [old_id]


def test_a_named_backup_of_another_owner_is_refused(
    shop_and_billing: tuple[str, str], pg: localpg.LocalPostgres, place: BackupPlace
) -> None:
    shop, billing = shop_and_billing
    backup(shop, place)
    billing_id = backup(billing, place)
    target = pg.url(f"r_{secrets.token_hex(4)}")
    done = run_cli(
        "restore",
        target,
        "--from",
        place.uri,
        "--id",
        billing_id,
        "--owner",
        owner_label(shop),
        "--create",
        "--json",
        env=place.env,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"belongs to {owner_label(billing)}" in json.loads(done.stdout)["error"]["message"]


def test_a_listing_points_at_the_folders_below_that_hold_backups_of_their_own(
    shop_and_billing: tuple[str, str], place: BackupPlace
) -> None:
    shop, _billing = shop_and_billing
    top = backup(shop, place)
    nested = BackupPlace(f"{place.uri}/shop/shop-backup", place.env, place.open().child("shop/shop-backup"))
    backup(shop, nested, "--owner", "DatabaseBackup/shop/shop-backup")
    backup(shop, nested, "--owner", "DatabaseBackup/shop/shop-backup")

    listed = json.loads(run_cli("backups", place.uri, "--json", env=place.env).stdout)
    assert [b["id"] for b in listed["backups"]] == [top]
    assert listed["folders"] == {"shop/shop-backup": 2}
    text = run_cli("backups", place.uri, env=place.env).stdout
    assert "shop/shop-backup (2)" in text
    below = json.loads(run_cli("backups", nested.uri, "--json", env=place.env).stdout)
    assert {b["owner"] for b in below["backups"]} == {"DatabaseBackup/shop/shop-backup"}
