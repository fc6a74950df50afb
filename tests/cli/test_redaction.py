"""No command ever prints the database password (DESIGN.md 3, Redaction).

A dedicated server whose password is a canary; every command `pgwarden --help` lists is run with the
password in argv (URL, raw or percent-encoded, or libpq keywords) and through PGPASSWORD, succeeding,
failing to connect, failing in SQL that echoes the password back, refusing input, in human text,
`--json` and `--verbose`. The canary, in any form, must appear on no stdout and no stderr.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from helpers import json_report, migrations_dir, run_pgwarden
from pgwarden_testing import localpg, s3server
from pgwarden_testing.localpg import LocalPostgres

CANARY = "Canary-9f3b!x"
# The password as typed, percent-encoded as in a URL, and its distinctive prefix (a half-masked leak).
FORBIDDEN = (CANARY, quote(CANARY, safe=""), "canary-9f3b")

LEAKY_SQL = f"SELECT '{CANARY}'::int;\n"  # the server's error echoes the value back
LEAKY_CHECK = f"""checks:
  - name: echoes the password
    sql: SELECT '{CANARY}'
    equals: something else
"""
LEAKY_INVALID_CHECK = f"""checks:
  - name: both comparisons
    sql: SELECT '{CANARY}'
    equals: 1
    atLeast: 1
