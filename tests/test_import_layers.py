"""The package's modules form layers: no import cycle, counting imports made only for type checking.

Every module under ``trio_mcp_sse/`` is parsed (not imported) and every import
of another module of the package is an edge -- at module level, inside
functions, and under ``if TYPE_CHECKING:`` alike, since an annotation that
names a module above you is as much a dependency as a call.  Importing a
package means importing its ``__init__``; a module's own parent packages are
not edges, since Python initialises them before the module itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import trio_mcp_sse

ROOT = Path(trio_mcp_sse.__file__).parent

KNOWN_CYCLES: frozenset[frozenset[str]] = frozenset()
"""Cycles owned elsewhere, tolerated until they are taken apart (each as its set of modules).
Keep this empty: a new entry needs a reason in a comment beside it."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(current: str, is_package: bool, level: int, module: str | None) -> str:
    if level == 0:
        return module or ""
    base = current.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: -(level - 1)]
    return ".".join(base + ([module] if module else []))


def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_package, node.level, node.module)
                # ``from . import x`` may name a submodule rather than an attribute.
                targets = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules]
                targets.append(base)
            for target in targets:
                # A dotted import also imports every package above it, except
                # the importer's own ancestors: Python has initialised those first.
                parts = target.split(".")
                for end in range(1, len(parts) + 1):
                    candidate = ".".join(parts[:end])
                    if candidate in modules and candidate != name and not name.startswith(candidate + "."):
                        graph[name].add(candidate)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm: every group of modules that import each other, however indirectly."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group: set[str] = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def _a_cycle(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """One concrete path round the group, for the failure message."""
    start = min(group)
    path = [start]
    seen = {start}
    node = start
    while True:
        following = sorted(target for target in graph[node] if target in group)
        step = next((t for t in following if t == start and len(path) > 1), None)
        if step is not None:
            return [*path, start]
        step = next((t for t in following if t not in seen), None)
        if step is None:
            return [*path, "..."]
        path.append(step)
        seen.add(step)
        node = step


def test_the_graph_sees_type_checking_imports() -> None:
    graph = import_graph()
    # server/_server.py imports the transport only for annotations.
    assert "trio_mcp_sse._transport" in graph["trio_mcp_sse.server._server"]
    assert "trio_mcp_sse._rpc" in graph["trio_mcp_sse.server._connection"]


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected(graph) == [{"a", "b", "c"}]
    assert _a_cycle(graph, {"a", "b", "c"}) == ["a", "b", "c", "a"]


def test_no_import_cycles() -> None:
    graph = import_graph()
    cycles = [group for group in strongly_connected(graph) if frozenset(group) not in KNOWN_CYCLES]
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(_a_cycle(graph, group)) for group in cycles)


def test_the_server_layers_point_down() -> None:
    """protocol -> Context -> definitions -> catalog -> handlers -> connection -> MCPServer."""
    graph = import_graph()
    layers = [
        ["_protocol", "_content"],
        ["_context"],
        ["_functions", "_tools", "_prompts", "_resources", "_completion"],
        ["_catalog"],
        ["_handlers"],
        ["_connection"],
        ["_server"],
    ]
    rank = {f"trio_mcp_sse.server.{module}": height for height, group in enumerate(layers) for module in group}
    for module, height in rank.items():
        for target in graph[module]:
            if target in rank:
                assert rank[target] <= height, f"{module} imports {target}, a layer above it"
    assert graph["trio_mcp_sse.server._protocol"] <= {
        "trio_mcp_sse._errors",
        "trio_mcp_sse._protocol_versions",
        "trio_mcp_sse._rpc",
    }
