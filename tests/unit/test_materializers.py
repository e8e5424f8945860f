"""Built-in materializers: one contract suite over all of them, then each one's specifics.

Every test goes through save_artifact/load_artifact on a real cache folder (no
mocks). Tests that register materializers do it inside `isolated_registry`, so
that their registrations vanish with the test instead of leaking into others.
"""

from __future__ import annotations

import copy
import enum
import math
import os
import struct
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import pandas as hpd

from zencache import Cache
from zencache.errors import (
    CorruptObjectError,
    MaterializerError,
    MissingObjectError,
    PickleRefusedError,
    UnsafePathError,
)
from zencache.materializers import BaseMaterializer, registry
from zencache.materializers.artifacts import load_artifact, save_artifact
from zencache.materializers.builtin import (
    BuiltinMaterializer,
    BytesMaterializer,
    PickleFallbackWarning,
    PickleMaterializer,
)
from zencache.materializers.numpy import NumpyMaterializer
from zencache.materializers.pandas import PandasMaterializer
from zencache.materializers.sklearn import SklearnMaterializer
from zencache.storage.store import ObjectStore

# --- equality that sees what == hides ---------------------------------------------------


def same(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down, floats by their bits, dicts in order."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return struct.pack(">d", a) == struct.pack(">d", b)
    if type(a) is complex:
        return same(a.real, b.real) and same(a.imag, b.imag)
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        return len(a) == len(b) and all(
            same(ka, kb) and same(va, vb)
            for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    if type(a) in (set, frozenset):
        rest = list(b)
        for x in a:
            match = next((i for i, y in enumerate(rest) if same(x, y)), None)
            if match is None:
                return False
            rest.pop(match)
        return not rest
    if isinstance(a, np.generic):
        return a.dtype == b.dtype and a.tobytes() == b.tobytes()
    return bool(a == b)


def same_array(a: Any, b: Any) -> bool:
    """Same type, dtype (byte order included), shape and bytes; Fortran order kept."""
    return (
        type(a) is type(b)
        and a.dtype == b.dtype
        and a.shape == b.shape
        and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()
        and (a.flags.c_contiguous or not a.flags.f_contiguous or b.flags.f_contiguous)
    )


def same_frame(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    check = (
        pd.testing.assert_series_equal
        if isinstance(a, pd.Series)
        else pd.testing.assert_frame_equal
    )
    check(a, b, check_exact=True, check_index_type=True, check_freq=True)
    return type(a.index) is type(b.index)


def same_model(a: Any, b: Any) -> bool:
    X = _digits()[0]
    return (
        type(a) is type(b)
        and a.get_params() == b.get_params()
        and (a.predict(X) == b.predict(X)).all()
    )


# --- values -----------------------------------------------------------------------------


@dataclass
class Point:
    """Module-level, so that pickle can find it."""

    x: float
    tags: list[str] = field(default_factory=list)


_cache: dict[str, Any] = {}


def _digits() -> tuple[Any, Any]:
    if "digits" not in _cache:
        from sklearn.datasets import load_digits

        digits = load_digits()
        _cache["digits"] = (digits.data[:240], digits.target[:240])
    return _cache["digits"]


def _svc(gamma: float) -> Any:
    key = f"svc-{gamma}"
    if key not in _cache:
        from sklearn.svm import SVC

        X, y = _digits()
        _cache[key] = SVC(gamma=gamma).fit(X, y)
    return _cache[key]


@dataclass(frozen=True)
class Impl:
    """A materializer with values it must handle: examples, two distinct ones, a large one."""

    materializer: type[BaseMaterializer]
    examples: Callable[[], list[Any]]
    distinct: Callable[[], tuple[Any, Any]]
    large: Callable[[], Any]  # bigger than INLINE_LIMIT, so it lives in chunk objects
    equal: Callable[[Any, Any], bool]


IMPLEMENTATIONS = {
    "builtin": Impl(
        BuiltinMaterializer,
        examples=lambda: [
            None,
            True,
            0,
            -(2**200),
            -0.0,
            math.nan,
            -math.inf,
            "héllo\udcff",
            [1, (2, 3.5), {"a": None}],
            {1: "int", (1, 2): "tuple", None: [], False: True, 2.5: {3}},
            (frozenset({1, "a"}), 1 + 2j, b"raw", bytearray(b"buf")),
            {"metrics": {"acc": np.float64(0.9), "n": np.int64(3)}},
        ],
        distinct=lambda: ([1, 2, 3], [1, 2, 4]),
        large=lambda: {f"key{i}": [i, float(i), str(i) * 3] for i in range(2000)},
        equal=same,
    ),
    "bytes": Impl(
        BytesMaterializer,
        examples=lambda: [b"", b"\x00\xff" * 3, bytearray(b"mutable"), bytearray()],
        distinct=lambda: (b"abc", b"abd"),
        large=lambda: bytes(range(256)) * 400,
        equal=same,
    ),
    "numpy": Impl(
        NumpyMaterializer,
        examples=lambda: [
            np.arange(12.0).reshape(3, 4),
            np.asfortranarray(np.arange(12, dtype=">i4").reshape(3, 4)),
            np.arange(30)[::3],
            np.array(7, dtype=np.uint16),
            np.zeros((0, 5), dtype=np.complex64),
            np.array(["2020-01-01", "NaT"], dtype="datetime64[ns]"),
            np.array([True, False]),
            np.array(["ab", "c"]),
            np.zeros(2, dtype=[("a", "<i4"), ("b", ">f8", (2,))]),
        ],
        distinct=lambda: (np.zeros(3), np.ones(3)),
        large=lambda: np.arange(100_000, dtype=np.float64).reshape(1000, 100),
        equal=same_array,
    ),
    "numpy-scalar": Impl(
        NumpyMaterializer,
        examples=lambda: [np.float64(0.25), np.int8(-3), np.bool_(True), np.str_("s")],
        distinct=lambda: (np.float32(1), np.float64(1)),
        large=lambda: np.str_("x" * 5000),
        equal=same,
    ),
    "pandas": Impl(
        PandasMaterializer,
        examples=lambda: [
            pd.DataFrame(
                {
                    "i": [1, 2, 3],
                    "f": [0.5, np.nan, -0.0],
                    "s": ["a", None, "c"],
                    "o": pd.Series(["x", None, "z"], dtype=object),
                    "c": pd.Categorical(["lo", "hi", "lo"], categories=["lo", "hi"], ordered=True),
                    "t": pd.to_datetime(["2020-01-01", None, "2021-06-01"]).tz_localize("UTC"),
                    "n": pd.array([1, None, 3], dtype="Int64"),
                },
                index=pd.Index([10, 20, 30], name="id"),
            ),
            pd.DataFrame({"v": [1.0, 2.0]}, index=pd.RangeIndex(5, 9, 2, name="r")),
            pd.DataFrame({"v": [1, 2]}, index=pd.date_range("2020-01-01", periods=2, freq="D")),
            pd.DataFrame({1: [1], 2: [2]}),
            pd.Series([1.5, 2.5], name=("tuple", 1)),
            pd.Series(["a", "b"], index=pd.Index(["x", "y"], dtype=object), name=None),
        ],
        distinct=lambda: (pd.DataFrame({"a": [1, 2]}), pd.DataFrame({"a": [1, 3]})),
        large=lambda: pd.DataFrame({"a": np.arange(5000), "b": np.arange(5000) * 0.5}),
        equal=same_frame,
    ),
    "sklearn": Impl(
        SklearnMaterializer,
        examples=lambda: [_svc(0.001)],
        distinct=lambda: (_svc(0.001), _svc(0.01)),
        large=lambda: _svc(0.001),
        equal=same_model,
    ),
    "pickle": Impl(
        PickleMaterializer,
        examples=lambda: [Point(1.5, ["a"]), {Point(0.0).x: Point(2.0)}, Point],
        distinct=lambda: (Point(1.0), Point(2.0)),
        large=lambda: Point(0.0, ["tag"] * 3000),
        equal=lambda a, b: a == b,
    ),
}
IMPL_PARAMS = [pytest.param(impl, id=name) for name, impl in IMPLEMENTATIONS.items()]


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return Cache(tmp_path / "cache").store


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> ObjectStore:
    """One store for the property tests: hypothesis reruns a test many times."""
    return Cache(tmp_path_factory.mktemp("hypothesis") / "cache").store


@pytest.fixture
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations made in the test are dropped after it (the tables are global)."""
    registry._load_lazy_families()  # first, so that the built-ins land in the real tables
    for table in ("_by_type_name", "_builtin_by_type_name", "_by_identity"):
        monkeypatch.setattr(registry, table, dict(getattr(registry, table)))


def round_trip(store: ObjectStore, value: Any, materializer: type[BaseMaterializer]) -> Any:
    return load_artifact(store, save_artifact(store, value, materializer))


# --- the contract every materializer passes ---------------------------------------------


@pytest.mark.parametrize("impl", IMPL_PARAMS)
def test_round_trip_is_exact(store: ObjectStore, impl: Impl) -> None:
    for value in [*impl.examples(), impl.large()]:
        loaded = round_trip(store, value, impl.materializer)
        assert impl.equal(value, loaded), (value, loaded)


@pytest.mark.parametrize("impl", IMPL_PARAMS)
def test_declared_type_loads_the_same(store: ObjectStore, impl: Impl) -> None:
    value = impl.examples()[0]
    record = save_artifact(store, value, impl.materializer)
    assert impl.equal(value, load_artifact(store, record, type(value)))


@pytest.mark.parametrize("impl", IMPL_PARAMS)
def test_same_value_has_the_same_id(store: ObjectStore, impl: Impl) -> None:
    for value in [impl.examples()[0], impl.large()]:
        first = save_artifact(store, value, impl.materializer)
        again = save_artifact(store, copy.deepcopy(value), impl.materializer)
        assert first.content_id == again.content_id
        assert first.files == again.files


@pytest.mark.parametrize("impl", IMPL_PARAMS)
def test_different_values_have_different_ids(store: ObjectStore, impl: Impl) -> None:
    a, b = impl.distinct()
    assert (
        save_artifact(store, a, impl.materializer).content_id
        != save_artifact(store, b, impl.materializer).content_id
    )


@pytest.mark.parametrize("impl", IMPL_PARAMS)
def test_a_flipped_byte_on_disk_is_detected(store: ObjectStore, impl: Impl) -> None:
    record = save_artifact(store, impl.large(), impl.materializer)
    chunks = sorted(record.object_ids())
    assert chunks, "the large value must be stored in chunk objects, not inline"
    path = store.path(chunks[len(chunks) // 2])
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(data)
    with pytest.raises(CorruptObjectError):
        load_artifact(store, record)


@pytest.mark.parametrize("impl", IMPL_PARAMS)
def test_a_missing_object_is_detected(store: ObjectStore, impl: Impl) -> None:
    record = save_artifact(store, impl.large(), impl.materializer)
    store.delete(sorted(record.object_ids())[0])
    with pytest.raises(MissingObjectError):
        load_artifact(store, record)


@pytest.mark.parametrize("impl", IMPL_PARAMS)
def test_the_file_api_round_trips_too(tmp_path: Path, impl: Impl) -> None:
    """save/load (ZenML's handle_return/handle_input) over a folder, as a user would call them."""
    value = impl.examples()[0]
    impl.materializer(str(tmp_path)).handle_return(value)
    assert impl.equal(value, impl.materializer(str(tmp_path)).handle_input(type(value)))


# --- property tests -----------------------------------------------------------------------

_hashable = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
    max_leaves=4,
)
_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**300), max_value=2**300)
    | st.floats()
    | st.complex_numbers()
    | st.text()
    | st.binary(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(st.text(max_size=5), inner, max_size=4)
        | st.dictionaries(_hashable, inner, max_size=4)
        | st.sets(_hashable, max_size=4)
        | st.frozensets(_hashable, max_size=4)
    ),
    max_leaves=20,
)
_settings = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_settings
@given(value=_json_values)
def test_builtin_round_trip_property(shared_store: ObjectStore, value: Any) -> None:
    assert same(value, round_trip(shared_store, value, BuiltinMaterializer))


