"""`pgwarden migrate`: apply pending migrations, verify before COMMIT, roll back on failure."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from pgwarden.api.choices import RollbackStrategy
from pgwarden.cli.output import add_database_arg, add_json_flag, describe_recovered, duration_flag, table
from pgwarden.errors import BadInput
from pgwarden.streams import print_json, print_text, progress

if TYPE_CHECKING:
    from pgwarden.api.reports import AppliedMigration, MigrationReport, Rehearsal
    from pgwarden.api.verify import VerifySpec
    from pgwarden.engine.migrate.migrate import MigrateOptions
    from pgwarden.engine.migrate.rehearsal import RehearsalOptions

NAME = "migrate"
HELP = "apply pending migrations safely"
DESCRIPTION = "Apply pending migrations from DIR; verify before COMMIT; roll back when anything fails."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_database_arg(parser)
    parser.add_argument("--dir", required=True, type=Path, help="directory of migration files")
    parser.add_argument("--target", metavar="V", help="migrate up to this version only")
    parser.add_argument("--baseline", metavar="V", help="treat versions up to V as already applied")
    parser.add_argument("--plan", action="store_true", help="print the plan and change nothing")
    parser.add_argument("--backup-to", metavar="URI", help="take a backup here before applying")
    parser.add_argument(
        "--rollback",
        choices=[s.value for s in RollbackStrategy],
        default=RollbackStrategy.TRANSACTION.value,
        help="what to do when the run fails (default: transaction)",
    )
    parser.add_argument("--allow-destructive", action="store_true", help="allow DROP/TRUNCATE/… statements")
    parser.add_argument(
        "--transaction",
        choices=["auto", "all", "perMigration"],
        default="auto",
        help="transaction mode (default auto: one transaction, split only where a statement needs it)",
    )
    add_lock_arguments(parser)
    parser.add_argument(
        "--statement-timeout", default="1h", help="statement_timeout for every statement (default 1h)"
    )
    parser.add_argument("--verify", metavar="FILE", type=Path, help="YAML file with a `verify` block")
    parser.add_argument("--history-schema", default="pgwarden", help="schema of the history table")
    parser.add_argument(
        "--lint-fail-on",
        metavar="RULE",
        action="append",
        default=[],
        help="refuse the run (exit 2, nothing changed) when a pending migration breaks this squawk rule "
        "(repeatable), e.g. require-concurrent-index-creation or changing-column-type",
    )
    parser.add_argument(
        "--rehearse-from",
        metavar="LOCATION",
        help="first run the same plan on a scratch copy restored from the backup here (a backup, or the newest "
        "under a prefix); a failed rehearsal stops the run before the database is touched",
    )
    parser.add_argument(
        "--rehearse-on",
        metavar="URL",
        help="the server for the scratch copy (default: the database's own server)",
    )
    parser.add_argument(
        "--rehearsal-max-lock-hold",
        metavar="DURATION",
        help="fail the rehearsal when it holds a lock that blocks writes longer than this, e.g. 2s or 1m",
    )
    parser.add_argument(
        "--identity",
        metavar="FILE",
        help="age identity file (AGE-SECRET-KEY-1… lines) to open a --rehearse-from backup taken with --encrypt-to",
    )
    add_json_flag(parser)


def add_lock_arguments(parser: argparse.ArgumentParser) -> None:
    """How long the run may wait for locks, and so how long the application's queries may queue behind it."""
    parser.add_argument(
        "--lock-timeout", default="5s", help="lock_timeout for every lock wait of the run (default 5s)"
    )
    parser.add_argument(
        "--ddl-lock-timeout",
        default="500ms",
        help="lock_timeout of each statement taking a lock stronger than ROW EXCLUSIVE: the longest a reader "
        "queued behind it waits per attempt (default 500ms)",
    )
    parser.add_argument(
        "--lock-attempts",
        type=int,
        default=10,
        help="how many times a step that timed out waiting for a lock is tried in all (default 10)",
    )
    parser.add_argument(
        "--lock-retry-within",
        default="20s",
        help="the most the jittered pauses between those attempts add up to (default 20s)",
    )
    parser.add_argument(
        "--backup-wait",
        default="1h",
        help="how long to wait for a pgwarden backup or restore of the database under way before taking any "
        "lock (default 1h)",
    )


