"""Running pg_dump: custom format streamed into a DumpSink, directory format into scratch space and then stored
file by file. Both dump with `-Z0` (the compression is ours) at the snapshot the caller exported."""

from __future__ import annotations

import contextlib
import fcntl
import subprocess
import threading
from io import BufferedReader
from pathlib import Path
from typing import IO, cast

from pgwarden.engine.backup.dump_files import DirectoryUpload
from pgwarden.engine.backup.dump_sink import DumpSink
from pgwarden.engine.backup.locks import lock_wait_failure
from pgwarden.engine.backup.streaming import CHUNK
from pgwarden.engine.pause_points import pause_point as _pause_point
from pgwarden.engine.postgres.tools import PgTool, collect_stderr, tool_invocation
from pgwarden.errors import PgwardenError
from pgwarden.redact import redact
from pgwarden.storage.manifest import StoredFile
from pgwarden.threads import start_helper

PIPE_SIZE = 1024 * 1024


class BackupFailed(PgwardenError):
    """The backup did not complete; nothing was left under its name (the upload was aborted)."""


def _dump_error(tool: PgTool, code: int, errors: list[bytes], lock_wait: str | None) -> BackupFailed:
    message = b"".join(errors[-10:]).decode(errors="replace").strip()
    explained = lock_wait_failure(message, lock_wait) if lock_wait else None
    return BackupFailed(explained or f"{tool.name} failed (exit {code}): {redact(message) or 'no message'}")


def _widen_pipe(stream: IO[bytes]) -> None:
    # A 1 MiB pipe lets pg_dump run ahead while we compress (Linux only; harmless elsewhere).
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(stream.fileno(), 1031, PIPE_SIZE)  # F_SETPIPE_SZ


def dump_custom(
    tool: PgTool,
    url: str,
    snapshot: str | None,
    options: list[str],
    sink: DumpSink,
    *,
    lock_wait: str | None = None,
) -> None:
    """Stream `pg_dump -Fc -Z0` into the sink; `lock_wait` is the timeout in `options`, for the message."""
    dbname_args, env = tool_invocation(url)
    command = [tool.path, *dbname_args, "--format=custom", "--compress=0", "--no-password", *options]
    if snapshot:
        command.append(f"--snapshot={snapshot}")
    errors: list[bytes] = []
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert process.stdout is not None and process.stderr is not None
    _widen_pipe(process.stdout)
    reader = start_helper(threading.Thread(target=collect_stderr, args=(process.stderr, errors), daemon=True))
    paused = False
    try:
        stdout = cast(BufferedReader, process.stdout)
        while chunk := stdout.read1(CHUNK):
            sink.write(chunk)
            if not paused and sink.stored_bytes > 20 * 1024 * 1024:
                paused = True
                _pause_point("mid-stream")
        code = process.wait()
    except BaseException:
        process.kill()
        process.wait()
        raise
    reader.join(timeout=5)
    if code != 0:
        raise _dump_error(tool, code, errors, lock_wait)


def dump_directory(
    tool: PgTool,
    url: str,
    snapshot: str | None,
    options: list[str],
    jobs: int,
    upload: DirectoryUpload,
    scratch: Path,
    *,
    lock_wait: str | None = None,
) -> list[StoredFile]:
    """Run `pg_dump -Fd -j N -Z0` into scratch space, then store its files one object each, N at a time."""
    dbname_args, env = tool_invocation(url)
    target = scratch / "dump"
    command = [
        tool.path,
        *dbname_args,
        "--format=directory",
        "--compress=0",
        f"--jobs={jobs}",
        "--no-password",
        f"--file={target}",
        *options,
    ]
    if snapshot:
        command.append(f"--snapshot={snapshot}")
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, check=False)
    if done.returncode != 0:
        raise _dump_error(tool, done.returncode, done.stderr.splitlines(keepends=True), lock_wait)
    return upload.run(target, jobs)
