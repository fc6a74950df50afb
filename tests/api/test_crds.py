"""The committed CRDs are the models' schemas, in the structural form the apiserver requires."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pgwarden.api import crd
from pgwarden.api.backup import SCHEDULE_PATTERN
from pgwarden.api.crd import DEFAULT_OUT, KINDS, ResourceKind
from pgwarden.api.durations import DURATION_PATTERN

CRDS = {kind.kind: crd.crd(kind) for kind in KINDS}
NODE_KEYS_FORBIDDEN = {"$ref", "$defs", "anyOf", "oneOf", "allOf", "not", "title", "const", "discriminator"}


def schema_of(kind: str) -> dict[str, Any]:
    version = CRDS[kind]["spec"]["versions"][0]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its path, e.g. `.spec.storage.s3.bucket`, `.spec.verify.checks[]`."""
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from nodes(child, f"{path}.{name}")
    if "items" in schema:
        yield from nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}{{}}")


ALL_NODES = [(kind, path, node) for kind in CRDS for path, node in nodes(schema_of(kind))]


def test_the_committed_crds_match_the_models() -> None:
    assert crd.drifted(DEFAULT_OUT) == [], "regenerate with: python -m pgwarden.api.crd"


def test_check_reports_a_changed_missing_or_stray_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert crd.main(["--out", str(tmp_path)]) == 0
    assert crd.main(["--check", "--out", str(tmp_path)]) == 0
    (tmp_path / "pgwarden.io_databasebackups.yaml").write_text("# edited by hand\n")
    (tmp_path / "pgwarden.io_databaserestores.yaml").unlink()
    (tmp_path / "pgwarden.io_databaseclones.yaml").write_text("")
    capsys.readouterr()
    assert crd.main(["--check", "--out", str(tmp_path)]) == 1
    errors = capsys.readouterr().err
    assert "pgwarden.io_databasebackups.yaml differs from the models" in errors
    assert "pgwarden.io_databaserestores.yaml is missing" in errors
    assert "pgwarden.io_databaseclones.yaml belongs to no model" in errors
    assert "python -m pgwarden.api.crd" in errors


def test_generation_is_deterministic() -> None:
    assert [crd.render(kind) for kind in KINDS] == [crd.render(kind) for kind in KINDS]


def test_each_file_is_one_crd_that_yaml_reads_back_unchanged() -> None:
    for kind in KINDS:
        documents = list(yaml.safe_load_all((DEFAULT_OUT / kind.filename).read_text()))
        assert documents == [CRDS[kind.kind]]
        assert "&id" not in crd.render(kind), "no YAML anchors: readers should see every block"


@pytest.mark.parametrize(("kind", "path", "node"), ALL_NODES, ids=[f"{k}{p}" for k, p, _ in ALL_NODES])
def test_every_schema_node_is_structural(kind: str, path: str, node: dict[str, Any]) -> None:
    assert not NODE_KEYS_FORBIDDEN & set(node), f"{kind}{path}: {sorted(NODE_KEYS_FORBIDDEN & set(node))}"
    untyped_ok = node.get("x-kubernetes-preserve-unknown-fields") or node.get("x-kubernetes-int-or-string")
    assert "type" in node or untyped_ok, f"{kind}{path} has no type"
    assert not ("properties" in node and "additionalProperties" in node), f"{kind}{path}"
    assert node.get("default", "") is not None, f"{kind}{path} defaults to null"
    if node.get("type") == "array":
        assert "items" in node, f"{kind}{path} is an array without items"
    if path.startswith(".status"):
        assert "default" not in node, f"{kind}{path}: the apiserver would fill status in by itself"
    if "x-kubernetes-validations" in node:
        for rule in node["x-kubernetes-validations"]:
            assert list(rule)[:2] == ["rule", "message"], f"{kind}{path}: every rule has a message for users"
            if "fieldPath" in rule:
                assert rule["fieldPath"].lstrip(".").split(".")[0] in node["properties"], f"{kind}{path}"


def test_strings_matched_by_cel_regexes_have_a_max_length() -> None:
    """The apiserver estimates a rule's cost from the longest string it may see; unbounded strings fail."""
    for kind, path, node in ALL_NODES:
        for rule in node.get("x-kubernetes-validations", []):
            if ".matches(" in rule["rule"]:
                field = rule["rule"].split(".matches(")[0].rsplit("self.", 1)[1]
                matched = node
                for part in field.split("."):  # a nested field: self.template.schedule
                    matched = matched["properties"][part]
                assert "maxLength" in matched, f"{kind}{path}.{field}"


def test_cel_rules_use_only_fields_cel_can_see() -> None:
    """CEL declares typed fields only; a rule naming an untyped (preserve-unknown) field does not compile."""
    for kind, path, node in ALL_NODES:
        for rule in node.get("x-kubernetes-validations", []):
            for field in re.findall(r"self\.(\w+)", rule["rule"]):
                child = node["properties"][field]
                assert "type" in child or child.get("x-kubernetes-int-or-string"), f"{kind}{path}.{field}"


def test_the_cel_schedule_regex_is_the_one_pydantic_uses() -> None:
    rules = [
        rule["rule"] for rule in schema_of("DatabaseBackup")["properties"]["spec"]["x-kubernetes-validations"]
    ]
    assert any(SCHEDULE_PATTERN in rule for rule in rules)
    assert "'" not in SCHEDULE_PATTERN and "\\" not in SCHEDULE_PATTERN, (
        "the pattern is embedded in a CEL string"
    )


