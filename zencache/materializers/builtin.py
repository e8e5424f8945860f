"""Built-in materializers: JSON-able builtins, bytes, and the pickle fallback.

Owns the tagged JSON encoding that keeps exact types (tuple vs list, bool vs int,
non-string dict keys, float bits). Must not import numpy, scikit-learn, joblib or
pandas: a numpy scalar inside a container is handled by duck typing, and numpy is
imported only to restore one.
"""

from __future__ import annotations

import base64
import json
import math
import pickle
import struct
import threading
import warnings
import weakref
from pathlib import Path
from typing import Any, ClassVar

from ..errors import MaterializerError
from . import registry
from .base import BaseMaterializer, Files, read_tree, safe_join

_VALUE_FILE = "value.json"
_FLOAT_BITS = struct.Struct(">d")
# Ints beyond 64 bits are written in hex: decimal conversion of huge ints is
# quadratic and refused by CPython past 4300 digits (sys.set_int_max_str_digits).
_INT_LIMIT = 1 << 63
# numpy scalar kinds whose raw bytes plus dtype string say everything.
_NUMPY_SCALAR_KINDS = frozenset("biufcmMSU")


# json.dumps with options builds a JSONEncoder per call: one shared encoder instead.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class BuiltinMaterializer(BaseMaterializer):
    """None, bool, int, float, complex, str, and nested list/tuple/dict/set of them.

    One JSON file; any JSON object in it is a one-key tag, so plain values stay
    readable while every type comes back exactly. Dict insertion order is kept
    (it is part of the value a step returned, so it is part of the content id).
    """

    ASSOCIATED_TYPES = (
        int,
        float,
        bool,
        str,
        type(None),
        list,
        dict,
        tuple,
        complex,
        set,
        frozenset,
    )

    def dump(self, data: Any) -> dict[str, Any]:
        encoded = _Encoder().encode(data, ())
        text = _ENCODER.encode(encoded)
        return {_VALUE_FILE: text.encode("utf-8", "surrogatepass")}

    def restore(self, files: Files, data_type: type) -> Any:
        raw = _only_file(files, _VALUE_FILE, type(self))
        return _decode(json.loads(bytes(raw).decode("utf-8", "surrogatepass")))

    def save(self, data: Any) -> None:
        _write_files(self.uri, self.dump(data))

    def load(self, data_type: type) -> Any:
        return self.restore(_read_files(self.uri), data_type)


# Where a part sits in the value, formatted only for an error message: a tuple of
# (kind, subject) steps, kind being "[]" (index or key), "key" or "member".
_PartPath = tuple[tuple[str, Any], ...]


class _Encoder:
    """Turns a value into plain JSON data, or says which part of it cannot be."""

    def __init__(self) -> None:
        self._open: set[int] = set()  # containers on the current path: cycles

    def encode(self, value: Any, path: _PartPath) -> Any:
        cls = type(value)
        if value is None or cls is bool or cls is str:
            return value
        if cls is int:
            return value if -_INT_LIMIT <= value < _INT_LIMIT else {"i": format(value, "x")}
        if cls is float:
            return value if math.isfinite(value) else {"f": _FLOAT_BITS.pack(value).hex()}
        if cls is complex:
            return {"c": [self.encode(value.real, path), self.encode(value.imag, path)]}
        if cls is bytes:
            return {"y": base64.b64encode(value).decode("ascii")}
        if cls is bytearray:
            return {"Y": base64.b64encode(value).decode("ascii")}
        if cls in (list, tuple, dict, set, frozenset):
            return self._container(value, path)
        if _is_numpy_scalar(value):
            return {"n": [value.dtype.str, base64.b64encode(value.tobytes()).decode("ascii")]}
        raise MaterializerError(_unsupported(value, _where(path)))

    def _container(self, value: Any, path: _PartPath) -> Any:
        if id(value) in self._open:
            raise MaterializerError(
                f"cannot store {_where(path)}: it contains itself (a reference cycle), which "
                "JSON cannot express; break the cycle or pass "
                "@step(materializers={'<output>': PickleMaterializer})"
            )
        self._open.add(id(value))
        try:
            cls = type(value)
            encode = self.encode
            if cls is list:
                return [encode(item, (*path, ("[]", i))) for i, item in enumerate(value)]
            if cls is tuple:
                return {"t": [encode(item, (*path, ("[]", i))) for i, item in enumerate(value)]}
            if cls is dict:
                if all(type(key) is str for key in value):
                    return {"d": {k: encode(v, (*path, ("[]", k))) for k, v in value.items()}}
                return {
                    "m": [
                        [encode(k, (*path, ("key", k))), encode(v, (*path, ("[]", k)))]
                        for k, v in value.items()
                    ]
                }
            # Sets have no order: sort members by their encoding so that equal sets
            # (whatever PYTHONHASHSEED did to their iteration order) get equal bytes.
            members = [encode(item, (*path, ("member", item))) for item in value]
            members.sort(key=_canonical_text)
            return {"s" if cls is set else "S": members}
        finally:
            self._open.discard(id(value))


