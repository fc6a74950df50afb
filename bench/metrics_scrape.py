"""Benchmark: what the per-resource series cost a scrape of the operator's /metrics (issue 23).

The operator keeps one small state per resource and makes the series when scraped. This renders /metrics
(prometheus_client's generate_latest, what the HTTP handler serves) with N resources and without them, side
by side in one run, and prints the time per scrape, per resource, and the ratio.

    .venv/bin/python bench/metrics_scrape.py               # 10,000 resources
    .venv/bin/python bench/metrics_scrape.py -n 1000 --repeat 20
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, generate_latest

from pgwarden.api.backup import DatabaseBackupStatus
from pgwarden.api.migration import DatabaseMigrationStatus
from pgwarden.operator.resource_metrics import Limits, ResourceSeries, state_of


def registry_with(resources: int) -> CollectorRegistry:
    """A registry holding `resources` states: half scheduled backups with a drill, half finished migrations."""
    registry = CollectorRegistry()
    series = ResourceSeries()
    registry.register(series)
    now = datetime.now(UTC)
    backup = DatabaseBackupStatus.model_validate(
        {
            "phase": "Scheduled",
            "lastSuccessfulTime": now.isoformat(),
            "lastBackup": {"id": "b", "location": "l", "sizeBytes": 3140},
            "history": [{"job": "j", "outcome": "Succeeded", "durationSeconds": 1.5}],
            "lastVerifiedBackup": {"outcome": "Succeeded", "durationSeconds": 4.0, "job": "d"},
        }
    )
    migration = DatabaseMigrationStatus(phase="Succeeded", duration_seconds=2.0)
    for index in range(resources):
        if index % 2:
            state = state_of("DatabaseBackup", backup, Limits(93600.0, 1209600.0), now.timestamp())
            series.set(("DatabaseBackup", f"ns-{index % 50}", f"backup-{index}"), state)
        else:
            state = state_of("DatabaseMigration", migration, created=now.timestamp())
            series.set(("DatabaseMigration", f"ns-{index % 50}", f"migration-{index}"), state)
    return registry


def scrape_seconds(registry: CollectorRegistry, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        generate_latest(registry)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--resources", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    loaded, empty = registry_with(args.resources), registry_with(0)
    with_resources = scrape_seconds(loaded, args.repeat)
    without = scrape_seconds(empty, args.repeat)
    size = len(generate_latest(loaded))
    print(f"resources               {args.resources}")
    print(
        f"scrape with them        {with_resources * 1000:.1f} ms (median of {args.repeat}), {size / 1024:.0f} KiB"
    )
    print(f"scrape without them     {without * 1000:.3f} ms")
    print(f"per resource            {(with_resources - without) / max(args.resources, 1) * 1e6:.1f} us")
    print(f"ratio with / without    {with_resources / max(without, 1e-9):.0f}x")


if __name__ == "__main__":
    main()