@pytest.mark.parametrize(
    ("kind", "path", "rule_part"),
    [
        ("DatabaseMigration", ".spec.migrations", "has(self.configMapRefs)"),
        ("DatabaseMigration", ".spec", "has(self.backupBefore)"),
        ("DatabaseMigration", ".spec.backupBefore.storage", "has(self.volume)"),
        ("DatabaseBackup", ".spec.storage", "has(self.s3)"),
        ("DatabaseBackup", ".spec", "self.schedule.matches("),
        ("DatabaseBackup", ".spec", "self.format == 'directory'"),
        ("DatabaseBackup", ".spec.retention", "has(self.keepLast)"),
        ("DatabaseRestore", ".spec.source", "has(self.backupRef) != has(self.location)"),
        ("DatabaseRestore", ".spec.source.storage", "has(self.s3)"),
    ],
)
def test_cross_field_rules_reach_the_crd(kind: str, path: str, rule_part: str) -> None:
    node = dict(nodes(schema_of(kind)))[path]
    assert any(rule_part in rule["rule"] for rule in node.get("x-kubernetes-validations", []))


def test_field_level_limits_reach_the_crd() -> None:
    spec = dict(nodes(schema_of("DatabaseBackup")))
    assert spec[".spec.retention.keepLast"]["minimum"] == 1
    assert spec[".spec.retention.maxAge"]["pattern"] == DURATION_PATTERN
    assert "zstd" in spec[".spec.compression"]["pattern"]
    assert spec[".spec.compression"]["default"] == "zstd:3"
    assert spec[".spec.format"]["enum"] == ["custom", "directory"]


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.kind)
def test_names_group_and_version(kind: ResourceKind) -> None:
    definition = CRDS[kind.kind]
    assert definition["metadata"]["name"] == f"{kind.plural}.pgwarden.io"
    spec = definition["spec"]
    assert spec["group"] == "pgwarden.io"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["categories"] == ["pgwarden"]
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


def test_short_names() -> None:
    assert {kind: CRDS[kind]["spec"]["names"]["shortNames"] for kind in CRDS} == {
        "DatabaseMigration": ["dbmig"],
        "DatabaseBackup": ["dbbackup"],
        "DatabaseRestore": ["dbrestore"],
        "DatabaseMigrationSet": ["dbmigset"],
        "DatabaseBackupSet": ["dbbackupset"],
    }


@pytest.mark.parametrize(
    ("kind", "columns"),
    [
        ("DatabaseMigration", ["Version", "Phase", "Tables", "Rows", "Rollback", "Age"]),
        ("DatabaseBackup", ["Schedule", "Last Backup", "Size", "Tables", "Rows", "Phase", "Verified", "Age"]),
        ("DatabaseRestore", ["Phase", "Source", "Tables", "Rows", "Matches", "Age"]),
        ("DatabaseMigrationSet", ["Targets", "Failed", "Phase", "Age"]),
        ("DatabaseBackupSet", ["Targets", "Stale", "Failed", "Phase", "Age"]),
    ],
)
def test_printer_columns(kind: str, columns: list[str]) -> None:
    printed = CRDS[kind]["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [column["name"] for column in printed if not column.get("priority")] == columns


@pytest.mark.parametrize("kind", list(CRDS))
def test_every_printer_column_points_at_a_field_of_its_type(kind: str) -> None:
    schema = dict(nodes(schema_of(kind)))
    for column in CRDS[kind]["spec"]["versions"][0]["additionalPrinterColumns"]:
        if column["jsonPath"] == ".metadata.creationTimestamp":
            continue
        node = schema[column["jsonPath"]]
        expected = {"date": "string", "integer": "integer", "string": "string", "boolean": "boolean"}
        assert node["type"] == expected[column["type"]], column
        if column["type"] == "date":
            assert node["format"] == "date-time", column


@pytest.mark.parametrize("kind", list(CRDS))
def test_conditions_have_the_standard_kubernetes_shape(kind: str) -> None:
    conditions = schema_of(kind)["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    item = conditions["items"]
    assert set(item["required"]) == {"type", "status", "lastTransitionTime", "reason", "message"}
    assert item["properties"]["status"]["enum"] == ["True", "False", "Unknown"]
    assert item["properties"]["lastTransitionTime"]["format"] == "date-time"


def test_status_blocks_share_the_report_field_names() -> None:
    status = schema_of("DatabaseMigration")["properties"]["status"]["properties"]
    for field in (
        "currentVersion",
        "applied",
        "pending",
        "tables",
        "rows",
        "rowChanges",
        "verification",
        "rollback",
    ):
        assert field in status
    assert set(status["applied"]["items"]["properties"]) >= {
        "version",
        "description",
        "checksum",
        "durationMs",
    }
    assert set(status["rollback"]["properties"]) >= {"strategy", "outcome", "message"}


def test_descriptions_reach_kubectl_explain() -> None:
    undocumented = [
        f"{kind}{path}"
        for kind, path, node in ALL_NODES
        if path.startswith(".spec") and not path.endswith(("[]", "{}")) and "description" not in node
    ]
    assert undocumented == []
