"""Lock-risk lint of pending migrations with squawk (the `squawk-cli` package), at plan time.

squawk knows the risky statements (a non-concurrent index on an existing table, a column type change, a NOT
NULL column without a default, a constraint without NOT VALID, a volatile default, renames); pgwarden only
runs it on the files a run would apply, maps its findings to file and line, and refuses what the policy names.
Rules about things pgwarden does itself (timeouts, retries) are left out unless the policy names them.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path

from pgwarden.api.lint import LintFinding
from pgwarden.engine.migrate.files import MigrationFile
from pgwarden.engine.migrate.rewrites import REWRITE_RULE
from pgwarden.errors import BadInput, PgwardenError

SQUAWK_DISTRIBUTION = "squawk-cli"
# pgwarden sets lock_timeout and statement_timeout on every session and runs each file in a transaction or
# brackets it with history rows, so these rules would flag every statement of every file.
HANDLED_BY_PGWARDEN = ("require-lock-timeout", "require-statement-timeout", "prefer-robust-stmts")
OWN_RULES = (REWRITE_RULE,)
"""pgwarden's rules, found by pgwarden (never handed to squawk)."""
SYNTAX_ERROR = "syntax-error"
TIMEOUT_SECONDS = 120


class LintUnavailable(PgwardenError):
    """squawk could not be run: the run is not started, since a refusal it should make would be missed."""


@dataclass(frozen=True)
class LintResult:
    """The findings on the pending files, and what squawk could not read (reported, never refused)."""

    findings: tuple[LintFinding, ...] = ()
    warnings: tuple[str, ...] = ()

    def refused(self, fail_on: Sequence[str]) -> tuple[LintFinding, ...]:
        """The findings the policy refuses: those of the rules it names, and only those."""
        named = set(fail_on)
        return tuple(f for f in self.findings if f.rule in named)


@cache
def squawk_binary() -> Path:
    """The squawk executable the `squawk-cli` package installed (not whichever one PATH finds first)."""
    try:
        files = metadata.distribution(SQUAWK_DISTRIBUTION).files or []
    except metadata.PackageNotFoundError as exc:
        raise LintUnavailable(
            f"the lint needs squawk: pip install {SQUAWK_DISTRIBUTION} (it is a dependency of pgwarden)"
        ) from exc
    for file in files:
        if Path(str(file)).name == "squawk" and "bin" in Path(str(file)).parts:
            path = Path(str(file.locate())).resolve()
            if path.is_file():
                return path
    raise LintUnavailable(f"the {SQUAWK_DISTRIBUTION} package has no squawk executable; reinstall it")


def squawk_arguments(fail_on: Sequence[str], pg_version: str | None) -> list[str]:
    """squawk's options: JSON, the rules pgwarden handles left out unless named, opt-in rules named enabled."""
    args = ["--reporter", "json"]
    args += [f"--exclude={rule}" for rule in HANDLED_BY_PGWARDEN if rule not in fail_on]
    args += [f"--include={rule}" for rule in dict.fromkeys(fail_on) if rule not in OWN_RULES]
    if pg_version:
        args.append(f"--pg-version={pg_version}")
    return args


def parse_findings(output: str, names: dict[str, str]) -> LintResult:
    """squawk's JSON report as findings on the files' own lines (pure).

    squawk counts lines and columns from 0; `names` maps the paths it was given to the files' names."""
    findings: list[LintFinding] = []
    warnings: list[str] = []
    for item in json.loads(output or "[]"):
        file = names.get(str(item.get("file")), Path(str(item.get("file"))).name)
        line = int(item.get("line") or 0) + 1
        rule = str(item.get("rule_name") or "unknown")
        message = str(item.get("message") or "").strip()
        if rule == SYNTAX_ERROR:
            warnings.append(
                f"lint: squawk could not read {file}:{line} ({message}); that statement was not linted"
            )
            continue
        column = item.get("column")
        help_text = item.get("help")
        findings.append(
            LintFinding(
                rule=rule,
                file=file,
                line=line,
                column=int(column) + 1 if isinstance(column, int) else None,
                message=message,
                help=str(help_text).strip() if help_text else None,
            )
        )
    findings.sort(key=lambda f: (f.file, f.line, f.rule))
    return LintResult(tuple(findings), tuple(dict.fromkeys(warnings)))


def lint_migrations(
    files: Sequence[MigrationFile], *, fail_on: Sequence[str] = (), pg_version: str | None = None
) -> LintResult:
    """Run squawk over `files`; BadInput for a rule name squawk does not know, LintUnavailable when it fails.

    Files that run in a transaction are linted as such, so an index on a table the same file creates is no
    finding (nobody else can see that table until the COMMIT)."""
    findings: list[LintFinding] = []
    warnings: list[str] = []
    for in_transaction in (True, False):
        chosen = [f for f in files if f.runs_in_transaction == in_transaction]
        if chosen:
            result = _run_squawk(chosen, fail_on, pg_version, in_transaction=in_transaction)
            findings.extend(result.findings)
            warnings.extend(result.warnings)
    findings.extend(rewrite_findings(files))
    findings.sort(key=lambda f: (f.file, f.line, f.rule))
    return LintResult(tuple(findings), tuple(warnings))


def rewrite_findings(files: Sequence[MigrationFile]) -> list[LintFinding]:
    """pgwarden's own rule: statements that write the whole table again while holding ACCESS EXCLUSIVE (pure)."""
    return [
        LintFinding(
            rule=REWRITE_RULE,
            file=file.script_name,
            line=statement.line,
            message=statement.rewrites,
            help="every reader and writer of the table waits until it ends: build a new column or table "
            "and backfill it in batches, or use pg_repack",
        )
        for file in files
        for statement in file.statements
        if statement.rewrites
    ]


def _run_squawk(
    files: Sequence[MigrationFile], fail_on: Sequence[str], pg_version: str | None, *, in_transaction: bool
) -> LintResult:
    names = {str(f.path): f.script_name for f in files}
    options = squawk_arguments(fail_on, pg_version) + (["--assume-in-transaction"] if in_transaction else [])
    command = [str(squawk_binary()), *options, *names]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LintUnavailable(f"squawk could not lint the migrations: {exc}") from exc
    if done.returncode not in (0, 1):
        reason = done.stderr.strip().splitlines()[0] if done.stderr.strip() else f"exit {done.returncode}"
        if "invalid rule name" in reason:
            raise BadInput(f"--lint-fail-on: {reason.removeprefix('error: ')}; name rules as squawk does")
        raise LintUnavailable(f"squawk could not lint the migrations: {reason}")
    try:
        return parse_findings(done.stdout, names)
    except (ValueError, TypeError) as exc:
        raise LintUnavailable(f"squawk's report could not be read: {exc}") from exc


def refusal_message(refused: Sequence[LintFinding]) -> str:
    """Why the run was refused, finding by finding, and what to do (pure)."""
    listed = "\n".join(f"  {f.file}:{f.line} {f.rule}: {f.message}" for f in refused)
    return (
        f"lint refused, nothing was changed:\n{listed}\n"
        "rewrite the statements (see each rule's help in --plan --json), or drop the rule from --lint-fail-on"
    )
