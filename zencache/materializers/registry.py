"""Which materializer handles which type: registration and lookup.

Types are matched by qualified name along the value type's MRO, most specific
first, so that a materializer can claim `sklearn.base.BaseEstimator` without
importing scikit-learn. A later registration for the same type wins, which lets
a user's materializer override a built-in one; built-ins sit in their own
table, consulted after the user's for each class, so that registering them
lazily can never shadow a user's.
"""

from __future__ import annotations

import logging
import typing
from typing import TYPE_CHECKING, Any

from ..errors import MaterializerError

if TYPE_CHECKING:
    from .base import BaseMaterializer

log = logging.getLogger(__name__)

_by_type_name: dict[str, type[BaseMaterializer]] = {}
_builtin_by_type_name: dict[str, type[BaseMaterializer]] = {}
_by_identity: dict[str, type[BaseMaterializer]] = {}

# Declared types that say nothing about the value: choose after execution.
_TOO_GENERAL = {"builtins.object", "typing.Any"}


def type_name(cls: Any) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register(materializer: type[BaseMaterializer]) -> None:
    """Claim the types the class itself declares. A subclass that declares none claims
    none (it is for `@step(materializers=...)`): it does not silently take over its
    parent's types; to take them over, it says so, `ASSOCIATED_TYPES = Parent.ASSOCIATED_TYPES`."""
    _by_identity[materializer.identity()] = materializer
    table = (
        _builtin_by_type_name if materializer.__module__.startswith("zencache.") else _by_type_name
    )
    own = vars(materializer)
    types_ = own.get("ASSOCIATED_TYPES", ())
    names = own.get("ASSOCIATED_TYPE_NAMES", ())
    if (
        not types_
        and not names
        and (materializer.ASSOCIATED_TYPES or materializer.ASSOCIATED_TYPE_NAMES)
    ):
        log.debug(
            "%s declares no ASSOCIATED_TYPES of its own: it claims no type (its parent's stay "
            "with the parent); use it with @step(materializers=...)",
            type_name(materializer),
        )
    for cls in types_:
        table[type_name(cls)] = materializer
    for name in names:
        table[name] = materializer


def for_type(cls: Any) -> type[BaseMaterializer] | None:
    """The materializer for values of `cls`, or None when `cls` is too general."""
    cls = concrete_type(cls)
    if cls is None:
        return None
    _load_lazy_families()
    for base in getattr(cls, "__mro__", (cls,)):
        name = type_name(base)
        found = _by_type_name.get(name) or _builtin_by_type_name.get(name)
        if found is not None:
            return found
    return None


def for_value(value: Any) -> type[BaseMaterializer]:
    """The materializer for a value whose declared type did not decide."""
    found = for_type(type(value))
    if found is not None:
        return found
    from .builtin import PickleMaterializer

    PickleMaterializer.warn_fallback(type(value))
    return PickleMaterializer


def by_identity(identity: str) -> type[BaseMaterializer]:
    _load_lazy_families()
    found = _by_identity.get(identity)
    if found is None:
        raise MaterializerError(
            f"the cache names materializer {identity!r}, which is not defined in this process; "
            "import the module that defines it (or bump its VERSION if it changed)"
        )
    return found


def is_too_general(cls: Any) -> bool:
    return concrete_type(cls) is None


def concrete_type(cls: Any) -> Any:
    """The class behind an annotation (`list[int]` -> list), or None for Any/object/unions."""
    if cls is None or cls is typing.Any or cls is object:
        return None
    origin = typing.get_origin(cls)
    if origin is typing.Annotated:
        return concrete_type(typing.get_args(cls)[0])
    if origin is not None:
        return origin if isinstance(origin, type) else None
    return cls if isinstance(cls, type) else None


_lazy_loaded = False


def _load_lazy_families() -> None:
    """Register the built-in materializers on first lookup, and pandas's if installed.

    The modules import nothing heavy (numpy, scikit-learn and pandas are claimed by
    name), so this costs a few imports once; afterwards it is one flag test.
    pandas's family is registered only when pandas and pyarrow are both
    installed: without pyarrow a DataFrame falls back to pickle, with its warning,
    rather than failing.
    """
    global _lazy_loaded
    if _lazy_loaded:
        return
    import importlib.util

    from . import builtin, numpy, sklearn  # noqa: F401  (defining them registers them)

    if importlib.util.find_spec("pandas") and importlib.util.find_spec("pyarrow"):
        from . import pandas  # noqa: F401
    _lazy_loaded = True
