"""The folder tree is the architecture: each sub-package imports only the layers below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "napari_kernelspec"

#: Sub-package -> the sub-packages it may import (besides itself). Front ends at the top.
ALLOWED: dict[str, set[str]] = {
    "base": set(),
    "analysis": {"base"},
    "sources": {"base"},
    "imaging": {"base", "analysis", "sources"},
    "report": {"base", "analysis", "sources", "imaging"},
    "scan": {"base", "analysis", "sources", "imaging"},
    "_napari": {"base", "analysis", "sources", "imaging"},
    "cli": {"base", "analysis", "sources", "imaging", "report", "scan"},
}
#: Third-party packages the pure core (base, analysis) must never import.
FORBIDDEN_IN_CORE = {
    "qtpy",
    "PyQt5",
    "PyQt6",
    "PySide2",
    "PySide6",
    "napari",
    "magicgui",
    "jinja2",
}
CORE = {"base", "analysis", "sources", "imaging"}


def _imports(path: Path) -> list[tuple[str, int]]:
    """Absolute dotted names imported by ``path`` (relative imports resolved), with lines."""
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    package = parts[:-1]  # a module's package; for __init__ the package itself
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
                if node.module is None:
                    found += [(f"{name}.{alias.name}", node.lineno) for alias in node.names]
                    continue
            else:
                name = node.module or ""
            found.append((name, node.lineno))
    return found


def _layer(path: Path) -> str | None:
    rel = path.relative_to(PKG)
    return rel.parts[0] if len(rel.parts) > 1 else None


MODULES = sorted(p for p in PKG.rglob("*.py") if _layer(p) is not None)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_imports_only_downwards(path: Path) -> None:
    layer = _layer(path)
    assert layer in ALLOWED, f"new sub-package {layer!r}: add it to ALLOWED and ARCHITECTURE.md"
    for name, line in _imports(path):
        top = name.split(".")
        if top[0] == "napari_kernelspec" and len(top) > 1 and top[1] in ALLOWED:
            target = top[1]
            assert target == layer or target in ALLOWED[layer], (
                f"{path.relative_to(PKG)}:{line} imports {name}: {layer} may import "
                f"{sorted(ALLOWED[layer]) or 'nothing'} of the package"
            )
        if layer in CORE:
            assert top[0] not in FORBIDDEN_IN_CORE, (
                f"{path.relative_to(PKG)}:{line}: the core imports {name}"
            )


def test_every_module_is_in_a_sub_package() -> None:
    root = sorted(p.name for p in PKG.glob("*.py"))
    assert root == ["__init__.py"], f"modules at the package root: {root}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _targets(path: Path, known: set[str]) -> set[str]:
    """Modules of the package that `path` imports (at import time or inside functions)."""
    rel = path.relative_to(PKG.parent).with_suffix("")
    package = list(rel.parts[:-1])
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names += [f"{module}.{alias.name}" for alias in node.names]
    found = set()
    for name in names:
        while name and name not in known:  # `from pkg import module` or `from module import x`
            name = name.rpartition(".")[0]
        if name and name != "napari_kernelspec":
            found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports."""
    files = {_module_name(p): p for p in PKG.rglob("*.py")}
    known = set(files)
    return {name: _targets(path, known) - {name} for name, path in files.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module (the cycles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    cycles = strongly_connected(import_graph())
    assert not cycles, f"import cycles (imports, even inside functions): {cycles}"


def test_cycle_check_finds_a_planted_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert strongly_connected(graph) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []
