"""A throwaway S3-compatible server for tests and the local harness: MinIO built from its Go module.

The binary is configuration, not something this package looks for: MINIO_BIN_ENV names it, set by whoever
starts servers (the test session, the demo, the benches) to the path `hack/build-minio.sh` prints after
building it once per machine (cached under ~/.cache/pgwarden). Each server gets a free port on 127.0.0.1, a
temporary data directory and random root credentials.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgwarden_testing import lifetime
from pgwarden_testing.localpg import free_port

MINIO_BIN_ENV = "PGWARDEN_MINIO_BIN"
REGION = "us-east-1"


class S3ServerUnavailable(RuntimeError):
    """No S3-compatible server could be built or started; the message says why and what to install."""


def minio_binary() -> Path:
    """The MinIO server binary MINIO_BIN_ENV names; S3ServerUnavailable saying how to get one otherwise."""
    named = os.environ.get(MINIO_BIN_ENV, "").strip()
    if not named:
        raise S3ServerUnavailable(
            f"{MINIO_BIN_ENV} is not set; set it to a MinIO server binary, e.g. the path hack/build-minio.sh "
            "prints (the test session sets it itself)"
        )
    binary = Path(named)
    if not os.access(binary, os.X_OK):
        raise S3ServerUnavailable(f"{MINIO_BIN_ENV}={named} is not an executable file")
    return binary


def use_build_script(script: Path) -> Path:
    """Run a build script that prints a MinIO binary's path last (hack/build-minio.sh) and name that binary
    in MINIO_BIN_ENV for this process and its children, unless it names one already."""
    if os.environ.get(MINIO_BIN_ENV, "").strip():
        return minio_binary()
    built = subprocess.run([str(script)], capture_output=True, text=True, check=False)
    if built.returncode != 0 or not built.stdout.strip():
        raise S3ServerUnavailable(f"building MinIO with {script} failed:\n{built.stderr[-3000:]}")
    os.environ[MINIO_BIN_ENV] = built.stdout.strip().splitlines()[-1]
    return minio_binary()


@dataclass
class S3Server:
    """A running server; `env()` gives the AWS_* variables a client (or pgwarden) needs."""

    endpoint: str
    access_key: str
    secret_key: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    log: Path
    address: str = "127.0.0.1"
    settings: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": REGION,
        }

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=REGION,
            config=Config(
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def create_bucket(self, name: str | None = None) -> str:
        name = name or f"t-{secrets.token_hex(5)}"
        self.client().create_bucket(Bucket=name)
        return name

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def serve_pods(self, address: str, timeout: float = 60) -> None:
        """Listen on `address` (the Pod bridge's own address) instead of 127.0.0.1, same port and data.

        MinIO listens on one address; the bridge's is reachable from this machine too, so the endpoint
        (for tests and Pods alike) becomes http://<address>:<port>.
        """
        if self.address == address:
            return
        self.stop()
        port = int(self.endpoint.rsplit(":", 1)[1])
        self.process = launch(
            self.access_key, self.secret_key, self.data_dir, self.log, address, port, self.settings
        )
        self.address, self.endpoint = address, f"http://{address}:{port}"
        _wait_ready(self, timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        lifetime.forget(self.process)


def _wait_ready(server: S3Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            break
        url = f"{server.endpoint}/minio/health/ready"
        with (
            contextlib.suppress(urllib.error.URLError, OSError),
            urllib.request.urlopen(url, timeout=2) as reply,
        ):
            if reply.status == 200:
                return
        time.sleep(0.2)
    server.stop()
    raise S3ServerUnavailable(f"MinIO did not become ready at {server.endpoint}:\n{server.log_tail()}")


def launch(
    access_key: str,
    secret_key: str,
    data_dir: Path,
    log: Path,
    address: str,
    port: int,
    settings: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """MinIO as our child, in a session of its own, killed by the kernel if we die first (nothing in it is
    worth a clean shutdown); recorded for the sweep of what a killed run left."""
    lifetime.sweep()
    env = {
        **os.environ,
        **(settings or {}),
        "MINIO_ROOT_USER": access_key,
        "MINIO_ROOT_PASSWORD": secret_key,
        "MINIO_BROWSER": "off",
        "MINIO_UPDATE": "off",
        "MINIO_CI_CD": "1",
        "HOME": str(data_dir.parent),
    }
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                str(minio_binary()),
                "server",
                "--quiet",
                "--address",
                f"{address}:{port}",
                "--console-address",
                f"{address}:{free_port()}",
                str(data_dir),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=lifetime.die_with_parent(signal.SIGKILL),
        )
    lifetime.record(process, data_dir.parent, signal.SIGKILL)
    return process


def start(
    *,
    timeout: float = 60,
    address: str = "127.0.0.1",
    settings: dict[str, str] | None = None,
    trusted_cas: tuple[Path, ...] = (),
) -> S3Server:
    """Start MinIO on a free port of `address` with a temporary data directory and random credentials;
    `settings` are further MINIO_* variables (e.g. an OpenID provider), `trusted_cas` the certificates of
    the servers it calls out to (its certs directory's CAs)."""
    root = Path(tempfile.mkdtemp(prefix="pgwarden-minio-"))
    data_dir = root / "data"
    data_dir.mkdir()
    if trusted_cas:
        cas = root / ".minio" / "certs" / "CAs"  # MinIO's default certs directory under its HOME
        cas.mkdir(parents=True)
        for index, ca in enumerate(trusted_cas):
            shutil.copyfile(ca, cas / f"ca-{index}.crt")
    log = root / "minio.log"
    port = free_port()
    access_key, secret_key = f"pgw{secrets.token_hex(6)}", secrets.token_urlsafe(24)
    process = launch(access_key, secret_key, data_dir, log, address, port, settings)
    server = S3Server(
        f"http://{address}:{port}",
        access_key,
        secret_key,
        data_dir,
        process,
        log,
        address,
        dict(settings or {}),
    )
    _wait_ready(server, timeout)
    return server


@contextlib.contextmanager
def running() -> Iterator[S3Server]:
    """A server for the duration of a `with` block, its data removed afterwards."""
    server = start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.data_dir.parent, ignore_errors=True)
