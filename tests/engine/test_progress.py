"""Progress of long statements: the hook gets which migration is running, at a bounded rate, and a progress
line says how far an index build got (pure)."""

from __future__ import annotations

import itertools
from pathlib import Path

from pgwarden.api.reports import Outcome
from pgwarden.engine.migrate.migrate import MigrateOptions, migrate
from pgwarden.engine.migrate.progress import StatementProgress


def test_a_progress_line_names_the_migration_and_how_far_the_index_build_got() -> None:
    progress = StatementProgress(
        version="0002",
        script="0002_index.sql",
        line=3,
        statement="CREATE INDEX CONCURRENTLY orders_total ON orders (total)",
        elapsed_seconds=12.4,
        phase="building index: scanning table",
        table="orders",
        blocks_done=1200,
        blocks_total=5000,
        tuples_done=0,
        tuples_total=0,
    )

    assert progress.describe() == (
        "0002 0002_index.sql:3 running for 12s: CREATE INDEX CONCURRENTLY orders_total ON orders (total); "
        "index build on orders: building index: scanning table, blocks 1,200 of 5,000"
    )


def test_the_hook_hears_of_a_long_statement_at_a_bounded_rate_and_short_ones_not_at_all(
    db_url: str, tmp_path: Path
) -> None:
    directory = tmp_path / "m"
    directory.mkdir()
    (directory / "0001_quick.sql").write_text("CREATE TABLE t (id int);\n")
    (directory / "0002_slow.sql").write_text("INSERT INTO t VALUES (1);\nSELECT pg_sleep(3.2);\n")
    heard: list[StatementProgress] = []

    report = migrate(
        db_url,
        MigrateOptions(directory=directory, on_progress=heard.append, progress_after=1.0, progress_every=1.0),
    )

    assert report.outcome == Outcome.SUCCEEDED
    assert 2 <= len(heard) <= 3, [p.elapsed_seconds for p in heard]  # at 1 s, 2 s (and 3 s): never more
    assert {(p.version, p.script, p.line) for p in heard} == {("0002", "0002_slow.sql", 2)}
    assert heard[0].elapsed_seconds >= 1.0
    assert all(b.elapsed_seconds - a.elapsed_seconds >= 0.9 for a, b in itertools.pairwise(heard))