"""


@dataclass
class Canary:
    """The canary server, a database with a few tables, and the migration directories the scenarios use."""

    server: localpg.LocalPostgres
    root: Path
    dead_port: int = field(default_factory=localpg.free_port)
    _backup: str | None = None

    def fresh(self) -> str:
        """A new empty database; its name."""
        return self.server.create_database().rsplit("/", 1)[1]

    def url(self, db: str, *, form: str = "encoded", port: int | None = None) -> str:
        s = self.server
        port = port or s.port
        if form == "raw":
            return f"postgresql://{s.user}:{CANARY}@127.0.0.1:{port}/{db}"
        if form == "keywords":
            return f"host=127.0.0.1 port={port} user={s.user} password={CANARY} dbname={db}"
        if form == "quoted-keywords":
            return f"host=127.0.0.1 port={port} user={s.user} password='{CANARY}' dbname={db}"
        return f"postgresql://{s.user}:{quote(CANARY, safe='')}@127.0.0.1:{port}/{db}"

    def env(self, db: str, *, port: int | None = None) -> dict[str, str]:
        return {**self.server.env(db), "PGPORT": str(port or self.server.port)}

    @property
    def ok(self) -> Path:
        return self.root / "ok"

    @property
    def failing(self) -> Path:
        return self.root / "failing"

    @property
    def destructive(self) -> Path:
        return self.root / "destructive"

    def backup_location(self) -> str:
        """Where a backup of `shop` is (taken once, on first use)."""
        if self._backup is None:
            result = run_pgwarden("backup", self.server.url("shop"), "--to", self.root / "backups", "--json")
            assert result.returncode == 0, result.stderr
            self._backup = str(json_report(result)["backup"]["location"])
        return self._backup

    def file(self, name: str, text: str) -> Path:
        path = self.root / name
        path.write_text(text)
        return path


@pytest.fixture(scope="module")
def canary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Canary]:
    root = tmp_path_factory.mktemp("canary")
    with localpg.running(password=CANARY) as server:
        c = Canary(server, root)
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE shop")
            conn.execute("CREATE DATABASE other")
        with psycopg.connect(server.url("shop"), autocommit=True) as conn:
            conn.execute("CREATE TABLE customers (id int PRIMARY KEY, email text)")
            conn.execute("INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 10) g")
        migrations_dir(c.ok, extra={"0001_items.sql": "CREATE TABLE items (id int);\n"})
        migrations_dir(
            c.failing,
            extra={"0001_items.sql": "CREATE TABLE items (id int);\n", "0002_leak.sql": LEAKY_SQL},
        )
        migrations_dir(
            c.destructive,
            extra={"0001_items.sql": "CREATE TABLE items (id int);\nDROP TABLE items;\n"},
        )
        yield c


def assert_no_canary(result_stdout: str, result_stderr: str) -> None:
    for stream, text in (("stdout", result_stdout), ("stderr", result_stderr)):
        for secret in FORBIDDEN:
            assert secret.lower() not in text.lower(), f"the password leaked on {stream}:\n{text}"


# A scenario: the command it exercises, and (argv, extra environment, expected exit code) for a server.
Invocation = tuple[list[str], dict[str, str] | None, int]


@dataclass(frozen=True)
class Scenario:
    command: str
    build: Callable[[Canary], Invocation]


SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str, command: str, build: Callable[[Canary], Invocation]) -> None:
    SCENARIOS[name] = Scenario(command, build)


def url_form_scenarios(form: str) -> None:
    """The password in each way a URL can carry it: connect, fail to connect, fail in SQL."""
    scenario(
        f"inspect-{form}-json",
        "inspect",
        lambda c: (["inspect", c.url("shop", form=form), "--json"], None, 0),
    )
    scenario(
        f"migrate-{form}-sql-error-json",
        "migrate",
        lambda c: (
            ["migrate", c.url(c.fresh(), form=form), "--dir", str(c.failing), "--json"],
            None,
            1,
        ),
    )
    scenario(
        f"migrate-{form}-dead-port",
        "migrate",
        lambda c: (
            ["migrate", c.url("shop", form=form, port=c.dead_port), "--dir", str(c.ok)],
            None,
            1,
        ),
    )


for url_form in ("encoded", "raw", "keywords", "quoted-keywords"):
    url_form_scenarios(url_form)

# URL in argv (percent-encoded, as most tools write it).
scenario("inspect-human", "inspect", lambda c: (["inspect", c.url("shop")], None, 0))
scenario(
    "migrate-success-human",
    "migrate",
    lambda c: (["migrate", c.url(c.fresh()), "--dir", str(c.ok)], None, 0),
)
scenario(
    "inspect-dead-port-json",
    "inspect",
    lambda c: (["inspect", c.url("shop", port=c.dead_port), "--json"], None, 1),
)
scenario("inspect-no-such-database", "inspect", lambda c: (["inspect", c.url("nowhere")], None, 1))
scenario(
    "inspect-wrong-user",
    "inspect",
    lambda c: (["inspect", c.url("shop").replace("postgres:", "intruder:", 1)], None, 1),
)
scenario(
    "inspect-bad-port-number",
    "inspect",
    lambda c: (["inspect", c.url("shop", port=99999999)], None, 1),
)
scenario(
    "migrate-success-json",
    "migrate",
    lambda c: (["migrate", c.url(c.fresh()), "--dir", str(c.ok), "--json"], None, 0),
)
scenario(
    "migrate-plan",
    "migrate",
    lambda c: (["migrate", c.url(c.fresh()), "--dir", str(c.ok), "--plan"], None, 0),
)
scenario(
    "migrate-plan-json",
    "migrate",
    lambda c: (["migrate", c.url(c.fresh()), "--dir", str(c.ok), "--plan", "--json"], None, 0),
)
scenario(
    "migrate-sql-error-human",
    "migrate",
    lambda c: (["migrate", c.url(c.fresh()), "--dir", str(c.failing)], None, 1),
)
scenario(
    "migrate-sql-error-verbose",
    "migrate",
    lambda c: (["-v", "migrate", c.url(c.fresh()), "--dir", str(c.failing)], None, 1),
)
scenario(
    "migrate-refusal-human",
    "migrate",
    lambda c: (["migrate", c.url(c.fresh()), "--dir", str(c.destructive)], None, 2),
)
scenario(
    "migrate-refusal-json",
    "migrate",
    lambda c: (["migrate", c.url(c.fresh()), "--dir", str(c.destructive), "--json"], None, 2),
)
scenario(
    "migrate-check-echoes-password-json",
    "migrate",
    lambda c: (
        [
            "migrate",
            c.url(c.fresh()),
            "--dir",
            str(c.ok),
            "--verify",
            str(c.file("leaky-check.yaml", LEAKY_CHECK)),
            "--json",
        ],
        None,
        1,
    ),
)
scenario(
    "migrate-check-echoes-password-human",
    "migrate",
    lambda c: (
        [
            "migrate",
            c.url(c.fresh()),
            "--dir",
            str(c.ok),
            "--verify",
            str(c.file("leaky-check.yaml", LEAKY_CHECK)),
        ],
        None,
        1,
    ),
)
scenario(
    "migrate-invalid-verify-file-echoes-password",
    "migrate",
    lambda c: (
        [
            "migrate",
            c.url(c.fresh()),
            "--dir",
            str(c.ok),
            "--verify",
            str(c.file("leaky-invalid.yaml", LEAKY_INVALID_CHECK)),
        ],
        None,
        2,
    ),
)
scenario(
    "migrate-dead-port-json",
    "migrate",
    lambda c: (["migrate", c.url("shop", port=c.dead_port), "--dir", str(c.ok), "--json"], None, 1),
)
scenario(
    "migrate-missing-dir",
    "migrate",
    lambda c: (["migrate", c.url("shop"), "--dir", str(c.root / "missing")], None, 2),
)
scenario(
    "diff-identical-json",
    "diff",
    lambda c: (["diff", c.url("other"), "--against", c.url("postgres"), "--json"], None, 0),
)
scenario(
    "diff-different-human",
    "diff",
    lambda c: (["diff", c.url("shop"), "--against", c.url("other")], None, 1),
)
scenario(
    "diff-against-dead-port",
    "diff",
    lambda c: (["diff", c.url("shop"), "--against", c.url("other", port=c.dead_port)], None, 1),
)
scenario(
    "diff-against-dead-port-json",
    "diff",
    lambda c: (
        ["diff", c.url("shop", form="keywords"), "--against", c.url("x", port=c.dead_port), "--json"],
        None,
        1,
    ),
)

# The password only in PGPASSWORD (PG* environment, no URL).
scenario("env-inspect", "inspect", lambda c: (["inspect", "--json"], c.env("shop"), 0))
scenario(
    "env-inspect-dead-port",
    "inspect",
    lambda c: (["inspect"], c.env("shop", port=c.dead_port), 1),
)
scenario(
    "env-migrate-success-json",
    "migrate",
    lambda c: (["migrate", "--dir", str(c.ok), "--json"], c.env(c.fresh()), 0),
)
scenario(
    "env-migrate-sql-error",
    "migrate",
    lambda c: (["migrate", "--dir", str(c.failing)], c.env(c.fresh()), 1),
)
scenario(
    "env-migrate-sql-error-verbose-json",
    "migrate",
    lambda c: (["-v", "migrate", "--dir", str(c.failing), "--json"], c.env(c.fresh()), 1),
)
scenario(
    "env-migrate-refusal",
    "migrate",
    lambda c: (["migrate", "--dir", str(c.destructive)], c.env(c.fresh()), 2),
)
scenario(
    "env-migrate-dead-port-json",
    "migrate",
    lambda c: (["migrate", "--dir", str(c.ok), "--json"], c.env("shop", port=c.dead_port), 1),
)
scenario(
    "env-diff",
    "diff",
    lambda c: (["diff", "--against", "dbname=other", "--json"], c.env("shop"), 1),
)
scenario(
    "env-diff-dead-port",
    "diff",
    lambda c: (["diff", "--against", "dbname=other"], c.env("shop", port=c.dead_port), 1),
)

# Backups and restores: pg_dump and pg_restore get the password too, and must not echo it.
scenario(
    "backup-json",
    "backup",
    lambda c: (["backup", c.url("shop"), "--to", str(c.root / "backups"), "--json"], None, 0),
)
scenario(
    "backup-keywords-verify",
    "backup",
    lambda c: (
        ["backup", c.url("shop", form="keywords"), "--to", str(c.root / "backups"), "--verify"],
        None,
        0,
    ),
)
scenario(
    "backup-dead-port-json",
    "backup",
    lambda c: (
        ["backup", c.url("shop", port=c.dead_port), "--to", str(c.root / "backups"), "--json"],
        None,
        1,
    ),
)
scenario(
    "env-backup",
    "backup",
    lambda c: (["backup", "--to", str(c.root / "backups")], c.env("shop"), 0),
)
scenario(
    "restore-json",
    "restore",
    lambda c: (["restore", c.url(c.fresh()), "--from", c.backup_location(), "--json"], None, 0),
)
scenario(
    "restore-create-raw",
    "restore",
    lambda c: (
        ["restore", c.url(f"created_{c.dead_port}", form="raw"), "--from", c.backup_location(), "--create"],
        None,
        0,
    ),
)
scenario(
    "restore-over-existing-tables",  # refused: the tables exist and neither --clean nor --create was given
    "restore",
    lambda c: (["restore", c.url("shop"), "--from", c.backup_location(), "--json"], None, 2),
)
scenario(
    "restore-dead-port",
    "restore",
    lambda c: (["restore", c.url("shop", port=c.dead_port), "--from", c.backup_location()], None, 1),
)
scenario(
    "env-backups",
    "backups",
    lambda c: (["backups", c.backup_location().rsplit("/", 1)[0], "--json"], c.env("shop"), 0),
)
scenario(
    "env-prune",
    "prune",
    lambda c: (
        ["prune", c.backup_location().rsplit("/", 1)[0], "--keep-last", "50", "--json"],
        c.env("shop"),
        0,
    ),
)
scenario("recover-json", "recover", lambda c: (["recover", c.url("shop"), "--json"], None, 0))
scenario("env-recover", "recover", lambda c: (["recover"], c.env("shop"), 0))
scenario(
    "recover-dead-port",
    "recover",
    lambda c: (["recover", c.url("shop", port=c.dead_port), "--json"], None, 1),
)

# Mistyped arguments: argparse echoes the offending argument (here the URL) in its error.
scenario(
    "inspect-url-as-counts-value",
    "inspect",
    lambda c: (["inspect", "--counts", c.url("shop")], None, 2),
)
scenario(
    "migrate-url-as-rollback-value",
    "migrate",
    lambda c: (["migrate", "--rollback", c.url("shop"), "--dir", str(c.ok)], None, 2),
)
scenario(
    "migrate-two-urls",
    "migrate",
    lambda c: (["migrate", c.url("shop"), c.url("other"), "--dir", str(c.ok)], None, 2),
)


def listed_commands() -> list[str]:
    """The commands `pgwarden --help` lists."""
    result = run_pgwarden("--help")
    assert result.returncode == 0, result.stderr
    section = result.stdout.split("COMMAND", 1)[1]
    return re.findall(r"^    (\w+)\s", section, flags=re.MULTILINE)


@pytest.fixture(scope="module")
def commands() -> list[str]:
    return listed_commands()


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_password_appears_in_no_output(canary: Canary, commands: list[str], name: str) -> None:
    spec = SCENARIOS[name]
    if spec.command not in commands:
        pytest.skip(f"`pgwarden {spec.command}` is not in this build")
    args, env, expected_exit = spec.build(canary)

    result = run_pgwarden(*args, env=env)

    assert_no_canary(result.stdout, result.stderr)
    # The scenario did what it is meant to exercise (success, failure, refusal), not something else.
    assert result.returncode == expected_exit, (result.returncode, result.stdout, result.stderr)


def test_every_listed_command_is_exercised(commands: list[str]) -> None:
    exercised = {s.command for s in SCENARIOS.values()}
    long_running = {"operator", "job"}  # the operator and the Jobs' entrypoint: exercised in the cluster
    missing = set(commands) - exercised - long_running
    assert {"inspect", "migrate", "diff"} <= set(commands)
    assert not missing, f"add redaction scenarios for: {sorted(missing)}"


# --- SQL passwords in failing migrations ------------------------------------------------------------

ROLE_PASSWORD = "Role-pw-5521x"


@pytest.mark.parametrize(
    "statement",
    [
        f"ALTER ROLE pgw_nobody LOGIN PASSWORD '{ROLE_PASSWORD}';",
        f"ALTER USER pgw_nobody WITH PASSWORD $${ROLE_PASSWORD}$$;",
        f"ALTER ROLE pgw_nobody ENCRYPTED PASSWORD E'{ROLE_PASSWORD}\\\\' VALID UNTIL 'infinity';",
        f"ALTER ROLE pgw_nobody\n  PASSWORD $pw${ROLE_PASSWORD}$pw$;",
    ],
    ids=["quoted", "dollar", "escape-string", "tagged-dollar"],
)
def test_a_password_in_the_failing_statement_is_not_echoed(
    canary: Canary, tmp_path: Path, statement: str
) -> None:
    """The failing statement is quoted in the report and the logs; the role's password in it is not."""
    directory = migrations_dir(tmp_path / "m", extra={"0001_role.sql": statement + "\n"})
    url = canary.url(canary.fresh())

    runs = [
        run_pgwarden("migrate", url, "--dir", directory, "--json"),
        run_pgwarden("-v", "migrate", url, "--dir", directory),
    ]

    for result in runs:
        assert result.returncode == 1, result.stdout + result.stderr
        for stream in (result.stdout, result.stderr):
            assert ROLE_PASSWORD not in stream, stream
            assert "Role-pw" not in stream, stream
    report = json_report(runs[0])
    assert (
        "pgw_nobody" in report["error"]["statement"]
    )  # the statement is still shown, only the password is not
    assert "PASSWORD '***'" in report["error"]["statement"]


