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
