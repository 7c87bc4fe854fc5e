"""No import cycle among the workspace's `runmesh.*` modules (issue 15): a root imports its
leaves, never the reverse.

Counted as `/work/shared/tools/structure_check.py` counts: every `import` and `from … import`
in a module's source, at module level or inside a function or `if TYPE_CHECKING:` block alike
(a lazy import still ties the two modules together), relative imports resolved; `from a import
b` depends on `a` and, when `a.b` is a module, on `a.b`. Importing `a.b` does not count as
depending on the package `a` itself, though Python runs `a/__init__.py` first: a package
whose `__init__` gathers its submodules is not a cycle.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE_TREES = ("libs/*/src", "services/*/src")


@dataclass(slots=True, frozen=True)
class Edge:
    """`source` imports `target` at `path:line`."""

    source: str
    target: str
    path: Path
    line: int


def workspace_modules(root: Path) -> dict[str, Path]:
    """Every `runmesh.*` module of the workspace's members, by dotted name."""
    modules: dict[str, Path] = {}
    for pattern in SOURCE_TREES:
        for src in sorted(root.glob(pattern)):
            for path in sorted(src.rglob("*.py")):
                parts = path.relative_to(src).with_suffix("").parts
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                if parts and parts[0] == "runmesh":
                    modules[".".join(parts)] = path
    return modules


def import_edges(modules: dict[str, Path]) -> dict[str, list[Edge]]:
    """Each module's imports of other workspace modules (first line of each)."""
    graph: dict[str, list[Edge]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        seen: dict[str, Edge] = {}
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    up = parts[: len(parts) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            for target in targets:
                if target not in modules or target == name:
                    continue
                if target not in seen or node.lineno < seen[target].line:
                    seen[target] = Edge(name, target, path, node.lineno)
        graph[name] = sorted(seen.values(), key=lambda edge: edge.target)
    return graph


def strongly_connected(graph: dict[str, list[Edge]]) -> list[list[str]]:
    """The components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            edges = graph[node]
            if i < len(edges):
                work.append((node, i + 1))
                target = edges[i].target
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return components


def a_cycle(graph: dict[str, list[Edge]], component: list[str]) -> list[Edge]:
    """One shortest cycle through the component's first module, as the imports that close it."""
    members = set(component)
    start = component[0]
    came_by: dict[str, Edge] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for edge in graph[node]:
                if edge.target == start:
                    path = [edge]
                    while path[0].source != start:
                        path.insert(0, came_by[path[0].source])
                    return path
                if edge.target in members and edge.target not in came_by:
                    came_by[edge.target] = edge
                    following.append(edge.target)
        frontier = following
    raise AssertionError(f"{start} is in no cycle of {component}")  # not a component then


def cycles_report(root: Path) -> list[str]:
    """One paragraph per import cycle: its modules, and the imports of one cycle through them."""
    graph = import_edges(workspace_modules(root))
    report = []
    for component in strongly_connected(graph):
        lines = [f"import cycle among {len(component)} modules: {', '.join(component)}"]
        lines += [
            f"  {edge.source} -> {edge.target}  ({edge.path.relative_to(root)}:{edge.line})"
            for edge in a_cycle(graph, component)
        ]
        report.append("\n".join(lines))
    return report


def test_the_walk_finds_the_workspace_modules() -> None:
    modules = workspace_modules(ROOT)
    assert {"runmesh.cli.__main__", "runmesh.core.events", "runmesh.gateway.app"} <= set(modules)
    assert all(name.startswith("runmesh.") for name in modules)


def test_no_import_cycle_among_runmesh_modules() -> None:
    report = cycles_report(ROOT)
    assert not report, "\n\n".join(report)


def test_a_cycle_through_a_lazy_or_relative_import_is_found(tmp_path: Path) -> None:
    package = tmp_path / "libs/demo/src/runmesh/demo"
    (package / "commands").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "commands/__init__.py").write_text("")
    (package / "root.py").write_text("from runmesh.demo.commands import leaf\n")
    (package / "commands/leaf.py").write_text("def f():\n    from ..root import helper\n")
    (package / "helpers.py").write_text("import runmesh.demo.root\n")
    (package / "ok.py").write_text("from runmesh.demo import helpers\n")

    report = cycles_report(tmp_path)

    assert len(report) == 1
    assert report[0].splitlines() == [
        "import cycle among 2 modules: runmesh.demo.commands.leaf, runmesh.demo.root",
        "  runmesh.demo.commands.leaf -> runmesh.demo.root  "
        "(libs/demo/src/runmesh/demo/commands/leaf.py:2)",
        "  runmesh.demo.root -> runmesh.demo.commands.leaf  (libs/demo/src/runmesh/demo/root.py:1)",
    ]
