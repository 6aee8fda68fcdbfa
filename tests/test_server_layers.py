"""The room server's modules import one another without a circle (TYPE_CHECKING imports too),
and the REST API and the metrics know the server only as a ``RoomApi``."""

from __future__ import annotations

import ast
from pathlib import Path

SERVER = Path(__file__).resolve().parents[1] / "bot" / "server"


def _module(path: Path) -> str:
    rel = path.relative_to(SERVER).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts)


def _graph() -> dict[str, set[str]]:
    """Module -> the bot.server modules it imports (every ``import``, wherever it stands)."""
    modules = {_module(p): p for p in SERVER.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".") if package else []
                    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                    stem = ".".join([*base, node.module] if node.module else base)
                elif node.module and node.module.startswith("bot.server"):
                    stem = node.module.removeprefix("bot.server").lstrip(".")
                else:
                    continue
                targets = [f"{stem}.{a.name}".lstrip(".") for a in node.names] + [stem]
            elif isinstance(node, ast.Import):
                targets = [
                    a.name.removeprefix("bot.server").lstrip(".")
                    for a in node.names
                    if a.name.startswith("bot.server")
                ]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def _reach(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph[m])
    return seen


def test_the_server_import_graph_has_no_circle() -> None:
    graph = _graph()
    assert {"app", "rest", "metrics", "api", "signalling", "presence", "join"} <= set(graph)
    circles = [m for m in graph if m and m in _reach(graph, m)]
    assert circles == [], f"modules on an import circle: {circles}"


def test_rest_and_metrics_know_the_server_only_as_a_room_api() -> None:
    graph = _graph()
    for name in ("rest", "metrics", "api"):
        reached = _reach(graph, name)
        assert "app" not in reached and "signalling" not in reached, (name, sorted(reached))
    assert "api" in graph["rest"] and "api" in graph["metrics"]


def test_the_signalling_adapter_is_split_by_concern() -> None:
    for name in ("signalling", "join", "presence", "requests", "bandwidth_events"):
        lines = (SERVER / f"{name}.py").read_text().count("\n")
        assert lines <= 500, (name, lines)