def _where(path: _PartPath) -> str:
    """`value['a'][3]`, `value key (1, 2)`, `value member 'x'`."""
    text = "value"
    for kind, subject in path:
        text += f"[{subject!r}]" if kind == "[]" else f" {kind} {subject!r:.40}"
    return text


def _canonical_text(encoded: Any) -> str:
    return json.dumps(encoded, ensure_ascii=True, separators=(",", ":"), allow_nan=False)


def _is_numpy_scalar(value: Any) -> bool:
    cls = type(value)
    return (
        cls.__module__ == "numpy"
        and hasattr(value, "dtype")
        and getattr(value, "ndim", None) == 0
        and cls.__name__ != "ndarray"
        and value.dtype.kind in _NUMPY_SCALAR_KINDS
    )


def _unsupported(value: Any, where: str) -> str:
    cls = type(value)
    name = registry.type_name(cls)
    base = next((b for b in cls.__mro__[1:] if b in BuiltinMaterializer.ASSOCIATED_TYPES), None)
    if base is not None or isinstance(value, bytes | bytearray):
        base = base or bytes
        return (
            f"cannot store {where} of type {name} with a builtin materializer: it is a "
            f"subclass of {base.__qualname__} and would come back as a plain "
            f"{base.__qualname__}; convert it with {base.__qualname__}(...), or pass "
            "@step(materializers={'<output>': PickleMaterializer})"
        )
    return (
        f"cannot store {where} of type {name} with the builtin JSON materializer, which "
        "keeps only None, bool, int, float, complex, str, bytes, numpy scalars and "
        "list/tuple/dict/set of them; return it as a separate output declared as "
        f"{cls.__qualname__} so that its own materializer stores it, or pass "
        "@step(materializers={'<output>': PickleMaterializer})"
    )


def _decode(data: Any) -> Any:
    if type(data) is list:
        return [_decode(item) for item in data]
    if type(data) is not dict:
        return data  # None, bool, int, float, str are themselves
    if len(data) != 1:
        raise MaterializerError(f"builtin JSON artifact holds an untagged object {data!r:.80}")
    ((tag, body),) = data.items()
    if tag == "t":
        return tuple(_decode(item) for item in body)
    if tag == "d":
        return {key: _decode(item) for key, item in body.items()}
    if tag == "m":
        return {_decode(key): _decode(item) for key, item in body}
    if tag == "s":
        return {_decode(item) for item in body}
    if tag == "S":
        return frozenset(_decode(item) for item in body)
    if tag == "i":
        return int(body, 16)
    if tag == "f":
        return _FLOAT_BITS.unpack(bytes.fromhex(body))[0]
    if tag == "c":
        return complex(_decode(body[0]), _decode(body[1]))
    if tag == "y":
        return base64.b64decode(body)
    if tag == "Y":
        return bytearray(base64.b64decode(body))
    if tag == "n":
        import numpy as np  # only when the artifact holds a numpy scalar

        dtype = np.dtype(body[0])
        return np.frombuffer(base64.b64decode(body[1]), dtype=dtype, count=1).reshape(())[()]
    raise MaterializerError(
        f"builtin JSON artifact has an unknown tag {tag!r}; it was written by another "
        "version of zencache: rerun the step to rewrite it"
    )


