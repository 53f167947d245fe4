"""The core performs no I/O: it imports only the standard library and parley.core."""

import ast
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parents[3] / "src" / "parley" / "core"
ALLOWED_PREFIXES = ("parley.core",)
# parley.errors holds only exception classes (no I/O); the strategy validator raises them.
ALLOWED_EXTRA = {"parley.errors"}


def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_core_imports_only_the_standard_library_and_itself():
    offenders = []
    for path in CORE.rglob("*.py"):
        for name in _imports(path):
            top = name.split(".")[0]
            if name.startswith(ALLOWED_PREFIXES) or name in ALLOWED_EXTRA or top in sys.stdlib_module_names or top == "__future__":
                continue
            offenders.append(f"{path.relative_to(CORE)}: {name}")
    assert offenders == []
