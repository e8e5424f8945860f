"""What a name can hold: modules, classes, functions, wrappers and descriptors
are followed; constants are hashed by value (memoized per object); what cannot be
hashed becomes an untracked note. Imports hashing and errors from zencache, and
only origin and node from this package.
"""

from __future__ import annotations

import enum
import functools
import logging
import re
import types
from dataclasses import dataclass
from typing import Any

from ..errors import UnhashableParameterError
from ..hashing import hash_value, module_label
from .node import Epoch, Node, Where
from .origin import PYTHON, USER, ZENCACHE, class_origin, function_origin, module_origin

_DESCRIPTOR_TYPES = (
    types.WrapperDescriptorType,
    types.MethodDescriptorType,
    types.ClassMethodDescriptorType,
    types.GetSetDescriptorType,
    types.MemberDescriptorType,
)

# Immutable type-level objects and loggers are read by many functions and change
# no results: reporting each of them as untracked would bury the notes that matter.
_INERT_TYPE_MODULES = frozenset({"typing", "typing_extensions"})
_INERT_TYPES: tuple[type, ...] = (
    types.GenericAlias,
    types.UnionType,
    logging.Logger,
    logging.LoggerAdapter,
    types.EllipsisType,
    types.NotImplementedType,
)
# Stateless markers in the code that dataclasses generates (__init__'s defaults).
_MARKER_TYPES = frozenset(
    {
        "dataclasses._HAS_DEFAULT_FACTORY_CLASS",
        "dataclasses._MISSING_TYPE",
        "dataclasses._KW_ONLY_TYPE",
    }
)

_MAX_WRAPPING = 100
_WRAPPER_BOOKKEEPING = frozenset(
    {"__module__", "__name__", "__qualname__", "__doc__", "__dict__", "__signature__"}
)


def use(obj: Any, node: Node, where: Where, depth: int = 0) -> None:
    """Add to node whatever makes obj's contribution to a result visible."""
    if depth > _MAX_WRAPPING:
        node.notes.append(f"{where.subject} {where.location}: wrapped too deeply to follow")
        return
    deeper = depth + 1
    if isinstance(obj, types.ModuleType):
        origin = module_origin(obj.__name__) or USER
        if origin != USER:
            node.origin(origin)
        return
    if isinstance(obj, type):
        origin = class_origin(obj)
        if origin == USER:
            node.refs.append((where.edge, obj))
        else:
            node.origin(origin)
        return
    if isinstance(obj, types.FunctionType):
        origin = function_origin(obj)
        if origin == USER:
            node.refs.append((where.edge, obj))  # its node follows its own __wrapped__
            if obj.__closure__ or "<" in obj.__qualname__:
                node.links.append((where.label, obj))
            return
        node.origin(origin)
        attributes = obj.__dict__
        wrapped = attributes.get("__wrapped__")
        if wrapped is None:
            return
        use(wrapped, node, where, deeper)
        if isinstance(wrapped, types.FunctionType) and function_origin(wrapped) == USER:
            # A library's decorator around a user function, and what it keeps on the
            # wrapper: a singledispatch registry, the arguments it was given. (Around
            # a library's own function, its version covers what the wrapper keeps.)
            for name, value in attributes.items():
                if (
                    name != "__wrapped__"
                    and name not in _WRAPPER_BOOKKEEPING
                    and not callable(value)
                ):
                    use(value, node, where.inner(f".{name}", f"attribute '{name}' of"), deeper)
        return
    if isinstance(obj, types.MethodType):
        use(obj.__func__, node, where, deeper)
        use(obj.__self__, node, where.inner(".__self__", "the object bound to"), deeper)
        return
    if isinstance(obj, functools.partial | functools.partialmethod):
        use(obj.func, node, where, deeper)
        _use_value((obj.args, obj.keywords), node, where.inner("(args)", "the arguments of"))
        return
    if isinstance(obj, staticmethod | classmethod):
        use(obj.__func__, node, where, deeper)
        return
    if isinstance(obj, property):
        for accessor in (obj.fget, obj.fset, obj.fdel):
            if accessor is not None:
                use(accessor, node, where, deeper)
        return
    if isinstance(obj, functools.cached_property):
        use(obj.func, node, where, deeper)
        return
    if isinstance(obj, types.BuiltinFunctionType):
        owner = obj.__self__
        if owner is None or isinstance(owner, types.ModuleType):
            module = obj.__module__ or getattr(owner, "__name__", None) or "builtins"
            node.origin(module_origin(module) or PYTHON)
        else:  # a method of a C object (e.g. rng.random): the object's state counts
            use(owner, node, where.inner(".__self__", "the object bound to"), deeper)
        return
    if isinstance(obj, types.MethodWrapperType):
        use(obj.__self__, node, where.inner(".__self__", "the object bound to"), deeper)
        return
    if isinstance(obj, _DESCRIPTOR_TYPES):
        use(obj.__objclass__, node, where, deeper)
        return

    cls = type(obj)
    origin = class_origin(cls)
    wrapped = _wrapped_of(obj, node, where) if callable(obj) else None
    if wrapped is not None:  # lru_cache, numpy's array-function dispatchers, ...
        use(cls, node, where, deeper)
        use(wrapped, node, where, deeper)
        if origin == USER:  # a class-based decorator: the arguments it was built with
            digest = _value_digest(obj, node, where)
            if digest is not None:
                node.part(f"{where.label}()", digest, f"{where.edge}()")
        return
    if origin == ZENCACHE:
        return
    _use_value(obj, node, where)


