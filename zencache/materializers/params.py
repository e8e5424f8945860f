"""Parameter values as text, recorded with each step entry so that an audit can call
the step again with exactly the values it was called with.

Pickle-free: builtins (nested lists, tuples, dicts, sets, bytes, numpy scalars)
use the builtin materializer's tagged JSON, which keeps exact types; enum members,
paths and numpy arrays have a tag of their own. Anything else, or anything larger
than MAX_ENCODED, is recorded as the reason it cannot be restored, and the audit
reports that step as not checkable. Imports the builtin materializer and errors;
numpy is imported only to restore an array.
"""

from __future__ import annotations

import base64
import enum
import importlib
import json
import os
import pathlib
import sys
from collections.abc import Mapping
from typing import Any

from ..errors import ZencacheError
from ..inputs.types import Dir, File
from .builtin import BuiltinMaterializer

# A parameter is a knob, not data: larger values belong in an artifact, and the
# record they would bloat is read by every `runs show` and audit.
MAX_ENCODED = 64 << 10

_JSON_FILE = "value.json"


class ParameterRestoreError(ZencacheError):
    """A recorded parameter value cannot be turned back into the value."""


def encode_params(values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each value's encoding (JSON data), or the reason it has none; never raises."""
    return {name: encode_param(value) for name, value in values.items()}


def encode_param(value: Any) -> dict[str, Any]:
    """A one-key JSON object: {"json": ...}, {"enum": ...}, {"path": ...},
    {"ndarray": ...}, or {"none": "why it cannot be recorded"}."""
    try:
        body = _encode(value)
        size = len(json.dumps(body, ensure_ascii=False, separators=(",", ":")))
    except Exception as exc:  # recorded as the reason: a run must not fail over provenance
        return {"none": f"{type(value).__module__}.{type(value).__qualname__}: {exc}"}
    if size > MAX_ENCODED:
        return {"none": f"too large to record ({size} bytes encoded); pass it as an artifact"}
    return body


def decode_param(encoded: Any) -> Any:
    """The value back; ParameterRestoreError says why when it cannot be."""
    try:
        ((tag, body),) = encoded.items()
    except (ValueError, AttributeError) as exc:
        raise ParameterRestoreError(f"its recorded encoding is unreadable ({exc})") from exc
    if tag == "none":
        raise ParameterRestoreError(f"its value was not recorded ({body})")
    try:
        return _decode(tag, body)
    except ParameterRestoreError:
        raise
    except Exception as exc:
        raise ParameterRestoreError(f"{type(exc).__name__}: {exc}") from exc


def _encode(value: Any) -> dict[str, Any]:
    cls = type(value)
    if isinstance(value, enum.Enum):
        return {"enum": [_qualified(cls), _builtin_data(value.value)]}
    if isinstance(value, pathlib.PurePath):
        return {"path": [_qualified(cls), value.as_posix()]}
    if isinstance(value, File | Dir):
        return {"path": [_qualified(cls), str(value)]}
    if cls.__module__ == "numpy" and cls.__name__ == "ndarray":
        if value.dtype.hasobject:
            raise TypeError("an array of Python objects has no pickle-free encoding")
        data = base64.b64encode(value.tobytes(order="C")).decode("ascii")
        return {"ndarray": [value.dtype.str, list(value.shape), data]}
    return {"json": _builtin_data(value)}


def _builtin_data(value: Any) -> Any:
    """The builtin materializer's tagged JSON, as data (so that it nests readably)."""
    return json.loads(bytes(BuiltinMaterializer().dump(value)[_JSON_FILE]))


def _from_builtin_data(data: Any) -> Any:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return BuiltinMaterializer().restore(
        {_JSON_FILE: text.encode("utf-8", "surrogatepass")}, object
    )


def _decode(tag: str, body: Any) -> Any:
    if tag == "json":
        return _from_builtin_data(body)
    if tag == "enum":
        return _import(body[0])(_from_builtin_data(body[1]))
    if tag == "path":
        return _import(body[0])(body[1])
    if tag == "ndarray":
        import numpy as np  # only when the parameter was an array

        dtype, shape, data = np.dtype(body[0]), tuple(body[1]), base64.b64decode(body[2])
        return np.frombuffer(data, dtype=dtype).reshape(shape).copy()
    raise ParameterRestoreError(f"unknown encoding tag {tag!r} (written by another zencache)")


def _qualified(cls: type) -> str:
    module = cls.__module__
    if module == "__main__":  # a script's classes are imported by its file name later
        main_file = getattr(sys.modules.get("__main__"), "__file__", None)
        if main_file:
            module = os.path.splitext(os.path.basename(main_file))[0]
    return f"{module}:{cls.__qualname__}"


def _import(name: str) -> Any:
    module, _, qualname = name.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj
