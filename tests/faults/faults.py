"""Fault injection for the real `pgwarden` console script: run it, wait for a phase, break something.

A phase is recognised from the outside, the way an operator would see it: a session in pg_stat_activity
(pgwarden's own sessions are named `pgwarden`, pg_dump's and pg_restore's by the tool), a line on stderr,
an upload in progress in the storage. Faults are real: signals to the process, `pg_terminate_backend`,
PostgreSQL stopped with `pg_ctl -m immediate`, MinIO stopped, a lock held by another session. Every fault a
test injects is recorded on the test item, so the suite can say how many of each kind it delivered.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, LiteralString

import psycopg
import pytest
from pgwarden_testing import localpg, s3server
from pgwarden_testing.processes import kill_process_tree
from psycopg import sql

from cli.helpers import PGWARDEN, clean_env, json_report, pause_env, pgwarden_command, run_pgwarden
from pgwarden.engine.recovery.locks import lock_key
from pgwarden.storage import Storage
from pgwarden.storage.filesystem import FilesystemStorage
from pgwarden.storage.manifest import MANIFEST
from pgwarden.storage.s3 import S3Storage

__all__ = [
    "FAULT_PROPERTY",
    "GRACE",
    "PGWARDEN",
    "SHOP_SEED",
    "Activity",
    "Contents",
    "Injector",
    "Pgwarden",
    "Place",
    "accepts_connections",
    "assert_no_secret",
    "canary_password",
    "databases",
    "filesystem_place",
    "hold_lock",
    "hold_migrator_lock",
    "invalid_indexes",
    "json_report",
    "kill_process_tree",
    "minio_with_canary",
    "private_postgres",
    "restart_minio",
    "restart_postgres",
    "run_pgwarden",
    "s3_place",
    "scalar",
    "scratch_databases",
    "set_statement_timeout",
    "wait_sessions_gone",
]

POLL = 0.02
FAULT_PROPERTY = "fault"
# Kubernetes' default terminationGracePeriodSeconds: after SIGTERM a run has this long to end and report.
GRACE = 30.0

# A database for backup and restore faults. `bulk` (about 40 MB) keeps pg_dump, the upload and pg_restore
# busy long enough to be caught at work; `audit` has no index and no default, so a lock on it holds up the
# row counts and pg_dump but not the reading of the schema (index definitions and defaults take locks).
SHOP_SEED = """
CREATE TABLE orders (id int PRIMARY KEY, total numeric NOT NULL);
INSERT INTO orders SELECT g, g * 1.5 FROM generate_series(1, 1000) g;
CREATE TABLE audit (at timestamptz, what text);
INSERT INTO audit SELECT now(), 'seed ' || g FROM generate_series(1, 100) g;
CREATE TABLE bulk (id int, a text, b text);
INSERT INTO bulk SELECT g, md5(g::text) || md5((g * 7)::text), md5((g * 13)::text)
FROM generate_series(1, 300000) g;
"""


def canary_password() -> str:
    """A password that cannot appear in any output by accident: finding it there is a leak."""
    return f"canary-{secrets.token_hex(10)}"


def assert_no_secret(secret: str, *outputs: str) -> None:
    """The secret appears in none of the outputs (stdout, stderr, reports)."""
    for text in outputs:
        assert secret not in text, f"the secret was printed:\n{text}"


# --- the process under test --------------------------------------------------------------------------


class Pgwarden:
    """`pgwarden ARGS` started in a session of its own, stdout and stderr collected while it runs.

    Its own session means the test can clean up any child it left (an orphaned pg_dump) by process group,
    never by name."""

    def __init__(
        self, *args: str | Path, env: dict[str, str] | None = None, pause_at: str | None = None
    ) -> None:
        self.args = [*pgwarden_command(pause_at), *map(str, args)]
        self.process = subprocess.Popen(
            self.args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(pause_env(pause_at, env)),
            start_new_session=True,
        )
        self._stdout: list[str] = []
        self._stderr: list[str] = []
        assert self.process.stdout is not None and self.process.stderr is not None
        self._readers = [
            threading.Thread(target=_collect, args=(self.process.stdout, self._stdout), daemon=True),
            threading.Thread(target=_collect, args=(self.process.stderr, self._stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def __enter__(self) -> Pgwarden:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.cleanup()

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = 60) -> float:
        """Poll `condition` until it holds; fail if pgwarden ends first. Returns the seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if condition():
                return time.monotonic() - started
            if self.process.poll() is not None:
                self._join()
                raise AssertionError(
                    f"pgwarden ended (exit {self.process.returncode}) before {what}\n"
                    f"stdout:\n{''.join(self._stdout)}\nstderr:\n{self.stderr}"
                )
            time.sleep(POLL)
        raise AssertionError(f"pgwarden did not reach {what} within {timeout:.0f}s\nstderr:\n{self.stderr}")

    def connecting_to(self, port: int) -> Callable[[], bool]:
        """A condition: pgwarden itself holds a TCP connection to `port` (its login may still be under way,
        before the server lists the session in pg_stat_activity)."""
        return lambda: port in _tcp_peer_ports(self.process.pid)

    def stderr_says(self, text: str) -> Callable[[], bool]:
        """A condition: `text` has appeared on stderr (a progress line)."""
        return lambda: text in self.stderr

    def send(self, signum: signal.Signals) -> None:
        """Deliver a signal to pgwarden itself (as the kubelet or the OOM killer would)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signum)

    def kill_tree(self) -> int:
        """SIGKILL pgwarden and every process it started, at once, as when its container dies: its children
        in its own process group (pg_dump, pg_restore) and in sessions of their own (scratch guardians).
        Returns how many processes were killed."""
        return kill_process_tree(self.process.pid)

    def finish(self, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Wait for the process to end (killing it after `timeout`, which fails the test) and collect it."""
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.cleanup()
            raise AssertionError(
                f"pgwarden did not end within {timeout:.0f}s of the fault\nstderr:\n{self.stderr}"
            ) from None
        self._join()
        return subprocess.CompletedProcess(
            self.args, self.process.returncode, "".join(self._stdout), self.stderr
        )

    def _join(self) -> None:
        for reader in self._readers:
            reader.join(timeout=10)

    def cleanup(self) -> None:
        """Kill whatever of this run is still alive (pgwarden, an orphaned pg_dump or pg_restore)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


def _collect(stream: IO[str], into: list[str]) -> None:
    for line in stream:
        into.append(line)


def _tcp_peer_ports(pid: int) -> set[int]:
    """Remote ports of the established TCP connections of one process (from /proc, Linux)."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = str(fd.readlink())
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "01" and fields[9] in inodes:  # 01: ESTABLISHED
                    ports.add(int(fields[2].rsplit(":", 1)[1], 16))
    return ports


