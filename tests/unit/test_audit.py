"""The audit's pieces that need no subprocess: recorded parameter values, how outputs
differ, fingerprint part changes, environment drift and step classification.
(tests/e2e/test_cli_audit.py audits real runs.)"""

from __future__ import annotations

import enum
import json
import math
import pathlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zencache.hashing import hash_value
from zencache.inspection.audit import (
    NONDETERMINISTIC,
    NOT_CHECKABLE,
    NOT_REPRODUCIBLE,
    REPRODUCIBLE,
    Drift,
    classify,
    environment_drift,
)
from zencache.inspection.audit_worker import code_changes, compare_values
from zencache.materializers.params import (
    MAX_ENCODED,
    ParameterRestoreError,
    decode_param,
    encode_param,
)
from zencache.storage.records import EnvRecord, StepRecord, StepRun


class Color(enum.Enum):
    RED = "red"
    BLUE = 2


# --- parameter values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        1,
        1.0,
        -0.0,
        math.inf,
        2**100,
        1 + 2j,
        "text",
        b"\x00bytes",
        bytearray(b"ba"),
        (1, "1", 1.0),
        [1, [2, (3,)]],
        {"a": 1, "b": [1.5]},
        {1: "int key", (2, 3): "tuple key"},
        {3, 1, 2},
        frozenset({"x"}),
        np.float32(1.5),
        np.int64(-3),
        Color.RED,
        Color.BLUE,
        pathlib.PurePosixPath("data/x.csv"),
        pathlib.Path("/tmp/y"),
        np.arange(12, dtype=np.int16).reshape(3, 4),
        np.asfortranarray(np.ones((2, 3))),
    ],
    ids=repr,
)
def test_a_parameter_comes_back_with_its_digest(value: Any) -> None:
    restored = decode_param(encode_param(value))
    assert type(restored) is type(value)
    assert hash_value(restored) == hash_value(value)


def test_nan_comes_back_bit_for_bit() -> None:
    restored = decode_param(encode_param(float("nan")))
    assert math.isnan(restored) and hash_value(restored) == hash_value(float("nan"))


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (object(), "builtins.object"),
        (np.array([object()], dtype=object), "pickle-free"),
        ("x" * (MAX_ENCODED + 1), "too large to record"),
    ],
    ids=["object", "object array", "large"],
)
def test_a_value_without_an_encoding_records_why(value: Any, why: str) -> None:
    encoded = encode_param(value)
    assert set(encoded) == {"none"} and why in encoded["none"]
    with pytest.raises(ParameterRestoreError, match="its value was not recorded"):
        decode_param(encoded)


def test_an_unreadable_encoding_is_a_restore_error() -> None:
    with pytest.raises(ParameterRestoreError, match="unreadable"):
        decode_param({"json": 1, "extra": 2})
    with pytest.raises(ParameterRestoreError, match="unknown encoding tag"):
        decode_param({"pickle": "gASVAA=="})


# --- how outputs differ ----------------------------------------------------------------------------


def test_arrays_differ_by_their_max_abs_difference() -> None:
    a = np.zeros(10)
    b = a.copy()
    b[3], b[7] = 0.25, -0.5
    found = compare_values(a, b)
    assert found["max_abs_diff"] == 0.5
    assert found["difference"] == "2 of 10 elements differ; max abs difference 0.5"


def test_arrays_of_other_shape_dtype_or_nan_say_so() -> None:
    assert compare_values(np.zeros(3), np.zeros(4))["difference"] == "shape (3,) is now (4,)"
    found = compare_values(np.zeros(3), np.zeros(3, dtype=np.float32))
    assert found["difference"].startswith("dtype float64 is now float32; equal values")
    nan = compare_values(np.array([np.nan, 1.0]), np.array([np.nan, np.inf]))
    assert "NaN or infinite" in nan["difference"]
    unsigned = compare_values(np.array([1], dtype=np.uint8), np.array([3], dtype=np.uint8))
    assert unsigned["max_abs_diff"] == 2.0  # no wrap-around


def test_numbers_and_other_values_differ_readably() -> None:
    assert compare_values(0.5, 0.75)["max_abs_diff"] == 0.25
    assert compare_values([1, 2], [1, 3])["difference"] == "[1, 2] is now [1, 3]"
    assert compare_values(1, "1")["difference"] == "type int is now str"


def test_code_changes_name_every_part() -> None:
    recorded = {"code:m:f": "1", "const:m:X": "2", "dist:numpy": "numpy==1.0", "python": "3.11"}
    now = {"code:m:f": "9", "code:m:g": "3", "dist:numpy": "numpy==2.0", "python": "3.11"}
    assert code_changes(recorded, now) == [
        "changed code:m:f",
        "added code:m:g",
        "removed const:m:X",
        "changed dist:numpy (numpy==1.0 -> numpy==2.0)",
    ]


