"""The first-party import graph has no cycles, and the settings sit at the bottom of it.

The graph is read from the source (no module is imported): an edge for every ``import x`` and
``from x import y`` anywhere in a module, inside functions and under ``if TYPE_CHECKING:`` too,
since a deferred or type-only import is still a dependency that a cycle would run through.
``from pkg import mod`` is an edge to ``pkg.mod`` when ``mod`` is a submodule, else to ``pkg``;
relative imports are resolved against the importing module's package. Only modules of the
directories below count; the standard library and third-party packages are not in the graph.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = (
    "actors",
    "bench",
    "cluster",
    "examples",
    "gateway",
    "models",
    "payments",
    "services",
    "store",
)


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    line: int

    def where(self) -> str:
        return f"{_path_of(self.source)}:{self.line}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _files() -> dict[str, Path]:
    """Module name -> file, for every .py under PACKAGES (a missing package is skipped)."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        top = ROOT / package
        if top.is_dir():
            for path in sorted(top.rglob("*.py")):
                found[_module_name(path)] = path
    return found


def _path_of(module: str) -> str:
    return _files()[module].relative_to(ROOT).as_posix()


def _known(name: str) -> str | None:
    """``name`` or its longest prefix that is a first-party module; None if none is."""
    modules = _files()
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _base(module: str, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` statement names."""
    if not node.level:
        return node.module or ""
    is_package = _files()[module].name == "__init__.py"
    parts = module.split(".")
    # ``from . import x`` in a package's __init__ is the package itself; in a module, its package.
    keep = len(parts) - node.level + (1 if is_package else 0)
    prefix = parts[: max(keep, 0)]
    return ".".join([*prefix, node.module] if node.module else prefix)


def _imports(module: str, tree: ast.Module) -> Iterator[Edge]:
    modules = _files()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _known(alias.name)
                if target is not None:
                    yield Edge(module, target, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = _base(module, node)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                target = sub if sub in modules else _known(base)
                if target is not None:
                    yield Edge(module, target, node.lineno)


@cache
def _graph() -> dict[str, list[Edge]]:
    """Module -> its first-party imports (one edge per importing statement)."""
    graph: dict[str, list[Edge]] = {}
    for module, path in _files().items():
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except SyntaxError as exc:
            raise AssertionError(f"{path.relative_to(ROOT)} does not parse: {exc}") from None
        graph[module] = list(dict.fromkeys(_imports(module, tree)))  # once per statement
    return graph


def _components(graph: dict[str, list[Edge]]) -> list[list[str]]:
    """Strongly connected components (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted({e.target for e in graph[start]})))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, targets = work[-1]
            for target in targets:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted({e.target for e in graph[target]}))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    out.append(sorted(component))
    return out


def _cycles() -> list[tuple[list[str], list[Edge]]]:
    """Each cycle: its modules and the imports among them (a self-import is a cycle of one)."""
    graph = _graph()
    found = []
    for component in _components(graph):
        members = set(component)
        edges = [e for m in component for e in graph[m] if e.target in members]
        if len(component) > 1 or edges:
            found.append((component, edges))
    return sorted(found)


def _describe(cycles: list[tuple[list[str], list[Edge]]]) -> str:
    lines = [f"{len(cycles)} import cycle(s) among first-party modules; break each one:"]
    for members, edges in cycles:
        if len(members) == 1:
            lines.append(f"  {members[0]} imports itself:")
        elif len(members) == 2:
            lines.append(f"  {members[0]} <-> {members[1]}:")
        else:
            lines.append(f"  {len(members)} modules that import each other: {', '.join(members)}")
        lines.extend(f"    {e.where()}: {e.source} imports {e.target}" for e in edges)
    return "\n".join(lines)


def test_the_graph_is_read() -> None:
    graph = _graph()
    assert "cluster.config" in graph and "gateway.app" in graph
    assert any(e.target == "cluster.config" for edges in graph.values() for e in edges)


def test_no_import_cycles() -> None:
    cycles = _cycles()
    if cycles:
        pytest.fail(_describe(cycles), pytrace=False)


def test_settings_sit_at_the_bottom() -> None:
    """cluster/config.py (the one settings object) is imported by every layer, so it imports
    nothing of the project but pure rules (models.*): not the gateway, services, shards, store,
    payments, the rest of cluster/ or bench. Transitively too."""
    graph = _graph()
    seen: dict[str, Edge] = {}
    todo = ["cluster.config"]
    while todo:
        for edge in graph[todo.pop()]:
            if edge.target not in seen and edge.target != "cluster.config":
                seen[edge.target] = edge
                todo.append(edge.target)
    wrong = [e for target, e in sorted(seen.items()) if target.partition(".")[0] != "models"]
    if wrong:
        pytest.fail(
            "cluster.config must import only models.* (directly or not), but:\n"
            + "\n".join(f"  {e.where()}: {e.source} imports {e.target}" for e in wrong),
            pytrace=False,
        )
