"""A database pgwarden made is dropped by its owner role even while autovacuum works on it.

A freshly restored copy is where autovacuum goes first. `DROP DATABASE … WITH (FORCE)` refuses, to a role
without SUPERUSER, to end an autovacuum worker ("permission denied to terminate process"), while a plain
`DROP DATABASE` ends the worker itself. CI met this once in a restore rollback (the restored copy stayed).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import psycopg
import pytest
from pgwarden_testing import localpg
from psycopg import sql

from pgwarden.engine.postgres import databases


@pytest.fixture(scope="module")
def eager_autovacuum() -> Iterator[localpg.LocalPostgres]:
    """A server of its own whose autovacuum looks at every database each second."""
    with localpg.running() as server:
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET autovacuum_naptime = '1s'")
            conn.execute("SELECT pg_reload_conf()")
        yield server


def owner_role(server: localpg.LocalPostgres) -> str:
    """A role that may create databases and owns what it creates, as pgwarden's user usually is: its URL."""
    role, password = f"app_{secrets.token_hex(4)}", secrets.token_hex(12)
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )
    return f"postgresql://{role}:{password}@127.0.0.1:{server.port}/postgres"


def vacuumed_slowly(url: str, name: str) -> None:
    """Database `name`, made by the role of `url`, with a table whose autovacuum is throttled to crawl."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with psycopg.connect(url.rsplit("/", 1)[0] + f"/{name}", autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE t (id int) WITH (autovacuum_vacuum_threshold = 0, autovacuum_vacuum_scale_factor = 0,"
            " autovacuum_vacuum_cost_delay = 100, autovacuum_vacuum_cost_limit = 1)"
        )
        conn.execute("INSERT INTO t SELECT generate_series(1, 200000)")
        conn.execute("DELETE FROM t")


def autovacuum_on(server: localpg.LocalPostgres, name: str, seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    with psycopg.connect(server.url(), autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND backend_type = 'autovacuum worker'",
                [name],
            ).fetchone()
            if row and row[0]:
                return True
            time.sleep(0.2)
    return False


def test_the_owner_drops_its_database_while_an_autovacuum_worker_is_on_it(
    eager_autovacuum: localpg.LocalPostgres,
) -> None:
    url = owner_role(eager_autovacuum)
    name = f"shop_pgw_restore_{secrets.token_hex(3)}"
    vacuumed_slowly(url, name)
    assert autovacuum_on(eager_autovacuum, name), "autovacuum never came to the database"

    with psycopg.connect(url, autocommit=True) as conn:
        databases.drop(conn, name)

    with psycopg.connect(eager_autovacuum.url(), autocommit=True) as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None


def test_a_session_of_another_role_still_stops_the_drop_with_its_reason(
    eager_autovacuum: localpg.LocalPostgres,
) -> None:
    """Only autovacuum is handed to PostgreSQL: a superuser's session on the database is not ours to end."""
    url = owner_role(eager_autovacuum)
    name = f"shop_pgw_restore_{secrets.token_hex(3)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with (
        psycopg.connect(eager_autovacuum.url(name)),
        psycopg.connect(url, autocommit=True) as conn,
        pytest.raises(psycopg.errors.ObjectInUse, match=r"being accessed by other users"),
    ):
        databases.drop(conn, name, attempts=1)
