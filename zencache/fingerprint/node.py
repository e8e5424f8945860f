"""One node of the fingerprint graph: the parts, references and notes that a user
function or class contributes, the guards that say whether they still hold, and
the names (`Where`, `qualname_of`) its parts are filed under. Imports only origin
from this package.

Guards make the per-process memos safe in a notebook: a node records every binding
it read (a global, a closure cell, a module attribute, a function's code object,
a class's members) with the object it found, and every mutable value it hashed
with its digest. `Node.valid()` re-reads them: identity checks, and a re-hash of
the mutable values, once per epoch (a plan), so a cached step costs a few dict
lookups, not a new fingerprint.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .origin import PYTHON, PYTHON_VERSION, distribution_parts

MISSING: Any = object()  # what a guard saw when a name was not bound


class Epoch:
    """A counter bumped once per plan: within one epoch every node and every
    mutable value is checked at most once."""

    current = 0


def new_epoch() -> None:
    Epoch.current += 1


@dataclass(slots=True)
class Node:
    parts: list[tuple[str, str]] = field(default_factory=list)  # (name shown to users, value)
    keyed: list[tuple[str, str]] = field(default_factory=list)  # (edge label, value): hashed
    # (edge label, user function or class, or a member's Node): what this node
    # reaches and by which name; the digest hashes each edge's label with what
    # the target computes, so a helper moved to another module hashes the same.
    refs: list[tuple[str, object]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # (part name, function): a lambda or closure under the name it was reached by;
    # the part's value is that function's own parts, so that two of them made by
    # one factory, or two lambdas of one module, are told apart by where they are bound.
    links: list[tuple[str, object]] = field(default_factory=list)
    # (mapping, name, object found or MISSING): globals, module dicts, builtins,
    # sys.modules, a function's __dict__
    bindings: list[tuple[Any, str, Any]] = field(default_factory=list)
    cells: list[tuple[Any, Any]] = field(default_factory=list)  # (cell, contents or MISSING)
    attrs: list[tuple[Any, str, Any]] = field(default_factory=list)  # (obj, attribute, value)
    # (value, what `check` returned when the node was built, check): mutable values
    values: list[tuple[Any, Any, Callable[[Any], Any]]] = field(default_factory=list)
    members: list[tuple[type, tuple[str, ...], tuple[Any, ...]]] = field(default_factory=list)
    checked: int = -1  # the epoch in which valid() last returned True
    env: set[str] = field(default_factory=set)  # environment variables read by literal name
    # The attribute, global and string names the code mentions: a class member that
    # none of a fingerprint's code names (and no library protocol calls) is left out.
    names: frozenset[str] = frozenset()
    reflective: bool = False  # the code reads attributes by computed name (getattr, vars)
    # (member name, edge label, member node): class members joined only when named
    optional: list[tuple[str, str, Node]] = field(default_factory=list)
    children: list[Node] = field(default_factory=list)  # member nodes, guarded with this one
    own: str = ""  # the digest of this node's own parts, computed once

    def part(self, name: str, value: str, edge: str = "") -> None:
        self.parts.append((name, value))
        self.keyed.append((edge or without_module(name), value))

    def bind(self, mapping: Any, name: str, found: Any) -> None:
        self.bindings.append((mapping, name, found))

    def valid(self) -> bool:
        """Whether every binding, cell, attribute, member and value still holds."""
        if self.checked == Epoch.current:
            return True
        for mapping, name, found in self.bindings:
            if mapping.get(name, MISSING) is not found:
                return False
        for cell, found in self.cells:
            try:
                contents = cell.cell_contents
            except ValueError:
                contents = MISSING
            if contents is not found:
                return False
        for obj, name, found in self.attrs:
            if getattr(obj, name, MISSING) is not found:
                return False
        for cls, names, values in self.members:
            members = cls.__dict__
            if len(members) != len(names) or tuple(members) != names:
                return False
            for now, then in zip(members.values(), values, strict=True):
                if now is not then:
                    return False
        for value, seen, check in self.values:
            if check(value) != seen:
                return False
        for child in self.children:
            if not child.valid():
                return False
        self.checked = Epoch.current
        return True

    def origin(self, origin: str) -> None:
        if origin == PYTHON:
            self.part("python", PYTHON_VERSION)
        elif origin.startswith("pkg:"):
            found = distribution_parts(origin[4:])
            if isinstance(found, str):
                self.notes.append(found)
            else:
                for name, value in found:
                    self.part(name, value)
        # user code is a ref, never an origin part; zencache's own behaviour is
        # versioned by the cache key's format version, not by fingerprints.


@dataclass(frozen=True, slots=True)
class Where:
    """How a value was reached: its part name and its description in notes."""

    label: str  # e.g. "const:mymod:CONFIG"
    subject: str  # e.g. "global 'CONFIG'"
    location: str  # e.g. "in module mymod"
    # The name the reader used, without the module it lives in (an edge label):
    # by default the label with its module left out, e.g. "const:CONFIG".
    edge: str = ""

    def __post_init__(self) -> None:
        if not self.edge:
            object.__setattr__(self, "edge", without_module(self.label))

    def inner(self, suffix: str, what: str) -> Where:
        return Where(
            f"{self.label}{suffix}", f"{what} {self.subject}", self.location, self.edge + suffix
        )


def without_module(label: str) -> str:
    """Drop the module from "code:<module>:<qualname>" (and "const:..."): what a
    node contributes is the same wherever its module is."""
    kind, sep, rest = label.partition(":")
    if sep and kind in ("code", "const"):
        _module, sep, tail = rest.partition(":")
        if sep:
            return f"{kind}:{tail}"
    return label


def qualname_of(fn: types.FunctionType) -> str:
    code = fn.__code__
    if code.co_filename.startswith("<"):
        return fn.__qualname__  # generated (dataclass __init__): its code says __create_fn__
    # co_qualname, unlike __qualname__, is not overwritten by functools.wraps, so a
    # wrapper and the function it wraps keep distinct names.
    return getattr(code, "co_qualname", fn.__qualname__)
