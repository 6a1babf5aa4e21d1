"""Count the checks in tests/: a change that speeds the suite up must not make it check less.

    python -m scripts.count_tests            # totals
    python -m scripts.count_tests --files    # per file, then totals

Counted from the syntax tree (ast), so comments and strings never count:
``assert`` statements, ``pytest.raises``/``pytest.warns`` (as a context manager or a call),
and ``pytest.fail`` calls. Test functions are ``def test_*`` in ``test_*.py`` files
(before parametrization; ``pytest --collect-only -q | tail -1`` gives the collected count).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("assert", "pytest.raises", "pytest.warns", "pytest.fail", "test functions")


def _pytest_call(node: ast.AST) -> str | None:
    """``pytest.raises`` for a call of pytest.raises(...), else None."""
    if not isinstance(node, ast.Call):
        return None
    func = node.func
    if (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id == "pytest"
        and func.attr in ("raises", "warns", "fail")
    ):
        return f"pytest.{func.attr}"
    return None


def count_file(path: Path) -> Counter[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    counts: Counter[str] = Counter()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert):
            counts["assert"] += 1
        elif (kind := _pytest_call(node)) is not None:
            counts[kind] += 1
        elif (
            isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.name.startswith("test_")
            and path.name.startswith("test_")
        ):
            counts["test functions"] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", action="store_true", help="one line per file")
    parser.add_argument("root", nargs="?", default=str(ROOT / "tests"))
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    total: Counter[str] = Counter()
    for path in sorted(root.rglob("*.py")):
        counts = count_file(path)
        total.update(counts)
        if args.files and counts:
            cells = " ".join(f"{counts[k]:4d}" for k in KINDS)
            print(f"{cells}  {path.relative_to(root.parent)}")  # tests/..., whichever checkout
    if args.files:
        print("  ".join(KINDS))
    for kind in KINDS:
        print(f"{kind}: {total[kind]}")
    checks = sum(total[k] for k in KINDS[:-1])
    print(f"checks (assert + raises + warns + fail): {checks}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
