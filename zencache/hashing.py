"""Content ids and the canonical, type-tagged encoding of values.

A leaf: imports nothing of ours but errors, and never imports numpy (an array
passed in brings numpy with it). Every digest is xxh3_128 over a domain tag and a
length-prefixed encoding, so that `{"a": "bc"}` / `{"ab": "c"}` and `1` / `"1"`
/ `True` / `1.0` can never collide. Golden digests are pinned in the tests: a
change here is a cache wipe for every user and must bump FORMAT_VERSION.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import os
import pathlib
import struct
import sys
from collections.abc import Callable, Iterable
from typing import Any

import xxhash

from .errors import UnhashableParameterError

# 2: bytearray and memoryview are told from bytes, an OrderedDict keeps its order,
# a defaultdict names its default_factory; dates, times, decimals, fractions and
# UUIDs have encodings. Every other value encodes as in version 1.
FORMAT_VERSION = 2
ContentId = str  # 32 lowercase hex digits of an xxh3_128 digest

_LEN = struct.Struct("<Q")
_FLOAT = struct.Struct("<d")

# Hashing a large buffer in slices keeps non-contiguous arrays from being copied
# whole; 8 MiB slices keep the per-call overhead invisible at ~30 GB/s.
_SLICE_BYTES = 8 << 20
# Fields up to this size are copied into a Hasher's buffer; larger ones are fed
# to the streaming state directly, without a copy.
_BUFFERED_BYTES = 64 << 10


# xxh3_128 of any bytes-like object, without copying it: xxhash's own function, not
# one of ours around it (every cache key of a run is one call).
digest_bytes: Callable[[Any], ContentId] = xxhash.xxh3_128_hexdigest


class Hasher:
    """A streaming digest over self-delimiting fields, under a domain tag.

    Small fields are gathered in a buffer and hashed in one call: keys are made
    of a dozen short fields, and one xxh3 call per field cost more than the
    hashing itself. The digest is that of the same byte stream either way.
    """

    __slots__ = ("_buffer", "_h")

    def __init__(self, domain: str) -> None:
        self._h: Any = None
        self._buffer = bytearray()
        self.text(domain)

    def raw(self, tag: bytes, data: Any) -> Hasher:
        view = memoryview(data).cast("B")
        buffer = self._buffer
        buffer += tag
        buffer += _LEN.pack(len(view))
        if len(view) <= _BUFFERED_BYTES:
            buffer += view
            return self
        if self._h is None:
            self._h = xxhash.xxh3_128()
        self._h.update(buffer)
        buffer.clear()
        self._h.update(view)
        return self

    def text(self, value: str) -> Hasher:
        data = value.encode("utf-8", "surrogatepass")
        buffer = self._buffer
        buffer += b"s"
        buffer += _LEN.pack(len(data))
        buffer += data
        return self

    def texts(self, values: Iterable[str]) -> Hasher:
        """Many text fields: the stream of text() on each, built in one join (an
        artifact of a 256 MiB array names 2,048 chunks, and its id is checked on
        every load)."""
        data = [v.encode("utf-8", "surrogatepass") for v in values]
        if not data:
            return self
        size = len(data[0])
        if all(len(d) == size for d in data):  # chunk ids: one separator for all
            separator = b"s" + _LEN.pack(size)
            self._buffer += separator + separator.join(data)
        else:
            for d in data:
                self._buffer += b"s" + _LEN.pack(len(d)) + d
        return self

    def value(self, value: Any) -> Hasher:
        """Feed the canonical encoding of a parameter-like value."""
        return self.raw(b"v", canonical_encoding(value))

    def hexdigest(self) -> ContentId:
        if self._h is None:
            return xxhash.xxh3_128_hexdigest(self._buffer)
        self._h.update(self._buffer)
        self._buffer.clear()
        return self._h.hexdigest()


def array_digest(array: Any) -> ContentId:
    """Digest of a numpy array's logical content: dtype, shape and elements in C order.

    Fortran-ordered and strided views hash like their C-contiguous copy, slice by
    slice, so a 1 GiB view never costs a 1 GiB copy.
    """
    h = xxhash.xxh3_128()
    dtype = array.dtype
    # A structured dtype's .str is only its size ("|V8"): its fields must be named too.
    dtype_text = dtype.str if dtype.fields is None else repr(dtype.descr)
    header = f"{dtype_text}|{array.shape}".encode()
    h.update(_LEN.pack(len(header)))
    h.update(header)
    if array.dtype.hasobject:
        raise TypeError("object arrays have no byte content to hash")
    if array.flags.c_contiguous:
        h.update(_byte_view(array))
    elif array.ndim and array.shape[0]:
        import numpy as np  # already imported: the caller handed us an array

        row_bytes = max(1, array.itemsize * (array.size // array.shape[0]))
        step = max(1, _SLICE_BYTES // row_bytes)
        for start in range(0, array.shape[0], step):
            h.update(_byte_view(np.ascontiguousarray(array[start : start + step])))
    return h.hexdigest()


def _byte_view(array: Any) -> memoryview:
    """The bytes of a C-contiguous array, without a copy."""
    if array.size == 0:
        return memoryview(b"")  # memoryview refuses to cast a shape with a zero in it
    try:
        return memoryview(array).cast("B")
    except ValueError:
        # datetime64/timedelta64 (and records holding them) export no buffer; a uint8
        # view of the same memory does, and the header keeps the dtype in the digest.
        return memoryview(array.reshape(-1).view("u1"))


# --- canonical encoding of parameter values -------------------------------------------

Encoder = Callable[[Any], Any]
_registered: dict[type, Encoder] = {}


def register_hasher(cls: type, to_canonical: Encoder) -> None:
    """Teach zencache to hash parameters of type `cls`.

    `to_canonical(value)` returns something zencache can already hash (a tuple of
    numbers and strings, say); subclasses use the nearest registered base.
    """
    _registered[cls] = to_canonical


def hash_value(value: Any) -> ContentId:
    """Digest of a value's canonical encoding (domain `zencache/value/v1`)."""
    return Hasher("zencache/value/v1").value(value).hexdigest()