# --- only secrets: an access key id and the names around it survive -----------------------------------


@pytest.fixture
def key_named_bucket(s3: s3server.S3Server) -> str:
    """A bucket whose name contains the access key id, `<key>-backups-<random>` (the id names a key, it is no
    secret)."""
    return s3.create_bucket(f"{s3.access_key.lower()}-backups-{secrets.token_hex(3)}")


def test_a_backup_location_containing_the_access_key_id_can_be_pasted_into_restore(
    pg: LocalPostgres, s3: s3server.S3Server, key_named_bucket: str
) -> None:
    source = pg.create_database()
    with psycopg.connect(source, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int); INSERT INTO items SELECT generate_series(1, 5)")

    backup = run_pgwarden("backup", source, "--to", f"s3://{key_named_bucket}/shop", "--json", env=s3.env())

    assert backup.returncode == 0, backup.stderr
    location = json_report(backup)["backup"]["location"]
    assert location.startswith(f"s3://{key_named_bucket}/shop/"), location
    assert s3.secret_key not in backup.stdout + backup.stderr

    target = pg.create_database()
    restore = run_pgwarden("restore", target, "--from", location, "--json", env=s3.env())

    assert restore.returncode == 0, restore.stdout + restore.stderr
    assert json_report(restore)["restoredFrom"] == location
    assert s3.secret_key not in restore.stdout + restore.stderr


def test_the_access_key_id_is_not_masked_in_human_output(
    pg: LocalPostgres, s3: s3server.S3Server, key_named_bucket: str
) -> None:
    source = pg.create_database()

    backup = run_pgwarden("backup", source, "--to", f"s3://{key_named_bucket}/shop", env=s3.env())

    assert backup.returncode == 0, backup.stderr
    assert f"s3://{key_named_bucket}/shop/" in backup.stdout + backup.stderr
    assert s3.secret_key not in backup.stdout + backup.stderr
