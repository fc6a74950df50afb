"""A real kube-apiserver accepts the CRDs and examples, and refuses bad specs with messages users understand."""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import pytest
import yaml

from pgwarden.api.crd import KINDS
from pgwarden.api.migration import DatabaseMigrationStatus

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"
EXAMPLES = ROOT / "examples"


class Kube(Protocol):
    kubeconfig: Path

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]: ...


def output(result: subprocess.CompletedProcess[Any]) -> str:
    """stdout and stderr of a kubectl run as one text, whether it ran in text or bytes mode."""
    parts = [result.stdout or "", result.stderr or ""]
    return "\n".join(part.decode() if isinstance(part, bytes) else part for part in parts)


@pytest.fixture(scope="module")
def crds(kube: Kube) -> None:
    """The CRDs installed and Established (server-side apply: idempotent, and other managers may own them)."""
    kube.kubectl(
        "apply", "--server-side", "--force-conflicts", "--field-manager=pgwarden-tests", "-f", str(CRDS)
    )
    for kind in KINDS:
        kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{kind.crd_name}")


def example_resource(file: str, kind: str) -> dict[str, Any]:
    for document in yaml.safe_load_all((EXAMPLES / file).read_text()):
        if document and document["kind"] == kind:
            return copy.deepcopy(document)
    raise LookupError(f"{file} has no {kind}")


def apply(kube: Kube, namespace: str, resource: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """`kubectl apply` of one resource, the way a user applies a file; the caller checks the outcome."""
    return kube.kubectl("apply", "-n", namespace, "-f", "-", check=False, input=yaml.safe_dump(resource))


def test_every_crd_installs_and_is_established(kube: Kube, crds: None) -> None:
    for kind in KINDS:
        result = kube.kubectl("get", f"crd/{kind.crd_name}", "-o", "json")
        status = json.loads(result.stdout)["status"]
        conditions = {condition["type"]: condition["status"] for condition in status["conditions"]}
        assert conditions.get("Established") == "True", kind.crd_name
        assert conditions.get("NamesAccepted") == "True", kind.crd_name
        assert conditions.get("NonStructuralSchema") != "True", kind.crd_name


def test_kubectl_knows_the_short_names_and_the_pgwarden_category(
    kube: Kube, crds: None, namespace: str
) -> None:
    for name in ("dbmig", "dbbackup", "dbrestore", "dbmigset", "dbbackupset", "pgwarden"):
        result = kube.kubectl("get", name, "-n", namespace, check=False)
        assert result.returncode == 0, output(result)


def test_kubectl_explain_shows_the_descriptions(kube: Kube, crds: None) -> None:
    result = kube.kubectl("explain", "databasemigration.spec.migrations")
    assert "exactly one of configMapRefs, image or inline" in " ".join(output(result).split())


@pytest.mark.parametrize(
    "example", sorted(str(path.relative_to(EXAMPLES)) for path in EXAMPLES.rglob("*.yaml"))
)
def test_every_example_applies(kube: Kube, crds: None, namespace: str, example: str) -> None:
    result = kube.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", str(EXAMPLES / example), check=False
    )
    assert result.returncode == 0, output(result)