def load_verify(path: Path | None) -> VerifySpec:
    """The `verify` block from a YAML file (either the block itself or a document with a `verify` key)."""
    import yaml
    from pydantic import ValidationError

    from pgwarden.api.verify import VerifySpec

    if path is None:
        return VerifySpec()
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise BadInput(f"cannot read --verify file {path}: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("verify"), dict):
        data = data["verify"]
    try:
        return VerifySpec.model_validate(data)
    except ValidationError as exc:
        raise BadInput(f"--verify file {path} is not a valid verify block:\n{exc}") from exc


def build_options(args: argparse.Namespace) -> MigrateOptions:
    from pgwarden.api.policy import MigrationPolicy
    from pgwarden.engine.migrate.migrate import MigrateOptions

    if not args.dir.is_dir():
        raise BadInput(f"--dir {args.dir} is not a directory of migration files")
    rollback = RollbackStrategy(args.rollback)
    if rollback == RollbackStrategy.RESTORE and not args.backup_to:
        raise BadInput("--rollback restore needs --backup-to URI: there is nothing to restore from otherwise")
    safety_net = None
    if args.backup_to:
        from pgwarden.engine.restore.safety_net import BackupSafetyNet

        safety_net = BackupSafetyNet(args.database_url_resolved, args.backup_to, progress=progress)
    return MigrateOptions(
        directory=args.dir,
        target=args.target,
        baseline=args.baseline,
        plan_only=args.plan,
        policy=MigrationPolicy(
            transaction=args.transaction,
            allow_destructive=args.allow_destructive,
            lock_timeout=duration_flag("--lock-timeout", args.lock_timeout),
            ddl_lock_timeout=duration_flag("--ddl-lock-timeout", args.ddl_lock_timeout),
            lock_attempts=lock_attempts(args.lock_attempts),
            lock_retry_within=duration_flag("--lock-retry-within", args.lock_retry_within),
            backup_wait=duration_flag("--backup-wait", args.backup_wait),
            statement_timeout=duration_flag("--statement-timeout", args.statement_timeout),
        ),
        verify=load_verify(args.verify),
        rollback=rollback,
        history_schema=args.history_schema,
        safety_net=safety_net,
        lint_fail_on=tuple(args.lint_fail_on),
        rehearsal=rehearsal_options(args),
        # Long statements are reported on stderr with --json too: stdout holds only the report.
        on_progress=lambda running: progress(running.describe()),
        on_waiting=progress,
    )


def lock_attempts(value: int) -> int:
    """--lock-attempts, within what the policy takes (1 to 100)."""
    if not 1 <= value <= 100:
        raise BadInput(f"--lock-attempts {value} is out of range; give 1 to 100")
    return value


def rehearsal_options(args: argparse.Namespace) -> RehearsalOptions | None:
    """--rehearse-from and its companions; BadInput for a companion without it or a bad duration."""
    from pgwarden.api.durations import parse_duration
    from pgwarden.engine.backup.encryption import load_identities
    from pgwarden.engine.migrate.rehearsal import RehearsalOptions
    from pgwarden.engine.postgres.connect import resolve_url

    if not args.rehearse_from:
        if args.rehearse_on or args.rehearsal_max_lock_hold or args.identity:
            raise BadInput(
                "--rehearse-on, --rehearsal-max-lock-hold and --identity need --rehearse-from LOCATION"
            )
        return None
    if args.plan:
        raise BadInput("--plan changes nothing and rehearses nothing; drop --rehearse-from or --plan")
    limit = None
    if args.rehearsal_max_lock_hold:
        held = duration_flag("--rehearsal-max-lock-hold", args.rehearsal_max_lock_hold)
        limit = parse_duration(held).total_seconds()
    server = resolve_url(args.rehearse_on) if args.rehearse_on else None
    return RehearsalOptions(
        location=args.rehearse_from,
        server_url=server,
        max_lock_hold_seconds=limit,
        identities=tuple(load_identities(args.identity)) if args.identity else (),
    )


def run(args: argparse.Namespace) -> int:
    from pgwarden.api.reports import Outcome
    from pgwarden.engine.migrate.migrate import migrate
    from pgwarden.engine.postgres.connect import resolve_url

    args.database_url_resolved = resolve_url(args.database_url)
    options = build_options(args)
    report = migrate(args.database_url_resolved, options, progress=None if args.json else progress)
    if args.json:
        print_json(report)
    else:
        print_text(describe(report))
    return 0 if report.outcome == Outcome.SUCCEEDED else 1


def describe(report: MigrationReport) -> list[str]:
    """The report as a person reads it: outcome, what was applied, counts before and after."""
    from pgwarden.api.reports import Outcome

    lines = [f"database  {report.database}"]
    if report.plan_only:
        lines.append(f"version   {report.current_version or '(none)'}")
        lines.append(f"pending   {len(report.pending)}")
        lines.extend(f"  {line}" for line in report.plan)
        lines.extend(f"warning: {w}" for w in report.warnings)
        return lines
    lines.extend(describe_recovered(report.recovered))
    lines.append(f"outcome   {report.outcome}")
    lines.extend(f"lint      {f.file}:{f.line} {f.rule}: {f.message}" for f in report.lint)
    lines.append(f"version   {report.current_version or '(none)'}")
    if report.drift and report.drift.detected:
        lines.append(
            f"drift     {len(report.drift.differences)} change(s) made outside pgwarden since the last run:"
        )
        lines.extend(f"  {d.kind} {d.object}: {d.detail}" for d in report.drift.differences)
    if report.applied:
        lines.append("")
        lines.extend(
            table(
                ["VERSION", "DESCRIPTION", "TX", "MS"],
                [
                    [a.version, a.description, "yes" if a.transactional else _statements(a), a.duration_ms]
                    for a in report.applied
                ],
            )
        )
    elif report.outcome == Outcome.SUCCEEDED:
        lines.append("nothing to apply: the database is up to date")
    if report.tables.before is not None or report.tables.after is not None:  # none: the run never started
        lines.append("")
        lines.append(f"tables    {_before_after(report.tables.before, report.tables.after)}")
        lines.append(
            f"rows      {_before_after(report.rows.before, report.rows.after)} ({report.row_counts})"
        )
    if report.row_changes:
        lines.append("")
        lines.extend(
            table(
                ["TABLE", "BEFORE", "AFTER"],
                [
                    [
                        c.table,
                        c.before if c.before is not None else "-",
                        c.after if c.after is not None else "-",
                    ]
                    for c in report.row_changes[:20]
                ],
            )
        )
        if len(report.row_changes) > 20:
            lines.append(f"... and {len(report.row_changes) - 20} more")
    if report.verification:
        state = "passed" if report.verification.passed else "FAILED"
        lines.append(f"verify    {state} ({len(report.verification.checks)} checks)")
        lines.extend(
            f"  ✗ {c.name}: {c.message or f'expected {c.expected}, got {c.actual}'}"
            for c in report.verification.checks
            if not c.passed
        )
    if report.backup:
        lines.append(f"backup    {report.backup.location} ({report.backup.size_bytes} bytes)")
    if report.rehearsal:
        lines.extend(describe_rehearsal(report.rehearsal))
    if report.error:
        lines.append(f"error     {report.error.message}")
    if report.rollback:
        lines.append(
            f"rollback  {report.rollback.strategy}: {report.rollback.outcome} — {report.rollback.message}"
        )
    return lines


def _statements(applied: AppliedMigration) -> str:
    count = applied.statements
    return f"no ({count.applied}/{count.total})" if count else "no"


def _before_after(before: int | None, after: int | None) -> str:
    def show(value: int | None) -> str:
        return "-" if value is None else f"{value:,}"

    return f"{show(before)} -> {show(after)}"


def describe_rehearsal(rehearsal: Rehearsal) -> list[str]:
    """The rehearsal in a few lines: outcome, times, and the locks that block writes."""
    lines = [
        f"rehearsal {rehearsal.outcome} on a copy of {rehearsal.backup} "
        f"(restore {rehearsal.restore_seconds or 0:.1f}s, run {rehearsal.run_seconds or 0:.1f}s)"
    ]
    lines.extend(f"  {a.version} {a.description}: {a.duration_ms} ms" for a in rehearsal.applied)
    lines.extend(
        f"  lock {lock.mode} on {lock.relation} held {lock.held_seconds:.2f}s"
        + (f" ({lock.statement})" if lock.statement else "")
        for lock in rehearsal.locks
        if lock.blocks_writes
    )
    if rehearsal.error:
        lines.append(f"  {rehearsal.error.message}")
    return lines
