"""The verification that gates every COMMIT of a run: inside the open transaction, the row-loss check before
each commit, and the expectations and checks before the last. A commit also records the schema state, so
the run's own changes are never taken for drift by the next run, interrupted or not."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgwarden.api.reports import CheckResult, Verification
from pgwarden.api.verify import RowCountMode
from pgwarden.engine.migrate import history, verify
from pgwarden.engine.migrate.failures import VerificationFailed
from pgwarden.engine.migrate.plan import PlannedMigration
from pgwarden.engine.postgres.state import capture_state

if TYPE_CHECKING:
    from pgwarden.engine.migrate.run import Run


def verify_before_commit(run: Run, *, final: bool, committing: list[PlannedMigration]) -> None:
    """Verify what the open transaction is about to commit; VerificationFailed when anything does not hold."""
    spec = run.options.verify
    run.phase = "verifying before COMMIT"
    after = capture_state(run.conn, run.url, mode=spec.row_counts, own_schema=run.schema, in_transaction=True)
    results: list[CheckResult] = []
    changes = None
    if run.before is not None and spec.row_counts != RowCountMode.NONE:
        changes = verify.row_changes(run.before.row_counts, after.row_counts, spec.allow_row_loss_in)
        if spec.row_counts == RowCountMode.EXACT:
            results.append(verify.row_loss_check(changes))
    if final:
        run.phase = "verifying expectations and checks before COMMIT"
        results.extend(verify.expectation_checks(run.conn, spec.expect))
        results.extend(verify.run_check(run.conn, check) for check in spec.checks)
    passed = all(r.passed for r in results)
    if final or not passed:
        run.report.tables.after = len(after.tables)
        run.report.rows.after = after.total_rows
        if changes is not None:
            run.report.row_changes = changes
        run.verification = Verification(passed=passed, checks=results)
    if not passed:
        failed = "; ".join(
            r.message or f"{r.name}: expected {r.expected}, got {r.actual}" for r in results if not r.passed
        )
        versions = ", ".join(s.file.version for s in committing)
        before_what = f"before committing {versions}" if versions else "after the last commit"
        raise VerificationFailed(f"verification failed {before_what}: {failed}")
    done = [s.file.version for s in [*run.committed, *committing]]
    if not done and not (final and (run.plan.baselined or run.journal.continuing)):
        return  # nothing changed: keep the recorded state, so drift stays visible until the next change
    # After every commit, not only the last: an interrupted run's own changes are not drift on the rerun.
    history.record_state(
        run.conn,
        fingerprint=after.fingerprint,
        snapshot=after.snapshot_json,
        version=_version_after_success(run) if final else done[-1],
        schema=run.schema,
    )


def _version_after_success(run: Run) -> str | None:
    plan = run.plan
    versions = [s.file.version for s in plan.steps] or [f.version for f in plan.baselined]
    return versions[-1] if versions else plan.current_version
