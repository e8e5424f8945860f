"""Code fingerprints of steps: the public API and the walk that merges the nodes
of every user function and class reached into one digest. Modules, lowest first:
origin, node, source, values, references, functions, classes. The package imports
only hashing and errors from zencache, and no heavy package at import time.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..hashing import Hasher, module_label
from .classes import class_node
from .functions import function_node
from .node import Epoch, Node, Where, new_epoch
from .origin import PYTHON_VERSION
from .values import use

__all__ = ["PYTHON_VERSION", "Fingerprint", "fingerprint", "new_epoch"]


# The names in `parts` are shown to users (cache status, explain) and are stable:
#   code:<module>:<qualname>   a user function (its normalized AST), or a class (its
#                              statement without the defs in it: methods have their own)
#   const:<module>:<NAME>      a module-level constant, by value
#   const:<module>:<qualname>.<name>   a closure variable, or a class attribute
#   const:<module>:<NAME>(args)        the bound arguments of a functools.partial
#   const:<module>:<qualname>(<param>=)  a default value that is not a literal
#   dist:<distribution>        "<distribution>==<version>" of third-party code
#   python                     the minor version, e.g. "3.11" (always present)
@dataclass(frozen=True, slots=True)
class Fingerprint:
    digest: str  # 32 lowercase hex digits: a Merkle hash of the code graph (_graph_digest)
    parts: Mapping[str, str]  # read-only; dict(fp.parts) is JSON-serialisable
    untracked: tuple[str, ...]  # what the fingerprint cannot see, for `explain`
    # Environment variables the code reads by literal name (os.environ["X"], os.getenv):
    # their values enter the key when the step is planned, not this digest.
    env: tuple[str, ...] = ()
    # The user classes the code reaches (their instances may flow out of the step:
    # a step downstream carries them, see core/plan.py), and the classes that were
    # given as roots beside the function (`carried`). Not part of equality.
    classes: tuple[type, ...] = field(default=(), compare=False, repr=False)
    carried: tuple[type, ...] = field(default=(), compare=False, repr=False)

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
    if isinstance(obj, Node):  # a class member's node, made with its class's
        return obj
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


_Edges = dict[int, list[tuple[str, Node]]]


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
    env: set[str] = set()
    edges: _Edges = {}
    seen = {id(start)}
    names: set[str] = set()  # every name the code reached so far mentions
    reflective = False
    classes: dict[int, type] = {}
    waiting: list[tuple[Node, str, str, Node]] = []  # class, member name, label, member
    stack = [start]

    def reach(owner: Node, label: str, target: Node) -> None:
        edges[id(owner)].append((label, target))
        if id(target) not in seen:
            seen.add(id(target))
            nodes.append(target)
            stack.append(target)

    while stack:
        while stack:
            node = stack.pop()
            edges[id(node)] = []
            for key, value in node.parts:
                merged.setdefault(key, set()).add(value)
            for key, fn in node.links:
                merged.setdefault(key, set()).add(_own(_node_for(fn)))
            notes.update(node.notes)
            env.update(node.env)
            names.update(node.names)
            reflective = reflective or node.reflective
            for label, ref in node.refs:
                if isinstance(ref, type) and id(ref) not in classes:
                    classes[id(ref)] = ref
                reach(node, label, _node_for(ref))
            waiting.extend((node, *member) for member in node.optional)
        # A plain method joins once some code reached names it; what it reaches
        # may name more (a fixpoint, usually one round).
        still = []
        for owner, name, label, member in waiting:
            if reflective or name in names:
                reach(owner, label, member)
            else:
                still.append((owner, name, label, member))
        waiting = still

    main = module_label("__main__")  # a script's parts are named after its file
    renamed = {key.replace(":__main__:", f":{main}:", 1): v for key, v in merged.items()}
    parts = {key: _one_value(values) for key, values in sorted(renamed.items())}
    fp = Fingerprint(
        _graph_digest(start, edges),
        types.MappingProxyType(parts),
        tuple(sorted(notes)),
        tuple(sorted(env)),
        tuple(sorted(classes.values(), key=_class_order)),
        tuple(root for root in roots[1:] if isinstance(root, type)),
    )
    return fp, tuple(nodes)


def _class_order(cls: type) -> tuple[str, str, int]:
    return (str(cls.__module__), cls.__qualname__, id(cls))


def _own(node: Node) -> str:
    """A node's own contribution (its code, defaults, constants, captured values),
    under names that leave out the module it lives in."""
    if not node.own:
        hasher = Hasher("zencache/fingerprint/own/v2")
        for key, value in sorted(set(node.keyed)):
            hasher.text(key).text(value)
        node.own = hasher.hexdigest()
    return node.own


def _graph_digest(start: Node, edges: _Edges) -> str:
    """A Merkle digest of the graph from `start`: each node hashes its own parts
    with (label, digest) of every edge. Nodes that reach each other (recursion, a
    method naming its class) form one component, hashed as a whole, found with
    Tarjan's algorithm (iterative: helper chains can be deep)."""
    digests: dict[int, str] = {}
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    on_stack: set[int] = set()
    stack: list[Node] = []
    work: list[tuple[Node, int]] = [(start, 0)]
    while work:
        node, i = work[-1]
        key = id(node)
        if i == 0:
            index[key] = low[key] = len(index)
            stack.append(node)
            on_stack.add(key)
        out = edges.get(key, [])
        if i < len(out):
            work[-1] = (node, i + 1)
            target = out[i][1]
            if id(target) not in index:
                work.append((target, 0))
            elif id(target) in on_stack:
                low[key] = min(low[key], index[id(target)])
            continue
        work.pop()
        if work:
            parent = id(work[-1][0])
            low[parent] = min(low[parent], low[key])
        if low[key] == index[key]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(id(member))
                component.append(member)
                if member is node:
                    break
            _component_digests(component, edges, digests)
    return digests[id(start)]


def _component_digests(component: list[Node], edges: _Edges, digests: dict[int, str]) -> None:
    inside = {id(node) for node in component}

    def summary(node: Node) -> str:
        hasher = Hasher("zencache/fingerprint/node/v2").text(_own(node))
        for label, target in sorted(
            (label, f"in:{_own(t)}" if id(t) in inside else digests[id(t)])
            for label, t in edges.get(id(node), [])
        ):
            hasher.text(label).text(target)
        return hasher.hexdigest()

    if len(component) == 1 and not any(id(t) in inside for _, t in edges.get(id(component[0]), [])):
        digests[id(component[0])] = summary(component[0])
        return
    hasher = Hasher("zencache/fingerprint/component/v2")
    for item in sorted(summary(node) for node in component):
        hasher.text(item)
    whole = hasher.hexdigest()
    for node in component:
        digests[id(node)] = (
            Hasher("zencache/fingerprint/member/v2").text(whole).text(_own(node)).hexdigest()
        )


def _one_value(values: set[str]) -> str:
    # Two objects under one name (closures made by one factory, several lambdas
    # in a module) are both tracked: their values combine, order-independently.
    if len(values) == 1:
        return next(iter(values))
    hasher = Hasher("zencache/fingerprint/merged/v1")
    for value in sorted(values):
        hasher.text(value)
    return hasher.hexdigest()
