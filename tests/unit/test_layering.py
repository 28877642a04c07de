"""The package's import structure: no circles, and the lower layers stay generic.

Read from the source with ``ast`` (nothing is imported), counting every import, those under
``TYPE_CHECKING`` and inside functions included: a circle hidden behind a local import is
still a circle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import givbridge

PACKAGE = Path(givbridge.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imported(module: str, path: Path) -> Iterator[str]:
    """Every module ``module`` names in an import statement, resolved to a module (not a name in one)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield candidate if candidate in MODULES else base


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        targets = {name for name in _imported(module, path) if name in MODULES and name != module}
        graph[module] = targets
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

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
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for target in graph[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _third_party(path: Path) -> set[str]:
    """The top-level names of the modules outside givbridge that ``path`` imports."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names - {"givbridge"}


def test_the_graph_is_read() -> None:
    graph = _graph()
    assert "givbridge.devices.inverter" in graph["givbridge.devices.supervisor"]
    assert "givbridge.devices.core" in graph["givbridge.devices.inverter"]
    assert "givbridge.runtime.signal" in graph["givbridge.devices.core"]


def test_no_module_reaches_itself_through_its_imports() -> None:
    assert _circles(_graph()) == []


def test_the_circle_finder_finds_a_circle() -> None:
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_runtime_knows_no_givenergy_fact() -> None:
    graph = _graph()
    for module in (name for name in MODULES if name.startswith("givbridge.runtime")):
        inside = _reachable(graph, module) - {"givbridge.log"}
        assert all(name.startswith("givbridge.runtime") for name in inside), (module, inside)
        assert not _third_party(MODULES[module]) & {"givenergy_modbus", "pymodbus", "paho", "pydantic"}, module


def test_nothing_below_devices_speaks_mqtt_or_http() -> None:
    graph = _graph()
    below = {"givbridge.devices", "givbridge.evc.runner"} | {
        name for name in MODULES if name.startswith(("givbridge.devices.", "givbridge.runtime", "givbridge.plant"))
    }
    for module in below:
        for name in _reachable(graph, module) | {module}:
            assert not name.startswith(("givbridge.mqtt", "givbridge.http")), (module, name)
            spoken = _third_party(MODULES[name])
            assert not spoken & {"paho", "starlette", "uvicorn", "httpx", "aiohttp", "fastapi"}, (module, name)
