"""The node of a user class: its normalized AST (or its member names), its bases
and metaclass, and every attribute in its __dict__. Imports hashing from zencache,
and node, source and values from this package.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import Any

from ..hashing import Hasher
from .node import Node, Where
from .source import class_dump
from .values import use

# Bookkeeping that Python, abc, dataclasses and typing put in a class __dict__;
# what it records is in the class source (or not behaviour at all).
_CLASS_BOOKKEEPING = frozenset(
    """
    __module__ __qualname__ __doc__ __dict__ __weakref__ __firstlineno__ __static_attributes__
    __annotations__ __annotate__ __annotate_func__ __annotations_cache__
    __dataclass_fields__ __dataclass_params__ __match_args__ __abstractmethods__ _abc_impl
    __orig_bases__ __parameters__ __type_params__ _is_protocol _is_runtime_protocol
    __protocol_attrs__ __non_callable_proto_members__ __callable_proto_members_only__
    """.split()  # noqa: SIM905 (24 quoted names would hide the few that matter)
)


def class_node(cls: type) -> Node:
    node = Node()
    # A method assigned to the class, or a class attribute rebound, in a notebook.
    node.members.append((cls, tuple(cls.__dict__), tuple(cls.__dict__.values())))
    node.attrs.append((cls, "__bases__", cls.__bases__))
    module, qualname = str(cls.__module__), cls.__qualname__
    reader = f"{module}:{qualname}"
    hasher = Hasher("zencache/class/v1")
    dump = class_dump(cls)
    if dump is not None:
        hasher.text("ast").text(dump)
    else:  # a class made by type(...): its members, below, are all there is
        hasher.text("members").text(",".join(sorted(cls.__dict__)))
    bases = [f"{b.__module__}:{b.__qualname__}" for b in cls.__bases__]
    hasher.text("bases").text(",".join(bases))
    node.part(f"code:{reader}", hasher.hexdigest())

    for base in (*cls.__bases__, type(cls)):
        if base is not object and base is not type:
            use(base, node, Where(f"const:{reader}", f"base '{base.__qualname__}'", f"of {reader}"))
    for name, value in _class_members(cls):
        where = Where(f"const:{reader}.{name}", f"class attribute '{name}'", f"of {reader}")
        use(value, node, where)
    return node


def _class_members(cls: type) -> Iterator[tuple[str, Any]]:
    is_enum = isinstance(cls, enum.EnumMeta)
    for name, value in cls.__dict__.items():
        if name in _CLASS_BOOKKEEPING:
            continue
        if is_enum and _is_sunder(name):
            continue  # _member_map_ and the like: the members themselves are tracked
        if name == "__hash__" and value is None:
            continue
        yield name, value


def _is_sunder(name: str) -> bool:
    return len(name) > 2 and name[0] == name[-1] == "_" and name[1] != "_" and name[-2] != "_"
