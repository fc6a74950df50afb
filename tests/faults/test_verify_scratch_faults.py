"""`pgwarden backup --verify` under faults in its scratch restore (`pgwarden_verify_<id>`): the restore's
session ended mid-copy. The backup is not recorded (nothing listed, nothing at a final key), the scratch
database is gone, the source untouched, and a rerun converges. (Signals at this phase are in
test_backup_faults.py, SIGKILL in tests/cli/test_backup_verify_scratch.py.)"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from pgwarden_testing.localpg import LocalPostgres

from cli.helpers import clone_database, execute, table_counts
from faults import (
    GRACE,
    SHOP_SEED,
    Injector,
    Pgwarden,
    assert_no_secret,
    databases,
    filesystem_place,
    json_report,
    run_pgwarden,
)


@pytest.fixture(scope="module")
def shop_template(canary_pg: LocalPostgres) -> str:
    url = canary_pg.create_database()
    execute(url, SHOP_SEED)
    return url


def verify_sessions(server: LocalPostgres, fragment: str) -> list[int]:
    with psycopg.connect(server.url(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE starts_with(datname, 'pgwarden_verify_')"
            " AND backend_type = 'client backend' AND state = 'active' AND strpos(query, %s) > 0",
            (fragment,),
        ).fetchall()
    return [int(r[0]) for r in rows]


def scratch(server: LocalPostgres) -> set[str]:
    return {name for name in databases(server.url()) if name.startswith("pgwarden_verify_")}


def test_the_verification_restores_session_ended_records_no_backup_and_leaves_no_scratch(
    canary_pg: LocalPostgres, shop_template: str, tmp_path: Path, inject: Injector
) -> None:
    shop = clone_database(shop_template, canary_pg.url())
    place = filesystem_place(tmp_path / "backups")
    counts = table_counts(shop)
    before = scratch(canary_pg)

    with Pgwarden("backup", shop, "--to", place.uri, "--compress", "none", "--verify", "--json") as run:
        run.wait_until(lambda: bool(verify_sessions(canary_pg, "COPY ")), "the verification restoring")
        inject.record("pg_terminate_backend")
        with psycopg.connect(canary_pg.url(), autocommit=True) as conn:
            for pid in verify_sessions(canary_pg, ""):
                conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        result = run.finish(timeout=GRACE)

    output = result.stdout + result.stderr
    assert "unexpected error" not in output, output
    assert result.returncode == 1, output
    report = json_report(result)
    assert report["outcome"] == "Failed" and "backup" not in report, report
    assert place.listed() == [] and place.keys() == [] and place.pending() == []
    assert scratch(canary_pg) - before == set(), "the verification left its scratch database"
    assert table_counts(shop) == counts
    assert_no_secret(canary_pg.password, result.stdout, result.stderr)

    rerun = run_pgwarden("backup", shop, "--to", place.uri, "--verify", "--json")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert [b["verified"] for b in place.listed()] == [True]
