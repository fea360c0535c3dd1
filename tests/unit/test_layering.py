"""The layering of docs/architecture.md, enforced: a module imports only from its own package
and from the layers below it, and no modules import each other in a cycle — type-only
imports (`if TYPE_CHECKING:`) included, since a cycle of types is still a knot a reader has
to untie."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Lowest first. A package may import from its own package and from earlier layers only.
LAYERS: list[set[str]] = [
    {"schemas"},  # the wire contracts: importable without the roomserver
    {"processor", "processor.errors", "processor.nids", "processor.gc_tuning"},
    {"processor.matrix"},  # the Matrix core: pure
    {"processor.core"},  # the roomserver's pure core: NID state maps, the per-event decision
    {"processor.storage", "processor.config", "processor.metrics"},
    {"processor.pipeline", "processor.generate"},
    {"processor.ingest", "processor.room_state", "processor.query", "processor.stream"},
    {"processor.cli"},
]
LAYER_OF = {package: n for n, layer in enumerate(LAYERS) for package in layer}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[0] if parts[0] == "schemas" or len(parts) == 1 else ".".join(parts[:2])


def _imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            # `from processor.pipeline import handler` imports a module too.
            yield from (f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


FILES = sorted([*ROOT.joinpath("processor").rglob("*.py"), *ROOT.joinpath("schemas").rglob("*.py")])
MODULES = {_module_name(path): path for path in FILES}


def _project_imports(module: str) -> set[str]:
    """The project modules `module` imports (a name that is not a module, e.g. a class in
    `from m import Class`, is dropped)."""
    return {
        name for name in _imports(MODULES[module]) if name in MODULES and name != module
    }


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_downward(module: str) -> None:
    package = _package(module)
    assert package in LAYER_OF, f"{package} is not placed in a layer (docs/architecture.md)"
    upward = sorted(
        name
        for name in _project_imports(module)
        if _package(name) != package and LAYER_OF[_package(name)] >= LAYER_OF[package]
    )
    assert upward == [], f"{module} (layer {LAYER_OF[package]}) imports upward: {upward}"


def test_no_import_cycles() -> None:
    graph = {module: _project_imports(module) for module in MODULES}
    # A package's __init__ importing its own submodules (a public face) is not a cycle.
    for module in graph:
        graph[module] = {
            name for name in graph[module] if not name.startswith(module + ".")
        }
    state: dict[str, int] = {}  # 1 = on the path, 2 = done
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        path.append(module)
        for name in sorted(graph[module]):
            if state.get(name) == 1:
                cycles.append([*path[path.index(name):], name])
            elif name not in state:
                visit(name, path)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_walk_sees_the_layers() -> None:
    assert {"processor.pipeline.handler", "processor.matrix.auth"} <= MODULES.keys()
    assert _project_imports("processor.pipeline.handler")
