"""`pgwarden job KIND` against a real PostgreSQL, with the env a kubelet would give the operator's Job.

The Job manifests come from the operator's builders; their `secretKeyRef`s are resolved from fake Secrets
here, so these tests check the whole contract between operator, Job and engine without a cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from operator_runs import NOW, job, written
from pgwarden_testing.localpg import LocalPostgres
from pgwarden_testing.processes import kill_process_tree

from cli.helpers import pause_env, pgwarden_command
from pgwarden.api.backup import DatabaseBackup, DatabaseBackupStatus
from pgwarden.api.migration import DatabaseMigration, DatabaseMigrationStatus
from pgwarden.api.progress import last_progress
from pgwarden.api.restore import DatabaseRestore, DatabaseRestoreStatus
from pgwarden.api.task import TERMINATION_LOG_ENV, RestoreSource
from pgwarden.job.runner import compact
from pgwarden.operator import backups, migrations, progress, restores
from pgwarden.operator.jobs import JobSettings, backup_job, migration_job, restore_job
from pgwarden.operator.observe import observe
from pgwarden.operator.resources import lenient, read

Obj = dict[str, Any]
PGWARDEN = str(Path(sys.executable).with_name("pgwarden"))
SETTINGS = JobSettings(image="pgwarden:test")


class Ran:
    """One finished `pgwarden job` process: exit code, outputs, and its termination message."""

    def __init__(self, result: subprocess.CompletedProcess[str], termination: str) -> None:
        self.code = result.returncode
        self.stdout = result.stdout
        self.stderr = result.stderr
        self.termination = termination

    @property
    def compact(self) -> Obj:
        data = json.loads(self.termination)
        assert isinstance(data, dict)
        return data

    @property
    def full(self) -> Obj:
        data = json.loads(self.stdout.strip().splitlines()[-1])
        assert isinstance(data, dict)
        return data

    def as_pod(self) -> Obj:
        terminated = {"exitCode": self.code, "message": self.termination}
        return {
            "metadata": {"name": "p", "creationTimestamp": "2025-03-01T11:59:00Z"},
            "status": {
                "phase": "Succeeded",
                "containerStatuses": [{"name": "pgwarden", "state": {"terminated": terminated}}],
            },
        }


def kubelet_env(manifest: Obj, secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """The container's environment as a kubelet builds it: values, and secretKeyRefs from `secrets`."""
    spec = manifest["spec"]["template"]["spec"]
    env: dict[str, str] = {}
    for item in spec["containers"][0]["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        ref = item["valueFrom"]["secretKeyRef"]
        value = secrets.get(ref["name"], {}).get(ref["key"])
        if value is None and not ref.get("optional"):
            raise LookupError(f"CreateContainerConfigError: secret {ref['name']} key {ref['key']}")
        if value is not None:
            env[item["name"]] = value
    return env


def base_env() -> dict[str, str]:
    """This process's environment without what a Job's container would not have (libpq's, AWS's)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PG", "AWS_")) and k != "DATABASE_URL"}


def run_job(manifest: Obj, secrets: dict[str, dict[str, str]], tmp_path: Path, **extra: str) -> Ran:
    env = kubelet_env(manifest, secrets)
    env.update(TMPDIR=str(tmp_path), HOME=str(tmp_path), **extra)
    termination = tmp_path / f"termination-{len(list(tmp_path.glob('termination-*')))}"
    env[TERMINATION_LOG_ENV] = str(termination)
    base = base_env()
    kind = manifest["spec"]["template"]["spec"]["containers"][0]["command"][-1]
    result = subprocess.run(
        [PGWARDEN, "job", kind], env={**base, **env}, capture_output=True, text=True, timeout=180, check=False
    )
    return Ran(result, termination.read_text(encoding="utf-8") if termination.exists() else "")


def libpq_secret(url: str) -> dict[str, str]:
    parts = urlsplit(url)
    from urllib.parse import unquote

    return {
        "host": parts.hostname or "",
        "port": str(parts.port),
        "dbname": parts.path.lstrip("/"),
        "user": parts.username or "",
        "password": unquote(parts.password or ""),
    }


def inline_migration(resource: Callable[..., Obj], files: dict[str, str]) -> Obj:
    body = resource("migration-shop.yaml", "DatabaseMigration")
    body["spec"]["migrations"] = {"inline": [{"name": n, "sql": s} for n, s in files.items()]}
    body["spec"].pop("backupBefore")
    body["spec"].pop("policy")  # the example's statementTimeout "10m" is not a PostgreSQL duration
    body["spec"]["verify"] = {"expect": {"tables": ["customers"]}}
    return body


def assert_no_secret(ran: Ran, *secrets: str) -> None:
    for secret in secrets:
        for text in (ran.stdout, ran.stderr, ran.termination):
            assert secret not in text


def test_inline_migrations_run_and_the_operator_maps_the_report_to_status(
    resource: Callable[..., Obj], db_url: str, pg: LocalPostgres, tmp_path: Path
) -> None:
    body = inline_migration(
        resource,
        {
            "0001_customers.sql": "CREATE TABLE customers (id int PRIMARY KEY, name text);",
            "0002_seed.sql": "INSERT INTO customers VALUES (1, 'ada'), (2, 'grace');",
        },
    )
    manifest = migration_job(DatabaseMigration.model_validate(body), SETTINGS)
    ran = run_job(manifest, {"shop-db": {"uri": db_url}}, tmp_path)
    assert ran.code == 0, ran.stderr + ran.stdout
    assert len(ran.termination.encode()) <= 4096
    assert ran.compact["outcome"] == "Succeeded"
    assert ran.full["applied"][1]["version"] == "0002"
    assert_no_secret(ran, pg.password)

    run = observe(job(manifest["metadata"]["name"], state="complete"), [ran.as_pod()])
    decision = written(migrations.decide(read(body), run, [], SETTINGS, NOW))
    status = DatabaseMigrationStatus.model_validate(decision.status)
    assert status.phase == "Succeeded"
    assert status.current_version == "0002"
    assert status.tables is not None and status.tables.after == 1
    assert status.rows is not None and status.rows.after == 2


def test_a_failing_migration_rolls_back_and_exits_1(
    resource: Callable[..., Obj], db_url: str, pg: LocalPostgres, tmp_path: Path
) -> None:
    body = inline_migration(
        resource,
        {
            "0001_customers.sql": "CREATE TABLE customers (id int PRIMARY KEY);\nINSERT INTO customers VALUES (1);",
            "0002_bad.sql": "ALTER TABLE customers ADD COLUMN email text NOT NULL;",
        },
    )
    manifest = migration_job(DatabaseMigration.model_validate(body), SETTINGS)
    ran = run_job(manifest, {"shop-db": libpq_secret(db_url)}, tmp_path)  # libpq keys instead of uri
    assert ran.code == 1, ran.stderr
    assert ran.compact["outcome"] == "RolledBack"
    assert ran.compact["rollback"]["outcome"] == "Succeeded"
    assert_no_secret(ran, pg.password)
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT to_regclass('public.customers')").fetchone() == (None,)

    run = observe(job(manifest["metadata"]["name"], state="failed"), [ran.as_pod()])
    status = written(migrations.decide(read(body), run, [], SETTINGS, NOW)).status
    assert status["phase"] == "RolledBack"
    assert status["rollback"]["outcome"] == "Succeeded"


def test_lint_findings_reach_status_and_policy_lint_fail_on_refuses_before_anything_changes(
    resource: Callable[..., Obj], db_url: str, tmp_path: Path
) -> None:
    """spec.policy.lint.failOn reaches the run: a named rule refuses it (exit 2, nothing changed); any other
    finding is reported, and status.lint lists it with its rule, file and line."""
    secrets = {"shop-db": {"uri": db_url}}
    first = inline_migration(resource, {"0001_customers.sql": "CREATE TABLE customers (id int, name text);"})
    assert (
        run_job(migration_job(DatabaseMigration.model_validate(first), SETTINGS), secrets, tmp_path).code == 0
    )
    files = {
        "0001_customers.sql": "CREATE TABLE customers (id int, name text);",
        "0002_by_name.sql": "-- customers by name\nCREATE INDEX customers_name ON customers (name);",
    }
    body = inline_migration(resource, files)
    body["spec"]["policy"] = {"lint": {"failOn": ["require-concurrent-index-creation"]}}
    manifest = migration_job(DatabaseMigration.model_validate(body), SETTINGS)
    refused = run_job(manifest, secrets, tmp_path)
    assert refused.code == 2, refused.stderr + refused.stdout
    assert "require-concurrent-index-creation" in refused.compact["error"]["message"]
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT to_regclass('public.customers_name')").fetchone() == (None,)
    run = observe(job(manifest["metadata"]["name"], state="failed"), [refused.as_pod()])
    status = written(migrations.decide(read(body), run, [], SETTINGS, NOW)).status
    assert status["phase"] == "Failed" and "require-concurrent-index-creation" in status["message"]

    body["spec"]["policy"] = {"lint": {"failOn": ["changing-column-type"]}}  # not this file's finding
    manifest = migration_job(DatabaseMigration.model_validate(body), SETTINGS)
    ran = run_job(manifest, secrets, tmp_path)
    assert ran.code == 0, ran.stderr + ran.stdout
    run = observe(job(manifest["metadata"]["name"], state="complete"), [ran.as_pod()])
    status = written(migrations.decide(read(body), run, [], SETTINGS, NOW)).status
    assert status["phase"] == "Succeeded"
    assert [(f["rule"], f["file"], f["line"]) for f in status["lint"]] == [
        ("require-concurrent-index-creation", "0002_by_name.sql", 2)
    ]
    assert all(f["message"] for f in status["lint"])


def test_mounted_migration_files_are_read_from_the_mounted_directory(
    resource: Callable[..., Obj], db_url: str, tmp_path: Path
) -> None:
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    (mounted / "0001_customers.sql").write_text("CREATE TABLE customers (id int);")
    body = resource("migration-shop.yaml", "DatabaseMigration")
    body["spec"].pop("backupBefore")
    body["spec"].pop("policy")
    body["spec"]["verify"] = {}
    model = DatabaseMigration.model_validate(body)
    manifest = migration_job(model, SETTINGS)
    env = manifest["spec"]["template"]["spec"]["containers"][0]["env"]
    task = next(e for e in env if e["name"] == "PGWARDEN_TASK")
    task["value"] = json.dumps(dict(json.loads(task["value"]), migrationsDir=str(mounted)))
    ran = run_job(manifest, {"shop-db": {"uri": db_url}}, tmp_path)
    assert ran.code == 0, ran.stderr + ran.stdout
    assert ran.compact["currentVersion"] == "0001"


def test_a_missing_database_secret_fails_with_a_message_naming_it(
    resource: Callable[..., Obj], tmp_path: Path
) -> None:
    body = inline_migration(resource, {"0001_x.sql": "SELECT 1;"})
    manifest = migration_job(DatabaseMigration.model_validate(body), SETTINGS)
    ran = run_job(manifest, {}, tmp_path)
    assert ran.code == 2
    assert "Secret 'shop-db' is missing or has neither the key 'uri'" in ran.compact["error"]["message"]
    run = observe(job(manifest["metadata"]["name"], state="failed"), [ran.as_pod()])
    status = written(migrations.decide(read(body), run, [], SETTINGS, NOW)).status
    assert status["phase"] == "Failed"
    assert "Secret 'shop-db' is missing" in status["message"]


@pytest.mark.slow
def test_backup_to_a_volume_applies_retention_and_restores(
    resource: Callable[..., Obj], db_url: str, pg: LocalPostgres, tmp_path: Path
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items SELECT generate_series(1, 500)"
        )
    body = resource("backup-once.yaml", "DatabaseBackup")
    body["spec"]["storage"] = {"volume": {"claimName": "backups", "path": "shop"}}
    body["spec"]["retention"] = {"keepLast": 1}
    body["spec"]["verify"] = {"restore": False}
    root = tmp_path / "volume"
    secrets = {"shop-db": {"uri": db_url}}
    reports = []
    for generation in (1, 2):
        body["metadata"]["generation"] = generation
        manifest = backup_job(DatabaseBackup.model_validate(body), SETTINGS)
        ran = run_job(manifest, secrets, tmp_path, PGWARDEN_STORAGE_ROOT=str(root))
        assert ran.code == 0, ran.stderr + ran.stdout
        assert_no_secret(ran, pg.password)
        reports.append(ran)
    latest = reports[-1].compact
    assert latest["retained"] == 1
    assert latest["tables"] == 1 and latest["rows"] == 500
    folder = root / "shop" / "shop" / "shop-backup"  # <path>/<namespace>/<name>: the resource's own folder
    backup_dir = folder / latest["backup"]["id"]
    assert (backup_dir / "report.json").exists()
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == [latest["backup"]["id"]]

    manifest = backup_job(DatabaseBackup.model_validate(body), SETTINGS)
    run = observe(job(manifest["metadata"]["name"], state="complete"), [reports[-1].as_pod()])
    status = written(backups.decide(read(body), [run], None, SETTINGS, NOW)).status
    DatabaseBackupStatus.model_validate(status)
    assert status["lastBackup"]["sha256"] == latest["backup"]["sha256"]
    assert status["lastBackup"]["rows"] == 500

    target = pg.create_database()
    restore_body = resource("restore.yaml", "DatabaseRestore")
    restore_body["spec"]["createDatabase"] = False
    restore = DatabaseRestore.model_validate(restore_body)
    source = RestoreSource(
        storage=DatabaseBackup.model_validate(body).spec.storage, location="shop/shop-backup"
    )
    manifest = restore_job(restore, source, SETTINGS)
    ran = run_job(manifest, {"shop-restored-db": {"uri": target}}, tmp_path, PGWARDEN_STORAGE_ROOT=str(root))
    assert ran.code == 0, ran.stderr + ran.stdout
    assert ran.compact["verification"]["matchesBackup"] is True
    run = observe(job(manifest["metadata"]["name"], state="complete"), [ran.as_pod()])
    status = written(restores.decide(read(restore_body), run, None, SETTINGS, NOW)).status
    DatabaseRestoreStatus.model_validate(status)
    assert status["phase"] == "Succeeded" and status["rows"] == {"after": 500}


def test_a_huge_report_is_compacted_under_4_kib_with_totals() -> None:
    report = {
        "outcome": "RolledBack",
        "applied": [
            {"version": f"{i:04d}", "description": "x" * 40, "checksum": "c" * 64, "durationMs": i}
            for i in range(300)
        ],
        "pending": [f"{i:04d}" for i in range(300)],
        "rowChanges": [{"table": f"public.t{i}", "before": i, "after": i + 1} for i in range(500)],
        "verification": {
            "passed": False,
            "checks": [{"name": f"check {i}", "passed": i != 250} for i in range(400)],
        },
        "error": {"message": "boom " * 2000},
        "rollback": {"strategy": "transaction", "outcome": "Succeeded", "message": "rolled back"},
    }
    text = compact(report)
    assert len(text.encode()) <= 4096
    data = json.loads(text)
    assert data["outcome"] == "RolledBack"
    assert data["appliedTotal"] == 300 and data["rowChangesTotal"] == 500
    assert data["verification"]["checksTotal"] == 400
    assert data["verification"]["checks"][0] == {"name": "check 250", "passed": False}
    assert data["rollback"]["outcome"] == "Succeeded"


def test_a_backup_job_dumps_only_what_include_and_exclude_select(
    resource: Callable[..., Obj], db_url: str, tmp_path: Path
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "CREATE SCHEMA keep; CREATE SCHEMA skip;"
            " CREATE TABLE keep.a (id int); INSERT INTO keep.a SELECT generate_series(1, 10);"
            " CREATE TABLE keep.scratch (id int); INSERT INTO keep.scratch VALUES (1);"
            " CREATE TABLE skip.b (id int); INSERT INTO skip.b VALUES (1);"
        )
    body = resource("backup-once.yaml", "DatabaseBackup")
    body["spec"]["storage"] = {"volume": {"claimName": "backups", "path": "sel"}}
    body["spec"]["verify"] = {"restore": False}
    body["spec"]["include"] = {"schemas": ["keep"]}
    body["spec"]["exclude"] = {"tables": ["keep.scratch"]}
    manifest = backup_job(DatabaseBackup.model_validate(body), SETTINGS)

    ran = run_job(manifest, {"shop-db": {"uri": db_url}}, tmp_path, PGWARDEN_STORAGE_ROOT=str(tmp_path / "v"))

    assert ran.code == 0, ran.stderr + ran.stdout
    assert ran.compact["tables"] == 1 and ran.compact["rows"] == 10
    assert not ran.full.get("warnings")


def test_a_unique_violation_on_cyrillic_data_fits_the_termination_message(
    resource: Callable[..., Obj], db_url: str, pg: LocalPostgres, tmp_path: Path
) -> None:
    """The kubelet truncates a termination message over 4 KiB: the cap counts bytes, not characters. The
    server's detail (`Key (имя)=(...) already exists`) once brought 1,000 Cyrillic letters into it."""
    name = "Ёлка-" + "Щедрый покупатель " * 60  # ~1,100 characters, two bytes each in UTF-8
    body = inline_migration(
        resource,
        {
            "0001_customers.sql": "CREATE TABLE customers (id int PRIMARY KEY, имя text UNIQUE);\n"
            f"INSERT INTO customers VALUES (1, '{name}');",
            "0002_копия.sql": f"INSERT INTO customers VALUES (2, '{name}');",
        },
    )
    manifest = migration_job(DatabaseMigration.model_validate(body), SETTINGS)

    ran = run_job(manifest, {"shop-db": {"uri": db_url}}, tmp_path)

    assert ran.code == 1, ran.stderr + ran.stdout
    assert len(ran.termination.encode("utf-8")) <= 4096, len(ran.termination.encode("utf-8"))
    assert ran.compact["outcome"] == "RolledBack"
    assert "customers_имя_key" in ran.compact["error"]["message"]
    # The statement is the migration's own text; the server's words about the row it hit hold no value.
    for text in (ran.compact["error"]["message"], ran.full["error"]["message"], ran.stderr):
        assert "Щедрый" not in text, "a row value was copied into the report"
    assert_no_secret(ran, pg.password)


def test_the_pre_migration_backup_is_the_migrations_own(
    resource: Callable[..., Obj], db_url: str, tmp_path: Path
) -> None:
    """It lands in <path>/<namespace>/<name>/ with the migration as owner, so no DatabaseBackup sharing the
    storage prunes it and no `latest` of another owner restores it."""
    body = inline_migration(resource, {"0001_customers.sql": "CREATE TABLE customers (id int PRIMARY KEY);"})
    body["spec"]["backupBefore"] = {"storage": {"volume": {"claimName": "backups", "path": "before"}}}
    root = tmp_path / "volume"
    manifest = migration_job(DatabaseMigration.model_validate(body), SETTINGS)
    ran = run_job(manifest, {"shop-db": {"uri": db_url}}, tmp_path, PGWARDEN_STORAGE_ROOT=str(root))

    assert ran.code == 0, ran.stderr + ran.stdout
    backup = ran.compact["backup"]
    namespace, name = body["metadata"].get("namespace", "default"), body["metadata"]["name"]
    folder = root / "before" / namespace / name
    assert backup["location"] == str(folder / backup["id"])
    stored = json.loads((folder / backup["id"] / "manifest.json").read_text())
    assert stored["owner"] == f"DatabaseMigration/{namespace}/{name}"


def _databases(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [str(row[0]) for row in conn.execute("SELECT datname FROM pg_database").fetchall()]


def _columns(url: str, table: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s ORDER BY 1", (table,)
        ).fetchall()
    return [row[0] for row in rows]


def _scratch_databases(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", ("%_pgw_rehearsal_%",))
        return [row[0] for row in rows.fetchall()]


def test_a_rehearsal_job_rehearses_on_a_copy_of_the_backup_and_never_migrates_the_database(
    resource: Callable[..., Obj], db_url: str, pg: LocalPostgres, tmp_path: Path
) -> None:
    """spec.rehearsal through the real runner: the rehearsal Job restores the DatabaseBackup's backup into a
    scratch database, runs the pending files there and reports locks and durations; a failure on the data
    fails it; the database is never migrated and no scratch database is left either way."""
    root = tmp_path / "volume"
    secrets = {"shop-db": {"uri": db_url}}
    first = {"0001_customers.sql": "CREATE TABLE customers (id int PRIMARY KEY, name text);"}
    body = inline_migration(resource, first)
    assert (
        run_job(migration_job(DatabaseMigration.model_validate(body), SETTINGS), secrets, tmp_path).code == 0
    )
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO customers SELECT i, CASE WHEN i > 1 THEN 'c' || i END FROM generate_series(1, 50) i"
        )
    backup_body = resource("backup-once.yaml", "DatabaseBackup")
    backup_body["spec"]["storage"] = {"volume": {"claimName": "backups", "path": "shop"}}
    backup_body["spec"]["verify"] = {"restore": False}
    backup_manifest = backup_job(DatabaseBackup.model_validate(backup_body), SETTINGS)
    took = run_job(backup_manifest, secrets, tmp_path, PGWARDEN_STORAGE_ROOT=str(root))
    assert took.code == 0, took.stderr + took.stdout
    taken = observe(job(backup_manifest["metadata"]["name"], state="complete"), [took.as_pod()])
    backup_body["status"] = written(backups.decide(read(backup_body), [taken], None, SETTINGS, NOW)).status
    referenced = read(backup_body)

    def rehearse(second: str, **spec: Any) -> tuple[Ran, Obj]:
        body = inline_migration(resource, {**first, "0002_change.sql": second})
        body["spec"]["rehearsal"] = {
            "backupRef": {"name": "shop-backup"},
            "maxLockHold": "30s",
            "required": True,
        }
        body["spec"].update(spec)
        model = read(body)
        decided = migrations.decide(model, None, [], SETTINGS, NOW, referenced=referenced)  # type: ignore[arg-type]
        assert decided.create is not None and "-rehearse-" in decided.create["metadata"]["name"]
        body["status"] = written(decided).status
        ran = run_job(decided.create, secrets, tmp_path, PGWARDEN_STORAGE_ROOT=str(root))
        assert len(ran.termination.encode()) <= 4096
        assert_no_secret(ran, pg.password)
        run = observe(
            job(decided.create["metadata"]["name"], state="complete" if ran.code == 0 else "failed"),
            [ran.as_pod()],
        )
        after = migrations.decide(
            read(body), None, [], SETTINGS, NOW, rehearsal_run=run, referenced=referenced
        )  # type: ignore[arg-type]
        return ran, written(after).status

    # A change that holds on an empty table but not on the data: the rehearsal fails, the run never starts.
    failed, status = rehearse("ALTER TABLE customers ALTER COLUMN name SET NOT NULL;")
    assert failed.code == 1, failed.stderr + failed.stdout
    assert failed.compact["rehearsal"]["outcome"] == "Failed"
    assert status["phase"] == "Failed" and status["rehearsal"]["outcome"] == "Failed"
    assert "null" in status["rehearsal"]["message"]
    assert [c["reason"] for c in status["conditions"] if c["type"] == "Ready"] == ["RehearsalFailed"]
    assert _scratch_databases(db_url) == []

    # A good one, awaiting approval: what it did and the locks it took are in status; the database is as it was.
    good, status = rehearse("ALTER TABLE customers ADD COLUMN note text;", approval="Manual")
    assert good.code == 0, good.stderr + good.stdout
    assert status["phase"] == "AwaitingApproval"
    rehearsal = status["rehearsal"]
    assert rehearsal["outcome"] == "Succeeded" and rehearsal["maxLockHoldSeconds"] == 30
    assert [a["version"] for a in rehearsal["applied"]] == ["0002"]
    assert all("durationMs" in a for a in rehearsal["applied"])
    assert any(
        lock["mode"] == "AccessExclusiveLock" and lock["relation"] == "customers" and "heldSeconds" in lock
        for lock in rehearsal["locks"]
    ), rehearsal["locks"]
    assert rehearsal["durationSeconds"] > 0 and rehearsal["backup"]
    assert _columns(db_url, "customers") == ["id", "name"]
    assert _scratch_databases(db_url) == []


def test_a_migration_job_killed_mid_swap_is_settled_by_the_recovery_job_the_operator_makes(
    resource: Callable[..., Obj], db_url: str, pg: LocalPostgres, tmp_path: Path
) -> None:
    """Issue 18, item 4, without a cluster: the migration Job's whole process tree dies between the renames of
    its restore rollback; the operator sees a Job without a report and makes its recovery Job; that Job, run
    with the same environment, puts the database back under its name; its report settles the phase."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE customers (id int PRIMARY KEY); INSERT INTO customers VALUES (1), (2)")
    body = inline_migration(
        resource,
        {
            "0001_email.sql": "ALTER TABLE customers ADD COLUMN email text;",
            "0002_index.sql": "CREATE INDEX CONCURRENTLY IF NOT EXISTS customers_email ON customers (email);",
            "0003_fails.sql": "SELECT 1 / 0;",
        },
    )
    body["spec"]["verify"] = {}
    body["spec"]["backupBefore"] = {"storage": {"volume": {"claimName": "backups", "path": "before"}}}
    body["spec"]["rollback"] = {"strategy": "restore"}
    migration = DatabaseMigration.model_validate(body)
    manifest = migration_job(migration, SETTINGS)
    volume = {"PGWARDEN_STORAGE_ROOT": str(tmp_path / "volume")}
    env = {**kubelet_env(manifest, {"shop-db": {"uri": db_url}}), **volume}
    name = db_url.rsplit("/", 1)[1]
    dead = subprocess.Popen(
        [*pgwarden_command("rollback-renamed-away"), "job", "migrate"],
        env={
            **base_env(),
            **pause_env("rollback-renamed-away", env),
            TERMINATION_LOG_ENV: str(tmp_path / "dead"),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert dead.stderr is not None
    for line in dead.stderr:
        if "paused at rollback-renamed-away" in line:
            break
    kill_process_tree(dead.pid)
    dead.wait(timeout=60)
    assert name not in _databases(pg.url())

    killed = {"metadata": {"name": "p"}, "status": {"phase": "Failed", "containerStatuses": [
        {"name": "pgwarden", "state": {"terminated": {"exitCode": 137, "reason": "Error"}}}]}}  # fmt: skip
    run = observe(job(manifest["metadata"]["name"], state="failed"), [killed])
    body["status"] = {"phase": "Running", "job": manifest["metadata"]["name"], "observedGeneration": 1}
    decision = written(migrations.decide(read(body), run, [], SETTINGS, NOW))
    recovery = decision.create
    assert recovery is not None and decision.status["phase"] == "Running"

    ran = run_job(recovery, {"shop-db": {"uri": db_url}}, tmp_path, **volume)

    assert ran.code == 0, ran.stderr + ran.stdout
    assert ran.compact["recovered"]["state"] == "Recovered"
    assert name in _databases(pg.url())
    assert _columns(db_url, "customers") == ["id"]
    body["status"] = decision.status
    task = recovery["metadata"]["labels"][
        "pgwarden.io/task"
    ]  # the label that says its report is a recovery's
    recovered = observe(job(recovery["metadata"]["name"], state="complete", task=task), [ran.as_pod()])
    status = written(migrations.decide(read(body), run, [], SETTINGS, NOW, recovery_run=recovered)).status
    assert status["phase"] == "RolledBack"
    assert any("completed the swap" in line for line in status["recovered"]["done"])


def test_a_rehearsal_job_restores_the_newest_verified_backup_and_warns_when_none_is(
    resource: Callable[..., Obj], db_url: str, pg: LocalPostgres, tmp_path: Path
) -> None:
    """DESIGN 2: a rehearsal runs on the newest *verified* backup when drills verified any (not a newer
    unverified one), else on the newest complete one, with a warning in status.rehearsal."""
    root = tmp_path / "volume"
    secrets = {"shop-db": {"uri": db_url}}
    first = {"0001_customers.sql": "CREATE TABLE customers (id int PRIMARY KEY, name text);"}
    assert (
        run_job(migration_job(read(inline_migration(resource, first)), SETTINGS), secrets, tmp_path).code == 0
    )

    def take_backup(name: str, *, verify: bool) -> tuple[Obj, str]:
        body = resource("backup-once.yaml", "DatabaseBackup")
        body["metadata"]["name"] = name
        body["spec"]["storage"] = {"volume": {"claimName": "backups", "path": "shop"}}
        body["spec"]["verify"] = {"restore": verify}
        manifest = backup_job(DatabaseBackup.model_validate(body), SETTINGS)
        took = run_job(manifest, secrets, tmp_path, PGWARDEN_STORAGE_ROOT=str(root))
        assert took.code == 0, took.stderr + took.stdout
        assert took.full["backup"]["verified"] is verify
        taken = observe(job(manifest["metadata"]["name"], state="complete"), [took.as_pod()])
        body["status"] = written(backups.decide(read(body), [taken], None, SETTINGS, NOW)).status
        return body, str(took.full["backup"]["id"])

    def rehearsal_of(backup: Obj) -> Obj:
        body = inline_migration(
            resource, {**first, "0002_note.sql": "ALTER TABLE customers ADD COLUMN note text;"}
        )
        body["spec"]["rehearsal"] = {"backupRef": {"name": backup["metadata"]["name"]}}
        body["spec"]["approval"] = "Manual"
        referenced = read(backup)
        decided = migrations.decide(read(body), None, [], SETTINGS, NOW, referenced=referenced)  # type: ignore[arg-type]
        assert decided.create is not None
        body["status"] = written(decided).status
        ran = run_job(decided.create, secrets, tmp_path, PGWARDEN_STORAGE_ROOT=str(root))
        assert ran.code == 0, ran.stderr + ran.stdout
        run = observe(job(decided.create["metadata"]["name"], state="complete"), [ran.as_pod()])
        after = migrations.decide(
            read(body), None, [], SETTINGS, NOW, rehearsal_run=run, referenced=referenced
        )  # type: ignore[arg-type]
        rehearsal: Obj = written(after).status["rehearsal"]
        return rehearsal

    _, verified = take_backup("shop-backup", verify=True)
    newer, newer_id = take_backup("shop-backup", verify=False)  # the newest, but nothing restored it yet
    rehearsal = rehearsal_of(newer)
    assert rehearsal["backup"].endswith(verified), (rehearsal["backup"], verified, newer_id)
    assert rehearsal.get("warnings", []) == []

    adhoc, adhoc_id = take_backup("shop-adhoc", verify=False)
    rehearsal = rehearsal_of(adhoc)
    assert rehearsal["backup"].endswith(adhoc_id)
    assert len(rehearsal["warnings"]) == 1 and "unverified" in rehearsal["warnings"][0], rehearsal
    assert rehearsal["outcome"] == "Succeeded"


def test_a_manual_migration_without_a_rehearsal_shows_the_lint_of_its_pending_files_before_approval(
    resource: Callable[..., Obj], db_url: str, tmp_path: Path
) -> None:
    """The preview Job through the real runner: it plans on the live database (only the pending file is
    linted, not the applied one) and changes nothing; its findings reach status.lint while it awaits
    approval, and only the approval creates the run."""
    secrets = {"shop-db": {"uri": db_url}}
    first = {
        "0001_customers.sql": "CREATE TABLE customers (id int, name text);\nCREATE INDEX c_id ON customers (id);"
    }
    assert (
        run_job(migration_job(read(inline_migration(resource, first)), SETTINGS), secrets, tmp_path).code == 0
    )
    body = inline_migration(
        resource, {**first, "0002_by_name.sql": "-- by name\nCREATE INDEX c_name ON customers (name);"}
    )
    body["spec"]["approval"] = "Manual"
    history_before = _history(db_url)

    decided = migrations.decide(read(body), None, [], SETTINGS, NOW)
    assert decided.create is not None and "-preview-" in decided.create["metadata"]["name"]
    body["status"] = written(decided).status
    ran = run_job(decided.create, secrets, tmp_path)
    assert ran.code == 0, ran.stderr + ran.stdout
    run = observe(job(decided.create["metadata"]["name"], state="complete"), [ran.as_pod()])
    shown = migrations.decide(read(body), None, [], SETTINGS, NOW, preview_run=run)
    status = written(shown).status

    assert shown.create is None and status["phase"] == "AwaitingApproval"
    assert [(f["rule"], f["file"], f["line"]) for f in status["lint"]] == [
        ("require-concurrent-index-creation", "0002_by_name.sql", 2)
    ]
    assert status["preview"]["pending"] == ["0002"] and "would apply 0002" in status["message"]
    assert _history(db_url) == history_before
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT to_regclass('public.c_name')").fetchone() == (None,)


def _history(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT version, checksum, success FROM pgwarden.schema_history ORDER BY 1"
        ).fetchall()


def test_a_rehearsal_jobs_long_statement_reaches_status_progress_like_the_runs(
    resource: Callable[..., Obj], db_url: str, tmp_path: Path
) -> None:
    """The rehearsal Job prints the same progress lines as the run's Job, and the operator's look turns its
    log into status.progress while the migration is Rehearsing."""
    root = tmp_path / "volume"
    secrets = {"shop-db": {"uri": db_url}}
    first = {"0001_customers.sql": "CREATE TABLE customers (id int PRIMARY KEY, name text);"}
    assert (
        run_job(migration_job(read(inline_migration(resource, first)), SETTINGS), secrets, tmp_path).code == 0
    )
    backup_body = resource("backup-once.yaml", "DatabaseBackup")
    backup_body["spec"]["storage"] = {"volume": {"claimName": "backups", "path": "shop"}}
    backup_body["spec"]["verify"] = {"restore": False}
    backup_manifest = backup_job(DatabaseBackup.model_validate(backup_body), SETTINGS)
    took = run_job(backup_manifest, secrets, tmp_path, PGWARDEN_STORAGE_ROOT=str(root))
    assert took.code == 0, took.stderr + took.stdout
    taken = observe(job(backup_manifest["metadata"]["name"], state="complete"), [took.as_pod()])
    backup_body["status"] = written(backups.decide(read(backup_body), [taken], None, SETTINGS, NOW)).status

    body = inline_migration(resource, {**first, "0002_slow.sql": "SELECT pg_sleep(4);\n"})
    body["spec"]["rehearsal"] = {"backupRef": {"name": "shop-backup"}}
    decided = migrations.decide(read(body), None, [], SETTINGS, NOW, referenced=read(backup_body))  # type: ignore[arg-type]
    assert decided.create is not None
    rehearsing = written(decided).status
    assert rehearsing["phase"] == "Rehearsing"
    ran = run_job(decided.create, secrets, tmp_path, PGWARDEN_STORAGE_ROOT=str(root))
    assert ran.code == 0, ran.stderr + ran.stdout

    status = lenient(DatabaseMigrationStatus, rehearsing)
    assert progress.watched_job(status) == decided.create["metadata"]["name"]
    seen = last_progress(ran.stderr)
    assert seen is not None, f"no progress line in the rehearsal Job's log:\n{ran.stderr}"
    patch = progress.progress_patch(status, ran.stderr, seen.observed_at)
    assert patch is not None and patch["progress"]["version"] == "0002", patch
    assert patch["progress"]["script"] == "0002_slow.sql" and patch["progress"]["elapsedSeconds"] >= 2