# --- environments -------------------------------------------------------------------------------------


def env(**changes: Any) -> EnvRecord:
    base = EnvRecord(
        env_id="a" * 32,
        python="3.11.7",
        implementation="cpython",
        platform="Linux-6-x86_64",
        machine="x86_64",
        distributions={"numpy": "2.0.0", "click": "8.1"},
        extra={"numpy_blas": "openblas 0.3"},
    )
    return replace(base, **changes)


def test_drift_lists_interpreter_platform_libraries_and_distributions() -> None:
    now = env(
        env_id="b" * 32,
        python="3.12.1",
        distributions={"numpy": "2.1.0", "rich": "13"},
        extra={"numpy_blas": "mkl 2024"},
    )
    assert [str(d) for d in environment_drift(env(), now)] == [
        "python: 3.11.7 -> 3.12.1",
        "numpy_blas: openblas 0.3 -> mkl 2024",
        "distribution click: 8.1 -> (absent)",
        "distribution numpy: 2.0.0 -> 2.1.0",
        "distribution rich: (absent) -> 13",
    ]


def test_numpy_details_count_only_when_both_recorded_them() -> None:
    assert environment_drift(env(), env(env_id="b" * 32, extra={})) == []
    assert environment_drift(env(), env()) == []


# --- classification -------------------------------------------------------------------------------------


ENTRY = StepRecord(
    key="k" * 32,
    step="flow:f",
    name="f",
    pipeline="p",
    output_ids=("1" * 32, "2" * 32),
    output_names=("a", "b"),
    fingerprint="c" * 32,
)
RUN = StepRun("f", "flow:f", "k" * 32, "executed", 0.1, {"a": "1" * 32, "b": "2" * 32})


def result(a: str, b: str, deterministic: bool = True) -> dict[str, Any]:
    return {
        "status": "ok",
        "deterministic": deterministic,
        "duration": 0.01,
        "outputs": {
            "a": {"id": a, "difference": "" if a == "1" * 32 else "differs a"},
            "b": {"id": b, "difference": "" if b == "2" * 32 else "differs b"},
        },
    }


def test_classification() -> None:
    same = result("1" * 32, "2" * 32)
    assert classify(RUN, ENTRY, [same]).status == REPRODUCIBLE

    other = classify(RUN, ENTRY, [result("1" * 32, "9" * 32)])
    assert other.status == NOT_REPRODUCIBLE
    assert other.reason == "output 'b' differs: recorded 22222222, now 99999999; differs b"

    drifted = classify(RUN, ENTRY, [result("8" * 32, "2" * 32)] * 2)
    assert "executions now agree with each other" in drifted.reason

    unstable = classify(RUN, ENTRY, [same, result("1" * 32, "9" * 32)])
    assert unstable.status == NOT_REPRODUCIBLE
    assert unstable.reason.startswith("nondeterministic: 2 executions now disagree on output 'b'")

    declared = classify(RUN, ENTRY, [result("1" * 32, "9" * 32, deterministic=False)])
    assert declared.status == NONDETERMINISTIC and not declared.failed
    assert declared.reason.startswith("expected: declared @step(deterministic=False)")

    raised = {"status": "failed", "reason": "the step raised OSError: gone", "error": "tb"}
    assert classify(RUN, ENTRY, [raised]).status == NOT_REPRODUCIBLE
    flaky = classify(RUN, ENTRY, [same, {**raised, "deterministic": True}])
    assert flaky.reason.startswith("nondeterministic: one of 2 executions failed")

    missing = {"status": "not checkable", "reason": "inputs missing", "missing_inputs": ["x"]}
    checked = classify(RUN, ENTRY, [missing], drift=(Drift("python", "3.9", "3.11"),))
    assert checked.status == NOT_CHECKABLE and checked.missing_inputs == ("x",)


# --- what a run records for audits -----------------------------------------------------------------


def test_the_environment_gains_numpy_details_once_numpy_is_loaded(python: Any) -> None:
    code = (
        "import json, sys\n"
        "from zencache.fingerprint.environment import current_environment, user_sys_path\n"
        "before = current_environment()\n"
        "import numpy\n"
        "after = current_environment()\n"
        "print(json.dumps([before.env_id, sorted(before.extra), after.env_id,"
        " sorted(after.extra), user_sys_path()]))\n"
    )
    done = python.run(code)
    assert done.returncode == 0, done.stderr
    before_id, before_extra, after_id, after_extra, paths = json.loads(done.stdout)
    assert before_extra == [] and before_id != after_id
    assert after_extra == ["numpy_blas", "numpy_lapack", "numpy_simd"]
    assert all("site-packages" not in p for p in paths)
    assert str(Path.cwd()) in paths  # `python -c` puts the current directory first
