"""Bounds on a YAML document before it is built into Python objects.

PyYAML builds aliases by sharing, but everything after it (interpolation, merging defaults)
copies: nine levels of nine aliases ("billion laughs") become 387 million values and the process
hangs. A document nested thousands deep ends in a RecursionError inside PyYAML. Both are refused
here, on the composed node graph (cheap: aliases are not expanded), with one line that says what.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_VALUES = 100_000
"""Values (scalars, lists, mappings) a config may expand to, aliases counted as copies: a
swarm config of hundreds of bots is a few thousand."""
MAX_DEPTH = 64
"""Nesting a config may have; the deepest real one is six levels."""


class DocumentTooLarge(ValueError):
    """A YAML document over :data:`MAX_VALUES` or :data:`MAX_DEPTH`; the message says which."""


def load_document(text: str) -> Any:
    """The document's data, parsed once: composed, measured, then built from the same nodes.
    DocumentTooLarge for one too deep or that aliases expand past the bound; yaml.YAMLError for
    one that does not parse."""
    loader = yaml.SafeLoader(text)
    try:
        try:
            root = loader.get_single_node()
        except RecursionError:
            raise DocumentTooLarge(f"it is nested deeper than {MAX_DEPTH} levels") from None
        if root is None:
            return None
        _measure(root)
        return loader.construct_document(root)
    finally:
        loader.dispose()


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _measure(root: yaml.Node) -> None:
    """Expanded size and depth of every node, iteratively (no recursion to overflow), each node
    once (an alias is the same node object as its anchor)."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            kids = _children(node)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            open_.discard(key)
            if size[key] > MAX_VALUES:
                raise DocumentTooLarge(
                    f"its aliases expand to more than {MAX_VALUES:,} values: write the values out"
                )
            if depth[key] > MAX_DEPTH:
                raise DocumentTooLarge(f"it is nested deeper than {MAX_DEPTH} levels")
            continue
        if key in size:
            continue
        if key in open_:
            raise DocumentTooLarge("an alias refers to the value that contains it")
        open_.add(key)
        stack.append((node, True))
        stack.extend((kid, False) for kid in _children(node) if id(kid) not in size)
