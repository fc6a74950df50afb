"""Lock-risk lint findings of pending migrations, and the policy that refuses a run over them.

Shared by the command line's report (`lint[]`), a DatabaseMigration's status.lint and its `policy.lint`.
"""

from __future__ import annotations

from pydantic import Field

from pgwarden.api.base import ApiModel


class LintFinding(ApiModel):
    """One statement of a pending migration that risks a long lock or breaks running code."""

    rule: str = Field(description="The squawk rule, e.g. require-concurrent-index-creation.")
    file: str = Field(description="The migration file's name.")
    line: int = Field(description="Line of the statement in the file (1 is the first).")
    column: int | None = Field(
        default=None, description="Column of the finding on that line (1 is the first)."
    )
    message: str = Field(description="What the statement risks.")
    help: str | None = Field(default=None, description="How to write it without the risk, when known.")


class LintPolicy(ApiModel):
    """Which lint rules refuse a run (exit 2, before anything changes); every other finding is reported only."""

    fail_on: list[str] = Field(
        default_factory=list,
        description="Rules that refuse the run when a pending migration breaks them, e.g. changing-column-type.",
    )
