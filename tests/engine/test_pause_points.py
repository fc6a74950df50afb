"""Pause points are for tests only (issue 18, item 7): the product never stops at one, whatever its
environment says; the test wrapper does, and a paused run keeps its deadline."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from pgwarden_testing.paused import PAUSE_SECONDS_ENV, PAUSED, wanted

from cli.helpers import PAUSE_ENV, json_report, run_pgwarden, start_pgwarden

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "pgwarden"


def test_the_console_script_ignores_a_stray_pause_variable(db_url: str, tmp_path: Path) -> None:
    started = time.monotonic()
    result = run_pgwarden(
        "backup", db_url, "--to", tmp_path / "backups", "--json", env={PAUSE_ENV: "after-preflight"}
    )

    assert result.returncode == 0, result.stderr
    assert PAUSED not in result.stderr
    assert json_report(result)["outcome"] == "Succeeded"
    assert time.monotonic() - started < 60


def test_nothing_in_the_package_installs_a_pause_hook() -> None:
    installers = [
        path.relative_to(PACKAGE)
        for path in PACKAGE.rglob("*.py")
        if path.name != "pause_points.py" and "pause_points.install" in path.read_text()
    ]
    assert installers == []


def test_a_paused_run_goes_on_when_its_pause_runs_out(db_url: str, tmp_path: Path) -> None:
    run = start_pgwarden(
        "backup", db_url, "--to", tmp_path / "backups", "--json",
        pause_at="after-preflight", env={PAUSE_SECONDS_ENV: "1"},
    )  # fmt: skip
    _stdout, stderr = run.communicate(timeout=120)

    assert run.returncode == 0, stderr
    assert f"{PAUSED}after-preflight" in stderr


def test_sigterm_ends_a_pause_at_once_with_a_report(db_url: str, tmp_path: Path) -> None:
    run = start_pgwarden("backup", db_url, "--to", tmp_path / "backups", "--json", pause_at="before-manifest")
    assert run.stderr is not None
    for line in run.stderr:
        if PAUSED in line:
            break
    run.send_signal(signal.SIGTERM)
    started = time.monotonic()
    stdout, _stderr = run.communicate(timeout=60)

    assert time.monotonic() - started < 20
    assert run.returncode != 0
    assert json.loads(stdout)["outcome"] == "Failed"


def test_pause_points_are_named_with_the_occurrence_to_stop_at() -> None:
    assert wanted("a, b@3,") == {"a": 1, "b": 3}
    assert wanted("") == {}
