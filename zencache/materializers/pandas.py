"""PandasMaterializer: DataFrames and Series as Parquet (pyarrow), dtypes and index intact.

Claims pandas's types by name; pandas and pyarrow load on first save or load,
and the registry imports this module only when both are installed (the
`zencache[pandas]` extra). Never pickles: object columns pyarrow cannot type are
refused with the fix.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from ..errors import MaterializerError
from .base import BaseMaterializer, Files
from .builtin import BuiltinMaterializer

_DATA = "data.parquet"
_META = "pandas.json"
_SERIES_COLUMN = "__zencache_series__"


class PandasMaterializer(BaseMaterializer):
    """One Parquet file plus a small header for what Parquet's pandas metadata misses.

    pyarrow's metadata keeps dtypes (categoricals, time zones, nullable and string
    dtypes), named and multi-level indexes, and a RangeIndex as metadata only. The
    header adds a Series' name (any type, via the builtin JSON encoding) and the
    index's `freq`, which Parquet drops.
    """

    # pandas 3 sets its public classes' __module__ to "pandas"; pandas 2 does not.
    ASSOCIATED_TYPE_NAMES = (
        "pandas.DataFrame",
        "pandas.Series",
        "pandas.core.frame.DataFrame",
        "pandas.core.series.Series",
    )

    def dump(self, data: Any) -> dict[str, Any]:
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        meta: dict[str, Any] = {"kind": "frame"}
        if isinstance(data, pd.Series):
            meta = {"kind": "series", "name": _encode_name(data.name)}
            frame = data.to_frame(name=_SERIES_COLUMN)
        elif isinstance(data, pd.DataFrame):
            frame = data
        else:
            raise MaterializerError(
                f"PandasMaterializer stores DataFrames and Series, got "
                f"{type(data).__module__}.{type(data).__qualname__}; declare the output's "
                "real type"
            )
        freq = getattr(frame.index, "freqstr", None)
        if freq is not None:
            meta["index_freq"] = freq
        # pandas >= 3 reads Arrow strings back as its `str` dtype; remember which
        # columns and index levels were `object` so that they come back as such.
        meta["object_columns"] = [i for i, dt in enumerate(frame.dtypes) if _is_object(dt)]
        meta["object_index_levels"] = [
            i
            for i in range(frame.index.nlevels)
            if _is_object(frame.index.get_level_values(i).dtype)
        ]
        try:
            table = pa.Table.from_pandas(frame, preserve_index=None)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise MaterializerError(
                f"cannot store a pandas {meta['kind']} as Parquet: {exc}; give its columns "
                "uniform types (e.g. df[col].astype(str) for mixed object columns, unique "
                "column names), or pass @step(materializers={'<output>': PickleMaterializer})"
            ) from exc
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        return {_DATA: buffer.getbuffer(), _META: json.dumps(meta, sort_keys=True).encode()}

    def restore(self, files: Files, data_type: type) -> Any:
        import pyarrow as pa
        import pyarrow.parquet as pq

        meta = json.loads(bytes(files[_META]))
        table = pq.read_table(pa.BufferReader(pa.py_buffer(files[_DATA])))
        frame = table.to_pandas()
        _restore_object_dtypes(frame, table, meta)
        freq = meta.get("index_freq")
        if freq is not None:
            frame.index = type(frame.index)(frame.index, freq=freq)
        if meta["kind"] == "series":
            series = frame[_SERIES_COLUMN]
            series.name = _decode_name(meta["name"])
            return series
        return frame

    def save(self, data: Any) -> None:
        for name, content in self.dump(data).items():
            (Path(self.uri) / name).write_bytes(content)

    def load(self, data_type: type) -> Any:
        root = Path(self.uri)
        return self.restore(
            {name: (root / name).read_bytes() for name in (_DATA, _META)}, data_type
        )


def _restore_object_dtypes(frame: Any, table: Any, meta: dict[str, Any]) -> None:
    """Give back `object` dtype to the columns and index levels that had it.

    Values come from the Arrow column, so a missing string is None again (going
    through pandas's `str` dtype would have made it NaN).
    """
    import pandas as pd

    n_columns = frame.shape[1]
    for i in meta.get("object_columns", ()):
        if not _is_object(frame.dtypes.iloc[i]):
            values = _object_array(table.column(i).to_pylist())
            # A bare object array would be re-inferred as `str`; a Series keeps its dtype.
            frame.isetitem(i, pd.Series(values, index=frame.index, dtype=object, copy=False))
    levels = [
        i
        for i in meta.get("object_index_levels", ())
        if not _is_object(frame.index.get_level_values(i).dtype)
    ]
    if not levels:
        return
    if frame.index.nlevels == 1:
        values = _object_array(table.column(n_columns).to_pylist())
        frame.index = pd.Index(values, dtype=object, name=frame.index.name)
        return
    index = frame.index
    for i in levels:
        index = index.set_levels(index.levels[i].astype(object), level=i)
    frame.index = index


def _is_object(dtype: Any) -> bool:
    # Not `dtype == object`: pandas's string dtypes compare equal to it, and say kind "O".
    import numpy as np

    return isinstance(dtype, np.dtype) and dtype.kind == "O"


def _object_array(values: list[Any]) -> Any:
    import numpy as np

    array = np.empty(len(values), dtype=object)
    array[:] = values  # element by element: a tuple stays one element
    return array


def _encode_name(name: Any) -> str:
    try:
        encoded = BuiltinMaterializer().dump(name)["value.json"]
    except MaterializerError as exc:
        raise MaterializerError(
            f"cannot store the name of a pandas Series ({name!r} of type "
            f"{type(name).__qualname__}): {exc}; rename it with series.rename(str(name))"
        ) from exc
    return bytes(encoded).decode("utf-8", "surrogatepass")


def _decode_name(text: str) -> Any:
    return BuiltinMaterializer().restore(
        {"value.json": text.encode("utf-8", "surrogatepass")}, object
    )
