"""Progress of long DDL in a DatabaseMigration's status, end to end on the local cluster (issue 13): while the
Job's CREATE INDEX CONCURRENTLY waits for an old snapshot, status.progress names its migration and the build's
phase (read by the chart's operator from the Job Pod's log); once the snapshot is gone and the run succeeds,
status.progress is gone too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import psycopg
import pytest
from operator_support import (
    TERMINAL,
    ChartOperator,
    Obj,
    assert_never_shown,
    in_namespace,
    resource,
    secret,
    seed,
    wait_status,
)
from pgwarden_testing.localpg import LocalPostgres

if TYPE_CHECKING:
    from tests.cluster.conftest import LocalCluster

pytestmark = pytest.mark.cluster
WAITING = "waiting for old snapshots"


def test_a_waiting_index_build_shows_in_status_progress_until_the_run_succeeds(
    kube: LocalCluster, operator: ChartOperator, pg: LocalPostgres
) -> None:
    url = pg.create_database()
    seed(url, rows=1000)
    ns = operator.namespace
    migration: Obj = {
        "database": {"secretRef": {"name": "shop-db"}},
        "migrations": {
            "inline": [
                {
                    "name": "0001_orders_by_customer.sql",
                    "sql": "CREATE INDEX CONCURRENTLY orders_by_customer ON orders (customer_id);\n",
                }
            ]
        },
        # The build waits on the test's snapshot: a lock wait, which lockTimeout would otherwise end.
        "policy": {"lockTimeout": "600s", "statementTimeout": "900s"},
    }
    # An open snapshot older than the build holds it in its last phase until this transaction ends.
    with psycopg.connect(url) as holder:
        holder.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT count(*) FROM orders").fetchone()
        kube.apply(
            *in_namespace(ns, secret("shop-db", uri=url), resource("DatabaseMigration", "indexed", migration))
        )
        status = wait_status(
            kube,
            operator,
            "dbmig",
            "indexed",
            lambda s: (s.get("progress") or {}).get("phase") == WAITING or s.get("phase") in TERMINAL,
            timeout=300,
        )
        assert status["phase"] == "Running", status
        progress = status["progress"]
        assert (progress["version"], progress["script"], progress["line"], progress["table"]) == (
            "0001",
            "0001_orders_by_customer.sql",
            1,
            "orders",
        ), progress
        assert progress["statement"].startswith("CREATE INDEX CONCURRENTLY orders_by_customer"), progress
        assert progress["elapsedSeconds"] >= 2, progress
        observed = datetime.fromisoformat(progress["observedAt"].replace("Z", "+00:00"))
        assert abs((datetime.now(UTC) - observed).total_seconds()) < 120, progress
        holder.rollback()

    status = wait_status(
        kube, operator, "dbmig", "indexed", lambda s: s.get("phase") in TERMINAL, timeout=180
    )
    assert status["phase"] == "Succeeded", status
    assert "progress" not in status, status
    with psycopg.connect(url) as conn:
        valid = conn.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_by_customer'::regclass"
        ).fetchone()
    assert valid == (True,)
    assert_never_shown(kube, operator, pg.password)
