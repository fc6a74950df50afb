"""The resource models accept the examples and refuse bad specs with messages a user can act on."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from pgwarden.api.backup import DatabaseBackup, DatabaseBackupSpec, DatabaseBackupStatus
from pgwarden.api.common import StorageSpec
from pgwarden.api.crd import KINDS_BY_NAME, parse_resource
from pgwarden.api.migration import DatabaseMigrationSpec, DatabaseMigrationStatus
from pgwarden.api.reports import MigrationReport
from pgwarden.api.restore import DatabaseRestoreSpec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

S3 = {"s3": {"bucket": "backups", "credentialsSecretRef": {"name": "s3"}}}
DATABASE = {"secretRef": {"name": "shop-db"}}
MIGRATION: dict[str, Any] = {"database": DATABASE, "migrations": {"configMapRefs": [{"name": "shop-sql"}]}}
BACKUP: dict[str, Any] = {"database": DATABASE, "storage": S3}
RESTORE: dict[str, Any] = {"database": DATABASE, "source": {"backupRef": {"name": "shop-backup"}}}


def with_changes(spec: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of `spec` with top-level keys replaced; a value of None removes the key."""
    changed = copy.deepcopy(spec)
    for key, value in changes.items():
        if value is None:
            changed.pop(key, None)
        else:
            changed[key] = value
    return changed


def example_resources() -> list[tuple[str, dict[str, Any]]]:
    resources = []
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document["kind"] in KINDS_BY_NAME:
                resources.append((f"{path.relative_to(EXAMPLES)}:{document['metadata']['name']}", document))
    return resources


def test_there_is_an_example_of_every_kind() -> None:
    kinds = {document["kind"] for _, document in example_resources()}
    assert kinds == set(KINDS_BY_NAME)


@pytest.mark.parametrize(("name", "document"), example_resources(), ids=lambda value: str(value)[:60])
def test_every_example_resource_is_a_valid_spec(name: str, document: dict[str, Any]) -> None:
    resource = parse_resource(document)
    assert resource.model_dump(by_alias=True, exclude_none=True)["spec"]


def test_every_example_file_brings_the_secrets_and_config_maps_it_refers_to() -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        documents = [document for document in yaml.safe_load_all(path.read_text()) if document]
        provided = {(document["kind"], document["metadata"]["name"]) for document in documents}
        for document in documents:
            if document["kind"] not in KINDS_BY_NAME:
                continue
            spec = document["spec"]
            assert ("Secret", spec["database"]["secretRef"]["name"]) in provided, path.name
            for ref in spec.get("migrations", {}).get("configMapRefs", []):
                assert ("ConfigMap", ref["name"]) in provided, path.name


def test_the_set_examples_bring_the_tenant_secrets_they_select() -> None:
    """examples/sets/ is one folder: tenants.yaml holds the Secrets both sets choose by label."""
    documents = [
        d
        for path in sorted((EXAMPLES / "sets").glob("*.yaml"))
        for d in yaml.safe_load_all(path.read_text())
        if d
    ]
    secrets = [d for d in documents if d["kind"] == "Secret"]
    sets = [d for d in documents if d["kind"] in ("DatabaseMigrationSet", "DatabaseBackupSet")]
    assert {d["kind"] for d in sets} == {"DatabaseMigrationSet", "DatabaseBackupSet"}
    for item in sets:
        wanted = item["spec"]["targets"]["selector"]["matchLabels"]
        chosen = [s for s in secrets if wanted.items() <= (s["metadata"].get("labels") or {}).items()]
        assert len(chosen) >= 2, item["metadata"]["name"]
        assert all("uri" in s["stringData"] for s in chosen)


