"""What `zencache show` and the HTML report say about an artifact: its value when
small, else a summary by type (arrays: shape, dtype, statistics; DataFrames:
shape, dtypes, first rows; scikit-learn estimators: class and parameters; else
size and content id). Data first (a JSON-able dict), phrased by `render`.

Imports records, the store and materializers; numpy and pandas are never
imported here: a value of theirs arrives with its module already loaded.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from ..errors import ZencacheError
from ..materializers.artifacts import load_artifact
from ..storage.records import ArtifactRecord
from ..storage.store import ObjectStore

# A value whose JSON is at most this long is shown whole.
SMALL_TEXT = 2000
# Values whose stored size is above this are not loaded for a summary, except
# arrays (mapped, not read) and DataFrames (their loader reads only what it needs).
MAX_LOAD = 64 << 20
PREVIEW_ITEMS = 10
HEAD_ROWS = 5

_LOADED_WHEN_LARGE = ("numpy", "pandas")


def summarize(store: ObjectStore, record: ArtifactRecord) -> dict[str, Any]:
    """A JSON-able description of the artifact, its value loaded through its
    materializer when that is worth it; a value that cannot be loaded is
    described by its record, with the reason."""
    out: dict[str, Any] = {
        "content_id": record.content_id,
        "type": record.type_name.replace(":", "."),
        "materializer": record.materializer,
        "size": record.size,
    }
    module = record.materializer.partition(":")[0].rpartition(".")[2]
    if record.size > MAX_LOAD and module not in _LOADED_WHEN_LARGE:
        out["kind"] = "object"
        out["note"] = f"not loaded: {record.size} bytes"
        return out
    try:
        value = load_artifact(store, record)
    except ZencacheError as exc:
        out["kind"] = "object"
        out["note"] = f"not loaded: {str(exc).splitlines()[0]}"
        return out
    out.update(describe(value))
    return out


def describe(value: Any) -> dict[str, Any]:
    """The value itself when small, else what its type says about it."""
    cls = type(value)
    module = cls.__module__.partition(".")[0]
    if module == "numpy" and getattr(value, "shape", None) == () and hasattr(value, "item"):
        return {"kind": "value", "value": jsonable(value.item())}  # a scalar or 0-d array
    if module == "numpy" and hasattr(value, "shape") and hasattr(value, "dtype"):
        return _array(value)
    if module == "pandas" and hasattr(value, "columns") and hasattr(value, "dtypes"):
        return _frame(value)
    if module == "pandas" and hasattr(value, "dtype") and hasattr(value, "shape"):
        return _series(value)
    if callable(getattr(value, "get_params", None)) and _is_estimator(cls):
        return _estimator(value)
    if isinstance(value, str | bytes | bytearray):
        return _text(value)
    if value is None or isinstance(value, bool | int | float | complex):
        return {"kind": "value", "value": jsonable(value)}
    if isinstance(value, dict | list | tuple | set | frozenset):
        return _container(value)
    text = _short_repr(value)
    return {"kind": "object", **({"repr": text} if text is not None else {})}


def jsonable(value: Any) -> Any:
    """The value as JSON data: containers become lists and objects, anything else
    that JSON has no word for becomes its repr (non-finite floats stay as NaN,
    inf: json.dumps writes them, and the report escapes them)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, str) else k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        items = [jsonable(v) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return sorted(items, key=repr)
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        return jsonable(value.item())  # a numpy scalar
    return repr(value)


def _container(value: Any) -> dict[str, Any]:
    data = jsonable(value)
    if len(_dumps(data)) <= SMALL_TEXT:
        return {"kind": "value", "value": data}
    items = list(data.items())[:PREVIEW_ITEMS] if isinstance(data, dict) else data[:PREVIEW_ITEMS]
    preview = dict(items) if isinstance(data, dict) else items
    return {
        "kind": "container",
        "length": len(value),
        "preview": _clip(preview),
    }


def _clip(data: Any) -> Any:
    """A preview whose leaves are short: long strings and deep values cut."""
    text = _dumps(data)
    if len(text) <= SMALL_TEXT:
        return data
    return text[: SMALL_TEXT - 3] + "..."


def _text(value: str | bytes | bytearray) -> dict[str, Any]:
    if isinstance(value, str):
        if len(value) <= SMALL_TEXT:
            return {"kind": "value", "value": value}
        return {"kind": "text", "length": len(value), "preview": value[: SMALL_TEXT // 4] + "..."}
    data = bytes(value)
    if len(data) <= 64:
        return {"kind": "value", "value": repr(data)}
    return {"kind": "bytes", "length": len(data), "preview": data[:32].hex() + "..."}


def _array(value: Any) -> dict[str, Any]:
    np = sys.modules["numpy"]
    out: dict[str, Any] = {
        "kind": "array",
        "shape": list(value.shape),
        "dtype": str(value.dtype),
    }
    if value.size and value.size <= 20 and value.ndim <= 2:
        out["value"] = jsonable(value.tolist())
    numeric = value.dtype.kind in "biuf" and value.size > 0
    if numeric:
        data = value.astype(np.float64, copy=False) if value.dtype.kind == "b" else value
        finite = np.isfinite(data) if value.dtype.kind == "f" else None
        missing = int(value.size - np.count_nonzero(finite)) if finite is not None else 0
        if missing < value.size:
            with np.errstate(all="ignore"):
                stats = {
                    "min": np.nanmin(np.where(finite, data, np.nan)) if missing else data.min(),
                    "max": np.nanmax(np.where(finite, data, np.nan)) if missing else data.max(),
                    "mean": np.nanmean(np.where(finite, data, np.nan)) if missing else data.mean(),
                    "std": np.nanstd(np.where(finite, data, np.nan)) if missing else data.std(),
                }
            out["stats"] = {k: _number(v) for k, v in stats.items()}
        if missing:
            out["non_finite"] = missing
    return out


def _frame(value: Any) -> dict[str, Any]:
    head = value.head(HEAD_ROWS)
    return {
        "kind": "dataframe",
        "shape": list(value.shape),
        "dtypes": {str(c): str(t) for c, t in value.dtypes.items()},
        "head": {
            "columns": [str(c) for c in head.columns],
            "index": [_cell(i) for i in head.index],
            "rows": [[_cell(v) for v in row] for row in head.itertuples(index=False)],
        },
    }


def _series(value: Any) -> dict[str, Any]:
    head = value.head(HEAD_ROWS)
    return {
        "kind": "series",
        "shape": list(value.shape),
        "dtype": str(value.dtype),
        "name": None if value.name is None else str(value.name),
        "head": {"index": [_cell(i) for i in head.index], "values": [_cell(v) for v in head]},
    }


def _is_estimator(cls: type) -> bool:
    return any(
        base.__module__.startswith("sklearn.") and base.__name__ == "BaseEstimator"
        for base in cls.__mro__
    )


def _estimator(value: Any) -> dict[str, Any]:
    cls = type(value)
    try:
        params = value.get_params(deep=False)
    except Exception as exc:  # a broken estimator still gets its class shown
        params = {"<error>": f"{type(exc).__name__}: {exc}"}
    fitted = sorted(name for name in vars(value) if name.endswith("_") and not name.startswith("_"))
    return {
        "kind": "estimator",
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "params": {name: _param(v) for name, v in sorted(params.items())},
        "fitted": bool(fitted),
        "fitted_attributes": fitted[:PREVIEW_ITEMS],
    }


def _param(value: Any) -> Any:
    data = jsonable(value)
    return data if len(_dumps(data)) <= 200 else _short_repr(value) or type(value).__name__


def _cell(value: Any) -> Any:
    data = jsonable(value)
    if isinstance(data, str) and len(data) > 60:
        return data[:57] + "..."
    if isinstance(data, list | dict):
        text = _dumps(data)
        return text if len(text) <= 60 else text[:57] + "..."
    return data


def _number(value: Any) -> float | int:
    number = value.item() if hasattr(value, "item") else value
    if isinstance(number, float) and math.isfinite(number):
        return float(f"{number:.6g}")
    return number  # type: ignore[no-any-return]


def _short_repr(value: Any) -> str | None:
    try:
        text = repr(value)
    except Exception:
        return None
    return text if len(text) <= 200 else None


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, default=repr)


# --- phrasing ------------------------------------------------------------------------------


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def render(summary: dict[str, Any]) -> list[str]:
    """The summary as lines of text (what `zencache show` prints)."""
    kind = summary.get("kind")
    facts = f"{summary['type']}, {human_size(summary['size'])}, id {summary['content_id']}"
    if kind == "value":
        value = summary["value"]
        text = value if isinstance(value, str) else _pretty(value)
        return [*text.splitlines(), f"({facts})"]
    lines = [facts]
    if kind == "array":
        lines.append(f"shape {tuple(summary['shape'])}, dtype {summary['dtype']}")
        if "stats" in summary:
            lines.append("  ".join(f"{k} {v}" for k, v in summary["stats"].items()))
        if summary.get("non_finite"):
            lines.append(f"{summary['non_finite']} NaN or infinite values")
        if "value" in summary:
            lines.append(f"value {_dumps(summary['value'])}")
    elif kind == "dataframe":
        rows, cols = summary["shape"]
        lines.append(f"shape ({rows}, {cols})")
        lines.append("dtypes: " + ", ".join(f"{c}: {t}" for c, t in summary["dtypes"].items()))
        lines.extend(_table(summary["head"]))
    elif kind == "series":
        lines.append(f"shape {tuple(summary['shape'])}, dtype {summary['dtype']}")
        head = summary["head"]
        lines.extend(f"{i}  {v}" for i, v in zip(head["index"], head["values"], strict=False))
    elif kind == "estimator":
        lines.append(f"{summary['class']} ({'fitted' if summary['fitted'] else 'not fitted'})")
        lines.extend(f"  {name} = {v!r}" for name, v in summary["params"].items())
    elif kind in ("container", "text", "bytes"):
        lines.append(f"length {summary['length']}; first items:")
        preview = summary["preview"]
        lines.extend(("  " + line) for line in _pretty(preview).splitlines())
    else:
        if "repr" in summary:
            lines.append(summary["repr"])
        if "note" in summary:
            lines.append(summary["note"])
    return lines


def _pretty(data: Any) -> str:
    if isinstance(data, str):
        return data
    text = _dumps(data)
    return (
        text if len(text) <= 100 else json.dumps(data, indent=2, ensure_ascii=False, default=repr)
    )


def _table(head: dict[str, Any]) -> list[str]:
    header = ["", *head["columns"]]
    rows = [[str(i), *map(str, row)] for i, row in zip(head["index"], head["rows"], strict=False)]
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    return [
        "  ".join(cell.rjust(w) for cell, w in zip(r, widths, strict=False))
        for r in [header, *rows]
    ]
