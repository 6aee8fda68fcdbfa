"""The boundaries of ``bot/`` as a test: who may import whom, through which door.

The allowed imports are the table in docs/INTERFACES.md ("Layering"), parsed here, so the page
and the test cannot drift. Every module under bot/ is parsed with ``ast`` (nothing is imported).
Each failure names the module, the line and the rule broken.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BOT = REPO / "bot"
DOC = REPO / "docs" / "INTERFACES.md"

ADAPTER = "bot.webrtc"
"""The one package allowed to touch aiortc/aioice internals."""

MANGLED = re.compile(r"_RTC[A-Za-z]+__\w+")
"""A name-mangled aiortc attribute spelled as a string (``"_RTCRtpReceiver__jitter_buffer"``)."""

INTERNAL_IMPORTS = frozenset({"aioice", "pylibsrtp"})
"""Libraries under aiortc that only the adapter uses directly."""

AIORTC_PRIVATES = frozenset(
    {
        "_nominated",
        "_rx_srtp",
        "_send_keyframe",
        "_run_rtp",
        "_retransmit",
        "_handle_rtp_packet",
        "_handle_rtcp_packet",
        "_ssrc",
        "_connection",
        "_send_rtcp_pli",
        "_run_rtcp",
        "_register_rtp_receiver",
    }
)
"""aiortc/aioice private attributes and methods our code has reached for. Flagged on any object
but ``self``/``cls`` (our own classes may use the same names), and as strings given to
``getattr``/``setattr``/``hasattr``/``delattr``."""

_ROOT_MODULES = {"bot", "bot.__main__", "bot.cli"}
"""Modules directly under bot/: the ``bot.cli`` layer."""


# --- the table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    package: str
    may_import: frozenset[str]
    must_not_import: frozenset[str]


@cache
def layers() -> dict[str, Layer]:
    """The Layering table of docs/INTERFACES.md, by package."""
    text = DOC.read_text()
    section = re.search(r"^## Layering\n(.*?)(?=^## )", text, re.M | re.S)
    assert section, f"{DOC}: no '## Layering' section"
    rows = [line for line in section.group(1).splitlines() if line.startswith("| `bot")]
    table: dict[str, Layer] = {}
    for row in rows:
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        assert len(cells) >= 3, f"{DOC}: a Layering row has fewer than 3 cells: {row!r}"
        names = [re.findall(r"`([^`]+)`", cell) for cell in cells[:3]]
        assert len(names[0]) == 1, f"{DOC}: a Layering row names no single package: {row!r}"
        table[names[0][0]] = Layer(names[0][0], frozenset(names[1]), frozenset(names[2]))
    assert {"bot.proto", "bot.media", "bot.rtc", "bot.server", "bot.agent", "bot.cli"} <= set(table), (
        f"{DOC}: the Layering table lacks a package: {sorted(table)}"
    )
    return table


# --- the modules -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Module:
    name: str  # bot.media.sinks.record
    path: Path
    is_package: bool  # an __init__.py

    @property
    def layer(self) -> str:
        if self.name in _ROOT_MODULES:
            return "bot.cli"
        return ".".join(self.name.split(".")[:2])

    @property
    def where(self) -> str:
        return str(self.path.relative_to(REPO))


@cache
def modules() -> dict[str, Module]:
    found: dict[str, Module] = {}
    for path in sorted(BOT.rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        found[".".join(parts)] = Module(".".join(parts), path, is_package)
    return found


@cache
def tree(module: Module) -> ast.Module:
    return ast.parse(module.path.read_text(), str(module.path))


@dataclass(frozen=True)
class Import:
    line: int
    target: str  # the absolute module named: bot.media.shared.fanout, aiortc.rtcrtpsender
    names: tuple[str, ...]  # for ``from X import a, b``; () for ``import X``


def _absolute(module: Module, level: int, name: str | None) -> str:
    if level == 0:
        return name or ""
    base = module.name.split(".")
    if not module.is_package:
        base.pop()
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def imports(module: Module) -> list[Import]:
    """Every import in the module, at any depth: a lazy import in a function counts, and so does
    one under ``if TYPE_CHECKING:`` (a type is a dependency too)."""
    found: list[Import] = []
    for node in ast.walk(tree(module)):
        if isinstance(node, ast.Import):
            found.extend(Import(node.lineno, alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(module, node.level, node.module)
            found.append(Import(node.lineno, target, tuple(a.name for a in node.names)))
    return found


def _ours(target: str) -> bool:
    return target == "bot" or target.startswith("bot.")


def _layer_of(target: str) -> str:
    """The layer a module of ours belongs to (``bot.media.shared.fanout`` -> ``bot.media``)."""
    if target in _ROOT_MODULES:
        return "bot.cli"
    return ".".join(target.split(".")[:2])


def _is_submodule(package: str, name: str) -> bool:
    return f"{package}.{name}" in modules()


@cache
def exported(package: str) -> frozenset[str]:
    """The names a face lists in ``__all__``: a module listed there is a namespace it exports on
    purpose (``bot.webrtc.keyframes``, every patch of one shape), not a reach past it."""
    for node in tree(modules()[package]).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return frozenset(ast.literal_eval(node.value))
    return frozenset()


# --- the rules ---------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Violation:
    where: str
    line: int
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.where}:{self.line}: [{self.rule}] {self.detail}"


def layer_violations(module: Module) -> Iterator[Violation]:
    """Packages a package may not import, and through which door it may import the rest."""
    table = layers()
    own = module.layer
    layer = table.get(own)
    if layer is None:
        yield Violation(
            module.where, 1, "unknown-package", f"{own} is not in the Layering table of {DOC.name}"
        )
        return
    for imp in imports(module):
        top = imp.target.split(".")[0]
        if top in layer.must_not_import:
            yield Violation(module.where, imp.line, "forbidden-import", f"{own} must not import {imp.target}")
        if not _ours(imp.target):
            continue
        other = _layer_of(imp.target)
        if other == own:
            continue  # within a package anything goes
        if other not in layer.may_import:
            yield Violation(
                module.where, imp.line, "layer", f"{own} may not import {other} (imports {imp.target})"
            )
            continue
        if other == "bot.cli":
            continue
        if imp.target != other:
            yield Violation(
                module.where,
                imp.line,
                "internal-module",
                f"imports {imp.target}, an internal module of {other}: import from {other} itself",
            )
            continue
        for name in imp.names:
            if name.startswith("_"):
                yield Violation(
                    module.where,
                    imp.line,
                    "private-name",
                    f"imports {other}.{name}, a private name of {other}",
                )
            elif _is_submodule(other, name) and name not in exported(other):
                yield Violation(
                    module.where,
                    imp.line,
                    "internal-module",
                    f"imports the module {other}.{name}: import its names from {other} itself",
                )


def _docstrings(root: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings (mentioning a name is no reach-in)."""
    found: set[int] = set()
    for node in ast.walk(root):
        body = getattr(node, "body", None)
        if isinstance(body, list):
            for stmt in body:
                if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
                    found.add(id(stmt.value))
    return found


