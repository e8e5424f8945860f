"""NumpyMaterializer: numpy arrays and scalars as a JSON header plus their raw buffer.

Claims numpy's types by name and imports numpy only inside its methods, so that
registering it (at the first lookup) costs nothing. Never unpickles: arrays that
hold Python objects are refused, in both directions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import MaterializerError
from .base import BaseMaterializer, Files

_HEADER = "array.json"
_DATA = "array.bin"
_ORDERS = ("C", "F")


class NumpyMaterializer(BaseMaterializer):
    """Any ndarray without object fields, of any shape and memory order; numpy scalars.

    The buffer is stored in the array's own order (C or Fortran, recorded in the
    header), so saving a contiguous array copies nothing; a strided view is made
    contiguous first. Loading wraps the buffer it is given: no copy either.
    """

    ASSOCIATED_TYPE_NAMES = ("numpy.ndarray", "numpy.generic")
    MAPS_FILES = True  # a large array is loaded as a private map of its chunks

    def dump(self, data: Any) -> dict[str, Any]:
        import numpy as np

        scalar = isinstance(data, np.generic)
        if not scalar and type(data) not in (np.ndarray, np.memmap):
            # A subclass carries state the buffer does not (a mask, a matrix's
            # 2-d-ness); storing the buffer alone would return different data.
            raise MaterializerError(
                f"cannot store a {type(data).__module__}.{type(data).__qualname__} with the numpy "
                "materializer, which keeps plain ndarrays only; convert it with np.asarray(...), "
                "or pass @step(materializers={'<output>': PickleMaterializer})"
            )
        array = np.asarray(data)
        _refuse_objects(array.dtype, array.shape)
        if array.flags.c_contiguous:
            order = "C"
        elif array.flags.f_contiguous:
            order = "F"
        else:
            array, order = np.ascontiguousarray(array), "C"
        header = {
            "dtype": _dtype_to_json(array.dtype),
            "shape": list(array.shape),
            "order": order,
            "scalar": scalar,
        }
        return {
            _HEADER: json.dumps(header, separators=(",", ":")).encode(),
            _DATA: _raw_view(array, order),
        }

    def restore(self, files: Files, data_type: type) -> Any:
        import numpy as np

        try:
            header = json.loads(bytes(files[_HEADER]))
            buffer = files[_DATA]
            dtype = _dtype_from_json(header["dtype"])
            shape = tuple(int(n) for n in header["shape"])
            order = header["order"]
        except (KeyError, TypeError, ValueError) as exc:
            raise MaterializerError(
                f"numpy artifact has an unreadable header ({exc}); it was written by another "
                "version of zencache: rerun the step to rewrite it"
            ) from exc
        _refuse_objects(dtype, shape)
        count = _product(shape)
        if order not in _ORDERS or len(memoryview(buffer)) != count * dtype.itemsize:
            raise MaterializerError(
                f"numpy artifact: {len(memoryview(buffer))} bytes for an array of shape {shape}, "
                f"dtype {dtype}, order {order!r}; rerun the step to rewrite it"
            )
        if isinstance(buffer, bytes):
            # Immutable bytes come only from small inline records: copying them is
            # free, and gives every loaded array the same (writable) behaviour.
            buffer = bytearray(buffer)
        if count == 0 or dtype.itemsize == 0:
            array = np.empty(shape, dtype=dtype, order=order)
        else:
            array = np.frombuffer(buffer, dtype=dtype, count=count).reshape(shape, order=order)
        return array[()] if header.get("scalar") else array

    def save(self, data: Any) -> None:
        for name, content in self.dump(data).items():
            (Path(self.uri) / name).write_bytes(content)

    def load(self, data_type: type) -> Any:
        return self.restore(
            {name: (Path(self.uri) / name).read_bytes() for name in (_HEADER, _DATA)}, data_type
        )


def _refuse_objects(dtype: Any, shape: tuple[int, ...]) -> None:
    if dtype.hasobject:
        raise MaterializerError(
            f"cannot store a numpy array of dtype {dtype} (shape {tuple(shape)}): it holds Python "
            "objects, which only pickle can store, and the numpy materializer never pickles; "
            "convert it to a fixed dtype (e.g. arr.astype(float) or arr.astype(str)), or pass "
            "@step(materializers={'<output>': PickleMaterializer}) if you trust the cache"
        )


def _raw_view(array: Any, order: str) -> memoryview:
    """The bytes of a contiguous array in its own order, without a copy.

    memoryview(array) would refuse datetime64 (no buffer format for it), so view
    the flattened array as bytes instead.
    """
    import numpy as np

    if array.size == 0 or array.dtype.itemsize == 0:
        return memoryview(b"")
    return memoryview(array.reshape(-1, order=order).view(np.uint8))


def _dtype_to_json(dtype: Any) -> Any:
    if dtype.fields is None and dtype.subdtype is None:
        return dtype.str  # '<f8', '<M8[ns]', '<U5': byte order and unit included
    from numpy.lib import format as npy_format

    return npy_format.dtype_to_descr(dtype)


def _dtype_from_json(descr: Any) -> Any:
    import numpy as np

    if isinstance(descr, str):
        return np.dtype(descr)
    from numpy.lib import format as npy_format

    return npy_format.descr_to_dtype(_descr_tuples(descr))


def _descr_tuples(descr: Any) -> Any:
    """JSON turned the descr's tuples into lists; numpy wants its fields as tuples."""
    if isinstance(descr, str):
        return descr
    fields = []
    for field in descr:
        name = tuple(field[0]) if isinstance(field[0], list) else field[0]
        shape = tuple(tuple(dims) for dims in field[2:3])  # present for sub-arrays only
        fields.append((name, _descr_tuples(field[1]), *shape))
    return fields


def _product(shape: tuple[int, ...]) -> int:
    count = 1
    for n in shape:
        count *= n
    return count
