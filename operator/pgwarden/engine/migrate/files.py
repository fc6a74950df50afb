"""Find the migration files in a directory and parse them all, so a bad file is refused before anything runs."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from pgwarden.engine.migrate.sqlscript import Directives, Script, ScriptError, Statement, parse_script
from pgwarden.errors import BadInput

EXPECTED_NAME = "<version>_<description>.sql, e.g. 0001_create_customers.sql or V2__add_index.sql"

_UP_NAME = re.compile(r"[Vv]?(?P<version>\d+(?:\.\d+)*)(?:__|_)(?P<description>[^_].*)\.sql")
_DOWN_SUFFIX = ".down.sql"


class InvalidVersion(BadInput):
    """A version that is not digits separated by dots."""

    def __init__(self, version: str, what: str = "version") -> None:
        super().__init__(f"{what} {version!r} is not a version; expected digits like 5, 0005 or 1.2")


class MigrationFilesRefused(BadInput):
    """The migration directory has problems; every one of them is listed, each says what to fix."""

    def __init__(self, directory: Path, problems: list[str]) -> None:
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"cannot use the migrations in {directory}:\n{lines}")
        self.directory = directory
        self.problems = tuple(problems)


@dataclass(frozen=True)
class MigrationName:
    """What a file name says: its version and description, and whether it is a down script."""

    version: str
    description: str
    is_down: bool


@dataclass(frozen=True)
class MigrationFile:
    """One migration: its up script (checksummed and parsed) and its optional down script."""

    version: str
    description: str
    path: Path
    script_name: str
    checksum: str
    sql: str
    down_sql: str | None
    directives: Directives
    statements: tuple[Statement, ...]
    down_directives: Directives = field(default_factory=Directives)
    down_statements: tuple[Statement, ...] = ()

    @property
    def version_key(self) -> tuple[int, ...]:
        """The version as numbers, for ordering and comparing (0010 == 10, 2 < 10, 1.0 == 1)."""
        return version_key(self.version)

    @property
    def runs_in_transaction(self) -> bool:
        """Whether the up script can run inside a transaction block."""
        return not self.directives.no_transaction and all(s.transactional for s in self.statements)

    @property
    def down_runs_in_transaction(self) -> bool:
        """Whether the down script can run inside a transaction block."""
        return not self.down_directives.no_transaction and all(s.transactional for s in self.down_statements)


def version_key(version: str) -> tuple[int, ...]:
    """Numbers of a version for comparison; trailing zero parts are ignored so 1.0 equals 1."""
    text = version[1:] if version[:1] in ("V", "v") else version
    if not re.fullmatch(r"\d+(?:\.\d+)*", text):
        raise InvalidVersion(version)
    parts = [int(p) for p in text.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def parse_migration_name(file_name: str) -> MigrationName | None:
    """Read a migration file name; None when it follows no naming rule."""
    is_down = file_name.endswith(_DOWN_SUFFIX)
    up_name = file_name.removesuffix(_DOWN_SUFFIX) + ".sql" if is_down else file_name
    match = _UP_NAME.fullmatch(up_name)
    if match is None:
        return None
    description = match.group("description").replace("_", " ").strip()
    return MigrationName(version=match.group("version"), description=description, is_down=is_down)


def checksum(data: bytes) -> str:
    """SHA-256 of a file's bytes, in hex: the identity of an applied migration."""
    return hashlib.sha256(data).hexdigest()


def load_migrations(directory: Path) -> tuple[MigrationFile, ...]:
    """Read, checksum and parse every migration in a directory, ordered by version.

    Files not ending in `.sql` and hidden files are ignored; everything else must follow the naming rule.
    Raises `MigrationFilesRefused` listing every problem found.
    """
    if not directory.is_dir():
        raise MigrationFilesRefused(directory, [f"{directory} is not a directory of migration files"])
    problems: list[str] = []
    ups: dict[tuple[int, ...], list[tuple[Path, MigrationName]]] = {}
    downs: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or not path.name.lower().endswith(".sql") or not path.is_file():
            continue
        name = parse_migration_name(path.name)
        if name is None:
            problems.append(f"{path.name}: not a migration file name; expected {EXPECTED_NAME}")
        elif name.is_down:
            downs[path.name.removesuffix(_DOWN_SUFFIX) + ".sql"] = path
        else:
            ups.setdefault(version_key(name.version), []).append((path, name))
    for same_version in ups.values():
        if len(same_version) > 1:
            files = " and ".join(p.name for p, _ in same_version)
            problems.append(
                f"version {same_version[0][1].version} is used by {files}; give each migration its own version"
            )
    up_names = {path.name for same_version in ups.values() for path, _ in same_version}
    for up_name, down_path in sorted(downs.items()):
        if up_name not in up_names:
            problems.append(
                f"{down_path.name}: a down script without its up script {up_name}; "
                "rename it to match its migration or remove it"
            )
    migrations = []
    for key in sorted(ups):
        for path, name in ups[key]:
            loaded = _load_one(path, name, downs.get(path.name), problems)
            if loaded is not None:
                migrations.append(loaded)
    if not ups and not problems:
        problems.append(f"no migration files in {directory}; expected files named {EXPECTED_NAME}")
    if problems:
        raise MigrationFilesRefused(directory, problems)
    return tuple(migrations)


def _load_one(
    path: Path, name: MigrationName, down_path: Path | None, problems: list[str]
) -> MigrationFile | None:
    data = path.read_bytes()
    up = _parse(path, data, problems)
    down = _parse(down_path, down_path.read_bytes(), problems) if down_path is not None else None
    if up is None or (down_path is not None and down is None):
        return None
    return MigrationFile(
        version=name.version,
        description=name.description,
        path=path,
        script_name=path.name,
        checksum=checksum(data),
        sql=up[0],
        down_sql=down[0] if down is not None else None,
        directives=up[1].directives,
        statements=up[1].statements,
        down_directives=down[1].directives if down is not None else Directives(),
        down_statements=down[1].statements if down is not None else (),
    )


def _parse(path: Path, data: bytes, problems: list[str]) -> tuple[str, Script] | None:
    try:
        sql = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        problems.append(f"{path.name}: not UTF-8 (byte {error.start}); save the file as UTF-8")
        return None
    try:
        return sql, parse_script(sql, path.name)
    except ScriptError as error:
        problems.append(str(error))
        return None
