"""Decide what a migration run will do, from the files and the history alone, before touching the database."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pgwarden.api.policy import TransactionMode
from pgwarden.engine.migrate.files import InvalidVersion, MigrationFile, version_key
from pgwarden.engine.migrate.history import statements_digest
from pgwarden.errors import BadInput

ALLOW_DESTRUCTIVE_HINT = "add `-- pgwarden:allow-destructive` to the file or pass --allow-destructive"


@dataclass(frozen=True)
class AppliedMigration:
    """One row of the history table, as far as planning cares (the statement counts: for a file that runs
    outside a transaction, how far an earlier run got)."""

    version: str
    description: str
    checksum: str
    success: bool
    statements_applied: int = 0
    statement_running: int | None = None
    statements_digest: str | None = None


@dataclass(frozen=True)
class Resume:
    """Where a file that runs statement by statement resumes: after its first `applied` statements, the
    next of which a dead run had `interrupted` (started, maybe taken effect, never recorded as done)."""

    applied: int
    interrupted: bool


@dataclass(frozen=True)
class PlannedMigration:
    """One migration to apply, and the transaction it runs in.

    Migrations sharing a `transaction_group` run one after another in that group's single transaction
    when `runs_in_transaction`; a migration that runs outside a transaction is alone in its group and
    runs each statement on its own.
    """

    file: MigrationFile
    transaction_group: int
    runs_in_transaction: bool
    resume: Resume | None = None


@dataclass(frozen=True)
class EditedMigration:
    """An applied migration whose file changed afterwards."""

    script_name: str
    version: str
    applied_checksum: str
    file_checksum: str

    @property
    def message(self) -> str:
        """What happened and what to do."""
        return (
            f"{self.script_name} (version {self.version}) was changed after it was applied "
            f"(checksum then {self.applied_checksum[:12]}, now {self.file_checksum[:12]}); "
            "restore the original file and put the change in a new migration"
        )


@dataclass(frozen=True)
class OutOfOrderMigration:
    """A pending migration older than one already applied."""

    script_name: str
    version: str
    newest_applied: str

    @property
    def message(self) -> str:
        """What happened and what to do."""
        return (
            f"{self.script_name} (version {self.version}) is pending but older than the newest applied "
            f"version {self.newest_applied}; renumber it above {self.newest_applied} so it runs after "
            "what is already applied"
        )


@dataclass(frozen=True)
class NonTransactionalMigration:
    """A migration that cannot run in a transaction, in a run that must be one transaction."""

    script_name: str
    line: int | None
    reason: str

    @property
    def message(self) -> str:
        """What happened and what to do."""
        where = f"{self.script_name}:{self.line}" if self.line is not None else self.script_name
        return (
            f"{where}: {self.reason} cannot run inside a transaction, and policy.transaction is 'all'; "
            "use transaction mode auto or perMigration, or move the statement out of this run"
        )


@dataclass(frozen=True)
class PartlyAppliedChanged:
    """A file that runs statement by statement, partly applied by an earlier run, whose applied statements
    changed since: resuming it would skip statements that never ran."""

    script_name: str
    version: str
    applied: int

    @property
    def message(self) -> str:
        """What happened and what to do."""
        return (
            f"{self.script_name} (version {self.version}) was partly applied by an earlier run ({self.applied} "
            f"statement(s)) and those statements changed since; restore them as they were (edit only what "
            "follows them), or undo what was applied by hand and delete its history row"
        )


@dataclass(frozen=True)
class DestructiveStatement:
    """Where a statement that can lose data is, and why it can."""

    script_name: str
    line: int
    reason: str


@dataclass(frozen=True)
class DestructiveStatements:
    """Pending statements that can lose data, in a run that does not allow them."""

    statements: tuple[DestructiveStatement, ...]

    @property
    def message(self) -> str:
        """What happened and what to do."""
        listed = "; ".join(f"{s.script_name}:{s.line} {s.reason}" for s in self.statements)
        return f"destructive statements refused: {listed}; if intended, {ALLOW_DESTRUCTIVE_HINT}"


Refusal = (
    EditedMigration
    | OutOfOrderMigration
    | NonTransactionalMigration
    | PartlyAppliedChanged
    | DestructiveStatements
)


class PlanRefused(BadInput):
    """The run would be unsafe as asked; nothing was changed. Every reason is listed with what to do."""

    def __init__(self, refusals: tuple[Refusal, ...]) -> None:
        super().__init__("\n".join(r.message for r in refusals))
        self.refusals = refusals


@dataclass(frozen=True)
class MigrationPlan:
    """What a run will do: ordered steps with their transactions, and what it refuses or warns about."""

    mode: TransactionMode
    steps: tuple[PlannedMigration, ...]
    already_applied: tuple[str, ...]
    baselined: tuple[MigrationFile, ...] = ()
    """Files at or below the baseline that the history lacks: recorded as applied, never run."""
    current_version: str | None = None
    target: str | None = None
    warnings: tuple[str, ...] = ()
    refusals: tuple[Refusal, ...] = ()

    @property
    def pending(self) -> tuple[str, ...]:
        """Versions this run applies, in order."""
        return tuple(step.file.version for step in self.steps)

    @property
    def refused(self) -> bool:
        """Whether the run must not start."""
        return bool(self.refusals)

    def raise_if_refused(self) -> None:
        """Raise `PlanRefused` when anything makes the run unsafe."""
        if self.refusals:
            raise PlanRefused(self.refusals)

    def groups(self) -> tuple[tuple[PlannedMigration, ...], ...]:
        """The steps grouped by transaction, in order."""
        grouped: dict[int, list[PlannedMigration]] = {}
        for step in self.steps:
            grouped.setdefault(step.transaction_group, []).append(step)
        return tuple(tuple(group) for group in grouped.values())

    def describe(self) -> list[str]:
        """The plan as lines a person reads: one per migration, then warnings and refusals."""
        at = f"at version {self.current_version}" if self.current_version else "with no migrations applied"
        lines = [f"database {at}; transaction mode {self.mode.value}; {len(self.steps)} to apply"]
        if len(self.groups()) > 1:
            lines.append(
                f"  {len(self.groups())} commits: rows are checked for loss before each; expectations and "
                "checks before the last; a failure after a commit is undone by the rollback strategy"
            )
        for file in self.baselined:
            lines.append(f"  {file.version}  {file.description}  baseline: recorded as applied, not run")
        width = max((len(step.file.version) for step in self.steps), default=0)
        for step in self.steps:
            how = "in a transaction" if step.runs_in_transaction else _outside(step)
            lines.append(
                f"  {step.file.version:<{width}}  {step.file.description}  "
                f"(group {step.transaction_group}, {how})"
            )
        if not self.steps:
            lines.append("  nothing to apply")
        lines.extend(f"warning: {w}" for w in self.warnings)
        lines.extend(f"refused: {r.message}" for r in self.refusals)
        return lines


def plan_migrations(
    files: tuple[MigrationFile, ...] | list[MigrationFile],
    applied: tuple[AppliedMigration, ...] | list[AppliedMigration],
    *,
    mode: TransactionMode | str = TransactionMode.AUTO,
    target: str | None = None,
    baseline: str | None = None,
    allow_destructive: bool = False,
) -> MigrationPlan:
    """Plan a run: what is pending up to `target`, how it is grouped into transactions, and what is refused.

    `applied` is the history in the order it was written; for a version recorded more than once, its
    last row counts. Raises `InvalidVersion` when `target` or `baseline` is not a version.
    """
    mode = TransactionMode(mode)
    target_key = _parse_bound(target, "target")
    baseline_key = _parse_bound(baseline, "baseline")
    ordered = sorted(files, key=lambda f: f.version_key)
    by_key = {f.version_key: f for f in ordered}
    warnings: list[str] = []
    refusals: list[Refusal] = []

    last_rows = _last_rows(applied, by_key, warnings, refusals)
    succeeded = {key: row for key, row in last_rows.items() if row.success}
    newest_key = max(succeeded, default=None)
    baselined = tuple(
        f
        for f in ordered
        if baseline_key is not None and f.version_key <= baseline_key and f.version_key not in succeeded
    )
    baselined_keys = {f.version_key for f in baselined}
    pending = [
        f
        for f in ordered
        if f.version_key not in succeeded
        and f.version_key not in baselined_keys
        and (target_key is None or f.version_key <= target_key)
    ]
    if newest_key is not None:
        newest = succeeded[newest_key].version
        refusals.extend(
            OutOfOrderMigration(f.script_name, f.version, newest)
            for f in pending
            if f.version_key < newest_key
        )
        if target_key is not None and target_key < newest_key:
            warnings.append(
                f"target {target} is below the applied version {newest}; "
                "pgwarden only migrates up, so nothing is undone"
            )

    steps = _with_resume(_group(pending, mode, refusals), last_rows, refusals)
    refusals.extend(_destructive_refusals(pending, allow_destructive))
    return MigrationPlan(
        mode=mode,
        steps=steps,
        already_applied=tuple(row.version for _, row in sorted(succeeded.items())),
        baselined=baselined,
        current_version=succeeded[newest_key].version if newest_key is not None else None,
        target=target,
        warnings=tuple(warnings),
        refusals=tuple(refusals),
    )


def _last_rows(
    applied: tuple[AppliedMigration, ...] | list[AppliedMigration],
    by_key: dict[tuple[int, ...], MigrationFile],
    warnings: list[str],
    refusals: list[Refusal],
) -> dict[tuple[int, ...], AppliedMigration]:
    """The last history row of each version, with what the rows say about the files (pure)."""
    last_rows: dict[tuple[int, ...], AppliedMigration] = {}
    for row in applied:
        try:
            last_rows[version_key(row.version)] = row
        except InvalidVersion:
            warnings.append(
                f"history row with version {row.version!r} is not a version pgwarden can order; ignored"
            )
    for key, row in sorted(last_rows.items()):
        file = by_key.get(key)
        if file is None:
            if row.success:
                warnings.append(
                    f"version {row.version} ({row.description}) is recorded as applied "
                    "but its file is missing from the migration directory"
                )
        elif row.success and row.checksum != file.checksum:
            refusals.append(EditedMigration(file.script_name, file.version, row.checksum, file.checksum))
        elif not row.success:
            warnings.append(_retry_warning(file))
    return last_rows


def _parse_bound(version: str | None, what: str) -> tuple[int, ...] | None:
    if version is None:
        return None
    try:
        return version_key(version)
    except InvalidVersion as exc:
        raise InvalidVersion(version, what) from exc


def _retry_warning(file: MigrationFile) -> str:
    warning = f"{file.script_name} failed on an earlier run and will be retried"
    if not file.runs_in_transaction:
        warning += "; it runs statement by statement, so it resumes at the statement that did not finish"
    return warning


def _outside(step: PlannedMigration) -> str:
    total = len(step.file.statements)
    how = f"outside a transaction, statement by statement ({total}), verified right after"
    if step.resume is not None and step.resume.applied:
        how += f"; resumes at statement {step.resume.applied + 1}"
    return how


def _with_resume(
    steps: tuple[PlannedMigration, ...],
    last_rows: dict[tuple[int, ...], AppliedMigration],
    refusals: list[Refusal],
) -> tuple[PlannedMigration, ...]:
    """Each file that runs statement by statement, with where an earlier run left it (pure)."""
    resumed = []
    for step in steps:
        row = last_rows.get(step.file.version_key)
        if step.runs_in_transaction or row is None or row.success:
            resumed.append(step)
            continue
        applied = row.statements_applied
        texts = [s.text for s in step.file.statements[:applied]]
        if applied and (
            applied > len(step.file.statements) or statements_digest(texts) != row.statements_digest
        ):
            refusals.append(PartlyAppliedChanged(step.file.script_name, step.file.version, applied))
        interrupted = row.statement_running is not None
        resume = Resume(applied, interrupted) if applied or interrupted else None
        resumed.append(dataclasses.replace(step, resume=resume))
    return tuple(resumed)


def _group(
    pending: list[MigrationFile], mode: TransactionMode, refusals: list[Refusal]
) -> tuple[PlannedMigration, ...]:
    steps: list[PlannedMigration] = []
    group = 0
    previous_shared = False
    for file in pending:
        if mode is TransactionMode.ALL:
            refusals.extend(_non_transactional(file))
            steps.append(PlannedMigration(file, transaction_group=1, runs_in_transaction=True))
            continue
        in_transaction = file.runs_in_transaction
        # auto shares one transaction between neighbours; perMigration and non-transactional files stand alone.
        shares = mode is TransactionMode.AUTO and in_transaction
        if not (shares and previous_shared):
            group += 1
        previous_shared = shares
        steps.append(PlannedMigration(file, transaction_group=group, runs_in_transaction=in_transaction))
    return tuple(steps)


def _non_transactional(file: MigrationFile) -> list[NonTransactionalMigration]:
    found = [
        NonTransactionalMigration(file.script_name, s.line, s.kind)
        for s in file.statements
        if not s.transactional
    ]
    if file.directives.no_transaction:
        found.append(
            NonTransactionalMigration(file.script_name, None, "the -- pgwarden:no-transaction directive")
        )
    return found


def _destructive_refusals(
    pending: list[MigrationFile], allow_destructive: bool
) -> list[DestructiveStatements]:
    if allow_destructive:
        return []
    found = tuple(
        DestructiveStatement(file.script_name, s.line, s.destructive)
        for file in pending
        if not file.directives.allow_destructive
        for s in file.statements
        if s.destructive is not None
    )
    return [DestructiveStatements(found)] if found else []
