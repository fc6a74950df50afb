"""The chart's files that must not drift: its CRDs are the repository's, its values are all documented."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "pgwarden"


def test_chart_crds_are_byte_identical_to_the_generated_crds() -> None:
    generated = {path.name: path.read_bytes() for path in (REPO / "crds").glob("*.yaml")}
    shipped = {path.name: path.read_bytes() for path in (CHART / "crds").glob("*.yaml")}
    assert generated, "crds/ is empty"
    assert sorted(shipped) == sorted(generated), "the chart ships other CRD files than crds/ holds"
    stale = [name for name in generated if shipped[name] != generated[name]]
    assert not stale, (
        f"charts/pgwarden/crds/ differs from crds/ in {stale}; run: cp crds/*.yaml charts/pgwarden/crds/"
    )


def test_chart_version_and_app_version_follow_the_package() -> None:
    from pgwarden import __version__

    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == __version__, "the image tag defaults to appVersion: keep it the package's"


def _gen_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_docs", REPO / "hack" / "gen-docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _leaves(value: Any, prefix: str = "") -> list[str]:
    if isinstance(value, dict) and value:
        return [leaf for key, child in value.items() for leaf in _leaves(child, f"{prefix}{key}.")]
    return [prefix.rstrip(".")]


def test_every_value_is_documented() -> None:
    """A value without a `# --` comment (its own or a parent map's) would be missing from the README."""
    text = (CHART / "values.yaml").read_text()
    documented = {key for key, _, _ in _gen_docs().documented_values(text)}
    parts_of = [leaf.split(".") for leaf in _leaves(yaml.safe_load(text))]
    undocumented = [
        ".".join(parts)
        for parts in parts_of
        if not any(".".join(parts[:n]) in documented for n in range(1, len(parts) + 1))
    ]
    assert not undocumented, f"values without a `# --` comment: {undocumented}"


def test_the_chart_policy_defaults_are_the_operators_and_security_md_names_every_setting() -> None:
    """One policy, three places: values.yaml, `pgwarden operator`'s defaults and SECURITY.md's table."""
    from pgwarden.operator import policy

    values = yaml.safe_load((CHART / "values.yaml").read_text())["policy"]
    default = policy.Policy()
    assert values["allowImageOverride"] is default.allow_image_override is False
    assert values["jobImages"] == list(default.job_images) == []
    assert values["migrationImages"] == list(default.migration_images) == []
    assert values["serviceAccounts"] == list(default.service_accounts) == []
    security = (REPO / "SECURITY.md").read_text()
    for setting in (
        policy.ALLOW_IMAGE_OVERRIDE,
        policy.JOB_IMAGES,
        policy.MIGRATION_IMAGES,
        policy.SERVICE_ACCOUNTS,
    ):
        key = setting.value.removeprefix("policy.")
        assert key in values, f"values.yaml has no {setting.value}"
        assert f"| `{setting.value}` | `{setting.flag}` |" in security, f"SECURITY.md does not name {setting}"
    for template in ("validatingadmissionpolicy.yaml", "_policy.tpl"):
        text = (CHART / "templates" / template).read_text()
        for setting in (policy.JOB_IMAGES, policy.MIGRATION_IMAGES):
            assert setting.value in text and setting.flag in text, (template, setting)
