"""Classes that values bring into a step: the type of a parameter or an artifact
(a dataclass, an enum, a plain class), the classes inside containers and
dataclass fields, a class passed as a parameter, and the user classes named in a
step's annotations. Their methods are code the step runs, so they join its
fingerprint. Imports only origin from this package.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable
from typing import Any

from .origin import USER, class_origin

# How far into a value to look: deep enough for a config of dataclasses in a dict,
# bounded for a list of a million numbers (whose items all have one type anyway).
_MAX_DEPTH = 4
_MAX_ITEMS = 10_000


def carried_classes(
    values: Iterable[Any] = (), annotations: Iterable[Any] = ()
) -> tuple[type, ...]:
    """The user classes reached from `values` and `annotations`, in a stable order."""
    found: dict[int, type] = {}
    budget = [_MAX_ITEMS]
    for value in values:
        _walk_value(value, found, 0, budget)
    for annotation in annotations:
        _walk_annotation(annotation, found, 0)
    return tuple(sorted(found.values(), key=lambda c: (str(c.__module__), c.__qualname__, id(c))))


def _add(cls: type, found: dict[int, type]) -> None:
    if id(cls) not in found and class_origin(cls) == USER:
        found[id(cls)] = cls


def _walk_value(value: Any, found: dict[int, type], depth: int, budget: list[int]) -> None:
    budget[0] -= 1
    if budget[0] < 0 or depth > _MAX_DEPTH:
        return
    if isinstance(value, type):  # a class passed as a parameter: its code, not its name
        _add(value, found)
        return
    cls = type(value)
    if cls in _LEAVES:
        return
    _add(cls, found)
    if dataclasses.is_dataclass(value):
        for field in dataclasses.fields(value):
            _walk_value(getattr(value, field.name, None), found, depth + 1, budget)
    elif isinstance(value, dict):
        for key, item in value.items():
            _walk_value(key, found, depth + 1, budget)
            _walk_value(item, found, depth + 1, budget)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _walk_value(item, found, depth + 1, budget)
            if budget[0] < 0:
                return


_LEAVES = frozenset({type(None), bool, int, float, complex, str, bytes, bytearray})


def _walk_annotation(annotation: Any, found: dict[int, type], depth: int) -> None:
    if depth > _MAX_DEPTH or annotation is None or isinstance(annotation, str):
        return
    if isinstance(annotation, type):
        _add(annotation, found)
    outputs = getattr(annotation, "outputs", None)  # Output(a=..., b=...)
    if isinstance(outputs, dict):
        for item in outputs.values():
            _walk_annotation(item, found, depth + 1)
    for arg in typing.get_args(annotation):
        _walk_annotation(arg, found, depth + 1)
