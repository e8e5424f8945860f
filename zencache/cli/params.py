"""`-p NAME=VALUE` text to a Python value, checked against the parameter's annotation.

A value that does not fit its annotation is a one-line TargetError (exit 2) naming
the parameter, the value and the expected type, raised before anything runs:
`-p gamma=abc` for `gamma: float` must not reach scikit-learn and record a failed
run. Understood: bool, int, float, str, bytes, pathlib paths, enums, Literal,
Optional/unions of those, and list/tuple/dict/set (written as JSON of that shape).
Anything else (unannotated, or a class of the user's) takes JSON where it parses,
else the text. Imports errors only.
"""

from __future__ import annotations

import enum
import inspect
import json
import math
import pathlib
import types
import typing
from collections.abc import Callable
from typing import Any

from ..errors import TargetError

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
_NONE = ("none", "null")


class _Mismatch(Exception):
    """The text does not fit this annotation (caught, and phrased once, by coerce_params)."""


def json_or_text(text: str) -> Any:
    """JSON where it parses (0.01, true, [1, 2], "a b"), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def coerce_params(
    what: str, signature: inspect.Signature, params: dict[str, str], hints: dict[str, Any]
) -> dict[str, Any]:
    """Each -p value converted for its parameter; `what` names the pipeline or function."""
    out: dict[str, Any] = {}
    for name, text in params.items():
        param = signature.parameters.get(name)
        annotation = hints.get(name, inspect.Parameter.empty)
        if param is None or annotation is inspect.Parameter.empty:
            out[name] = json_or_text(text)
            continue
        try:
            out[name] = convert(text, annotation)
        except _Mismatch:
            raise TargetError(
                f"-p {name}={text!r}: parameter {name!r} of {what} expects "
                f"{describe(annotation)}; pass a value of that type"
            ) from None
    return out


def annotations_of(fn: Callable[..., Any]) -> dict[str, Any]:
    """Evaluated annotations; the text of those that cannot be evaluated (ignored then)."""
    try:
        return dict(typing.get_type_hints(fn, include_extras=False))
    except Exception:
        try:
            raw = inspect.get_annotations(fn)
        except Exception:
            return {}
        simple = {"int": int, "float": float, "bool": bool, "str": str, "bytes": bytes}
        return {k: simple[v] for k, v in raw.items() if isinstance(v, str) and v in simple}


def convert(text: str, annotation: Any) -> Any:
    if annotation is Any or annotation is object:
        return json_or_text(text)
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return convert(text, typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        return _union(text, typing.get_args(annotation))
    if origin is typing.Literal:
        return _literal(text, typing.get_args(annotation))
    if annotation is type(None) or annotation is None:
        if text.strip().lower() in _NONE:
            return None
        raise _Mismatch
    if origin in (list, tuple, dict, set, frozenset):
        return _container(text, origin)
    if not isinstance(annotation, type):
        return json_or_text(text)  # a TypeVar, a Protocol, a string we could not evaluate
    if annotation is bool:
        return _bool(text)
    if annotation is int:
        return _int(text)
    if annotation is float:
        return _float(text)
    if annotation is str:
        if text.startswith('"'):  # -p 'label="a b"': JSON quoting, as before
            value = json_or_text(text)
            return value if isinstance(value, str) else text
        return text
    if annotation is bytes:
        return text.encode()
    if issubclass(annotation, pathlib.PurePath):
        if not text:
            raise _Mismatch
        return annotation(text)
    if issubclass(annotation, enum.Enum):
        return _enum(text, annotation)
    if annotation in (list, tuple, dict, set, frozenset):
        return _container(text, annotation)
    return json_or_text(text)


def describe(annotation: Any) -> str:
    """A type as a user reads it: float, int or None, one of 'a', 'b', a Color (red, blue)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return describe(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        return " or ".join(describe(a) for a in typing.get_args(annotation))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    if annotation is type(None) or annotation is None:
        return "None"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        members = ", ".join(m.name for m in annotation)
        return f"a {annotation.__name__} ({members})"
    if isinstance(annotation, type) and issubclass(annotation, pathlib.PurePath):
        return "a path"
    if origin is not None:
        return f"a JSON {getattr(origin, '__name__', origin)}"
    if annotation in (list, tuple, dict, set, frozenset):
        return f"a JSON {annotation.__name__}"
    return getattr(annotation, "__name__", str(annotation))


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise _Mismatch


def _int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        pass
    try:
        number = float(text)  # 1e3 and 2.0 are whole numbers; 2.5 is not
    except ValueError:
        raise _Mismatch from None
    if not math.isfinite(number) or not number.is_integer():
        raise _Mismatch
    return int(number)


def _float(text: str) -> float:
    try:
        return float(text.strip())  # also 1e-3, inf and nan, as Python reads them
    except ValueError:
        raise _Mismatch from None


def _enum(text: str, cls: type[enum.Enum]) -> enum.Enum:
    stripped = text.strip()
    if stripped in cls.__members__:
        return cls[stripped]
    by_name = {name.lower(): m for name, m in cls.__members__.items()}
    if stripped.lower() in by_name:
        return by_name[stripped.lower()]
    for member in cls:
        if str(member.value) == stripped or member.value == json_or_text(stripped):
            return member
    raise _Mismatch


def _literal(text: str, options: tuple[Any, ...]) -> Any:
    for option in options:
        try:
            value = convert(text, type(option)) if option is not None else convert(text, None)
        except _Mismatch:
            continue
        if value == option and type(value) is type(option):
            return option
    raise _Mismatch


def _union(text: str, members: tuple[Any, ...]) -> Any:
    # None first, so that `-p x=none` for `str | None` is None, not the text "none";
    # then str last, since any text is a str.
    ordered = sorted(members, key=lambda m: 0 if m in (None, type(None)) else 2 if m is str else 1)
    for member in ordered:
        try:
            return convert(text, member)
        except _Mismatch:
            continue
    raise _Mismatch


def _container(text: str, origin: Any) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        raise _Mismatch from None
    if origin is dict:
        if not isinstance(value, dict):
            raise _Mismatch
        return value
    if not isinstance(value, list):
        raise _Mismatch
    return origin(value) if origin is not list else value