# --- the server, seen from another session ------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    """One row of pg_stat_activity for the database under test."""

    pid: int
    application: str
    state: str
    waiting_on: str | None
    query: str


class Activity:
    """Watches a database's sessions from a connection of its own (kept open: polls are frequent)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: psycopg.Connection[Any] | None = None

    def __enter__(self) -> Activity:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def backends(self) -> list[Backend]:
        """Every other client session on this database or on pgwarden's working copies of it
        (`<name>_pgw_…`, where a restore works before it takes the name): pgwarden's, pg_dump's,
        pg_restore's, anyone's. Watched from the maintenance database, which exists before the target."""
        name = self.url.rsplit("/", 1)[1]
        try:
            if self._conn is None or self._conn.closed:
                maintenance = self.url.rsplit("/", 1)[0] + "/postgres"
                self._conn = psycopg.connect(maintenance, autocommit=True, application_name="fault-watch")
            rows = self._conn.execute(
                "SELECT pid, application_name, coalesce(state, ''), wait_event_type, coalesce(query, '')"
                " FROM pg_stat_activity WHERE (datname = %s OR starts_with(datname, %s))"
                " AND pid <> pg_backend_pid()"
                " AND backend_type = 'client backend' AND application_name <> 'fault-watch'",
                (name, f"{name}_pgw_"),
            ).fetchall()
        except psycopg.OperationalError:
            self.close()  # the server went away or our session was ended: look again next time
            return []
        return [Backend(int(p), str(a), str(s), w, str(q)) for p, a, s, w, q in rows]

    def running(
        self, fragment: str, *, application: str | None = "pgwarden", waiting_on_lock: bool = False
    ) -> Callable[[], bool]:
        """A condition: a session of `application` (None: any) is executing a statement containing
        `fragment` (and, with `waiting_on_lock`, is blocked on a lock while doing so)."""
        needle = fragment.lower()

        def check() -> bool:
            for backend in self.backends():
                if application is not None and backend.application != application:
                    continue
                if needle not in backend.query.lower():
                    continue
                if backend.state != "active":
                    continue
                if waiting_on_lock and backend.waiting_on != "Lock":
                    continue
                return True
            return False

        return check

    def ran(self, fragment: str, *, application: str | None = "pgwarden") -> Callable[[], bool]:
        """A condition: a session of `application` (None: any) runs or last ran a statement containing
        `fragment`. Once seen, it stays true (a phase that has begun has begun)."""
        needle = fragment.lower()
        seen = False

        def check() -> bool:
            nonlocal seen
            seen = seen or any(
                application in (None, b.application) and needle in b.query.lower() for b in self.backends()
            )
            return seen

        return check

    def connected(self, application: str = "pgwarden") -> Callable[[], bool]:
        """A condition: a session of `application` is connected to the database."""
        return lambda: any(b.application == application for b in self.backends())

    def terminate(self, application: str = "pgwarden") -> int:
        """pg_terminate_backend on every session of `application`; returns how many were ended."""
        pids = [b.pid for b in self.backends() if b.application == application]
        assert self._conn is not None
        for pid in pids:
            self._conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        return len(pids)


def wait_sessions_gone(url: str, applications: tuple[str, ...] = ("pgwarden",), timeout: float = 60) -> None:
    """Wait until no session of these applications is left on the database: after a SIGKILL the server
    notices the dead client only when its statement ends, and only then is its transaction rolled back."""
    with Activity(url) as activity:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = [b for b in activity.backends() if b.application in applications]
            if not left:
                return
            time.sleep(0.1)
    raise AssertionError(f"sessions still open {timeout:.0f}s after the fault: {left}")


@contextlib.contextmanager
def hold_lock(url: str, table: str, mode: str = "ACCESS EXCLUSIVE") -> Iterator[psycopg.Connection[Any]]:
    """Another session holds `mode` on `table` (in an open transaction) for the block."""
    with psycopg.connect(url, application_name="fault-lock") as conn:
        conn.execute(
            sql.SQL("LOCK TABLE {} IN {} MODE").format(sql.Identifier(*table.split(".")), sql.SQL(mode))
        )
        yield conn
        with contextlib.suppress(psycopg.OperationalError):  # its session may have been ended meanwhile
            conn.rollback()


@contextlib.contextmanager
def hold_migrator_lock(url: str, schema: str = "pgwarden") -> Iterator[None]:
    """Another migrator holds the database's migrator lock (the advisory lock pgwarden takes) for the block."""
    with psycopg.connect(url, autocommit=True, application_name="fault-migrator") as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (lock_key(schema),))
        yield
        conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key(schema),))


