"""Kill it anywhere, on the real node (issue 18): a migration Job's container SIGKILLed through runc between the
two renames of its restore rollback's swap — no database has the name then — and the operator's one recovery
Job puts the database back under its name; status and an Event say what the recovery did.

Where the kill lands is made certain from the outside, with no pause point (the image has none): two
transactions of the test hold the catalog rows of the database and of its verified copy, so the swap waits
first at its first rename and then, once the test lets that one through, at its second; the container is
killed there, and the session it left waiting is ended, as its lock timeout would end it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from operator_support import (
    TERMINAL,
    ChartOperator,
    _kill_container,
    events,
    in_namespace,
    resource,
    s3_secret,
    s3_storage,
    secret,
    wait_status,
)
from pgwarden_testing import s3server
from pgwarden_testing.localpg import LocalPostgres
from psycopg import sql

if TYPE_CHECKING:
    from tests.cluster.conftest import LocalCluster

pytestmark = pytest.mark.cluster

FILES = {
    "0001_note.sql": "ALTER TABLE orders ADD COLUMN note text;\nUPDATE orders SET note = 'n' WHERE id < 50;",
    "0002_index.sql": "CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_total_idx ON orders (total);",
    "0003_fails.sql": "SELECT 1 / 0;",
}


def rows(conn: psycopg.Connection[Any], query: str, *params: object) -> list[tuple[Any, ...]]:
    return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


def waiting_rename(admin: psycopg.Connection[Any]) -> int | None:
    """The pid of the run's session waiting to rename a database, if it is waiting."""
    found = rows(
        admin,
        "SELECT pid FROM pg_stat_activity WHERE query ILIKE 'ALTER DATABASE%%RENAME TO%%' AND wait_event_type = 'Lock'",
    )
    return int(found[0][0]) if found else None


def hold_row(url: str, database: str) -> psycopg.Connection[Any]:
    """A transaction that has updated the catalog row of `database` and stays open: a rename of it waits."""
    conn = psycopg.connect(url)
    conn.execute(sql.SQL("ALTER DATABASE {} CONNECTION LIMIT -1").format(sql.Identifier(database)))
    return conn


def test_a_job_killed_between_the_renames_of_its_swap_is_recovered_by_the_operator(
    kube: LocalCluster, operator: ChartOperator, pg: LocalPostgres, s3: s3server.S3Server
) -> None:
    url = pg.create_database()
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, total numeric NOT NULL)")
        conn.execute("INSERT INTO orders SELECT g, g * 2 FROM generate_series(1, 500) g")
    before = contents(url)
    bucket = s3.create_bucket()
    spec = {
        "database": {"secretRef": {"name": "shop-db"}},
        "migrations": {"inline": [{"name": n, "sql": s} for n, s in FILES.items()]},
        "backupBefore": {"storage": s3_storage(s3, bucket, "safety")},
        "rollback": {"strategy": "restore"},
    }
    with psycopg.connect(pg.url(), autocommit=True) as admin:
        first = hold_row(pg.url(), name)  # the swap will wait at the database's first rename
        kube.apply(
            *in_namespace(
                operator.namespace,
                secret("shop-db", uri=url),
                s3_secret(s3),
                resource("DatabaseMigration", "shop", spec),
            )
        )
        kube.wait_for(
            "the swap to wait for its first step", lambda: waiting_on(admin, "ALLOW_CONNECTIONS"), timeout=900
        )
        (verified,) = [
            r[0]
            for r in rows(
                admin, "SELECT datname FROM pg_database WHERE datname LIKE %s", f"{name}\\_pgw\\_verified\\_%"
            )
        ]
        second = hold_row(pg.url(), str(verified))  # ... and at its second rename
        first.rollback()
        first.close()
        kube.wait_for(
            "the database renamed away, the verified copy's rename waiting",
            lambda: not exists(admin, name) and waiting_rename(admin) is not None,
            timeout=60,
        )
        (job,) = [
            j for j in kube.get_all("jobs", operator.namespace) if j["metadata"]["name"].startswith("shop-")
        ]
        (pod,) = kube.get_all("pods", operator.namespace, "-l", f"job-name={job['metadata']['name']}")
        _kill_container(pod)
        pid = waiting_rename(admin)
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])  # as its lock_timeout would, later
        second.rollback()
        second.close()
        assert not exists(admin, name), "the kill must land between the renames"

    status = wait_status(kube, operator, "dbmig", "shop", lambda s: s.get("phase") in TERMINAL, timeout=600)

    assert status["phase"] == "RolledBack", status
    recovered = status["recovered"]
    assert recovered["state"] == "Recovered", recovered
    assert any("completed the swap" in line for line in recovered["done"]), recovered
    assert "recovery Job" in status["message"]
    with psycopg.connect(pg.url(), autocommit=True) as admin:
        assert exists(admin, name) and rows(
            admin, "SELECT datallowconn FROM pg_database WHERE datname = %s", name
        ) == [(True,)]
    assert contents(url) == before
    reasons = [e["reason"] for e in events(kube, operator.namespace, "shop")]
    assert "Recovering" in reasons and "Recovered" in reasons, reasons
    recovery_jobs = [
        j for j in kube.get_all("jobs", operator.namespace) if "-recover-" in j["metadata"]["name"]
    ]
    assert len(recovery_jobs) == 1
    time.sleep(5)  # decided again meanwhile: still one recovery Job
    assert (
        len([j for j in kube.get_all("jobs", operator.namespace) if "-recover-" in j["metadata"]["name"]])
        == 1
    )


def contents(url: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], int]:
    """The user's columns and indexes (with their validity) and the rows of `orders`."""
    with psycopg.connect(url, autocommit=True) as conn:
        columns = rows(
            conn,
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'public' ORDER BY 1, 2",
        )
        indexes = rows(
            conn,
            "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' ORDER BY 1",
        )
        (count,) = rows(conn, "SELECT count(*) FROM orders")[0]
    return columns, indexes, int(count)


def waiting_on(admin: psycopg.Connection[Any], fragment: str) -> bool:
    return bool(
        rows(
            admin,
            "SELECT 1 FROM pg_stat_activity WHERE query ILIKE %s AND wait_event_type = 'Lock'",
            f"%{fragment}%",
        )
    )


def exists(admin: psycopg.Connection[Any], name: str) -> bool:
    return bool(rows(admin, "SELECT 1 FROM pg_database WHERE datname = %s", name))
