"""Fixtures of the monitoring tests: promtool (built from the Prometheus Go module) and the chart's
PrometheusRule rendered by a real helm, written as the rule file a Prometheus Operator would mount."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from monitoring_support import REPO, render
from pgwarden_testing import prometheus


@pytest.fixture(scope="session")
def prometheus_bin() -> Path:
    try:
        return prometheus.binaries()
    except prometheus.PrometheusUnavailable as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="session")
def helm() -> Path:
    build = subprocess.run(
        [str(REPO / "hack" / "build-helm.sh")], capture_output=True, text=True, timeout=1700, check=False
    )
    if build.returncode != 0:
        pytest.fail(f"hack/build-helm.sh failed:\n{build.stderr[-4000:]}", pytrace=False)
    return Path(build.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def prometheus_rule(helm: Path) -> dict[str, Any]:
    """The chart's PrometheusRule with its default thresholds."""
    (rule,) = render(helm, "prometheusRule.enabled=true")
    return rule


@pytest.fixture(scope="session")
def rules_path(prometheus_rule: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rules") / "pgwarden.rules.yaml"
    path.write_text(yaml.safe_dump(prometheus.rule_file(prometheus_rule), sort_keys=False))
    return path