def invalid_indexes(url: str) -> list[str]:
    """INVALID indexes anywhere in the database (what a failed CREATE INDEX CONCURRENTLY leaves)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid ORDER BY 1"
        ).fetchall()
    return [str(r[0]) for r in rows]


def scalar(url: str, statement: LiteralString, params: tuple[object, ...] = ()) -> Any:
    """The single value of a query (on a connection of its own)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(statement, params).fetchone()
    return row[0] if row else None


def set_statement_timeout(server_url: str, dbname: str, value: str | None) -> None:
    """A database-wide statement_timeout, as a DBA sets one on managed PostgreSQL (None: reset it)."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        name = sql.Identifier(dbname)
        if value is None:
            conn.execute(sql.SQL("ALTER DATABASE {} RESET statement_timeout").format(name))
        else:
            conn.execute(
                sql.SQL("ALTER DATABASE {} SET statement_timeout = {}").format(name, sql.Literal(value))
            )


def databases(url: str) -> set[str]:
    """The names of the databases on the server `url` points to."""
    with psycopg.connect(url, autocommit=True) as conn:
        return {str(r[0]) for r in conn.execute("SELECT datname FROM pg_database").fetchall()}


# --- where backups go, seen from outside pgwarden --------------------------------------------------------


@dataclass
class Place:
    """A backup location: the URI pgwarden takes, the environment it needs, the storage to look into, and
    the secrets (storage keys) that must never be printed."""

    uri: str
    env: dict[str, str]
    storage: Storage
    secrets: tuple[str, ...] = ()

    def listed(self) -> list[dict[str, Any]]:
        """The backups `pgwarden backups URI --json` lists as complete."""
        listing = run_pgwarden("backups", self.uri, "--json", env=self.env)
        assert listing.returncode == 0, listing.stdout + listing.stderr
        backups = json_report(listing)["backups"]
        assert isinstance(backups, list)
        return backups

    def keys(self) -> list[str]:
        """Every object stored under the prefix (complete objects at their final keys)."""
        return [obj.key for obj in self.storage.list_objects()]

    def pending(self) -> list[str]:
        """Writes under way or abandoned: partial files, multipart uploads never completed."""
        return [write.key for write in self.storage.list_pending()]

    def upload_in_progress(self) -> Callable[[], bool]:
        """A condition: a dump is being written (a partial file, a multipart upload with parts)."""
        return lambda: bool(self.pending())

    def dump_stored_without_manifest(self) -> Callable[[], bool]:
        """A condition: a dump sits at its final key and its backup has no manifest (yet)."""

        def check() -> bool:
            keys = self.keys()
            return any("/dump." in key and f"{key.split('/', 1)[0]}/{MANIFEST}" not in keys for key in keys)

        return check

    def prune_debris(self) -> None:
        """`pgwarden prune` with no grace period: what an interrupted backup left goes."""
        pruned = run_pgwarden("prune", self.uri, "--debris-grace", "0s", "--json", env=self.env)
        assert pruned.returncode == 0, pruned.stdout + pruned.stderr


def filesystem_place(root: Path) -> Place:
    return Place(str(root), {}, FilesystemStorage(root))


def s3_place(server: s3server.S3Server, prefix: str = "nightly") -> Place:
    """A fresh bucket on `server`; pgwarden reaches it through the AWS_* environment."""
    bucket = server.create_bucket()
    storage = S3Storage(server.client(), bucket, prefix)
    return Place(f"s3://{bucket}/{prefix}", server.env(), storage, (server.secret_key,))


# --- private servers, to stop and start ---------------------------------------------------------------


@contextlib.contextmanager
def private_postgres(password: str) -> Iterator[localpg.LocalPostgres]:
    """A PostgreSQL server of this test's own (newest install), so stopping it harms nobody else."""
    with localpg.running(localpg.newest_install(), password=password) as server:
        yield server