def test_a_full_status_is_kept_and_printed(kube: Kube, crds: None, namespace: str) -> None:
    migration = example_resource("migration-shop.yaml", "DatabaseMigration")
    kube.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(migration))
    status = DatabaseMigrationStatus.model_validate(
        {
            "phase": "Succeeded",
            "observedGeneration": 1,
            "currentVersion": "4",
            "applied": [
                {"version": "1", "description": "create customers", "checksum": "ab", "durationMs": 3}
            ],
            "tables": {"before": 0, "after": 2},
            "rows": {"before": 0, "after": 2},
            "rowChanges": [{"table": "public.customers", "before": 0, "after": 2}],
            "verification": {"passed": True, "checks": [{"name": "seed", "passed": True, "actual": "2"}]},
            "backup": {"id": "20250102T020000Z", "location": "s3://b/shop/20250102T020000Z", "sizeBytes": 10},
            "rollback": {"strategy": "transaction", "outcome": "NotNeeded"},
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Migrated",
                    "message": "applied 4 migrations",
                    "lastTransitionTime": "2025-01-02T02:01:00Z",
                }
            ],
            "startedAt": "2025-01-02T02:00:00Z",
            "completedAt": "2025-01-02T02:01:00Z",
            "durationSeconds": 60.5,
            "message": "applied 4 migrations",
        }
    ).to_json_dict()
    kube.kubectl(
        "patch", "dbmig", "shop", "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip
    stored = json.loads(kube.kubectl("get", "dbmig", "shop", "-n", namespace, "-o", "json").stdout)["status"]
    assert stored == status, "the apiserver pruned or changed status fields"
    table = kube.kubectl("get", "dbmig", "shop", "-n", namespace).stdout
    header, row = table.splitlines()[:2]
    assert header.split()[:6] == ["NAME", "VERSION", "PHASE", "TABLES", "ROWS", "ROLLBACK"]
    assert row.split()[:6] == ["shop", "4", "Succeeded", "2", "2", "NotNeeded"]


def setting(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change to a resource: set the dotted `path` (under the resource) to `value`, or delete it for None."""

    def change(resource: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = resource
        for key in parents:
            node = node.setdefault(key, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value

    return change


S3 = {"bucket": "pgwarden-backups", "endpoint": "http://minio.default.svc:9000", "forcePathStyle": True}

BAD_SPECS = [
    pytest.param(
        ("migration-shop.yaml", "DatabaseMigration"),
        setting("spec.migrations.inline", [{"name": "0001_a.sql", "sql": "select 1"}]),
        ["migrations needs exactly one source: configMapRefs, image or inline"],
        id="two migration sources",
    ),
    pytest.param(
        ("migration-shop.yaml", "DatabaseMigration"),
        setting("spec.migrations", {}),
        ["migrations needs exactly one source"],
        id="no migration source",
    ),
    pytest.param(
        ("migration-fails.yaml", "DatabaseMigration"),
        setting("spec.rollback.strategy", "restore"),
        ["spec.rollback.strategy", "rollback.strategy restore needs backupBefore"],
        id="strategy restore without backupBefore",
    ),
    pytest.param(
        ("migration-shop.yaml", "DatabaseMigration"),
        setting("spec.migration", {"configMapRefs": [{"name": "x"}]}),
        ["unknown field", "spec.migration"],
        id="unknown field",
    ),
    pytest.param(
        ("backup-once.yaml", "DatabaseBackup"),
        setting("spec.storage", None),
        ["spec.storage", "Required value"],
        id="no storage",
    ),
    pytest.param(
        ("backup-once.yaml", "DatabaseBackup"),
        setting("spec.storage.volume", {"claimName": "backups"}),
        ["storage needs exactly one of s3 or volume"],
        id="both storage kinds",
    ),
    pytest.param(
        ("backup-once.yaml", "DatabaseBackup"),
        setting("spec.schedule", "every day"),
        ["spec.schedule", "schedule must be a cron expression of 5 fields"],
        id="schedule in words",
    ),
    pytest.param(
        ("backup-nightly.yaml", "DatabaseBackup"),
        setting("spec.retention.keepLast", 0),
        ["spec.retention.keepLast", "greater than or equal to 1"],
        id="keepLast 0",
    ),
    pytest.param(
        ("restore.yaml", "DatabaseRestore"),
        setting("spec.renameSuffix", "_restored"),
        ["renameSuffix goes with only"],
        id="rename suffix without only",
    ),
    pytest.param(
        ("restore.yaml", "DatabaseRestore"),
        setting("spec.only", {"tables": ["orders"]}),
        ["only restores into a database that exists"],
        id="only into a database to create",
    ),
    pytest.param(
        ("backup-once.yaml", "DatabaseBackup"),
        setting(
            "spec.storage.s3.credentials",
            {"webIdentity": {"roleArn": "arn:aws:iam::1:role/b", "audience": "sts.amazonaws.com"}},
        ),
        ["credentialsSecretRef (static keys) or credentials.webIdentity, not both"],
        id="keys and web identity",
    ),
    pytest.param(
        ("backup-nightly.yaml", "DatabaseBackup"),
        setting("spec.retention.keepMonthly", 0),
        ["spec.retention.keepMonthly", "greater than or equal to 1"],
        id="keepMonthly 0",
    ),
    pytest.param(
        ("backup-nightly.yaml", "DatabaseBackup"),
        setting("spec.retention.maxAge", "one week"),
        ["spec.retention.maxAge"],
        id="maxAge in words",
    ),
    pytest.param(
        ("backup-nightly.yaml", "DatabaseBackup"),
        setting("spec.format", "custom"),
        ["spec.parallelJobs", "parallelJobs above 1 needs format: directory"],
        id="parallel jobs with the custom format",
    ),
    pytest.param(
        ("backup-once.yaml", "DatabaseBackup"),
        setting("spec.compression", "zstd:22"),
        ["spec.compression"],
        id="zstd level out of range",
    ),
    pytest.param(
        ("restore.yaml", "DatabaseRestore"),
        setting("spec.source.location", "shop/20250102T020000Z"),
        ["source needs exactly one of backupRef or location"],
        id="two restore sources",
    ),
    pytest.param(
        ("restore.yaml", "DatabaseRestore"),
        setting("spec.source", {"location": "shop/20250102T020000Z"}),
        ["source.location needs source.storage"],
        id="location without storage",
    ),
    pytest.param(
        ("restore.yaml", "DatabaseRestore"),
        setting("spec.source.storage", {"s3": S3}),
        ["a backupRef uses its DatabaseBackup's storage"],
        id="backupRef with storage",
    ),
    pytest.param(
        ("sets/migration-tenants.yaml", "DatabaseMigrationSet"),
        setting("spec.template.database", {"secretRef": {"name": "tenant-acme-db"}}),
        ["a set's template names no database: each target's Secret is its database"],
        id="set template naming a database",
    ),
    pytest.param(
        ("sets/migration-tenants.yaml", "DatabaseMigrationSet"),
        setting("spec.rollout.maxParallel", 0),
        ["spec.rollout.maxParallel", "greater than or equal to 1"],
        id="set rollout maxParallel 0",
    ),
    pytest.param(
        ("sets/migration-tenants.yaml", "DatabaseMigrationSet"),
        setting("spec.targets.list", [{"name": "tenant-acme-db"}]),
        ["targets needs exactly one of selector or list"],
        id="set targets by selector and list",
    ),
    pytest.param(
        ("sets/migration-tenants.yaml", "DatabaseMigrationSet"),
        setting("spec.targets.selector", {}),
        ["needs matchLabels or matchExpressions: an empty selector would take every Secret"],
        id="set selecting every Secret",
    ),
    pytest.param(
        ("sets/migration-tenants.yaml", "DatabaseMigrationSet"),
        setting("spec.rollout.order.values", None),
        ["rollout.order.byLabel needs values"],
        id="set ordered by a label without its values",
    ),
    pytest.param(
        ("sets/migration-tenants.yaml", "DatabaseMigrationSet"),
        setting("metadata.name", "t" * 64),
        ["a set's name is at most 63 characters"],
        id="set name longer than a label value",
    ),
    pytest.param(
        ("sets/backup-tenants.yaml", "DatabaseBackupSet"),
        setting("spec.template.schedule", "*/5 * * * *"),
        ["stagger needs template.schedule with a number as its minute"],
        id="backup set staggering an unshiftable schedule",
    ),
]


@pytest.mark.parametrize(("base", "change", "messages"), BAD_SPECS)
def test_a_bad_spec_is_refused_with_a_message_users_understand(
    kube: Kube,
    crds: None,
    namespace: str,
    base: tuple[str, str],
    change: Callable[[dict[str, Any]], None],
    messages: list[str],
) -> None:
    resource = example_resource(*base)
    change(resource)
    result = apply(kube, namespace, resource)
    assert result.returncode != 0, f"accepted: {resource['spec']}"
    for message in messages:
        assert message in output(result)