def canonical_encoding(value: Any) -> bytes:
    """Type-tagged, length-prefixed, order-stable bytes of `value`.

    Raises UnhashableParameterError for a value whose content cannot be pinned down
    (an open file, a lock, an arbitrary object whose repr holds its address).
    """
    out = bytearray()
    _encode(value, out, ())
    return bytes(out)


def _field(out: bytearray, tag: bytes, payload: bytes) -> None:
    out += tag
    out += _LEN.pack(len(payload))
    out += payload


def _encode(value: Any, out: bytearray, path: tuple[str, ...]) -> None:
    encoder = _EXACT.get(type(value))
    if encoder is not None:
        encoder(value, out, path)
        return
    _encode_other(value, out, path)


def _enc_none(value: None, out: bytearray, path: tuple[str, ...]) -> None:
    _field(out, b"N", b"")


def _enc_bool(value: bool, out: bytearray, path: tuple[str, ...]) -> None:
    _field(out, b"b", b"\x01" if value else b"\x00")


def _enc_int(value: int, out: bytearray, path: tuple[str, ...]) -> None:
    _field(out, b"i", value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True))


def _enc_float(value: float, out: bytearray, path: tuple[str, ...]) -> None:
    _field(out, b"f", _FLOAT.pack(value))


def _enc_complex(value: complex, out: bytearray, path: tuple[str, ...]) -> None:
    _field(out, b"c", _FLOAT.pack(value.real) + _FLOAT.pack(value.imag))


def _enc_str(value: str, out: bytearray, path: tuple[str, ...]) -> None:
    _field(out, b"s", value.encode("utf-8", "surrogatepass"))


def _enc_bytes(value: Any, out: bytearray, path: tuple[str, ...]) -> None:
    _field(out, b"y", bytes(value))


def _enc_bytearray(value: bytearray, out: bytearray, path: tuple[str, ...]) -> None:
    # Mutable, and compared unequal to nothing it equals: a step may behave
    # differently on it (append, isinstance), so it keys apart from bytes.
    _field(out, b"Y", bytes(value))


def _enc_memoryview(value: memoryview, out: bytearray, path: tuple[str, ...]) -> None:
    # Its format and shape say how the bytes are read (cast("i") views 4 bytes a number).
    header = f"{value.format}|{value.shape}|{int(value.readonly)}".encode()
    _field(out, b"m", _LEN.pack(len(header)) + header + value.tobytes())


def _sequence(tag: bytes) -> Callable[[Any, bytearray, tuple[str, ...]], None]:
    def encode(value: Any, out: bytearray, path: tuple[str, ...]) -> None:
        body = bytearray()
        for i, item in enumerate(value):
            _encode(item, body, (*path, f"[{i}]"))
        _field(out, tag, bytes(body))

    return encode


def _enc_dict(value: dict, out: bytearray, path: tuple[str, ...]) -> None:
    items = []
    for key, item in value.items():
        key_bytes = bytearray()
        _encode(key, key_bytes, (*path, "<key>"))
        item_bytes = bytearray()
        _encode(item, item_bytes, (*path, f"[{key!r}]"))
        items.append((bytes(key_bytes), bytes(item_bytes)))
    items.sort()
    _field(out, b"d", b"".join(k + v for k, v in items))


def _set_of(tag: bytes) -> Callable[[Any, bytearray, tuple[str, ...]], None]:
    def encode(value: Any, out: bytearray, path: tuple[str, ...]) -> None:
        members = []
        for item in value:
            member = bytearray()
            _encode(item, member, (*path, "<member>"))
            members.append(bytes(member))
        members.sort()
        _field(out, tag, b"".join(members))

    return encode