def restart_postgres(server: localpg.LocalPostgres) -> None:
    """Start a server stopped by `server.stop()` again, on the same data directory and port."""
    server.start_again()


@dataclass
class PrivateMinio:
    """A MinIO of this test's own, with a data directory and port that survive a stop and restart."""

    server: s3server.S3Server
    port: int
    root: Path
    restarts: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def stop(self) -> None:
        """Stop MinIO hard (SIGKILL), as a crashed or partitioned storage would look to a client."""
        for process in [self.server.process, *self.restarts]:
            if process.poll() is None:
                process.kill()
                process.wait()


@contextlib.contextmanager
def minio_with_canary() -> Iterator[PrivateMinio]:
    """A private MinIO (its root secret key random, so a leak of it is detectable in output)."""
    server = s3server.start()
    port = int(server.endpoint.rsplit(":", 1)[1])
    minio = PrivateMinio(server, port, server.data_dir.parent)
    try:
        yield minio
    finally:
        minio.stop()
        shutil.rmtree(minio.root, ignore_errors=True)


def restart_minio(minio: PrivateMinio, timeout: float = 60) -> None:
    """Start the stopped MinIO again on the same port, data and credentials."""
    server = minio.server
    process = s3server.launch(
        server.access_key, server.secret_key, server.data_dir, server.log, "127.0.0.1", minio.port
    )
    minio.restarts.append(process)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            server.client().list_buckets()
            return
        time.sleep(0.2)
    raise AssertionError(f"MinIO did not come back on port {minio.port}:\n{server.log_tail()}")


# --- counting what was injected ------------------------------------------------------------------------


class Injector:
    """Delivers faults and records each on the test item, so the suite can count them by kind."""

    def __init__(self, node: pytest.Item) -> None:
        self._node = node

    def record(self, kind: str) -> None:
        self._node.user_properties.append((FAULT_PROPERTY, kind))

    def signal(self, run: Pgwarden, signum: signal.Signals) -> None:
        self.record(signum.name)
        run.send(signum)

    def kill_tree(self, run: Pgwarden) -> None:
        """SIGKILL the run's whole process tree (its container dying), guardians included."""
        self.record("SIGKILL (process tree)")
        run.kill_tree()

    def terminate_backends(self, activity: Activity, application: str = "pgwarden") -> int:
        self.record("pg_terminate_backend")
        ended = activity.terminate(application)
        assert ended, f"no {application} session to terminate"
        return ended

    def stop_postgres(self, server: localpg.LocalPostgres) -> None:
        self.record("postgres stopped")
        server.stop()

    def stop_minio(self, minio: PrivateMinio) -> None:
        self.record("minio stopped")
        minio.stop()


