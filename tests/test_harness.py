"""The harness itself: servers are real, distinct versions, and refuse a wrong password."""

import psycopg
import pytest
from pgwarden_testing import localpg


def test_fresh_database_is_a_real_empty_database(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        tables = conn.execute("select count(*) from pg_tables where schemaname = 'public'").fetchone()
    assert tables == (0,)


def test_oldest_and_newest_servers_differ_in_major_version(any_pg: localpg.LocalPostgres) -> None:
    with psycopg.connect(any_pg.url()) as conn:
        version = conn.info.server_version // 10000
    assert version == any_pg.install.major


def test_server_requires_the_password(pg: localpg.LocalPostgres) -> None:
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(f"postgresql://postgres:wrong@127.0.0.1:{pg.port}/postgres").close()
