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
    parts: list[tuple[str, str]] = field(default_factory=list)
    refs: list[object] = field(default_factory=list)  # user functions and classes
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

    def part(self, name: str, value: str) -> None:
        self.parts.append((name, value))

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
                self.parts.extend(found)
        # user code is a ref, never an origin part; zencache's own behaviour is
        # versioned by the cache key's format version, not by fingerprints.


@dataclass(frozen=True, slots=True)
class Where:
    """How a value was reached: its part name and its description in notes."""

    label: str  # e.g. "const:mymod:CONFIG"
    subject: str  # e.g. "global 'CONFIG'"
    location: str  # e.g. "in module mymod"

    def inner(self, suffix: str, what: str) -> Where:
        return Where(f"{self.label}{suffix}", f"{what} {self.subject}", self.location)


def qualname_of(fn: types.FunctionType) -> str:
    code = fn.__code__
    if code.co_filename.startswith("<"):
        return fn.__qualname__  # generated (dataclass __init__): its code says __create_fn__
    # co_qualname, unlike __qualname__, is not overwritten by functools.wraps, so a
    # wrapper and the function it wraps keep distinct names.
    return getattr(code, "co_qualname", fn.__qualname__)
