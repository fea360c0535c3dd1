"""The pure core (processor/matrix, processor/core) does no I/O: it imports only the standard
library, `schemas`, the error tree, each other, and the libraries that compute (msgspec for
JSON, cryptography for ed25519). This walks every import statement of those packages."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE = [ROOT / "processor" / "matrix", ROOT / "processor" / "core"]
ALLOWED_PREFIXES = (
    "processor.matrix",
    "processor.core",
    "processor.nids",
    "processor.errors",
    "schemas",
    "msgspec",
    "cryptography",
)
#: Standard-library modules that do I/O or keep process-wide state the core must not use.
FORBIDDEN_STDLIB = {"socket", "sqlite3", "asyncio", "threading", "subprocess", "os", "io"}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


MODULES = sorted(
    [ROOT / "processor" / "nids.py", *(p for package in PURE for p in package.rglob("*.py"))]
)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_core_imports_no_io(path: Path) -> None:
    bad = []
    for name in _imports(path):
        top = name.split(".")[0]
        if name.startswith(ALLOWED_PREFIXES) or top == "__future__":
            continue
        if top in sys.stdlib_module_names and top not in FORBIDDEN_STDLIB:
            continue
        bad.append(name)
    assert bad == [], f"{path.relative_to(ROOT)} imports {bad}"


def test_the_walk_sees_the_core() -> None:
    assert len(MODULES) > 10
