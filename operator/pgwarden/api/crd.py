"""CRDs generated from the pydantic models, so the apiserver refuses what the Job runner would refuse.

`python -m pgwarden.api.crd` writes `crds/*.yaml`; `--check` exits 1 when they differ from the models.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.config import JsonDict

from pgwarden.api.backup import DatabaseBackup, DatabaseBackupSpec, DatabaseBackupStatus
from pgwarden.api.backup_set import DatabaseBackupSet, DatabaseBackupSetSpec, DatabaseBackupSetStatus
from pgwarden.api.common import API_GROUP, API_VERSION, CATEGORY
from pgwarden.api.migration import DatabaseMigration, DatabaseMigrationSpec, DatabaseMigrationStatus
from pgwarden.api.migration_set import (
    DatabaseMigrationSet,
    DatabaseMigrationSetSpec,
    DatabaseMigrationSetStatus,
)
from pgwarden.api.restore import DatabaseRestore, DatabaseRestoreSpec, DatabaseRestoreStatus
from pgwarden.api.sets import SET_NAME_RULE

Schema = dict[str, Any]

DEFAULT_OUT = Path(__file__).resolve().parents[3] / "crds"
HEADER = (
    "# Generated from the models in operator/pgwarden/api by `python -m pgwarden.api.crd`. Do not edit.\n"
)

# CEL rules for models whose module carries only the pydantic validator. A check's "exactly one of equals
# or atLeast" is not here: `equals` takes any scalar (number, string, boolean), which a structural schema can
# only leave untyped, and CEL cannot see untyped fields. The Job runner's pydantic validation refuses it.
EXTRA_VALIDATIONS: dict[type[BaseModel], list[JsonDict]] = {}

# Keys a structural schema node may carry, in the order they are written.
_KEY_ORDER = (
    "description",
    "type",
    "format",
    "enum",
    "default",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "maxProperties",
    "nullable",
    "required",
    "properties",
    "items",
    "additionalProperties",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-validations",
)


class UnsupportedSchema(ValueError):
    """The models produced JSON schema that has no structural OpenAPI form; change the model."""


@dataclass(frozen=True)
class Column:
    """One additionalPrinterColumn of `kubectl get`."""

    name: str
    type: str
    json_path: str
    description: str
    priority: int = 0

    def to_crd(self) -> Schema:
        column: Schema = {
            "name": self.name,
            "type": self.type,
            "jsonPath": self.json_path,
            "description": self.description,
        }
        if self.priority:
            column["priority"] = self.priority
        return column


AGE = Column("Age", "date", ".metadata.creationTimestamp", "Time since the resource was created.")


@dataclass(frozen=True)
class ResourceKind:
    """A pgwarden resource kind: its models and how Kubernetes names and lists it."""

    kind: str
    plural: str
    short_name: str
    description: str
    model: type[BaseModel]
    spec: type[BaseModel]
    status: type[BaseModel]
    columns: tuple[Column, ...] = field(default=())
    # CEL rules on the whole object (they may read metadata.name), e.g. a set's name limit.
    rules: tuple[JsonDict, ...] = field(default=())

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{API_GROUP}"

    @property
    def filename(self) -> str:
        return f"{API_GROUP}_{self.plural}.yaml"


KINDS: tuple[ResourceKind, ...] = (
    ResourceKind(
        kind="DatabaseMigration",
        plural="databasemigrations",
        short_name="dbmig",
        description=(
            "Migrates one PostgreSQL database to the newest (or targetVersion) version of its migration files, "
            "verifying the result before COMMIT and rolling back when anything fails."
        ),
        model=DatabaseMigration,
        spec=DatabaseMigrationSpec,
        status=DatabaseMigrationStatus,
        columns=(
            Column("Version", "string", ".status.currentVersion", "The database's schema version."),
            Column("Phase", "string", ".status.phase", "Where the migration stands."),
            Column("Tables", "integer", ".status.tables.after", "User tables after the run."),
            Column("Rows", "integer", ".status.rows.after", "Rows in user tables after the run."),
            Column(
                "Rollback",
                "string",
                ".status.rollback.outcome",
                "Outcome of the rollback, if one was needed.",
            ),
            AGE,
            Column("Message", "string", ".status.message", "Summary or error.", priority=1),
        ),
    ),
    ResourceKind(
        kind="DatabaseBackup",
        plural="databasebackups",
        short_name="dbbackup",
        description="Backs one PostgreSQL database up to object storage or a volume, once or on a schedule.",
        model=DatabaseBackup,
        spec=DatabaseBackupSpec,
        status=DatabaseBackupStatus,
        columns=(
            Column("Schedule", "string", ".spec.schedule", "Cron schedule; empty for a one-time backup."),
            Column(
                "Last Backup", "date", ".status.lastBackup.completedAt", "When the newest backup completed."
            ),
            Column("Size", "string", ".status.lastBackup.size", "Size of the newest backup (IEC units)."),
            Column("Tables", "integer", ".status.lastBackup.tables", "User tables in the newest backup."),
            Column("Rows", "integer", ".status.lastBackup.rows", "Rows in the newest backup."),
            Column("Phase", "string", ".status.phase", "Where the backup stands."),
            Column("Verified", "date", ".status.lastVerifiedTime", "When a restore drill last succeeded."),
            AGE,
            Column("Backup", "string", ".status.lastBackup.id", "Id of the newest backup.", priority=1),
            Column("Message", "string", ".status.message", "Summary or error.", priority=1),
        ),
    ),
    ResourceKind(
        kind="DatabaseRestore",
        plural="databaserestores",
        short_name="dbrestore",
        description="Restores a backup into a PostgreSQL database and compares the result with the backup.",
        model=DatabaseRestore,
        spec=DatabaseRestoreSpec,
        status=DatabaseRestoreStatus,
        columns=(
            Column("Phase", "string", ".status.phase", "Where the restore stands."),
            Column("Source", "string", ".spec.source.backupRef.name", "The DatabaseBackup restored from."),
            Column("Tables", "integer", ".status.tables.after", "User tables after the restore."),
            Column("Rows", "integer", ".status.rows.after", "Rows in user tables after the restore."),
            Column(
                "Matches", "boolean", ".status.verification.matchesBackup", "Whether counts match the backup."
            ),
            AGE,
            Column(
                "Location", "string", ".spec.source.location", "Backup location restored from.", priority=1
            ),
            Column("Backup", "string", ".status.restoredFrom.id", "Id of the restored backup.", priority=1),
            Column("Message", "string", ".status.message", "Summary or error.", priority=1),
        ),
    ),
    ResourceKind(
        kind="DatabaseMigrationSet",
        plural="databasemigrationsets",
        short_name="dbmigset",
        description=(
            "Migrates many tenant databases (Secrets chosen by a selector, or listed) with one DatabaseMigration "
            "spec: one child DatabaseMigration per database, canaries first, then in waves, halting on failures, "
            "approved once for all."
        ),
        model=DatabaseMigrationSet,
        spec=DatabaseMigrationSetSpec,
        status=DatabaseMigrationSetStatus,
        columns=(
            Column("Targets", "string", ".status.targets.done", "Targets migrated out of all targets."),
            Column("Failed", "integer", ".status.targets.failed", "Targets whose migration failed."),
            Column("Phase", "string", ".status.phase", "Where the rollout stands."),
            AGE,
            Column("Running", "integer", ".status.targets.running", "Targets migrating now.", priority=1),
            Column("Message", "string", ".status.message", "Summary, or why it halted.", priority=1),
        ),
        rules=(SET_NAME_RULE,),
    ),
    ResourceKind(
        kind="DatabaseBackupSet",
        plural="databasebackupsets",
        short_name="dbbackupset",
        description=(
            "Backs many tenant databases (Secrets chosen by a selector, or listed) up with one DatabaseBackup "
            "spec: one child DatabaseBackup per database, each in its own folder, schedules optionally staggered."
        ),
        model=DatabaseBackupSet,
        spec=DatabaseBackupSetSpec,
        status=DatabaseBackupSetStatus,
        columns=(
            Column("Targets", "string", ".status.targets.done", "Targets with a backup out of all targets."),
            Column("Stale", "integer", ".status.targets.stale", "Targets whose last backup is too old."),
            Column("Failed", "integer", ".status.targets.failed", "Targets whose last backup run failed."),
            Column("Phase", "string", ".status.phase", "Where the set stands."),
            AGE,
            Column(
                "Unverified",
                "integer",
                ".status.targets.unverified",
                "Targets with no verified restore.",
                priority=1,
            ),
            Column("Message", "string", ".status.message", "Summary or the problems.", priority=1),
        ),
        rules=(SET_NAME_RULE,),
    ),
)

KINDS_BY_NAME = {kind.kind: kind for kind in KINDS}


def parse_resource(document: dict[str, Any]) -> BaseModel:
    """A pgwarden custom resource (as loaded from YAML or the API) validated by its model."""
    kind = KINDS_BY_NAME.get(str(document.get("kind")))
    if kind is None:
        raise ValueError(
            f"kind {document.get('kind')!r} is not a pgwarden resource; expected one of {list(KINDS_BY_NAME)}"
        )
    return kind.model.model_validate(document)


class _Converter:
    """Turns pydantic's JSON schema into a structural OpenAPI v3 schema: no $ref, no anyOf, types everywhere."""

    def __init__(self, defs: dict[str, Schema], *, in_status: bool) -> None:
        self._defs = defs
        self._in_status = in_status
        self._extra = {model.__name__: rules for model, rules in EXTRA_VALIDATIONS.items()}

    def convert(self, node: Schema) -> Schema:
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            inner = dict(self._defs[name])
            if name in self._extra:
                inner["x-kubernetes-validations"] = [
                    *inner.get("x-kubernetes-validations", []),
                    *self._extra[name],
                ]
            return self._overlay(self.convert(inner), node, skip=("$ref",))
        if "anyOf" in node:
            options = [option for option in node["anyOf"] if option != {"type": "null"}]
            merged = self.convert(options[0]) if len(options) == 1 else self._union(options)
            return self._overlay(merged, node, skip=("anyOf",))
        return self._plain(node)

    def _overlay(self, converted: Schema, outer: Schema, *, skip: tuple[str, ...]) -> Schema:
        """The field's own keys (description, default, list type) win over those of the type it names."""
        rest = self._plain({key: value for key, value in outer.items() if key not in skip}, typed=False)
        # Rules add up: the type's own (e.g. exactly one source) and the field's (e.g. immutable).
        rules = [*converted.get("x-kubernetes-validations", []), *rest.get("x-kubernetes-validations", [])]
        merged = {**converted, **rest}
        if rules:
            merged["x-kubernetes-validations"] = rules
        return _ordered(merged)

    def _union(self, options: list[Schema]) -> Schema:
        types = {option.get("type") for option in options}
        if types <= {"integer", "number"}:
            return {"type": "number"}
        if types == {"integer", "string"}:
            return {"x-kubernetes-int-or-string": True}
        # Any scalar (e.g. a check's `equals`): the apiserver keeps it as given, pydantic checks its type.
        return {"x-kubernetes-preserve-unknown-fields": True}

    def _plain(self, node: Schema, *, typed: bool = True) -> Schema:
        out: Schema = {}
        for key, value in node.items():
            if key in ("title", "$defs"):
                continue
            if key == "default":
                if value is None or self._in_status:
                    continue
                out[key] = value
            elif key == "const":
                out["enum"] = [value]
            elif key == "properties":
                out[key] = {name: self.convert(child) for name, child in value.items()}
            elif key == "items":
                out[key] = self.convert(value)
            elif key == "additionalProperties":
                if value is True:
                    out["x-kubernetes-preserve-unknown-fields"] = True
                elif isinstance(value, dict):
                    out[key] = self.convert(value)
                # False: unknown fields are refused by the apiserver's strict field validation instead.
            elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
                out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
                out[key] = True
            elif key == "x-kubernetes-validations":
                out[key] = [_ordered_rule(rule) for rule in value]
            elif key in _KEY_ORDER:
                out[key] = value
            else:
                raise UnsupportedSchema(f"JSON schema keyword {key!r} has no structural OpenAPI form: {node}")
        if typed and "type" not in out and not _untyped_allowed(out):
            raise UnsupportedSchema(f"schema node has no type: {node}")
        return _ordered(out)