def test_defaults_are_the_safe_choices() -> None:
    migration = DatabaseMigrationSpec.model_validate(MIGRATION)
    assert migration.policy.transaction == "auto"
    assert migration.policy.allow_destructive is False
    assert migration.rollback.strategy == "transaction"
    assert migration.approval == "Automatic"
    assert migration.verify.row_counts == "exact"
    backup = DatabaseBackupSpec.model_validate(BACKUP)
    assert (backup.format, backup.compression, backup.parallel_jobs) == ("custom", "zstd:3", 1)
    assert backup.schedule is None and backup.suspend is False
    restore = DatabaseRestoreSpec.model_validate(RESTORE)
    assert restore.source.backup_ref is not None and restore.source.backup_ref.id == "latest"
    assert (restore.create_database, restore.clean, restore.terminate_connections) == (False, False, False)


def test_specs_round_trip_through_their_camel_case_json() -> None:
    spec = DatabaseBackupSpec.model_validate(
        with_changes(BACKUP, schedule="0 2 * * *", retention={"keepLast": 7, "maxAge": "7d"})
    )
    as_json: dict[str, Any] = spec.to_json_dict()
    assert as_json["retention"] == {"keepLast": 7, "maxAge": "7d"}
    assert as_json["storage"]["s3"]["credentialsSecretRef"] == {"name": "s3"}
    assert DatabaseBackupSpec.model_validate(as_json) == spec


