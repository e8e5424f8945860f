"""What `show` and the report say about a value: small values whole, else a summary by type."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC

from zencache.materializers.artifacts import save_artifact
from zencache.materializers.builtin import BuiltinMaterializer, PickleMaterializer
from zencache.results.summary import SMALL_TEXT, describe, render, summarize
from zencache.storage.store import ObjectStore


@pytest.mark.parametrize(
    "value",
    [0, -3, 2.5, True, None, "text", {"accuracy": 0.97, "loss": 0.1}, [1, 2, 3], (1, "a")],
)
def test_small_values_are_shown_whole(value: Any) -> None:
    found = describe(value)
    assert found["kind"] == "value"
    assert found["value"] == (list(value) if isinstance(value, tuple) else value)
    json.dumps(found)


def test_sets_and_nested_odd_keys_become_json() -> None:
    found = describe({1: {3, 1, 2}, "b": b"xy"})
    assert found == {"kind": "value", "value": {"1": [1, 2, 3], "b": "b'xy'"}}


def test_large_containers_and_strings_are_previewed() -> None:
    big = list(range(10_000))
    found = describe(big)
    assert found["kind"] == "container" and found["length"] == 10_000
    assert found["preview"] == list(range(10))
    text = describe("x" * (SMALL_TEXT + 1))
    assert text["kind"] == "text" and text["length"] == SMALL_TEXT + 1
    assert len(text["preview"]) < SMALL_TEXT
    data = describe(bytes(range(200)))
    assert data["kind"] == "bytes" and data["length"] == 200


def test_arrays_show_shape_dtype_and_statistics() -> None:
    found = describe(np.arange(12, dtype=np.float32).reshape(3, 4))
    assert found["kind"] == "array" and found["shape"] == [3, 4] and found["dtype"] == "float32"
    assert found["stats"] == {"min": 0.0, "max": 11.0, "mean": 5.5, "std": pytest.approx(3.45205)}
    assert found["value"] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    large = describe(np.ones((100, 100)))
    assert "value" not in large and large["stats"]["mean"] == 1.0
    json.dumps(large)


def test_arrays_with_nan_bools_strings_and_no_elements() -> None:
    with_nan = describe(np.array([1.0, np.nan, 3.0, np.inf]))
    assert with_nan["non_finite"] == 2
    assert with_nan["stats"]["min"] == 1.0 and with_nan["stats"]["max"] == 3.0
    assert describe(np.array([np.nan]))["non_finite"] == 1
    assert describe(np.array([True, False, True]))["stats"]["mean"] == pytest.approx(0.666667)
    assert "stats" not in describe(np.array(["a", "b"]))
    assert describe(np.zeros((0, 3)))["shape"] == [0, 3]
    assert describe(np.float64(2.5)) == {"kind": "value", "value": 2.5}
    assert describe(np.array(3)) == {"kind": "value", "value": 3}


def test_dataframes_show_shape_dtypes_and_first_rows() -> None:
    frame = pd.DataFrame({"a": range(100), "b": [f"row {i}" for i in range(100)]})
    found = describe(frame)
    assert found["kind"] == "dataframe" and found["shape"] == [100, 2]
    assert found["dtypes"]["a"] == "int64"
    assert found["head"]["columns"] == ["a", "b"]
    assert found["head"]["rows"][0] == [0, "row 0"] and len(found["head"]["rows"]) == 5
    lines = render({"content_id": "c", "type": "pandas.DataFrame", "size": 1, **found})
    assert any("row 4" in line for line in lines)
    series = describe(frame["a"])
    assert series["kind"] == "series" and series["head"]["values"][:2] == [0, 1]


def test_estimators_show_class_parameters_and_whether_fitted() -> None:
    found = describe(SVC(gamma=0.01))
    assert found["kind"] == "estimator" and found["class"] == "sklearn.svm._classes.SVC"
    assert found["params"]["gamma"] == 0.01 and found["fitted"] is False
    fitted = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    assert describe(fitted)["fitted"] is True
    lines = render({"content_id": "c", "type": "t", "size": 1, **found})
    assert any("gamma = 0.01" in line for line in lines)


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque>"


def test_anything_else_is_its_repr_when_short() -> None:
    assert describe(Opaque()) == {"kind": "object", "repr": "<Opaque>"}


def test_summarize_adds_the_record_and_renders(store: ObjectStore) -> None:
    record = save_artifact(store, {"accuracy": 0.9}, BuiltinMaterializer)
    found = summarize(store, record)
    assert found["content_id"] == record.content_id and found["type"] == "builtins.dict"
    assert found["value"] == {"accuracy": 0.9}
    assert render(found)[-1].startswith("(builtins.dict, ")


def test_a_value_that_cannot_be_loaded_is_described_by_its_record(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = save_artifact(store, Opaque(), PickleMaterializer)
    monkeypatch.setenv("ZENCACHE_ALLOW_PICKLE", "0")
    found = summarize(store, record)
    assert found["kind"] == "object" and "ZENCACHE_ALLOW_PICKLE=0" in found["note"]
    assert found["size"] == record.size


def test_non_finite_numbers_stay_numbers() -> None:
    found = describe({"loss": math.nan})
    assert math.isnan(found["value"]["loss"])