def _untyped_allowed(node: Schema) -> bool:
    return bool(node.get("x-kubernetes-preserve-unknown-fields") or node.get("x-kubernetes-int-or-string"))


def _ordered_rule(rule: dict[str, Any]) -> dict[str, Any]:
    return {key: rule[key] for key in ("rule", "message", "fieldPath", "reason") if key in rule}


def _ordered(node: Schema) -> Schema:
    return {key: node[key] for key in sorted(node, key=lambda key: (*_KEY_ORDER, key).index(key))}


def openapi_schema(model: type[BaseModel], *, in_status: bool = False) -> Schema:
    """The structural OpenAPI v3 schema of one model (a spec or a status)."""
    schema = model.model_json_schema(by_alias=True, mode="validation")
    defs = schema.pop("$defs", {})
    converted = _Converter(defs, in_status=in_status).convert(schema)
    rules = EXTRA_VALIDATIONS.get(model)
    if rules:
        converted["x-kubernetes-validations"] = [*converted.get("x-kubernetes-validations", []), *rules]
    return converted


def status_schema(kind: ResourceKind) -> Schema:
    schema = openapi_schema(kind.status, in_status=True)
    # kopf records handler progress here; without it every status patch of kopf's would be pruned.
    schema["properties"]["kopf"] = {
        "description": "Progress of the operator's handlers (kopf).",
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    return schema


def crd(kind: ResourceKind) -> Schema:
    """The CustomResourceDefinition of one kind, as a plain dict."""
    spec = openapi_schema(kind.spec)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": kind.crd_name},
        "spec": {
            "group": API_GROUP,
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": [kind.short_name],
                "categories": [CATEGORY],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [column.to_crd() for column in kind.columns],
                    "schema": {"openAPIV3Schema": _root(kind, spec)},
                }
            ],
        },
    }


