"""The house's typing rules hold (issue 19): the Kubernetes object types are defined once, and the operator
compares a resource's phase or a run's outcome with the enums, never with a string typed out again.

Both read the source as syntax trees, so they need no server and fail naming the place."""

from __future__ import annotations

import ast
from pathlib import Path

from pgwarden.api.backup import BackupPhase
from pgwarden.api.migration import MigrationPhase
from pgwarden.api.reports import Outcome
from pgwarden.api.restore import RestorePhase
from pgwarden.api.sets import SetPhase
from pgwarden.operator.set_rollout import Standing
from pgwarden.operator.status import RunPhase

PACKAGE = Path(__file__).resolve().parent.parent / "operator" / "pgwarden"
OBJECT_TYPES = {"Obj", "Manifest"}
ENUMS = (MigrationPhase, RestorePhase, BackupPhase, SetPhase, RunPhase, Outcome, Standing)
PHASE_WORDS = {member.value for enum in ENUMS for member in enum}
# Names whose values are a phase or an outcome: a model's field, or a local holding one.
PHASE_NAMES = {"phase", "outcome"}


def modules(under: Path = PACKAGE) -> list[Path]:
    return sorted(under.rglob("*.py"))


def defined_types(path: Path) -> list[tuple[str, str]]:
    """(module, name) of each module-level assignment in `path` that (re)defines Obj or Manifest."""
    found = []
    for node in ast.parse(path.read_text()).body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None
        target = node.target if isinstance(node, ast.AnnAssign) else target
        if isinstance(target, ast.Name) and target.id in OBJECT_TYPES:
            found.append((str(path.relative_to(PACKAGE)), target.id))
    return found


def test_the_kubernetes_object_types_are_defined_once() -> None:
    definitions = sorted(place for path in modules() for place in defined_types(path))
    assert definitions == [("api/objects.py", "Manifest"), ("api/objects.py", "Obj")]


def _strings(node: ast.expr) -> list[str]:
    """The string constants `node` is, or holds (a tuple, list or set of them)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [s for item in node.elts for s in _strings(item)]
    return []


def _names_a_phase(node: ast.expr) -> bool:
    """`x.phase`, `x.outcome`, or a local `phase`/`outcome` (not a Kubernetes dict's `.get("phase")`)."""
    if isinstance(node, ast.Attribute):
        return node.attr in PHASE_NAMES
    return isinstance(node, ast.Name) and node.id in PHASE_NAMES


def raw_phase_comparisons(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Compare):
            continue
        sides = [node.left, *node.comparators]
        if not any(_names_a_phase(side) for side in sides):
            continue
        words = [w for side in sides for w in _strings(side) if w in PHASE_WORDS]
        if words:
            found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {', '.join(words)}")
    return found


def test_the_operator_compares_phases_and_outcomes_with_the_enums() -> None:
    places = [p for path in modules(PACKAGE / "operator") for p in raw_phase_comparisons(path)]
    assert places == [], "use the phase enums (api.*Phase, operator.status.RunPhase, api.reports.Outcome)"
