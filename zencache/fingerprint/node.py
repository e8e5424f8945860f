"""One node of the fingerprint graph: the parts, references and notes that a user
function or class contributes, and the names (`Where`, `qualname_of`) its parts
are filed under. Imports only origin from this package.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field

from .origin import PYTHON, PYTHON_VERSION, distribution_parts


@dataclass(slots=True)
class Node:
    parts: list[tuple[str, str]] = field(default_factory=list)
    refs: list[object] = field(default_factory=list)  # user functions and classes
    notes: list[str] = field(default_factory=list)
    env: set[str] = field(default_factory=set)  # environment variables read by literal name

    def part(self, name: str, value: str) -> None:
        self.parts.append((name, value))

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