def _root(kind: ResourceKind, spec: Schema) -> Schema:
    root: Schema = {
        "description": kind.description,
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"description": "pgwarden.io/v1alpha1", "type": "string"},
            "kind": {"description": kind.kind, "type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status_schema(kind),
        },
    }
    if kind.rules:
        root["x-kubernetes-validations"] = [_ordered_rule(dict(rule)) for rule in kind.rules]
    return root


class _Dumper(yaml.SafeDumper):
    """Writes repeated blocks out in full: anchors and aliases would puzzle readers of the CRD."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render(kind: ResourceKind) -> str:
    """The CRD file's text: deterministic, so regenerating unchanged models changes nothing."""
    body = yaml.dump(
        crd(kind), Dumper=_Dumper, sort_keys=False, width=110, allow_unicode=True, default_flow_style=False
    )
    return HEADER + body


def drifted(out_dir: Path) -> list[str]:
    """Files in `out_dir` that differ from the models: changed, missing, or left over."""
    expected = {kind.filename: render(kind) for kind in KINDS}
    problems = []
    for name, text in expected.items():
        path = out_dir / name
        if not path.exists():
            problems.append(f"{path} is missing")
        elif path.read_text() != text:
            problems.append(f"{path} differs from the models")
    for path in sorted(out_dir.glob(f"{API_GROUP}_*.yaml")):
        if path.name not in expected:
            problems.append(f"{path} belongs to no model")
    return problems


def write(out_dir: Path) -> list[Path]:
    """Write every CRD into `out_dir`, removing CRD files no model produces any more."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in KINDS:
        path = out_dir / kind.filename
        path.write_text(render(kind))
        written.append(path)
    for path in out_dir.glob(f"{API_GROUP}_*.yaml"):
        if path not in written:
            path.unlink()
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pgwarden.api.crd", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 when the files differ from the models")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"directory (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    if args.check:
        problems = drifted(args.out)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("regenerate with: python -m pgwarden.api.crd", file=sys.stderr)
            return 1
        return 0
    for path in write(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
