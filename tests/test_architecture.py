"""The package's shape: no import cycle, and data flowing one way between its layers.

Read from the source with ``ast`` (nothing is imported), counting every import - at module
level or inside a function - except those under ``if TYPE_CHECKING:``, which never run.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fmnist_pl"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of ``tree`` outside ``if TYPE_CHECKING:`` blocks."""
    out, stack = [], [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        out.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return out


@functools.cache
def import_graph() -> dict[str, set[str]]:
    """module -> the package's modules it imports (``from a import b`` counts ``a.b`` when that is a module)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(
                        package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                    )
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_imports_inside_functions_and_not_type_checking_ones():
    graph = import_graph()
    assert "fmnist_pl.execution.unit" in graph["fmnist_pl.execution.backend"]  # imported inside train_unit
    assert "fmnist_pl.report.figures" not in graph["fmnist_pl.study.compare"]  # only under TYPE_CHECKING


def test_the_package_has_no_import_cycle():
    assert cycles(import_graph()) == []


# Layers, top to bottom: a module may import its own layer and the ones below, never one above.
# The foundations (config, data, optim, runtime, errors, architecture, analysis.metrics) are
# importable by all: they import none of these layers.
LAYERS = [
    ("fmnist_pl.cli", "fmnist_pl.__main__"),
    ("fmnist_pl.study",),
    ("fmnist_pl.report",),
    ("fmnist_pl.analysis.summary", "fmnist_pl.analysis.stats", "fmnist_pl.analysis.targets", "fmnist_pl.analysis.runs"),
    ("fmnist_pl.execution",),
    ("fmnist_pl.plan",),
    ("fmnist_pl.engine",),
    ("fmnist_pl.store",),
]


def _layer(module: str) -> int | None:
    if module == "fmnist_pl":  # the package's face: __version__, and load() for notebooks
        return 0
    for rank, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    return None


@pytest.mark.parametrize("module", sorted(import_graph()))
def test_imports_flow_one_way(module):
    graph, mine = import_graph(), _layer(module)
    upward = [t for t in graph[module] if _layer(t) is not None and (mine is None or _layer(t) < mine)]
    assert not upward, f"{module} imports a layer above it: {upward}"
