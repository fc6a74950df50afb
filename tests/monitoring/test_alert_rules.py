"""The chart's alert and recording rules, judged by the real rule evaluator: promtool (built from the
Prometheus Go module) checks the rendered PrometheusRule and runs the unit tests in rules/, which feed series
as the operator exports them and assert which alerts fire and which stay silent."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from monitoring_support import render

RULE_TESTS = sorted((Path(__file__).parent / "rules").glob("*.test.yaml"))


def promtool(prometheus_bin: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(prometheus_bin / "promtool"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )


def alerts_of(prometheus_rule: dict[str, Any]) -> list[str]:
    return [
        rule["alert"]
        for group in prometheus_rule["spec"]["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def test_promtool_checks_the_rendered_rules(prometheus_bin: Path, rules_path: Path) -> None:
    checked = promtool(prometheus_bin, "check", "rules", str(rules_path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


@pytest.mark.parametrize("tests", RULE_TESTS, ids=lambda path: path.name)
def test_promtool_unit_tests_of_the_rules_pass(
    prometheus_bin: Path, rules_path: Path, tests: Path, tmp_path: Path
) -> None:
    shutil.copy(rules_path, tmp_path / "pgwarden.rules.yaml")
    shutil.copy(tests, tmp_path / tests.name)
    result = promtool(prometheus_bin, "test", "rules", tests.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_test_that_fires_it_and_one_that_keeps_it_silent(
    prometheus_rule: dict[str, Any],
) -> None:
    fired: set[str] = set()
    silent: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else silent).add(check["alertname"])
    alerts = set(alerts_of(prometheus_rule))
    assert len(alerts) >= 10, alerts
    assert alerts - fired == set(), "alerts no test fires"
    assert alerts - silent == set(), "alerts no test keeps silent"
    assert (fired | silent) - alerts == set(), "tests of alerts the chart does not have"


def test_every_alert_has_a_runbook_line_in_the_readme(prometheus_rule: dict[str, Any]) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    troubleshooting = readme.split("## Troubleshooting", 1)[1].split("\n## ", 1)[0]
    missing = [alert for alert in alerts_of(prometheus_rule) if f"| `{alert}`" not in troubleshooting]
    assert missing == [], "alerts without a runbook line in the README's troubleshooting table"


def test_thresholds_are_chart_values(helm: Path) -> None:
    (rule,) = render(
        helm,
        "prometheusRule.enabled=true",
        "prometheusRule.awaitingApprovalFor=3h",
        "prometheusRule.jobsFailing.count=5",
        "prometheusRule.jobsFailing.window=6h",
        "prometheusRule.operatorJob=custom-job",
        "prometheusRule.alertLabels.team=data",
        "prometheusRule.labels.release=kube-prometheus",
    )
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus"
    by_name = {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"] if "alert" in r}
    assert by_name["PgwardenMigrationAwaitingApproval"]["for"] == "3h"
    failing = by_name["PgwardenJobsFailing"]["expr"]
    assert "[6h]" in failing and ">= 5" in failing
    assert 'job="custom-job"' in by_name["PgwardenOperatorDown"]["expr"]
    assert all(r["labels"]["team"] == "data" for r in by_name.values())


def test_no_prometheus_rule_unless_enabled(helm: Path) -> None:
    assert "PrometheusRule" not in [doc["kind"] for doc in render(helm, show=None)]
