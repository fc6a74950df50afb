"""The house's measures (issue 19): module sizes, long functions, the import matrix, broad excepts and the
places the operator reads a Job's report untyped. Prints them; run before and after a restructuring.

    .venv/bin/python hack/house_metrics.py [--long 60] [--matrix] [--list]

Duplicate pairs come from the `duplicates` tool (`duplicates --most 200`, `duplicates --repo operator`)."""

from __future__ import annotations

import argparse
import ast
import statistics
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "operator" / "pgwarden"
ROOMS = ("engine.postgres", "engine.backup", "engine.restore", "engine.migrate")
LAYERS = ("operator", "cli", "job", "engine", "storage", "api")


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (without the leading `pgwarden.`)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts) or "__init__"] = path
    return found


def group(name: str) -> str:
    """The room (engine subpackage) or layer a module belongs to; `top` for modules below every layer."""
    for room in ROOMS:
        if name == room or name.startswith(room + "."):
            return room
    head = name.split(".")[0]
    return head if head in LAYERS else "top"


def imported(tree: ast.AST, name: str, is_package: bool) -> set[str]:
    """The pgwarden modules a module imports (anywhere in it), without the `pgwarden.` prefix."""
    targets: set[str] = set()
    base = name.split(".") if is_package else name.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(
                a.name.removeprefix("pgwarden.") for a in node.names if a.name.startswith("pgwarden.")
            )
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                stem = base[: len(base) - node.level + 1]
                module = ".".join([*stem, node.module] if node.module else stem)
            elif node.module and (node.module == "pgwarden" or node.module.startswith("pgwarden.")):
                module = node.module.removeprefix("pgwarden").lstrip(".")
            else:
                continue
            targets.add(module or "__init__")
    return targets


def long_functions(tree: ast.AST, limit: int) -> list[tuple[str, int, int]]:
    """(name, line, length) of every function longer than `limit` lines."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > limit:
                found.append((node.name, node.lineno, length))
    return found


def broad_excepts(tree: ast.AST) -> list[tuple[int, bool]]:
    """(line, re-raises) of `except:`, `except Exception` and `except BaseException` (alone or in a tuple);
    re-raises: the handler ends in a bare `raise` (clean up, then let it go on), so it catches nothing."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ExceptHandler):
            kinds = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type]
            if node.type is None or any(
                isinstance(k, ast.Name) and k.id in {"Exception", "BaseException"} for k in kinds
            ):
                last = node.body[-1]
                found.append((node.lineno, isinstance(last, ast.Raise) and last.exc is None))
    return found


def _receiver(node: ast.expr) -> ast.expr:
    """`x` of `(x or {})`."""
    while isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
        node = node.values[0]
    return node


def _named_report(node: ast.expr) -> bool:
    node = _receiver(node)
    return (isinstance(node, ast.Name) and node.id == "report") or (
        isinstance(node, ast.Attribute) and node.attr == "report"
    )


def untyped_report_reads(tree: ast.AST) -> list[int]:
    """Lines where a report is read as a dict: `report[...]`, `report.get(...)`, `(run.report or {}).get(...)`."""
    lines = []
    for node in ast.walk(tree):
        subscript = isinstance(node, ast.Subscript) and _named_report(node.value)
        getter = (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and _named_report(node.func.value)
        )
        if subscript or getter:
            lines.append(node.lineno)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--long", type=int, default=60, help="a function longer than this many lines is long")
    parser.add_argument("--list", action="store_true", help="name each long function, broad except and read")
    args = parser.parse_args()

    sizes: list[int] = []
    arrows: Counter[tuple[str, str]] = Counter()
    longs: list[str] = []
    broad: list[str] = []
    reads: list[str] = []
    for name, path in modules().items():
        text = path.read_text()
        tree = ast.parse(text)
        sizes.append(len(text.splitlines()))
        rel = path.relative_to(ROOT)
        for target in imported(tree, name, path.name == "__init__.py"):
            if group(target) != group(name):
                arrows[group(name), group(target)] += 1
        longs += [f"{rel}:{line} {fn} ({n} lines)" for fn, line, n in long_functions(tree, args.long)]
        broad += [f"{rel}:{line}{' (re-raises)' if again else ''}" for line, again in broad_excepts(tree)]
        if group(name) == "operator":
            reads += [f"{rel}:{line}" for line in untyped_report_reads(tree)]

    sizes.sort()
    print(
        f"modules: {len(sizes)}, lines: {sum(sizes)}, median {statistics.median(sizes):.0f}, "
        f"p90 {sizes[int(len(sizes) * 0.9)]}, max {sizes[-1]}, "
        f"over 300: {sum(s > 300 for s in sizes)}, over 400: {sum(s > 400 for s in sizes)}"
    )
    print(f"functions over {args.long} lines: {len(longs)}")
    reraising = sum(item.endswith("(re-raises)") for item in broad)
    print(
        f"broad excepts: {len(broad)} ({len(broad) - reraising} that catch, {reraising} that clean up and re-raise)"
    )
    print(f"untyped report reads in operator/: {len(reads)}")
    names = ["top", *ROOMS, *LAYERS]
    used = [n for n in names if any(n in pair for pair in arrows)]
    print("import matrix (row imports column; module-to-module arrows across groups):")
    width = max(len(n) for n in used)
    print(" " * (width + 1) + " ".join(f"{n.split('.')[-1][:8]:>8}" for n in used))
    for row in used:
        cells = " ".join(f"{arrows[row, col] or '.':>8}" for col in used)
        print(f"{row:<{width}} {cells}")
    if args.list:
        for title, items in (("long functions", longs), ("broad excepts", broad), ("untyped reads", reads)):
            print(f"\n{title}:")
            print("\n".join(f"  {item}" for item in items))


if __name__ == "__main__":
    main()
