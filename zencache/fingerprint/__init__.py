"""Code fingerprints of steps: the public API and the walk that merges the nodes
of every user function and class reached into one digest. Modules, lowest first:
origin, node, source, values, references, functions, classes. The package imports
only hashing and errors from zencache, and no heavy package at import time.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..hashing import Hasher, module_label
from .classes import class_node
from .functions import function_node
from .node import Epoch, Node, Where, new_epoch
from .origin import PYTHON_VERSION
from .values import use

__all__ = ["PYTHON_VERSION", "Fingerprint", "fingerprint", "new_epoch"]


# The names in `parts` are shown to users (cache status, explain) and are stable:
#   code:<module>:<qualname>   a user function or class (its own normalized AST)
#   const:<module>:<NAME>      a module-level constant, by value
#   const:<module>:<qualname>.<name>   a closure variable, or a class attribute
#   const:<module>:<NAME>(args)        the bound arguments of a functools.partial
#   const:<module>:<qualname>(<param>=)  a default value that is not a literal
#   dist:<distribution>        "<distribution>==<version>" of third-party code
#   python                     the minor version, e.g. "3.11" (always present)
@dataclass(frozen=True, slots=True)
class Fingerprint:
    digest: str  # 32 lowercase hex digits, xxh3_128 over the sorted parts
    parts: Mapping[str, str]  # read-only; dict(fp.parts) is JSON-serialisable
    untracked: tuple[str, ...]  # what the fingerprint cannot see, for `explain`

    def __hash__(self) -> int:
        return hash(self.digest)


def fingerprint(fn: Callable[..., Any], carried: tuple[Any, ...] = ()) -> Fingerprint:
    """The code fingerprint of `fn` (and of the classes `carried` by its parameters
    and inputs) and of everything they reach; memoized per process.

    The memo is checked once per epoch (`new_epoch()`, called by each plan): every
    node's guards (node.py) must still hold, or the fingerprint is collected again,
    reusing the nodes that are still valid.
    """
    memo = (id(fn), *map(id, carried)) if carried else id(fn)
    hit = _FINGERPRINTS.get(memo)
    if hit is not None and hit.roots[0] is fn and hit.roots[1:] == carried:
        if hit.checked == Epoch.current:
            return hit.result
        if all(node.valid() for node in hit.nodes):
            hit.checked = Epoch.current
            return hit.result
    result, nodes = _collect((fn, *carried))
    # The strong references to the roots keep their ids from being reused.
    _FINGERPRINTS[memo] = _Memo((fn, *carried), result, nodes, Epoch.current)
    return result


@dataclass(slots=True)
class _Memo:
    roots: tuple[Any, ...]
    result: Fingerprint
    nodes: tuple[Node, ...]  # every node the fingerprint merged
    checked: int


_FINGERPRINTS: dict[Any, _Memo] = {}


_NODES: dict[int, tuple[object, Node]] = {}


def _node_for(obj: object) -> Node:
    hit = _NODES.get(id(obj))
    if hit is not None and hit[0] is obj and hit[1].valid():
        return hit[1]
    if isinstance(obj, types.FunctionType):
        node = function_node(obj)
    else:
        assert isinstance(obj, type), obj
        node = class_node(obj)
    node.checked = Epoch.current
    _NODES[id(obj)] = (obj, node)
    return node


def _collect(roots: tuple[Any, ...]) -> tuple[Fingerprint, tuple[Node, ...]]:
    start = Node()
    for root in roots:
        name = getattr(root, "__qualname__", None) or type(root).__qualname__
        module = getattr(root, "__module__", None) or "?"
        use(root, start, Where(f"const:{module}:{name}", f"'{name}'", f"in module {module}"))
    start.part("python", PYTHON_VERSION)
    nodes = [start]

    merged: dict[str, set[str]] = {}
    notes: set[str] = set()
    seen: set[int] = set()
    stack = [start]
    while stack:
        node = stack.pop()
        for key, value in node.parts:
            merged.setdefault(key, set()).add(value)
        for key, fn in node.links:
            merged.setdefault(key, set()).add(_own_parts(_node_for(fn)))
        notes.update(node.notes)
        for ref in node.refs:
            if id(ref) not in seen:
                seen.add(id(ref))
                found = _node_for(ref)
                nodes.append(found)
                stack.append(found)

    main = module_label("__main__")  # a script's parts are named after its file
    renamed = {key.replace(":__main__:", f":{main}:", 1): v for key, v in merged.items()}
    parts = {key: _one_value(values) for key, values in sorted(renamed.items())}
    hasher = Hasher("zencache/fingerprint/v1")
    for key, value in parts.items():
        hasher.text(key).text(value)
    fp = Fingerprint(hasher.hexdigest(), types.MappingProxyType(parts), tuple(sorted(notes)))
    return fp, tuple(nodes)


def _own_parts(node: Node) -> str:
    """A function's own contribution (its code, defaults, captured values, in order)."""
    hasher = Hasher("zencache/fingerprint/link/v1")
    for key, value in node.parts:
        hasher.text(key).text(value)
    return hasher.hexdigest()


def _one_value(values: set[str]) -> str:
    # Two objects under one name (closures made by one factory, several lambdas
    # in a module) are both tracked: their values combine, order-independently.
    if len(values) == 1:
        return next(iter(values))
    hasher = Hasher("zencache/fingerprint/merged/v1")
    for value in sorted(values):
        hasher.text(value)
    return hasher.hexdigest()
