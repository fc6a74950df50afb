"""Restoring only what is named (`restore --table/--schema`, `--rename-to-suffix`), for real: the chosen
tables come back with their indexes, constraints, sequences and data, beside today's or in their place,
every other table stays as it was, and names already taken are refused with nothing changed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from backup_support import BackupPlace, all_rows, backup, run_cli
from pgwarden_testing.localpg import LocalPostgres
from pyrage import x25519


def restore(
    url: str, place: BackupPlace, location: str, *flags: str, env: dict[str, str] | None = None
) -> Any:
    return run_cli("restore", url, "--from", location, "--json", *flags, env=env or place.env)


def report_of(done: Any) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def scalar(url: str, query: str) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(query).fetchone()
    return row[0] if row else None


def names(url: str, query: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return sorted(str(row[0]) for row in conn.execute(query).fetchall())


def scratch_databases(pg: LocalPostgres, url: str) -> list[str]:
    return names(url, "SELECT datname FROM pg_database WHERE datname LIKE '%\\_pgw\\_partial\\_%'")


def test_yesterdays_orders_come_back_beside_todays_and_nothing_else_changes(
    shop_db: str, place: BackupPlace, pg: LocalPostgres
) -> None:
    location = backup(shop_db, place)["backup"]["location"]
    yesterdays_orders = all_rows(shop_db)["public.orders"]
    with psycopg.connect(shop_db, autocommit=True) as conn:
        conn.execute("DELETE FROM orders WHERE id > 500")  # the wrong rows, deleted by mistake
        conn.execute("INSERT INTO customers (name) VALUES ('today''s new customer')")
    before = all_rows(shop_db)

    report = report_of(
        restore(shop_db, place, location, "--table", "orders", "--rename-to-suffix", "_restored")
    )

    assert report["outcome"] == "Succeeded"
    assert report["restoredTables"] == [
        {
            "table": "public.orders_restored",
            "backupTable": "public.orders",
            "expected": 2000,
            "actual": 2000,
            "matches": True,
        }
    ]
    assert report["renameSuffix"] == "_restored" and report["only"] == {"schemas": [], "tables": ["orders"]}
    assert report["leftOut"] == [
        "FK CONSTRAINT public orders orders_customer_id_fkey: it references a table not restored"
    ]
    after = all_rows(shop_db)
    assert after.pop("public.orders_restored") == yesterdays_orders
    assert after == before, "every table but the restored one is as it was, row for row"
    assert scalar(shop_db, "SELECT count(*) FROM orders") == 500
    # Its indexes, constraints and sequence came too, under new names beside today's.
    assert names(
        shop_db,
        "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = 'orders_restored'::regclass",
    ) == ["orders_pkey_restored"]
    assert (
        scalar(shop_db, "SELECT pg_get_serial_sequence('orders_restored', 'id')")
        == "public.orders_id_seq_restored"
    )
    assert scalar(shop_db, "SELECT last_value FROM orders_id_seq_restored") == 5000
    assert scalar(shop_db, "SELECT pg_get_serial_sequence('orders', 'id')") == "public.orders_id_seq"
    assert not scratch_databases(pg, shop_db)


def test_a_table_the_database_has_is_refused_without_a_suffix_and_nothing_changes(
    shop_db: str, fs_place: BackupPlace, pg: LocalPostgres
) -> None:
    location = backup(shop_db, fs_place)["backup"]["location"]
    before = all_rows(shop_db)
    done = restore(shop_db, fs_place, location, "--table", "orders")
    assert done.returncode == 2, done.stderr
    assert "already has public.orders" in done.stderr and "--rename-to-suffix" in done.stderr
    assert all_rows(shop_db) == before
    taken = restore(shop_db, fs_place, location, "--table", "orders", "--rename-to-suffix", "_r")
    assert report_of(taken)["outcome"] == "Succeeded"
    again = restore(shop_db, fs_place, location, "--table", "orders", "--rename-to-suffix", "_r")
    assert again.returncode == 2 and "public.orders_r" in again.stderr, again.stderr
    assert not scratch_databases(pg, shop_db)


def test_clean_puts_yesterdays_table_in_place_of_todays_or_changes_nothing(
    shop_db: str, fs_place: BackupPlace
) -> None:
    location = backup(shop_db, fs_place)["backup"]["location"]
    with psycopg.connect(shop_db, autocommit=True) as conn:
        conn.execute("DELETE FROM orders WHERE id % 2 = 0")
        conn.execute('DELETE FROM "Sales Ops"."Quarterly Targets" WHERE target IS NOT NULL')
    targets = '"Sales Ops"."Quarterly Targets"'
    report = report_of(restore(shop_db, fs_place, location, "--table", targets, "--clean"))
    assert [(t["table"], t["actual"], t["matches"]) for t in report["restoredTables"]] == [(targets, 3, True)]
    assert scalar(shop_db, f"SELECT count(*) FROM {targets}") == 3
    assert scalar(shop_db, "SELECT count(*) FROM orders") == 1000, "untouched"
    # orders cannot be replaced while a view reads it: the one transaction fails, nothing changes.
    before = all_rows(shop_db)
    refused = restore(shop_db, fs_place, location, "--table", "orders", "--clean")
    assert (
        refused.returncode == 1 and "view public.big_orders depends on table public.orders" in refused.stderr
    )
    assert all_rows(shop_db) == before


def test_hostile_names_a_whole_schema_and_a_partitioned_table(
    shop_db: str, place: BackupPlace, pg: LocalPostgres
) -> None:
    with psycopg.connect(shop_db, autocommit=True) as conn:
        conn.execute('CREATE TABLE "Sales Ops"."Ørders ""Q"" 2" (id int PRIMARY KEY, "Ünit" text UNIQUE)')
        conn.execute(
            'INSERT INTO "Sales Ops"."Ørders ""Q"" 2" SELECT g, g::text FROM generate_series(1, 7) g'
        )
    location = backup(shop_db, place)["backup"]["location"]

    one = report_of(
        restore(
            shop_db, place, location, "--table", '"Sales Ops"."Ørders ""Q"" 2"', "--rename-to-suffix", "_was"
        )
    )
    assert [(t["table"], t["actual"]) for t in one["restoredTables"]] == [
        ('"Sales Ops"."Ørders ""Q"" 2_was"', 7)
    ]
    assert scalar(shop_db, 'SELECT count(*) FROM "Sales Ops"."Ørders ""Q"" 2_was"') == 7

    whole = report_of(
        restore(shop_db, place, location, "--schema", '"Sales Ops"', "--rename-to-suffix", "_old")
    )
    assert sorted((t["table"], t["actual"]) for t in whole["restoredTables"]) == [
        ('"Sales Ops_old"."Quarterly Targets"', 3),
        ('"Sales Ops_old"."Ørders ""Q"" 2"', 7),
    ]
    assert names(shop_db, "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'Sales Ops%'") == [
        "Sales Ops",
        "Sales Ops_old",
    ]

    parted = report_of(restore(shop_db, place, location, "--table", "EVENTS", "--rename-to-suffix", "_r"))
    assert parted["restoredTables"] == [
        {
            "table": "public.events_r",
            "backupTable": "public.events",
            "expected": 800,
            "actual": 800,
            "matches": True,
        }
    ]
    assert names(
        shop_db, "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'events_r'::regclass"
    ) == [
        "events_2024_r",
        "events_2025_r",
    ]
    assert not scratch_databases(pg, shop_db)


def test_an_encrypted_directory_backup_restores_one_table_into_another_database(
    shop_db: str, place: BackupPlace, pg: LocalPostgres, tmp_path: Path
) -> None:
    identity = x25519.Identity.generate()
    key = tmp_path / "identity.txt"
    key.write_text(str(identity) + "\n")
    location = backup(shop_db, place, "--format", "directory", "--encrypt-to", str(identity.to_public()))[
        "backup"
    ]["location"]
    target = pg.create_database()
    sealed = restore(target, place, location, "--table", "customers")
    assert sealed.returncode == 2 and "identity" in sealed.stderr.lower(), sealed.stderr
    report = report_of(restore(target, place, location, "--table", "customers", "--identity", str(key)))
    assert report["restoredTables"][0]["actual"] == 500
    assert all_rows(target)["public.customers"] == all_rows(shop_db)["public.customers"]
    assert names(
        target, "SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
    ) == ["customers"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--table", "nosuch"], "the backup has no table nosuch"),
        (["--table", "a.b.c"], "not a table name"),
        (["--schema", "nosuch"], "no table in schema nosuch"),
        (["--table", "orders", "--rename-to-suffix=-x"], "rename suffix '-x'"),
        (["--rename-to-suffix", "_x"], "goes with --schema or --table"),
        (["--table", "orders", "--create"], "without --create"),
        (["--table", '"Sales Ops"."Quarterly Targets"'], 'schema "Sales Ops" does not exist'),
    ],
)
def test_bad_selections_are_refused_before_anything_is_restored(
    shop_db: str, fs_place: BackupPlace, pg: LocalPostgres, flags: list[str], message: str
) -> None:
    location = backup(shop_db, fs_place)["backup"]["location"]
    target = pg.create_database()
    done = restore(target, fs_place, location, *flags)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert all_rows(target) == {}
