"""A Job's report as the operator receives it: the engine's report models, plus what the Job adds, decoded
once where the report enters the operator (its termination message).

The Job writes the report compacted to fit 4 KiB (`pgwarden.job.termination_message`): a capped list gets a
`<name>Total` beside it, and in the last resort only the outcome and the error remain (`truncated`). The
decoder takes those back out, and is lenient where an operator meets a report of another version: a field the
model does not know is kept aside (`unknown`), a value that does not fit is left out (`dropped`), and both are
said (`ReportNotes.problems`) instead of failing the resource or vanishing unseen.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field, ValidationError

from pgwarden.api.drill import DrillReport
from pgwarden.api.fleet_drift import DriftReport
from pgwarden.api.reports import BackupReport, MigrationReport, RecoveryReport, RestoreReport
from pgwarden.api.retention import RetentionOutcome
from pgwarden.api.task import JobKind


class BackupJobReport(BackupReport):
    """What a backup Job reports: the backup's report, and what retention did after it."""

    warnings: list[str] = Field(
        default_factory=list, description="What went wrong after the backup itself (report.json, retention)."
    )
    retained: int | None = Field(default=None, description="Backups retention kept under the owner's folder.")
    pruned: list[str] | None = Field(default=None, description="The ids of the backups retention deleted.")
    retention: RetentionOutcome | None = Field(
        default=None, description="What retention decided under the owner's folder, backup by backup."
    )


JobReport = MigrationReport | BackupJobReport | RestoreReport | DrillReport | DriftReport | RecoveryReport

# The report each kind of Job writes (a rehearsal is a migrate Job: its report is a MigrationReport).
REPORT_MODELS: dict[JobKind, type[JobReport]] = {
    JobKind.MIGRATE: MigrationReport,
    JobKind.BACKUP: BackupJobReport,
    JobKind.RESTORE: RestoreReport,
    JobKind.DRILL: DrillReport,
    JobKind.DRIFT: DriftReport,
    JobKind.RECOVER: RecoveryReport,
}
_DECODE_ATTEMPTS = 64


@dataclass
class ReportNotes:
    """What decoding took out of a report, and what it had to leave out."""

    # `<list>Total` the compact form wrote beside a capped list, by the list's path (`applied`,
    # `verification.checks`): how many there were before the cap.
    totals: dict[str, int] = field(default_factory=dict)
    truncated: bool = False  # only the outcome, the rollback's outcome and the error fitted
    unknown: dict[str, Any] = field(default_factory=dict)  # fields the model does not know, as they came
    dropped: list[str] = field(default_factory=list)  # fields whose value did not fit, left out

    def problems(self) -> list[str]:
        """What the operator says about a report it could not read whole (empty when it could)."""
        said = []
        if self.unknown:
            said.append(f"fields this operator does not know: {', '.join(sorted(self.unknown))}")
        if self.dropped:
            said.append(f"fields left out because their values do not fit: {', '.join(sorted(self.dropped))}")
        return said


@dataclass(frozen=True)
class DecodedReport:
    """A Job's report as its model, with what decoding noted."""

    report: JobReport
    notes: ReportNotes


def decode_report(data: Mapping[str, Any], kind: JobKind | None) -> DecodedReport | None:
    """The report a Job of `kind` wrote, as its model; None when not even its outcome can be read.

    A Job without pgwarden's labels (`kind` None: made by hand, or in a unit test) is read as the model its
    report fits best: the fewest fields set aside, then the most fields used."""
    kinds = [kind] if kind is not None else list(REPORT_MODELS)
    readings = [found for each in kinds if (found := _decode(REPORT_MODELS[each], data)) is not None]
    return min(readings, key=_misfit, default=None)


def _misfit(reading: DecodedReport) -> tuple[int, int]:
    return len(reading.notes.unknown) + len(reading.notes.dropped), -len(reading.report.model_fields_set)


def _decode(model: type[JobReport], data: Mapping[str, Any]) -> DecodedReport | None:
    current: dict[str, Any] = copy.deepcopy(dict(data))
    notes = ReportNotes()
    for _ in range(_DECODE_ATTEMPTS):
        try:
            return DecodedReport(model.model_validate(current), notes)
        except ValidationError as error:
            # One problem at a time: taking an item out of a list moves the ones after it.
            if not _set_aside(current, error.errors()[0], notes):
                return None
    return None


def _set_aside(data: dict[str, Any], problem: Mapping[str, Any], notes: ReportNotes) -> bool:
    """Take out of `data` what `problem` names, noting it; False when it is the report itself that fails."""
    where = list(problem["loc"])
    if problem["type"] == "missing":
        where = where[:-1]  # a block without a field it needs goes as a whole
    path, value = _pop(data, where)
    if path is None:
        return False
    if problem["type"] != "extra_forbidden":
        notes.dropped.append(path)
    elif path.endswith("Total") and isinstance(value, int):
        notes.totals[path.removesuffix("Total")] = value
    elif path == "truncated":
        notes.truncated = bool(value)
    else:
        notes.unknown[path] = value
    return True


def _pop(data: dict[str, Any], where: Sequence[str | int]) -> tuple[str | None, Any]:
    """Remove the deepest item that exists along `where` (a validation error's location, which may name a
    union's member too): its dotted path and value, or (None, None) when nothing along it exists."""
    container: Any = data
    parent: Any = None
    key: str | int = ""
    path = ""
    for part in where:
        if isinstance(container, dict) and isinstance(part, str) and part in container:
            path = f"{path}.{part}" if path else part
        elif isinstance(container, list) and isinstance(part, int) and 0 <= part < len(container):
            path = f"{path}[{part}]"
        else:
            break
        parent, key = container, part
        container = container[part]
    if parent is None:
        return None, None
    return path, parent.pop(key)