# --- what a database holds, read from the outside ---------------------------------------------------------

_SCHEMA_OBJECTS = """
SELECT 'column', format('%%I.%%I.%%I', n.nspname, c.relname, a.attname),
       format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', %(own)s) AND n.nspname NOT LIKE 'pg\\_toast%%'
UNION ALL
SELECT 'index', format('%%I.%%I', n.nspname, c.relname),
       pg_get_indexdef(i.indexrelid) || CASE WHEN i.indisvalid THEN '' ELSE ' INVALID' END
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', %(own)s) AND n.nspname NOT LIKE 'pg\\_toast%%'
UNION ALL
SELECT 'constraint', format('%%I.%%I', n.nspname, k.conname), pg_get_constraintdef(k.oid)
FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', %(own)s)
UNION ALL
SELECT 'function', p.oid::regprocedure::text, md5(pg_get_functiondef(p.oid))
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', %(own)s) AND p.prokind IN ('f', 'p')
ORDER BY 1, 2, 3
"""


@dataclass(frozen=True)
class Contents:
    """What a database holds, for comparing before and after a run: its schema (columns, indexes with their
    validity, constraints, functions), the rows of every table, and the versions its history says are applied."""

    schema: tuple[tuple[str, str, str], ...]
    counts: tuple[tuple[str, int], ...]
    versions: tuple[str, ...]

    @classmethod
    def read(cls, url: str, own_schema: str = "pgwarden") -> Contents:
        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute(_SCHEMA_OBJECTS, {"own": own_schema}).fetchall()  # type: ignore[arg-type]
            tables = conn.execute(
                "SELECT format('%%I.%%I', n.nspname, c.relname) FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p')"
                " AND n.nspname NOT IN ('pg_catalog', 'information_schema', %s)"
                " AND n.nspname NOT LIKE 'pg\\_toast%%' ORDER BY 1",
                [own_schema],
            ).fetchall()
            counts = []
            for (table,) in tables:
                row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.SQL(table))).fetchone()
                counts.append((str(table), int(row[0]) if row else 0))
            history = conn.execute(
                "SELECT to_regclass(format('%%I.schema_history', %s::text)) IS NOT NULL", [own_schema]
            ).fetchone()
            versions: list[str] = []
            if history and history[0]:
                versions = [
                    str(v)
                    for (v,) in conn.execute(
                        sql.SQL(
                            "SELECT version FROM {}.schema_history WHERE success ORDER BY installed_rank"
                        ).format(sql.Identifier(own_schema))
                    ).fetchall()
                ]
        return cls(
            schema=tuple((str(k), str(n), str(d)) for k, n, d in rows),
            counts=tuple(counts),
            versions=tuple(versions),
        )

    def differences(self, other: Contents) -> list[str]:
        """What differs, in words (empty: the same)."""
        found = [f"- {item}" for item in sorted(set(self.schema) - set(other.schema))]
        found += [f"+ {item}" for item in sorted(set(other.schema) - set(self.schema))]
        if self.counts != other.counts:
            found.append(f"rows {dict(self.counts)} -> {dict(other.counts)}")
        if self.versions != other.versions:
            found.append(f"versions {list(self.versions)} -> {list(other.versions)}")
        return found


SCRATCH_MARKS = (
    "_pgw_restore_",
    "_pgw_verified_",
    "_pgw_rehearsal_",
    "_pgw_drill_",
    "_pgw_restoring_",
    "_pgw_partial_",
)


def scratch_databases(url: str, of: str | None = None) -> list[str]:
    """Databases on the server that are pgwarden's working copies (never the kept `_pgw_failed_` ones); with
    `of`, only those of that database."""
    return sorted(
        name
        for name in databases(url)
        if (of is None and name.startswith("pgwarden_verify_"))
        or (any(mark in name for mark in SCRATCH_MARKS) and (of is None or name.startswith(of)))
    )


def accepts_connections(server_url: str, name: str) -> bool:
    """Whether database `name` exists and is open to connections (seen from the maintenance database)."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        row = conn.execute("SELECT datallowconn FROM pg_database WHERE datname = %s", [name]).fetchone()
    return bool(row and row[0])