def _wrapped_of(obj: Any, node: Node, where: Where) -> Any:
    try:
        return getattr(obj, "__wrapped__", None)
    except Exception as exc:  # a user-defined __getattr__
        node.notes.append(
            f"{where.subject} {where.location}: reading __wrapped__ raised "
            f"{type(exc).__name__}: {exc}"
        )
        return None


def _use_value(obj: Any, node: Node, where: Where) -> None:
    cls = type(obj)
    origin = class_origin(cls)
    digest = _value_digest(obj, node, where)
    if digest is not None:
        node.part(where.label, digest, where.edge)
        use(cls, node, where)  # an enum's or dataclass's class; numpy for an array
        return
    if (
        cls.__module__ in _INERT_TYPE_MODULES
        or isinstance(obj, _INERT_TYPES)
        or f"{cls.__module__}.{cls.__qualname__}" in _MARKER_TYPES
    ):
        node.origin(origin)
        return
    if origin != USER and callable(obj) and isinstance(getattr(obj, "__name__", None), str):
        node.origin(origin)  # a named callable of a library, e.g. a numpy ufunc
        return
    node.notes.append(
        f"{where.subject} of type {cls.__module__}.{cls.__qualname__} {where.location}: "
        "not tracked (its value cannot be hashed)"
    )
    use(cls, node, where)  # its methods still count


_SCALARS = (type(None), bool, int, float, str)
# id -> (value, digest or None, callables inside it, epoch). One module-level array
# or table read by a thousand steps is hashed once per plan; the strong reference
# keeps the id from being reused (these values are held by modules and functions anyway).
_VALUES: dict[int, tuple[object, str | None, tuple[Any, ...], int]] = {}
_IMMUTABLE = (type(None), bool, int, float, complex, str, bytes, range, re.Pattern, enum.Enum)


def _immutable(obj: Any, depth: int = 0) -> bool:
    """Whether obj can never hash differently (then identity is all a guard needs)."""
    if isinstance(obj, _IMMUTABLE):
        return True
    if type(obj) in (tuple, frozenset) and depth < 3 and len(obj) <= 64:
        return all(_immutable(item, depth + 1) for item in obj)
    return False


def value_state(obj: Any) -> tuple[str | None, tuple[Any, ...]]:
    """The digest of a value and the callables inside it, hashed again in each
    epoch when the value is mutable (a module-level dict edited in a notebook)."""
    hit = _VALUES.get(id(obj))
    if hit is None or hit[0] is not obj or (hit[3] != Epoch.current and not _immutable(obj)):
        hit = (obj, *_digest_and_callables(obj), Epoch.current)
        _VALUES[id(obj)] = hit
    return hit[1], hit[2]