_EXACT: dict[type, Callable[[Any, bytearray, tuple[str, ...]], None]] = {
    type(None): _enc_none,
    bool: _enc_bool,
    int: _enc_int,
    float: _enc_float,
    complex: _enc_complex,
    str: _enc_str,
    bytes: _enc_bytes,
    bytearray: _enc_bytearray,
    memoryview: _enc_memoryview,
    tuple: _sequence(b"t"),
    list: _sequence(b"l"),
    dict: _enc_dict,
    set: _set_of(b"S"),
    frozenset: _set_of(b"F"),
}


_TEXT_MODULES = frozenset({"datetime", "decimal", "_decimal", "fractions", "uuid", "_pydecimal"})


def _qualified(cls: type) -> str:
    return f"{module_label(cls.__module__)}:{cls.__qualname__}"


def module_label(module: str) -> str:
    """A module's name as keys see it: a script run as __main__ is named after its
    file, so that `python flow.py` and `zencache run flow.py:p` share one cache."""
    if module == "__main__":
        main_file = getattr(sys.modules.get("__main__"), "__file__", None)
        if main_file:
            return os.path.splitext(os.path.basename(main_file))[0]
    return module


def _encode_other(value: Any, out: bytearray, path: tuple[str, ...]) -> None:
    cls = type(value)
    for base in cls.__mro__:
        custom = _registered.get(base)
        if custom is not None:
            body = bytearray()
            _encode(_qualified(cls), body, path)
            _encode(custom(value), body, path)
            _field(out, b"R", bytes(body))
            return
    if isinstance(value, enum.Enum):
        body = bytearray()
        _encode(_qualified(cls), body, path)
        _encode(value.value, body, path)
        _field(out, b"E", bytes(body))
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        body = bytearray()
        _encode(_qualified(cls), body, path)
        for f in dataclasses.fields(value):
            _encode(f.name, body, path)
            _encode(getattr(value, f.name), body, (*path, f".{f.name}"))
        _field(out, b"D", bytes(body))
    elif isinstance(value, pathlib.PurePath):
        _field(out, b"p", value.as_posix().encode("utf-8", "surrogatepass"))
    elif any(base.__module__ in _TEXT_MODULES for base in cls.__mro__[:-1]):
        # Dates and times by ISO text (with the offset of an aware value: two instants
        # in other zones differ), timedeltas, zones, decimals, fractions and UUIDs by
        # their exact str(); looked up by module so that none is imported here.
        body = bytearray()
        _encode(_qualified(cls), body, path)
        isoformat = getattr(value, "isoformat", None)
        _encode(isoformat() if callable(isoformat) else str(value), body, path)
        _field(out, b"I", bytes(body))
    elif isinstance(value, collections.OrderedDict):
        body = bytearray()  # order is behaviour here: popitem(), iteration, equality
        _encode(_qualified(cls), body, path)
        _sequence(b"l")([(k, v) for k, v in value.items()], body, path)
        _field(out, b"X", bytes(body))
    elif isinstance(value, collections.defaultdict):
        body = bytearray()
        _encode(_qualified(cls), body, path)
        _encode(_factory_name(value.default_factory), body, path)
        _enc_dict(value, body, path)
        _field(out, b"X", bytes(body))
    elif cls.__module__ == "numpy" and hasattr(value, "dtype"):
        _encode_numpy(value, out, path)
    elif isinstance(value, type):
        _field(out, b"T", _qualified(value).encode())
    elif isinstance(value, tuple | list | dict | set | frozenset | int | float | str | bytes):
        # Subclasses of builtins (a NamedTuple, an IntFlag-free int subclass) keep
        # their class in the encoding so that they do not collide with the base.
        body = bytearray()
        _encode(_qualified(cls), body, path)
        base = next(b for b in cls.__mro__ if b in _EXACT)
        _EXACT[base](value, body, path)
        _field(out, b"X", bytes(body))
    else:
        where = "".join(path) or "value"
        raise UnhashableParameterError(
            f"cannot hash {where} (got {_short_repr(value)} of type {_qualified(cls)}); "
            "pass it as an artifact, add it to ignore=, or register a hasher with "
            "zencache.hashing.register_hasher"
        )


def _factory_name(factory: Any) -> Any:
    """A defaultdict's default_factory: None, a class, or a function by its name
    (its code is the step's business: a function read by the step is fingerprinted)."""
    if factory is None or isinstance(factory, type):
        return factory
    name = getattr(factory, "__qualname__", None)
    if isinstance(name, str):
        return f"{module_label(str(getattr(factory, '__module__', '?')))}:{name}"
    raise UnhashableParameterError(
        f"cannot hash the default_factory of a defaultdict (got {_short_repr(factory)}); "
        "use a class or a named function, or pass the value as an artifact"
    )


def _encode_numpy(value: Any, out: bytearray, path: tuple[str, ...]) -> None:
    if getattr(value, "ndim", 0) == 0 and type(value).__name__ != "ndarray":
        _field(out, b"n", f"{value.dtype.str}|".encode() + value.tobytes())
        return
    if value.dtype.hasobject:
        body = bytearray()
        _encode(str(value.shape), body, path)
        _encode(value.tolist(), body, path)
        _field(out, b"O", bytes(body))
        return
    _field(out, b"A", array_digest(value).encode())


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
