#!/usr/bin/env python3
"""Write the chart's Grafana dashboard, charts/pgwarden/dashboards/pgwarden.json, from code (Grafana's
foundation SDK); `--check` exits 1 when the committed file differs from what this makes.

One row per kind (the operator, its Jobs, DatabaseBackup, DatabaseMigration, DatabaseRestore). Every panel
reads the operator's own series only, so it works without the chart's recording rules; the e2e suite runs
every panel's query against a real Prometheus scraping a real operator and expects data from each.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import bargauge, common, dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.common import BarGaugeDisplayMode, BigValueColorMode, VizOrientation

OUT = Path(__file__).resolve().parents[1] / "charts" / "pgwarden" / "dashboards" / "pgwarden.json"
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
NS = 'namespace=~"$namespace"'
BY = "max by (namespace, name)"
WIDTH = 8  # three panels a row (Grafana's grid is 24 wide)


def query(expr: str, legend: str = "{{namespace}}/{{name}}", ref: str = "A") -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DATASOURCE)


def thresholds(*steps: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    return (
        dashboard.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=value, color=color) for value, color in steps])
    )


def bars(title: str, description: str, expr: str, unit: str, *steps: tuple[float | None, str]) -> Any:
    """One bar per resource (namespace/name), its current value."""
    panel = (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(query(expr).instant())
        .unit(unit)
        .display_mode(BarGaugeDisplayMode.GRADIENT)
        .orientation(VizOrientation.HORIZONTAL)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .height(8)
        .span(WIDTH)
    )
    return panel.thresholds(thresholds(*steps)) if steps else panel


def series(title: str, description: str, unit: str, *targets: prometheus.Dataquery) -> Any:
    panel = timeseries.Panel().title(title).description(description).datasource(DATASOURCE).unit(unit)
    for target in targets:
        panel = panel.with_target(target)
    return panel.height(8).span(WIDTH)


def count(title: str, description: str, expr: str, legend: str) -> Any:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(query(expr, legend).instant())
        .color_mode(BigValueColorMode.NONE)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
        .height(8)
        .span(WIDTH)
    )


def operator_row(builder: dashboard.Dashboard) -> dashboard.Dashboard:
    job = 'job=~"$job"'
    return (
        builder.with_row(dashboard.Row("Operator"))
        .with_panel(
            count(
                "Replicas up and leading",
                "Operator replicas scraped (up) and how many of them hold the leader Lease (one acts at a time).",
                f"sum(up{{{job}}})",
                "up",
            )
            .with_target(query(f"sum(pgwarden_operator_leader{{{job}}})", "leading", "B").instant())
            .thresholds(thresholds((None, "red"), (1, "green")))
        )
        .with_panel(
            series(
                "Operator memory",
                "Resident memory of each operator replica.",
                "bytes",
                query(f"process_resident_memory_bytes{{{job}}}", "{{pod}}"),
            )
        )
        .with_panel(
            series(
                "Operator CPU",
                "CPU seconds per second used by each operator replica.",
                "percentunit",
                query(f"rate(process_cpu_seconds_total{{{job}}}[$__rate_interval])", "{{pod}}"),
            )
        )
    )


def jobs_row(builder: dashboard.Dashboard) -> dashboard.Dashboard:
    return (
        builder.with_row(dashboard.Row("Jobs"))
        .with_panel(
            series(
                "Jobs running",
                "Jobs with an active Pod, by kind (migrate, backup, drill, restore).",
                "short",
                query(f"sum by (kind) (pgwarden_jobs_running{{{NS}}})", "{{kind}}"),
            )
        )
        .with_panel(
            series(
                "Runs finished",
                "Runs that ended, by kind and outcome.",
                "short",
                query(
                    'sum by (kind, outcome) (increase(pgwarden_runs_total{job=~"$job"}[$__rate_interval]))',
                    "{{kind}} {{outcome}}",
                ),
            )
        )
        .with_panel(
            count(
                "Runs failed in the time range",
                "Failed (or rolled back) runs by kind within the dashboard's time range.",
                'sum by (kind) (increase(pgwarden_runs_total{job=~"$job", outcome=~"Failed|RolledBack"}[$__range]))',
                "{{kind}}",
            ).thresholds(thresholds((None, "green"), (1, "red")))
        )
    )


def backup_row(builder: dashboard.Dashboard) -> dashboard.Dashboard:
    age = f"time() - {BY} (pgwarden_backup_last_success_timestamp_seconds{{{NS}}})"
    limit = f"{BY} (pgwarden_backup_stale_after_seconds{{{NS}}})"
    verified = f"time() - {BY} (pgwarden_backup_last_verified_restore_timestamp_seconds{{{NS}}})"
    return (
        builder.with_row(dashboard.Row("DatabaseBackup"))
        .with_panel(
            bars(
                "Backup age against its schedule",
                "Age of the last successful backup as a share of what its schedule allows (spec.staleAfter, "
                "else twice the schedule's interval): past 100% it is stale.",
                f"({age}) / {limit}",
                "percentunit",
                (None, "green"),
                (0.75, "orange"),
                (1, "red"),
            )
        )
        .with_panel(
            series(
                "Backup age and its limit",
                "Seconds since the last successful backup, and how old it may get.",
                "s",
                query(age),
                query(limit, "limit {{namespace}}/{{name}}", "B"),
            )
        )
        .with_panel(
            bars(
                "Verified-restore age",
                "Time since a restore drill last proved a backup restores (verify.schedule).",
                verified,
                "s",
            )
        )
        .with_panel(
            bars(
                "Restore time (recovery time to plan with)",
                "How long the restore of the last successful drill took.",
                f"{BY} (pgwarden_backup_verified_restore_seconds{{{NS}}})",
                "s",
            )
        )
        .with_panel(
            bars(
                "Last drill",
                "1: the last restore drill matched its backup's manifest; 0: it failed.",
                f'{BY} (pgwarden_last_run_succeeded{{kind="drill", {NS}}})',
                "bool_yes_no",
                (None, "red"),
                (1, "green"),
            )
        )
        .with_panel(
            bars(
                "Backup size",
                "Size of the newest complete backup as stored (compressed).",
                f"{BY} (pgwarden_backup_size_bytes{{{NS}}})",
                "bytes",
            )
        )
    )


def migration_row(builder: dashboard.Dashboard) -> dashboard.Dashboard:
    migration = f'kind="DatabaseMigration", {NS}'
    return (
        builder.with_row(dashboard.Row("DatabaseMigration"))
        .with_panel(
            count(
                "Migrations by phase",
                "DatabaseMigrations in each phase now (Failed and RolledBack alert).",
                f"sum by (phase) (pgwarden_resource_phase{{{migration}}})",
                "{{phase}}",
            )
        )
        .with_panel(
            series(
                "Migration outcomes",
                "Migration runs that ended, by outcome, and the rollbacks of failed ones.",
                "short",
                query(
                    'sum by (outcome) (increase(pgwarden_runs_total{kind="migrate", job=~"$job"}[$__rate_interval]))',
                    "{{outcome}}",
                ),
                query(
                    'sum by (outcome) (increase(pgwarden_rollbacks_total{job=~"$job"}[$__rate_interval]))',
                    "rollback {{outcome}}",
                    "B",
                ),
            )
        )
        .with_panel(
            bars(
                "Migration durations",
                "How long each DatabaseMigration's last run took.",
                f'{BY} (pgwarden_last_run_duration_seconds{{kind="migrate", {NS}}})',
                "s",
            )
        )
        .with_panel(
            count(
                "Schema drift",
                "Migrations whose schema was changed outside pgwarden (Drifted=True) and those without drift.",
                f'sum by (status) (pgwarden_resource_condition{{{migration}, condition="Drifted"}})',
                "Drifted={{status}}",
            )
        )
    )


def restore_row(builder: dashboard.Dashboard) -> dashboard.Dashboard:
    return (
        builder.with_row(dashboard.Row("DatabaseRestore"))
        .with_panel(
            count(
                "Restores by phase",
                "DatabaseRestores in each phase now.",
                f'sum by (phase) (pgwarden_resource_phase{{kind="DatabaseRestore", {NS}}})',
                "{{phase}}",
            )
        )
        .with_panel(
            bars(
                "Restore durations",
                "How long each DatabaseRestore took.",
                f'{BY} (pgwarden_last_run_duration_seconds{{kind="restore", {NS}}})',
                "s",
            )
        )
    )


def variables(builder: dashboard.Dashboard) -> dashboard.Dashboard:
    return (
        builder.with_variable(
            dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")
        )
        .with_variable(
            dashboard.QueryVariable("job")
            .label("Operator job")
            .datasource(DATASOURCE)
            .query("label_values(pgwarden_operator_leader, job)")
            .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .include_all(True)
            .all_value(".*")
            .multi(True)
        )
        .with_variable(
            dashboard.QueryVariable("namespace")
            .label("Namespace")
            .datasource(DATASOURCE)
            .query("label_values(pgwarden_resource_phase, namespace)")
            .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .include_all(True)
            .all_value(".*")
            .multi(True)
        )
    )


def build() -> dict[str, Any]:
    """The dashboard as Grafana's JSON model."""
    builder = (
        dashboard.Dashboard("pgwarden")
        .uid("pgwarden")
        .description(
            "pgwarden: backups, restore drills, migrations and restores, and the operator running them."
        )
        .tags(["pgwarden", "postgresql"])
        .time("now-24h", "now")
        .refresh("1m")
        .timezone("browser")
        .editable()
    )
    for add in (variables, operator_row, jobs_row, backup_row, migration_row, restore_row):
        builder = add(builder)
    built: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    return built


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the committed dashboard differs")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} differs from what hack/gen-dashboard.py makes; run it", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
