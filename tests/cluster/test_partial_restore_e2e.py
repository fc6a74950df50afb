"""Restoring one table end to end: rows deleted by mistake, and a DatabaseRestore that brings yesterday's copy
of that table (and of a table with a hostile name) back beside today's under a suffix, leaving every other
table as it was. The operator and its Jobs run from pgwarden's image on the real node, against a real
PostgreSQL and a real MinIO."""

from __future__ import annotations

from typing import TYPE_CHECKING

import psycopg
import pytest
from operator_support import (
    TERMINAL,
    ChartOperator,
    in_namespace,
    resource,
    s3_secret,
    s3_storage,
    secret,
    seed,
    wait_status,
)
from pgwarden_testing import s3server
from pgwarden_testing.localpg import LocalPostgres

if TYPE_CHECKING:
    from tests.cluster.conftest import LocalCluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]
HOSTILE = '"Sales Ops"."Ørders ""Q"" 2"'


def rows(url: str) -> dict[str, list[str]]:
    """Every row of every table, as text, sorted: equal dicts mean equal data."""
    with psycopg.connect(url) as conn:
        tables = [
            str(name)
            for (name,) in conn.execute(
                "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname NOT IN "
                "('pg_catalog', 'information_schema') ORDER BY 1"
            ).fetchall()
        ]
        return {
            t: [str(r[0]) for r in conn.execute(f"SELECT x::text FROM {t} x ORDER BY 1").fetchall()]
            for t in tables
        }


def test_yesterdays_orders_come_back_beside_todays_and_every_other_table_stays(
    kube: LocalCluster, operator: ChartOperator, pg: LocalPostgres, s3: s3server.S3Server
) -> None:
    url = pg.create_database()
    seed(url, rows=40)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute('CREATE SCHEMA "Sales Ops"')
        conn.execute(f'CREATE TABLE {HOSTILE} (id int PRIMARY KEY, "Ünit" text UNIQUE)')
        conn.execute(f"INSERT INTO {HOSTILE} SELECT g, 'u' || g FROM generate_series(1, 9) g")
    yesterday = rows(url)
    bucket = s3.create_bucket()
    backup = {"database": {"secretRef": {"name": "db"}}, "storage": s3_storage(s3, bucket, "shop/")}
    kube.apply(
        *in_namespace(
            operator.namespace,
            secret("db", uri=url),
            s3_secret(s3),
            resource("DatabaseBackup", "shop", backup),
        )
    )
    made = wait_status(kube, operator, "dbbackup", "shop", lambda s: s.get("phase") in TERMINAL, timeout=240)
    assert made["phase"] == "Succeeded", made

    with psycopg.connect(url, autocommit=True) as conn:  # the mistake
        conn.execute("DELETE FROM orders WHERE id > 10")
        conn.execute(f"DELETE FROM {HOSTILE} WHERE id > 3")
        conn.execute("UPDATE customers SET name = 'changed today' WHERE id = 1")
    today = rows(url)

    spec = {
        "database": {"secretRef": {"name": "db"}},
        "source": {"backupRef": {"name": "shop", "id": "latest"}},
        "only": {"tables": ["orders", HOSTILE]},
        "renameSuffix": "_restored",
    }
    kube.apply(*in_namespace(operator.namespace, resource("DatabaseRestore", "orders-back", spec)))
    status = wait_status(
        kube, operator, "dbrestore", "orders-back", lambda s: s.get("phase") in TERMINAL, 240
    )
    assert status["phase"] == "Succeeded", status

    assert status["restoredTables"] == [
        {
            "table": '"Sales Ops"."Ørders ""Q"" 2_restored"',
            "backupTable": '"Sales Ops"."Ørders ""Q"" 2"',
            "expected": 9,
            "actual": 9,
            "matches": True,
        },
        {
            "table": "public.orders_restored",
            "backupTable": "public.orders",
            "expected": 80,
            "actual": 80,
            "matches": True,
        },
    ]
    assert status["leftOut"] == [
        "FK CONSTRAINT public orders orders_customer_id_fkey: it references a table not restored"
    ]
    assert "orders_restored" in status["message"]
    after = rows(url)
    assert after.pop("public.orders_restored") == yesterday["public.orders"]
    assert after.pop('"Sales Ops"."Ørders ""Q"" 2_restored"') == yesterday['"Sales Ops"."Ørders ""Q"" 2"']
    assert after == today, "every other table, today's orders included, is as it was"
    with psycopg.connect(url) as conn:
        indexes = conn.execute(
            "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = 'orders_restored'::regclass"
        ).fetchall()
        scratch = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE '%pgw_partial%'"
        ).fetchall()
    assert [i[0] for i in indexes] == ["orders_pkey_restored"]
    print(
        kube.kubectl("describe", "dbrestore", "orders-back", "-n", operator.namespace).stdout
    )  # for the README
    assert scratch == [], "the scratch database is gone"