BAD_SPECS = [
    pytest.param(
        DatabaseMigrationSpec,
        with_changes(
            MIGRATION,
            migrations={
                "configMapRefs": [{"name": "a"}],
                "inline": [{"name": "0001_a.sql", "sql": "select 1"}],
            },
        ),
        "migrations needs exactly one source: configMapRefs, image or inline",
        id="two migration sources",
    ),
    pytest.param(
        DatabaseMigrationSpec,
        with_changes(MIGRATION, migrations={}),
        "migrations needs exactly one source",
        id="no migration source",
    ),
    pytest.param(
        DatabaseMigrationSpec,
        with_changes(
            MIGRATION,
            migrations={
                "inline": [{"name": "0001_a.sql", "sql": "select 1"}, {"name": "0001_a.sql", "sql": "x"}]
            },
        ),
        "lists 0001_a.sql more than once",
        id="duplicate inline migration",
    ),
    pytest.param(
        DatabaseMigrationSpec,
        with_changes(MIGRATION, migrations={"inline": [{"name": "init.sql", "sql": "select 1"}]}),
        "should match pattern",
        id="inline name without a version",
    ),
    pytest.param(
        DatabaseMigrationSpec,
        with_changes(MIGRATION, rollback={"strategy": "restore"}),
        "rollback.strategy restore needs backupBefore",
        id="restore rollback without a backup",
    ),
    pytest.param(
        DatabaseMigrationSpec,
        with_changes(MIGRATION, rollback={"strategy": "undo"}),
        "'transaction', 'down', 'restore' or 'none'",
        id="unknown rollback strategy",
    ),
    pytest.param(
        DatabaseMigrationSpec,
        with_changes(MIGRATION, verify={"checks": [{"name": "n", "sql": "select 1"}]}),
        "check 'n' needs exactly one of 'equals' or 'atLeast'",
        id="check without a comparison",
    ),
    pytest.param(
        DatabaseMigrationSpec,
        with_changes(MIGRATION, targetVersion="latest"),
        "should match pattern",
        id="non-numeric target version",
    ),
    pytest.param(
        DatabaseMigrationSpec,
        with_changes(MIGRATION, migration={"configMapRefs": []}),
        "Extra inputs are not permitted",
        id="unknown field",
    ),
    pytest.param(
        DatabaseBackupSpec, with_changes(BACKUP, storage=None), "storage\n  Field required", id="no storage"
    ),
    pytest.param(
        DatabaseBackupSpec,
        with_changes(BACKUP, storage={**S3, "volume": {"claimName": "backups"}}),
        "storage needs exactly one of s3 or volume",
        id="both storage kinds",
    ),
    pytest.param(
        DatabaseBackupSpec,
        with_changes(BACKUP, storage={}),
        "storage needs exactly one of s3 or volume",
        id="empty storage",
    ),
    pytest.param(
        DatabaseBackupSpec,
        with_changes(BACKUP, schedule="every day"),
        "schedule must be a cron expression of 5 fields",
        id="schedule in words",
    ),
    pytest.param(
        DatabaseBackupSpec,
        with_changes(BACKUP, schedule="0 0 2 * * *"),
        "schedule must be a cron expression of 5 fields",
        id="schedule with seconds",
    ),
    pytest.param(
        DatabaseBackupSpec,
        with_changes(BACKUP, schedule="0 25 * * *"),
        "schedule must be a cron expression of 5 fields",
        id="schedule with hour 25",
    ),
    pytest.param(
        DatabaseBackupSpec,
        with_changes(BACKUP, timeZone="Mars/Olympus"),
        "is not an IANA time zone",
        id="unknown time zone",
    ),
    pytest.param(
        DatabaseBackupSpec,
        with_changes(BACKUP, retention={"keepLast": 0}),
        "greater than or equal to 1",
        id="keepLast 0",
    ),
    pytest.param(
        DatabaseBackupSpec,
        with_changes(BACKUP, retention={"keepDaily": 7, "keepWeekly": 0}),
        "greater than or equal to 1",
        id="keepWeekly 0",
    ),
    pytest.param(
        DatabaseBackupSpec,
        with_changes(
            BACKUP,
            storage={
                "s3": {
                    "bucket": "backups",
                    "credentialsSecretRef": {"name": "s3"},
                    "credentials": {"webIdentity": {"roleArn": "arn:aws:iam::1:role/b"}},
                }
            },
        ),
        "credentialsSecretRef (static keys) or credentials.webIdentity, not both",
        id="keys and web identity",
    ),
    pytest.param(
        DatabaseBackupSpec,
        with_changes(
            BACKUP,
            storage={"s3": {"bucket": "backups", "credentials": {"webIdentity": {"roleArn": "backups"}}}},
        ),
        "should match pattern",
        id="web identity role that is no ARN",
    ),
    pytest.param(
        DatabaseRestoreSpec,
        with_changes(RESTORE, renameSuffix="_restored"),
        "renameSuffix goes with only",
        id="suffix without only",
    ),
    pytest.param(
        DatabaseRestoreSpec,
        with_changes(RESTORE, only={"schemas": [], "tables": []}),
        "only needs at least one schema or table",
        id="only naming nothing",
    ),
    pytest.param(
        DatabaseRestoreSpec,
        with_changes(RESTORE, only={"tables": ["orders"]}, createDatabase=True),
        "only restores into a database that exists",
        id="only into a database to create",
    ),
    pytest.param(
        DatabaseRestoreSpec,
        with_changes(RESTORE, only={"tables": ["orders"]}, renameSuffix="-x; drop"),
        "should match pattern",
        id="suffix that is no identifier part",
    ),
    pytest.param(
        DatabaseBackupSpec,
        with_changes(BACKUP, retention={"maxAge": "one week"}),
        "should match pattern",
        id="maxAge in words",
    ),
    pytest.param(
        DatabaseBackupSpec,
        with_changes(BACKUP, retention={}),
        "retention needs at least one of keepLast, keepDaily, keepWeekly, keepMonthly, keepYearly, maxAge",
        id="empty retention",
    ),
    pytest.param(
        DatabaseBackupSpec,
        with_changes(BACKUP, parallelJobs=4),
        "parallelJobs above 1 needs format: directory",
        id="parallel custom format",
    ),
    pytest.param(
        DatabaseBackupSpec,
        with_changes(BACKUP, compression="zstd:22"),
        "should match pattern",
        id="zstd level out of range",
    ),
    pytest.param(
        DatabaseBackupSpec,
        with_changes(BACKUP, compression="bzip2"),
        "should match pattern",
        id="unknown compression",
    ),
    pytest.param(
        DatabaseRestoreSpec,
        with_changes(RESTORE, source={"backupRef": {"name": "b"}, "location": "shop/1", "storage": S3}),
        "source needs exactly one of backupRef or location",
        id="two restore sources",
    ),
    pytest.param(
        DatabaseRestoreSpec,
        with_changes(RESTORE, source={}),
        "source needs exactly one of backupRef or location",
        id="no restore source",
    ),
    pytest.param(
        DatabaseRestoreSpec,
        with_changes(RESTORE, source={"location": "shop/1"}),
        "source.location needs source.storage",
        id="location without storage",
    ),
    pytest.param(
        DatabaseRestoreSpec,
        with_changes(RESTORE, source={"backupRef": {"name": "b"}, "storage": S3}),
        "a backupRef uses its DatabaseBackup's storage",
        id="backupRef with storage",
    ),
    pytest.param(
        DatabaseRestoreSpec,
        with_changes(RESTORE, database={"secretRef": {"name": "Shop_DB"}}),
        "should match pattern",
        id="secret name that is no Kubernetes name",
    ),
]