@_settings
@given(value=st.binary(max_size=10_000) | st.binary(max_size=64).map(bytearray))
def test_bytes_round_trip_property(shared_store: ObjectStore, value: Any) -> None:
    assert same(value, round_trip(shared_store, value, BytesMaterializer))


_dtypes = (
    hnp.boolean_dtypes()
    | hnp.integer_dtypes(endianness="?")
    | hnp.unsigned_integer_dtypes(endianness="?")
    | hnp.floating_dtypes(endianness="?")
    | hnp.complex_number_dtypes(endianness="?")
    | hnp.datetime64_dtypes(endianness="?")
    | hnp.timedelta64_dtypes(endianness="?")
    | hnp.unicode_string_dtypes(endianness="?")
    | hnp.byte_string_dtypes()
)
_arrays = hnp.arrays(_dtypes, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6))


@_settings
@given(array=_arrays, layout=st.sampled_from(["C", "F", "strided"]))
def test_numpy_round_trip_property(shared_store: ObjectStore, array: Any, layout: str) -> None:
    if layout == "F":
        array = np.asfortranarray(array)
    elif layout == "strided" and array.ndim:
        array = array[::2]
    loaded = round_trip(shared_store, array, NumpyMaterializer)
    assert same_array(array, loaded)


_frames = hpd.data_frames(
    columns=[
        hpd.column("i", dtype=np.int64),
        hpd.column("f", dtype=np.float64),
        hpd.column("b", dtype=bool),
        hpd.column("u", dtype=np.uint8),
        hpd.column("t", dtype="datetime64[ns]"),
        hpd.column("s", elements=st.text(st.characters(exclude_categories=["Cs"]), max_size=4)),
    ],
    index=hpd.range_indexes(max_size=8) | hpd.indexes(dtype=np.int64, max_size=8),
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(frame=_frames)
def test_pandas_round_trip_property(shared_store: ObjectStore, frame: Any) -> None:
    assert same_frame(frame, round_trip(shared_store, frame, PandasMaterializer))


# --- which materializer a type gets ----------------------------------------------------------


class _IntFlavour(enum.IntEnum):
    ONE = 1


def test_builtin_types_and_containers_get_the_builtin_materializers() -> None:
    for cls in (int, float, bool, str, type(None), list, dict, tuple, complex, set, frozenset):
        assert registry.for_type(cls) is BuiltinMaterializer, cls
    assert registry.for_type(list[int]) is BuiltinMaterializer
    assert registry.for_type(dict[str, Any]) is BuiltinMaterializer
    assert registry.for_type(bytes) is BytesMaterializer
    assert registry.for_type(bytearray) is BytesMaterializer


def test_third_party_types_get_theirs_by_name() -> None:
    from sklearn import base
    from sklearn.linear_model import LinearRegression
    from sklearn.svm import SVC

    assert registry.for_type(np.ndarray) is NumpyMaterializer
    assert registry.for_type(Annotated[np.ndarray, "X_train"]) is NumpyMaterializer
    assert registry.for_type(np.float64) is NumpyMaterializer  # numpy.generic precedes float
    assert registry.for_type(pd.DataFrame) is PandasMaterializer
    assert registry.for_type(pd.Series) is PandasMaterializer
    for cls in (
        base.ClassifierMixin,  # not a BaseEstimator subclass: claimed by its own name
        base.RegressorMixin,
        base.TransformerMixin,
        base.ClusterMixin,
        base.BaseEstimator,
        SVC,
        LinearRegression,
    ):
        assert registry.for_type(cls) is SklearnMaterializer, cls


def test_too_general_types_decide_at_run_time() -> None:
    assert registry.for_type(Any) is None
    assert registry.for_type(object) is None
    assert registry.for_type(int | str) is None


@pytest.mark.usefixtures("isolated_registry")
def test_the_most_specific_type_in_the_mro_wins() -> None:
    class Animal:
        pass

    class Dog(Animal):
        pass

    class Puppy(Dog):
        pass

    class AnimalMaterializer(PickleMaterializer):
        ASSOCIATED_TYPES = (Animal,)

    class DogMaterializer(PickleMaterializer):
        ASSOCIATED_TYPES = (Dog,)

    assert registry.for_type(Animal) is AnimalMaterializer
    assert registry.for_type(Dog) is DogMaterializer
    assert registry.for_type(Puppy) is DogMaterializer
    assert registry.for_value(Puppy()) is DogMaterializer
    # bool is more specific than int, each has its own entry:
    assert registry.for_type(bool) is BuiltinMaterializer


@pytest.mark.usefixtures("isolated_registry")
def test_a_users_materializer_beats_the_builtin_one(store: ObjectStore) -> None:
    class MyInt(BuiltinMaterializer):
        ASSOCIATED_TYPES = (int,)

    assert registry.for_type(int) is MyInt
    assert registry.for_value(7) is MyInt
    assert registry.for_type(bool) is BuiltinMaterializer  # its own, more specific, entry
    assert registry.for_type(float) is BuiltinMaterializer
    record = save_artifact(store, 7, MyInt)
    assert record.materializer == MyInt.identity()
    assert load_artifact(store, record) == 7


def test_an_unknown_type_falls_back_to_pickle_and_warns_once() -> None:
    class Unknown:
        pass

    with pytest.warns(PickleFallbackWarning, match=r"Unknown.*pickle.*untrusted cache"):
        assert registry.for_value(Unknown()) is PickleMaterializer
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert registry.for_value(Unknown()) is PickleMaterializer  # once per type
    assert registry.for_type(Unknown) is None


# --- pickle refusal -----------------------------------------------------------------------


def test_allow_pickle_0_refuses_pickle_but_not_the_rest(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_record = save_artifact(store, _svc(0.001), SklearnMaterializer)
    point_record = save_artifact(store, Point(1.0), PickleMaterializer)
    monkeypatch.setenv("ZENCACHE_ALLOW_PICKLE", "0")
    for record in (model_record, point_record):
        with pytest.raises(PickleRefusedError, match="ZENCACHE_ALLOW_PICKLE=0"):
            load_artifact(store, record)
    with pytest.raises(PickleRefusedError):
        save_artifact(store, _svc(0.01), SklearnMaterializer)
    with pytest.raises(PickleRefusedError):
        save_artifact(store, Point(2.0), PickleMaterializer)
    assert round_trip(store, {"a": (1, 2)}, BuiltinMaterializer) == {"a": (1, 2)}
    assert round_trip(store, b"x", BytesMaterializer) == b"x"
    assert (round_trip(store, np.arange(3), NumpyMaterializer) == np.arange(3)).all()
    frame = pd.DataFrame({"a": [1]})
    assert same_frame(frame, round_trip(store, frame, PandasMaterializer))


# --- path safety --------------------------------------------------------------------------


@pytest.mark.usefixtures("isolated_registry")
def test_a_link_out_of_the_folder_is_refused(store: ObjectStore, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")

    class LinkingMaterializer(BaseMaterializer):
        def save(self, data: Any) -> None:
            os.symlink(secret, os.path.join(self.uri, "data"))

    class LinkedFolderMaterializer(BaseMaterializer):
        def save(self, data: Any) -> None:
            os.symlink(tmp_path, os.path.join(self.uri, "folder"))

    for materializer in (LinkingMaterializer, LinkedFolderMaterializer):
        with pytest.raises(UnsafePathError, match="outside the materializer's folder"):
            save_artifact(store, 1, materializer)


@pytest.mark.usefixtures("isolated_registry")
def test_file_names_that_escape_are_refused(store: ObjectStore, tmp_path: Path) -> None:
    class FileMaterializer(BaseMaterializer):
        def save(self, data: Any) -> None:
            Path(self.uri, "value").write_text(str(data))

        def load(self, data_type: type) -> Any:
            return Path(self.uri, "value").read_text()

    for name in ("../x", "a/../../x", "/etc/passwd"):
        with pytest.raises(UnsafePathError, match="escape"):
            FileMaterializer().restore({name: b"1"}, str)

    class EscapingDump(BytesMaterializer):
        def dump(self, data: Any) -> dict[str, Any]:
            return {"../x": data}

    with pytest.raises(UnsafePathError):
        save_artifact(store, b"data", EscapingDump)
    assert not (tmp_path / "x").exists()


# --- builtin specifics --------------------------------------------------------------------


def test_builtin_encoding_is_pinned() -> None:
    """These bytes enter content ids: changing them must come with a VERSION bump."""
    value = {"a": (1, 2.5, None), 3: [True, -0.0, math.inf, 2**70], "s": {"y", "x"}}
    assert BuiltinMaterializer().dump(value)["value.json"] == (
        b'{"m":[["a",{"t":[1,2.5,null]}],[3,[true,-0.0,{"f":"7ff0000000000000"},'
        b'{"i":"400000000000000000"}]],["s",{"s":["x","y"]}]]}'
    )
    assert BuiltinMaterializer.VERSION == "1"


def test_builtin_keeps_dict_order_and_sets_do_not_depend_on_it(store: ObjectStore) -> None:
    loaded = round_trip(store, {"b": 1, "a": 2}, BuiltinMaterializer)
    assert list(loaded) == ["b", "a"]
    members = [f"member{i}" for i in range(50)]
    one, other = set(members), set(reversed(members))
    assert (
        save_artifact(store, one, BuiltinMaterializer).content_id
        == save_artifact(store, other, BuiltinMaterializer).content_id
    )


def test_builtin_refuses_what_json_cannot_hold_and_says_where() -> None:
    with pytest.raises(
        MaterializerError,
        match=r"value\['weights'\]\[1\] of type numpy\.ndarray.*PickleMaterializer",
    ):
        BuiltinMaterializer().dump({"weights": [1, np.zeros(3)]})
    with pytest.raises(MaterializerError, match=r"subclass of int.*int\(\.\.\.\)"):
        BuiltinMaterializer().dump([_IntFlavour.ONE])
    looped: list[Any] = []
    looped.append(looped)
    with pytest.raises(MaterializerError, match="contains itself"):
        BuiltinMaterializer().dump(looped)


def test_builtin_refusal_surfaces_through_save_artifact(store: ObjectStore) -> None:
    with pytest.raises(MaterializerError, match=r"numpy\.ndarray"):
        save_artifact(store, {"a": np.zeros(2)}, BuiltinMaterializer)


def test_numpy_scalar_declared_as_float_keeps_its_numpy_type(store: ObjectStore) -> None:
    """A step declared `-> float` that returns np.float64 gets the builtin materializer
    (declared type), which keeps numpy scalars exactly: np.float64 back, equal to the float."""
    value = np.float64(0.1) * 3
    assert registry.for_type(float) is BuiltinMaterializer
    loaded = round_trip(store, value, BuiltinMaterializer)
    assert type(loaded) is np.float64 and loaded == value
    assert registry.for_value(value) is NumpyMaterializer
    assert type(round_trip(store, value, NumpyMaterializer)) is np.float64


# --- numpy specifics ----------------------------------------------------------------------


@pytest.mark.parametrize("order", ["C", "F"])
def test_numpy_dump_does_not_copy_contiguous_arrays(order: str) -> None:
    array = np.arange(24.0).reshape(4, 6, order=order)
    raw = NumpyMaterializer().dump(array)["array.bin"]
    assert np.shares_memory(np.frombuffer(raw, dtype=np.uint8), array)


def test_numpy_restore_wraps_the_buffer_it_is_given() -> None:
    array = np.asfortranarray(np.arange(24.0).reshape(4, 6))
    files = NumpyMaterializer().dump(array)
    buffer = bytearray(files["array.bin"])
    loaded = NumpyMaterializer().restore(
        {"array.json": files["array.json"], "array.bin": buffer}, np.ndarray
    )
    assert np.shares_memory(loaded, np.frombuffer(buffer, dtype=np.uint8))
    assert loaded.flags.f_contiguous and loaded.flags.writeable
    assert same_array(array, loaded)


def test_numpy_small_arrays_load_writable(store: ObjectStore) -> None:
    loaded = round_trip(store, np.arange(3), NumpyMaterializer)
    loaded[0] = 5  # inline bytes were immutable; the loaded array must not be


def test_numpy_refuses_object_arrays_with_the_fix(store: ObjectStore) -> None:
    with pytest.raises(MaterializerError, match=r"dtype object.*never pickles.*PickleMaterializer"):
        save_artifact(store, np.array([{"a": 1}, None], dtype=object), NumpyMaterializer)
    with pytest.raises(MaterializerError, match="dtype"):
        save_artifact(store, np.zeros(2, dtype=[("o", "O")]), NumpyMaterializer)
    files = NumpyMaterializer().dump(np.zeros(2))
    header = files["array.json"].replace(b"<f8", b"|O")
    with pytest.raises(MaterializerError, match="never pickles"):
        NumpyMaterializer().restore(
            {"array.json": header, "array.bin": files["array.bin"]}, np.ndarray
        )


def test_numpy_refuses_subclasses_whose_state_the_buffer_misses(store: ObjectStore) -> None:
    masked = np.ma.masked_array([1, 2, 3], mask=[0, 1, 0])
    with pytest.raises(MaterializerError, match=r"MaskedArray.*np\.asarray"):
        save_artifact(store, masked, NumpyMaterializer)


# --- dedupe -------------------------------------------------------------------------------


def test_versions_that_differ_in_one_percent_of_rows_share_their_chunks(store: ObjectStore) -> None:
    rows, cols = 8192, 128  # 8 MiB of float64
    array = np.random.default_rng(0).standard_normal((rows, cols))
    block = rows // 100
    one_version = array.nbytes
    for version in range(10):
        start = (version * 811) % (rows - block)
        array[start : start + block] += 1.0
        save_artifact(store, array, NumpyMaterializer)
    stored = sum(size for _, size in store.iter_objects())
    assert stored <= 1.3 * one_version, stored / one_version


def test_identical_arrays_are_stored_once(store: ObjectStore) -> None:
    array = np.random.default_rng(1).standard_normal((512, 128))
    first = save_artifact(store, array, NumpyMaterializer)
    objects = dict(store.iter_objects())
    second = save_artifact(store, array.copy(), NumpyMaterializer)
    assert second.content_id == first.content_id
    assert dict(store.iter_objects()) == objects


# --- import cost --------------------------------------------------------------------------


def test_registering_the_builtins_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "import zencache.io.fileio, zencache.materializers.builtin, zencache.materializers.numpy\n"
        "import zencache.materializers.sklearn, zencache.materializers.pandas\n"
        "from zencache.materializers import registry\n"
        "assert registry.for_type(dict) is not None and registry.for_type(list[int]) is not None\n"
        "assert registry.for_type(bytes) is not None and registry.for_type(object) is None\n"
        "heavy = {'numpy', 'sklearn', 'joblib', 'pandas', 'pyarrow'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert result.returncode == 0, result.stderr
