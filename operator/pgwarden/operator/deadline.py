"""How long a Job may run: the operator's default activeDeadlineSeconds and the variable that sets it.

Apart from the Job builder (`pgwarden.operator.jobs`, which loads every model) so that `pgwarden operator`'s
flags, built by every `pgwarden --help`, load nothing heavy."""

from __future__ import annotations

import os

# Every Job stops after this long unless its resource says otherwise (spec.jobTemplate.activeDeadlineSeconds):
# a hung run must not block a schedule behind concurrencyPolicy Forbid for ever. The chart sets it.
DEFAULT_ACTIVE_DEADLINE_SECONDS = 6 * 3600
ACTIVE_DEADLINE_ENV = "PGWARDEN_JOB_ACTIVE_DEADLINE_SECONDS"


def default_active_deadline() -> int:
    """The operator's default deadline: PGWARDEN_JOB_ACTIVE_DEADLINE_SECONDS (0: none), else 6 hours."""
    value = os.environ.get(ACTIVE_DEADLINE_ENV, "").strip()
    if not value:
        return DEFAULT_ACTIVE_DEADLINE_SECONDS
    try:
        seconds = int(value)
    except ValueError as exc:
        raise ValueError(
            f"{ACTIVE_DEADLINE_ENV}={value!r} is not a number of seconds; use e.g. 21600, or 0 for no limit"
        ) from exc
    if seconds < 0:
        raise ValueError(f"{ACTIVE_DEADLINE_ENV} must be 0 (no limit) or more seconds, not {seconds}")
    return seconds
