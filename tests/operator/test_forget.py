"""What the operator keeps per resource (a reconcile lock, metric series) is released once it is gone."""

from __future__ import annotations

from datetime import UTC, datetime

from pgwarden.operator import metrics, reconcile
from pgwarden.operator.status import Finished


def series(name: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(
        "pgwarden_backup_last_success_timestamp_seconds", {"namespace": "shop", "name": name}
    )


def test_a_deleted_backups_lock_and_metric_series_are_released() -> None:
    done = Finished(kind="backup", outcome="Succeeded", size_bytes=10, completed_at=datetime.now(UTC))
    metrics.record("shop", "gone-backup", done)
    with reconcile._lock("DatabaseBackup", "shop", "gone-backup"):
        pass
    assert series("gone-backup") is not None

    reconcile.forget("DatabaseBackup", "shop", "gone-backup")
    assert series("gone-backup") is None
    assert "DatabaseBackup/shop/gone-backup" not in reconcile._locks
    reconcile.forget("DatabaseBackup", "shop", "gone-backup")  # twice: nothing left, nothing fails


def test_a_lock_held_by_a_reconcile_in_flight_is_kept() -> None:
    with reconcile._lock("DatabaseMigration", "shop", "busy"):
        reconcile.forget("DatabaseMigration", "shop", "busy")
        assert "DatabaseMigration/shop/busy" in reconcile._locks
    reconcile.forget("DatabaseMigration", "shop", "busy")
    assert "DatabaseMigration/shop/busy" not in reconcile._locks