class BytesMaterializer(BaseMaterializer):
    """bytes and bytearray, stored as they are; the file name keeps which of the two."""

    ASSOCIATED_TYPES = (bytes, bytearray)

    def dump(self, data: Any) -> dict[str, Any]:
        if type(data) not in (bytes, bytearray):
            raise MaterializerError(_unsupported(data, "value"))
        return {f"data.{type(data).__name__}": data}

    def restore(self, files: Files, data_type: type) -> Any:
        if "data.bytearray" in files:
            data = _only_file(files, "data.bytearray", type(self))
            # read_blob hands over a fresh bytearray: keep it rather than copy it.
            return data if type(data) is bytearray else bytearray(data)
        return bytes(_only_file(files, "data.bytes", type(self)))

    def save(self, data: Any) -> None:
        _write_files(self.uri, self.dump(data))

    def load(self, data_type: type) -> Any:
        return self.restore(_read_files(self.uri), data_type)


class PickleFallbackWarning(UserWarning):
    """A value is being pickled because no materializer is registered for its type."""


_warned: weakref.WeakSet[type] = weakref.WeakSet()
_warned_lock = threading.Lock()


def _is_pandas(value_type: type) -> bool:
    return any(
        str(getattr(base, "__module__", "")).partition(".")[0] == "pandas"
        for base in getattr(value_type, "__mro__", ())
    )


class PickleMaterializer(BaseMaterializer):
    """Anything pickle can handle: the fallback when no materializer claims a type.

    Loading a pickle runs code chosen by whoever wrote it, so loads are refused
    under ZENCACHE_ALLOW_PICKLE=0. Protocol 5 is pinned so that the bytes (and
    the content id) do not change with the Python version's default.
    """

    USES_PICKLE = True
    PROTOCOL: ClassVar[int] = 5

    @classmethod
    def warn_fallback(cls, value_type: type) -> None:
        """Warn, once per type and process, that values of `value_type` get pickled."""
        with _warned_lock:
            if value_type in _warned:
                return
            _warned.add(value_type)
        fix = (
            "Declare a type that has a materializer, register one (subclass "
            "BaseMaterializer with ASSOCIATED_TYPES)"
        )
        if _is_pandas(value_type):  # pandas's parquet materializer needs pyarrow
            fix = "pip install 'zencache[pandas]' (pyarrow) to store it as parquet"
        warnings.warn(
            f"no materializer is registered for type {registry.type_name(value_type)}, so "
            "zencache stores it with pickle; loading pickles from an untrusted cache runs "
            f"arbitrary code. {fix}, or set ZENCACHE_ALLOW_PICKLE=0 to refuse pickle loads",
            PickleFallbackWarning,
            stacklevel=3,
        )

    def dump(self, data: Any) -> dict[str, Any]:
        return {"value.pkl": pickle.dumps(data, protocol=self.PROTOCOL)}

    def restore(self, files: Files, data_type: type) -> Any:
        return pickle.loads(_only_file(files, "value.pkl", type(self)))

    def save(self, data: Any) -> None:
        _write_files(self.uri, self.dump(data))

    def load(self, data_type: type) -> Any:
        return self.restore(_read_files(self.uri), data_type)


# --- the file-based API over the fast path (for callers that use save/load) -----------


def _only_file(files: Files, name: str, materializer: type[BaseMaterializer]) -> Any:
    try:
        return files[name]
    except KeyError:
        raise MaterializerError(
            f"{materializer.__qualname__} expected a file {name!r} in its artifact, found "
            f"{sorted(files)}; the artifact was written by another materializer or version: "
            "rerun the step to rewrite it"
        ) from None


def _write_files(uri: str, files: dict[str, Any]) -> None:
    for name, data in files.items():
        target = safe_join(Path(uri), name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def _read_files(uri: str) -> dict[str, bytes]:
    return read_tree(Path(uri))