@pytest.mark.parametrize(("model", "spec", "message"), BAD_SPECS)
def test_a_bad_spec_is_refused_with_a_message_that_says_why(
    model: type[BaseModel], spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        model.model_validate(spec)
    assert message in str(refused.value)


@pytest.mark.parametrize(
    "schedule", ["0 2 * * *", "*/15 * * * *", "30 3 * * mon-fri", "0 0 1 JAN *", "@daily", "@hourly"]
)
def test_cron_schedules_and_macros_are_accepted(schedule: str) -> None:
    assert DatabaseBackupSpec.model_validate(with_changes(BACKUP, schedule=schedule)).schedule == schedule


def test_volume_storage_needs_only_a_claim() -> None:
    storage = StorageSpec.model_validate({"volume": {"claimName": "backups"}})
    assert storage.volume is not None and storage.volume.path == ""


def test_a_migration_report_fills_the_migration_status_field_for_field() -> None:
    report = MigrationReport.model_validate(
        {
            "outcome": "RolledBack",
            "currentVersion": "1",
            "tables": {"before": 1, "after": 1},
            "rows": {"before": 2, "after": 2},
            "applied": [],
            "pending": ["2"],
            "verification": {"passed": False, "checks": [{"name": "c", "passed": False}]},
            "rollback": {"strategy": "transaction", "outcome": "Succeeded"},
        }
    ).to_json_dict()
    shared = {
        key: report[key]
        for key in ("currentVersion", "tables", "rows", "pending", "verification", "rollback")
    }
    status = DatabaseMigrationStatus.model_validate({"phase": "RolledBack", **shared}).to_json_dict()
    assert {key: status[key] for key in shared} == shared


def test_a_status_as_the_api_returns_it_parses() -> None:
    resource = DatabaseBackup.model_validate(
        {
            "apiVersion": "pgwarden.io/v1alpha1",
            "kind": "DatabaseBackup",
            "metadata": {"name": "b", "namespace": "n", "resourceVersion": "7", "generation": 2},
            "spec": BACKUP,
            "status": {
                "phase": "Succeeded",
                "lastBackup": {
                    "id": "20250102T020000Z",
                    "location": "s3://backups/20250102T020000Z",
                    "rows": 3,
                },
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "BackupSucceeded",
                        "message": "backup 20250102T020000Z complete",
                        "lastTransitionTime": "2025-01-02T02:01:00Z",
                    }
                ],
            },
        }
    )
    assert isinstance(resource.status, DatabaseBackupStatus)
    assert resource.status.last_backup is not None and resource.status.last_backup.rows == 3
    assert resource.metadata.generation == 2


def test_parse_resource_names_the_kinds_it_knows() -> None:
    with pytest.raises(ValueError, match="kind 'Secret' is not a pgwarden resource"):
        parse_resource({"kind": "Secret"})