def _value_digest(obj: Any, node: Node, where: Where) -> str | None:
    if isinstance(obj, _SCALARS):
        return hash_value(obj)
    digest, callables = value_state(obj)
    if not _immutable(obj):
        node.values.append((obj, (digest, callables), value_state))
    if id(obj) in _FOLLOWING:  # its state holds a method bound to itself
        return digest
    _FOLLOWING.add(id(obj))
    try:
        for item in callables:
            use(item, node, where.inner("[]", "an item of"))
    finally:
        _FOLLOWING.discard(id(obj))
    return digest


_FOLLOWING: set[int] = set()


def _digest_and_callables(obj: Any) -> tuple[str | None, tuple[Any, ...]]:
    if isinstance(obj, re.Pattern):
        return hash_value(("re.Pattern", obj.pattern, obj.flags)), ()
    try:
        return hash_value(obj), ()
    except UnhashableParameterError:
        pass
    except RecursionError:  # a list that contains itself
        return None, ()
    # A container of callables (a dispatch table), an object with state (a plain
    # object, a SimpleNamespace, a random generator, an estimator, a class-based
    # decorator and the arguments it was built with): hash its shape, with each
    # callable named, and follow the callables.
    found: list[Any] = []
    try:
        return hash_value(_name_callables(obj, found)), tuple(found)
    except (UnhashableParameterError, RecursionError):
        return None, ()


@dataclass(frozen=True, slots=True)
class _Named:
    """Stands for a callable inside a container, so its name is hashed, not its code."""

    name: str
    # Its qualified name is in every digest of a table that holds callables: it
    # stays "zencache.fingerprint", where the class was defined before the split.
    __module__ = "zencache.fingerprint"


@dataclass(frozen=True, slots=True)
class _State:
    """Stands for an object that has no canonical encoding: its class and its state."""

    kind: str
    state: Any
    __module__ = "zencache.fingerprint"


_MAX_NESTING = 32


def _name_callables(value: Any, found: list[Any], depth: int = 0) -> Any:
    if depth > _MAX_NESTING:
        raise RecursionError("nested too deeply")
    deeper = depth + 1
    kind = type(value)
    if kind in (list, tuple, set, frozenset):
        return kind(_name_callables(item, found, deeper) for item in value)
    if kind is dict or kind is types.MappingProxyType:  # a singledispatch registry
        return {
            _name_callables(k, found, deeper): _name_callables(v, found, deeper)
            for k, v in value.items()
        }
    if depth and callable(value) and isinstance(getattr(value, "__qualname__", None), str):
        found.append(value)
        if isinstance(value, types.FunctionType) and function_origin(value) == USER:
            return _Named(value.__qualname__)  # followed by its code, wherever it lives
        return _Named(f"{getattr(value, '__module__', None)}:{value.__qualname__}")
    if kind in _ENCODED or isinstance(value, types.ModuleType):
        return value
    state = _state_of(value)
    if state is None:
        return value
    name = f"{module_label(str(kind.__module__))}:{kind.__qualname__}"
    return _State(name, _name_callables(state, found, deeper))


_ENCODED = frozenset({type(None), bool, int, float, complex, str, bytes, bytearray})


def _state_of(value: Any) -> Any:
    """What an object's behaviour depends on, where that can be read: a random
    generator's state, else its attributes (__dict__ and __slots__)."""
    getstate = getattr(value, "getstate", None)
    if type(value).__module__ == "random" and callable(getstate):
        return getstate()  # random.Random: a tuple of numbers
    bit_generator = getattr(value, "bit_generator", None)
    if type(value).__module__.startswith("numpy.random") and bit_generator is not None:
        return bit_generator.state  # a numpy Generator: a dict of numbers
    state: dict[str, Any] = {}
    attributes = getattr(value, "__dict__", None)
    if isinstance(attributes, dict):
        state.update(attributes)
    for cls in type(value).__mro__:
        for slot in (
            cls.__dict__.get("__slots__", ())
            if isinstance(cls.__dict__.get("__slots__"), tuple | list)
            else ()
        ):
            if slot not in ("__dict__", "__weakref__") and hasattr(value, slot):
                state[slot] = getattr(value, slot)
    if not state and attributes is None:
        return None  # nothing to read: a C object with hidden state
    return state