def aiortc_violations(module: Module) -> Iterator[Violation]:
    """aiortc/aioice internals touched outside the adapter package."""
    if module.layer == ADAPTER:
        return
    for imp in imports(module):
        if imp.target.split(".")[0] in INTERNAL_IMPORTS:
            yield Violation(
                module.where, imp.line, "aiortc-internal", f"imports {imp.target} outside {ADAPTER}"
            )
    root = tree(module)
    docstrings = _docstrings(root)
    for node in ast.walk(root):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            for match in MANGLED.finditer(node.value):
                yield Violation(
                    module.where,
                    node.lineno,
                    "aiortc-internal",
                    f"mangled name {match.group()!r} outside {ADAPTER}",
                )
        elif isinstance(node, ast.Attribute):
            if MANGLED.fullmatch(node.attr) or (
                node.attr in AIORTC_PRIVATES
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                yield Violation(
                    module.where, node.lineno, "aiortc-internal", f"attribute .{node.attr} outside {ADAPTER}"
                )
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value in AIORTC_PRIVATES
        ):
            yield Violation(
                module.where,
                node.lineno,
                "aiortc-internal",
                f"{node.func.id}(..., {node.args[1].value!r}) outside {ADAPTER}",
            )


def import_graph() -> dict[str, dict[str, int]]:
    """Module -> the modules of ours it imports (with the first line)."""
    known = modules()
    graph: dict[str, dict[str, int]] = {}
    for name, module in known.items():
        edges = graph.setdefault(name, {})
        for imp in imports(module):
            if not _ours(imp.target) or imp.target not in known:
                continue
            targets = [f"{imp.target}.{n}" for n in imp.names if f"{imp.target}.{n}" in known]
            if len(targets) < len(imp.names) or not imp.names:
                targets.append(imp.target)  # a name defined in the package (or plain ``import``)
            for target in targets:
                if target != name:
                    edges.setdefault(target, imp.line)
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                connect(nxt)
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
            connect(node)
    return sorted(found)


