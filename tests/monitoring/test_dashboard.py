"""The chart's Grafana dashboard: generated from code (hack/gen-dashboard.py), one row per kind, every query
valid PromQL, shipped as a ConfigMap for Grafana's sidecar. tests/cluster/test_prometheus_e2e.py runs each
panel's query against a real Prometheus scraping a real operator."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from monitoring_support import CHART, REPO, render
from pgwarden_testing.prometheus import panel_queries

DASHBOARD = CHART / "dashboards" / "pgwarden.json"
VARIABLES = {"namespace": ".*", "job": ".*", "__rate_interval": "1m", "__range": "1h", "datasource": "x"}


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_dashboard", REPO / "hack" / "gen-dashboard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def test_the_committed_dashboard_is_what_the_generator_makes() -> None:
    assert DASHBOARD.read_text() == generator().render(), "run: .venv/bin/python hack/gen-dashboard.py"


def test_one_row_per_kind_and_the_panels_the_issue_asks_for() -> None:
    panels = dashboard()["panels"]
    rows = [p["title"] for p in panels if p["type"] == "row"]
    assert rows == ["Operator", "Jobs", "DatabaseBackup", "DatabaseMigration", "DatabaseRestore"]
    titles = {p["title"] for p in panels}
    for wanted in (
        "Backup age against its schedule",
        "Verified-restore age",
        "Restore time (recovery time to plan with)",
        "Migration outcomes",
        "Migration durations",
        "Jobs running",
        "Replicas up and leading",
    ):
        assert wanted in titles
    assert all(p["targets"] for p in panels if p["type"] != "row")


def test_every_panel_query_is_valid_promql(prometheus_bin: Path, tmp_path: Path) -> None:
    """promtool parses each query (as a recording rule), with the variables Grafana would fill in."""
    queries = panel_queries(dashboard(), VARIABLES)
    assert len(queries) >= 15
    rules = {
        "groups": [
            {
                "name": "panels",
                "rules": [{"record": f"panel:{i}", "expr": q} for i, (_, q) in enumerate(queries)],
            }
        ]
    }
    (tmp_path / "panels.yaml").write_text(yaml.safe_dump(rules))
    checked = subprocess.run(
        [str(prometheus_bin / "promtool"), "check", "rules", str(tmp_path / "panels.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_chart_ships_the_dashboard_labelled_for_grafanas_sidecar(helm: Path) -> None:
    (config_map,) = render(
        helm,
        "grafanaDashboard.enabled=true",
        "grafanaDashboard.namespace=monitoring",
        "grafanaDashboard.annotations.grafana_folder=Databases",
        show="templates/dashboard-configmap.yaml",
    )
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Databases"}
    assert json.loads(config_map["data"]["pgwarden.json"]) == dashboard()


def test_no_dashboard_unless_enabled(helm: Path) -> None:
    assert "ConfigMap" not in [doc["kind"] for doc in render(helm, show=None)]
