"""executors/execute.py: the one step-execution core the runner, the process and Dask
workers and the audit worker share: inputs in, the function called, outputs split,
checked and written to a real object store."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Annotated

import pytest

import zencache
from zencache import Output, step
from zencache.errors import StepFailedError, StepOutputError
from zencache.executors.execute import (
    DamagedInputs,
    call_step,
    execute_step,
    load_inputs,
    materialize,
    split_outputs,
)
from zencache.materializers.artifacts import load_artifact
from zencache.storage.store import ObjectStore

PACKAGE = Path(zencache.__file__).parent
BIG = list(range(5000))  # larger than the inline limit: its bytes live in the store


@step
def pair(n: int = 2) -> Output(low=list, high=list):
    return list(range(n)), list(range(n, 2 * n))


@step
def one(x: list) -> int:
    return len(x)


@step
def nothing() -> None:
    return None


@step
def annotated() -> tuple[Annotated[int, "a"], Annotated[str, "b"]]:
    return 1, "b"


@step
def boom(x: int = 0) -> int:
    raise ValueError(f"bad x {x}")


def test_outputs_are_split_by_name_and_type_checked() -> None:
    assert split_outputs("pair", pair.outputs, ([0], [1])) == {"low": [0], "high": [1]}
    assert split_outputs("annotated", annotated.outputs, [1, "b"]) == {"a": 1, "b": "b"}
    assert split_outputs("nothing", nothing.outputs, None) == {}
    assert split_outputs("one", one.outputs, 3) == {"output": 3}


@pytest.mark.parametrize(
    ("fn", "returned", "message"),
    [
        (pair, ([0],), r"'pair' must return 2 values \(low, high\) but returned 1 values"),
        (pair, 5, r"'pair' must return 2 values \(low, high\) but returned int"),
        (nothing, 3, r"'nothing' is declared to return None but returned int"),
        (one, "three", r"output 'output' of step 'one' is declared int but the step returned"),
    ],
)
def test_outputs_that_do_not_fit_say_what_was_declared(fn, returned, message: str) -> None:
    with pytest.raises(StepOutputError, match=message):
        split_outputs(fn.name, fn.outputs, returned)


def test_the_audit_skips_the_type_check_but_not_the_count() -> None:
    assert split_outputs("one", one.outputs, "three", check_types=False) == {"output": "three"}
    with pytest.raises(StepOutputError):
        split_outputs("pair", pair.outputs, 5, check_types=False)


def test_an_int_is_an_acceptable_float() -> None:
    @step
    def ratio() -> float:
        return 1

    assert split_outputs("ratio", ratio.outputs, 1) == {"output": 1}
    with pytest.raises(StepOutputError):
        split_outputs("ratio", ratio.outputs, True)


def test_a_raising_step_comes_out_as_step_failed_with_its_cause_and_traceback() -> None:
    with pytest.raises(StepFailedError, match=r"step 'boom' raised ValueError: bad x 3") as info:
        call_step("boom", boom, {}, {"x": 3})
    assert isinstance(info.value.__cause__, ValueError)
    assert "bad x 3" in info.value.traceback_text
    assert "Traceback" in info.value.traceback_text


def test_execute_step_writes_durable_objects_that_load_back(store: ObjectStore) -> None:
    executed = execute_step("pair", pair, {}, {"n": 3000}, store, {"low": None, "high": None})
    assert executed.values == {"low": list(range(3000)), "high": list(range(3000, 6000))}
    assert set(executed.artifacts) == {"low", "high"}
    assert executed.seconds >= 0
    for name, record in executed.artifacts.items():
        assert load_artifact(store, record) == executed.values[name]
    # Content addressed: the same values give the same ids, whoever writes them.
    again = materialize(store, {"low": None, "high": None}, executed.values)
    assert {n: a.content_id for n, a in again.items()} == {
        n: a.content_id for n, a in executed.artifacts.items()
    }


def test_inputs_load_through_their_records(store: ObjectStore) -> None:
    records = materialize(store, {"output": None}, {"output": BIG})
    assert load_inputs(store, {"x": records["output"]}, one.input_types) == {"x": BIG}
    assert load_inputs(store, {}, {}) == {}


def test_damaged_inputs_are_all_named_and_the_others_still_load(store: ObjectStore) -> None:
    good = materialize(store, {"output": None}, {"output": BIG})["output"]
    lost = materialize(store, {"output": None}, {"output": BIG[::-1]})["output"]
    chunks = [c for entry in lost.files.values() for c in entry.chunks]
    assert chunks, "the value must live in the store, not inline"
    for chunk in chunks:
        store.path(chunk).unlink(missing_ok=True)
    with pytest.raises(DamagedInputs) as info:
        load_inputs(store, {"a": good, "b": lost, "c": None}, {})
    assert list(info.value.damaged) == ["b", "c"]
    assert info.value.loaded == {"a": BIG}


def test_the_core_exists_once_and_every_executing_place_uses_it() -> None:
    """No second copy of the execution steps in the runner, a worker or the audit."""
    defined: dict[str, list[str]] = {}
    imported: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        where = str(path.relative_to(PACKAGE))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                defined.setdefault(node.name, []).append(where)
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("execute"):
                imported.setdefault(where, set()).update(a.name for a in node.names)
    for name in ("split_outputs", "call_step", "materialize", "execute_step", "human_duration"):
        assert len(defined[name]) == 1, (name, defined[name])
    assert {"call_step", "load_inputs", "materialize"} <= imported["executors/runner.py"]
    assert {"execute_step", "load_inputs"} <= imported["executors/worker.py"]
    assert {"call_step", "materialize"} <= imported["inspection/audit_worker.py"]