def cycle_violations() -> Iterator[Violation]:
    graph = import_graph()
    known = modules()
    for component in cycles(graph):
        members = set(component)
        for name in component:
            for target, line in sorted(graph[name].items()):
                if target in members:
                    yield Violation(
                        known[name].where,
                        line,
                        "import-cycle",
                        f"{name} -> {target}, in the cycle {' <-> '.join(component)}",
                    )


def package_violations(package: str) -> list[Violation]:
    found: list[Violation] = []
    for module in modules().values():
        if module.layer == package:
            found += layer_violations(module)
            found += aiortc_violations(module)
    return sorted(set(found))


def _report(found: list[Violation]) -> str:
    return f"{len(found)} layering violation(s) (rules: docs/INTERFACES.md, Layering):\n" + "\n".join(
        f"  {v}" for v in found
    )


# --- the tests ---------------------------------------------------------------------------------


def test_every_package_of_bot_is_in_the_table() -> None:
    packages = {module.layer for module in modules().values()}
    assert packages <= set(layers()), (
        f"not in the Layering table of {DOC}: {sorted(packages - set(layers()))}"
    )


def test_the_table_only_points_down() -> None:
    """Each package may import only packages above it in the table: no two-way arrow."""
    order = list(layers())
    for position, package in enumerate(order):
        upward = {name for name in layers()[package].may_import if order.index(name) >= position}
        assert not upward, f"{DOC}: {package} may import {sorted(upward)}, which are not below it"


@pytest.mark.parametrize("package", list(layers()))
def test_package_keeps_to_its_layer(package: str) -> None:
    found = package_violations(package)
    assert not found, _report(found)


def test_no_import_cycle() -> None:
    """Type-only imports count too: a circle under ``TYPE_CHECKING`` is still a circle of concepts."""
    found = sorted(set(cycle_violations()))
    assert not found, _report(found)


# --- the checker checks itself -----------------------------------------------------------------


def _fake(name: str, source: str, tmp_path: Path) -> Module:
    path = tmp_path / "bot" / (name.replace(".", "/") + ".py")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    return Module(name, path, False)


def test_the_checker_sees_each_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(f"{__name__}.REPO", tmp_path)
    source = (
        "from bot.media.shared.fanout import Packet\n"  # internal-module
        "from bot.media import _Sink\n"  # private-name
        "from bot.agent import Agent\n"  # layer
        "import aioice\n"  # aiortc-internal
        "x = '_RTCRtpReceiver__jitter_buffer'\n"  # aiortc-internal
        "def f(sender, self):\n"
        "    sender._send_keyframe = None\n"  # aiortc-internal
        "    return self._ssrc, getattr(sender, '_nominated')\n"  # own attribute: fine; getattr: flagged
        "from bot.media import Packet\n"  # fine
    )
    module = _fake("bot.rtc.fake", source, tmp_path)
    found = sorted({(v.line, v.rule) for v in [*layer_violations(module), *aiortc_violations(module)]})
    assert found == [
        (1, "internal-module"),
        (2, "private-name"),
        (3, "layer"),
        (4, "aiortc-internal"),
        (5, "aiortc-internal"),
        (7, "aiortc-internal"),
        (8, "aiortc-internal"),
    ]
    proto = _fake("bot.proto.fake", "import asyncio\nfrom bot.media import Packet\n", tmp_path)
    assert sorted((v.line, v.rule) for v in layer_violations(proto)) == [
        (1, "forbidden-import"),
        (2, "layer"),
    ]
    assert cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [["a", "b", "c"]]
