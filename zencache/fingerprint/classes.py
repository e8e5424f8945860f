"""The node of a user class: its normalized AST (or its member names), its bases
and metaclass, and every attribute in its __dict__. Imports hashing from zencache,
and node, source and values from this package.
"""

from __future__ import annotations

import abc
import enum
import functools
import types
import typing
from collections.abc import Iterator
from typing import Any

from ..hashing import Hasher, module_label
from .node import Node, Where
from .origin import USER, class_origin
from .source import class_header
from .values import use

# Bookkeeping that Python, abc, dataclasses, typing and copyreg (__slotnames__, set
# when an instance is first pickled) put in a class __dict__; what it records is
# in the class source (or not behaviour at all).
_CLASS_BOOKKEEPING = frozenset(
    """
    __module__ __qualname__ __doc__ __dict__ __weakref__ __firstlineno__ __static_attributes__
    __annotations__ __annotate__ __annotate_func__ __annotations_cache__
    __dataclass_fields__ __dataclass_params__ __match_args__ __abstractmethods__ _abc_impl
    __orig_bases__ __parameters__ __type_params__ _is_protocol _is_runtime_protocol
    __protocol_attrs__ __non_callable_proto_members__ __callable_proto_members_only__
    __slotnames__
    """.split()  # noqa: SIM905 (24 quoted names would hide the few that matter)
)


def class_node(cls: type) -> Node:
    """The class statement itself, plus one member node per attribute: members
    that may matter whatever the code says (dunders, decorated methods, members of
    classes built on a library's) always join; a plain method joins only when some
    code of the fingerprint names it (see _collect), so adding one nothing calls
    reruns nothing."""
    node = Node()
    # A method assigned to the class, or a class attribute rebound, in a notebook.
    node.members.append((cls, tuple(cls.__dict__), tuple(cls.__dict__.values())))
    node.attrs.append((cls, "__bases__", cls.__bases__))
    module, qualname = str(cls.__module__), cls.__qualname__
    reader = f"{module}:{qualname}"
    hasher = Hasher("zencache/class/v2")
    header = class_header(cls)
    if header is not None:
        hasher.text("ast").text(header.dump)
        node.names = header.names
    else:  # a class made by type(...): its members, below, are all there is
        hasher.text("members").text(",".join(sorted(cls.__dict__)))
    bases = [_base_name(b) for b in cls.__bases__]
    hasher.text("bases").text(",".join(bases))
    # Unlike a function's, a class's module stays in its digest: pickles (and so
    # stored artifacts) name a class by module, and must load after a move.
    node.part(f"code:{reader}", hasher.hexdigest(), f"class:{module_label(module)}:{qualname}")

    for i, base in enumerate((*cls.__bases__, type(cls))):
        if base is not object and base is not type:
            where = Where(
                f"const:{reader}", f"base '{base.__qualname__}'", f"of {reader}", f"base:{i}"
            )
            use(base, node, where)
    # The defs that join only when named: none for a class a library may call into.
    plain = header.plain_defs if header is not None and _plain_class(cls) else frozenset()
    for name, value in _class_members(cls):
        member = Node()
        where = Where(f"const:{reader}.{name}", f"class attribute '{name}'", f"of {reader}")
        use(value, member, where)
        label = f"member:{name}:{type(value).__qualname__}"
        node.children.append(member)
        if name in plain and _named_only(name, value):
            node.optional.append((name, label, member))
        else:
            node.refs.append((label, member))
    return node


def _base_name(base: type) -> str:
    # A user base is followed as an edge (it may live anywhere); a library's is named.
    return (
        base.__qualname__
        if class_origin(base) == USER
        else f"{base.__module__}:{base.__qualname__}"
    )


# Bases that call no method of their subclasses by name. (typing.Protocol does:
# isinstance() against a runtime-checkable protocol looks at every member name.)
_NEUTRAL_BASES: frozenset[type] = frozenset({object, abc.ABC, typing.Generic})


def _plain_class(cls: type) -> bool:
    """A class whose methods only user code calls: its bases are the user's own
    (or neutral), so no library calls a method of it by a name we cannot see."""
    if type(cls) not in (type, abc.ABCMeta) or getattr(cls, "_is_protocol", False):
        return False
    return all(b in _NEUTRAL_BASES or class_origin(b) == USER for b in cls.__mro__[1:])


# Methods that libraries and the interpreter call by name on objects they are
# handed (file-likes, mappings, estimators, futures): always part of the key.
PROTOCOL_NAMES = frozenset(
    """
    keys items values get copy read readline readlines readinto write writelines flush close
    seek tell fileno truncate fit transform fit_transform fit_predict predict predict_proba
    predict_log_proba decision_function score score_samples partial_fit inverse_transform
    get_params set_params get_feature_names_out split get_n_splits set_output run start join
    send throw encode decode default tolist to_dict to_json model_dump result done cancel
    format load dump dumps loads update reset apply forward backward step
    """.split()  # noqa: SIM905
)


def _named_only(name: str, value: Any) -> bool:
    """A member reached only by its name: a plain method, static or class method,
    or property, not a dunder or sunder and not a protocol name."""
    if name.startswith("_") and name.endswith("_"):
        return False
    if name in PROTOCOL_NAMES:
        return False
    return isinstance(
        value,
        types.FunctionType | staticmethod | classmethod | property | functools.cached_property,
    )


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
