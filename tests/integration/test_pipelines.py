"""Real pipelines on a real cache, in-process: both styles, outputs, early cutoff,
failures, damaged objects, and the records a run leaves in the index."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pytest
from zencache_testing import check_execution

from zencache import Cache, Output, pipeline, step
from zencache.errors import (
    PipelineDefinitionError,
    StepFailedError,
    StepOutputError,
    UnhashableParameterError,
)

CALLS: list[str] = []


@step
def numbers(n: int = 3, verbose: bool = False) -> list:
    CALLS.append("numbers")
    return list(range(n))


@step
def total(values: list) -> int:
    CALLS.append("total")
    return sum(values)


@step
def parity(values: list) -> int:
    CALLS.append("parity")
    return sum(values) % 2


@step
def inc(x: int) -> int:
    CALLS.append("inc")
    return x + 1


@step
def split(n: int = 6) -> tuple[Annotated[list, "evens"], Annotated[list, "odds"]]:
    return [i for i in range(n) if i % 2 == 0], [i for i in range(n) if i % 2]


@step
def stats(n: int = 4) -> Output(mean=float, data=np.ndarray):
    data = np.arange(n, dtype=np.float64)
    return float(data.mean()), data


@pipeline
def summed(n: int = 3):
    values = numbers(n=n)
    return inc(x=inc(x=total(values=values)))


@pytest.fixture(autouse=False)
def calls() -> list[str]:
    CALLS.clear()
    return CALLS


def test_first_run_executes_and_second_is_all_cached(cache: Cache, calls: list[str]) -> None:
    first = summed(n=3).run(cache=cache)
    check_execution(first, executed=["numbers", "total", "inc", "inc_2"], cached=[])
    assert first.output() == 5
    assert calls == ["numbers", "total", "inc", "inc"]
    calls.clear()
    second = summed(n=3).run(cache=cache)
    check_execution(second, executed=[], cached=["numbers", "total", "inc", "inc_2"])
    assert calls == []
    assert second.output() == 5
    assert {n: s.key for n, s in first.steps.items()} == {n: s.key for n, s in second.steps.items()}


def test_parameter_change_reruns_and_early_cutoff_spares_downstream(cache: Cache) -> None:
    @step
    def clipped(values: list, limit: int = 10) -> list:
        return [min(v, limit) for v in values]

    @pipeline
    def clip_then_total(limit: int = 10):
        return total(values=clipped(values=numbers(n=3), limit=limit))

    clip_then_total(limit=10).run(cache=cache)
    again = clip_then_total(limit=20).run(cache=cache)
    # clipped reruns (its parameter changed) but produces identical content.
    check_execution(again, executed=["clipped"], cached=["numbers", "total"])


def test_ignored_parameter_does_not_enter_the_key(cache: Cache) -> None:
    @step(ignore=("verbose",))
    def quiet(n: int = 3, verbose: bool = False) -> int:
        return n

    @pipeline
    def p(verbose: bool = False):
        return quiet(verbose=verbose)

    p(verbose=False).run(cache=cache)
    check_execution(p(verbose=True).run(cache=cache), executed=[], cached=["quiet"])


def test_multiple_outputs_in_both_notations(cache: Cache) -> None:
    @pipeline
    def both():
        evens, odds = split(n=6)
        mean, data = stats(n=4)
        return total(values=evens), total(values=odds), mean, data

    run = both().run(cache=cache)
    evens_total, odds_total, mean, data = run.output()
    assert (evens_total, odds_total, mean) == (6, 9, 1.5)
    np.testing.assert_array_equal(data, np.arange(4.0))
    assert set(run.steps["split"].outputs) == {"evens", "odds"}
    assert run.steps["split"].output("odds") == [1, 3, 5]
    # After a rerun everything is loaded from the store, not from memory.
    rerun = both().run(cache=cache)
    assert rerun.output()[:3] == (6, 9, 1.5)


def test_same_step_invoked_many_times_gets_numbered_names(cache: Cache) -> None:
    @pipeline
    def chain():
        x = inc(x=total(values=numbers()))
        for _ in range(3):
            x = inc(x=x)
        return x

    run = chain().run(cache=cache)
    assert list(run.steps) == ["numbers", "total", "inc", "inc_2", "inc_3", "inc_4"]
    assert run.output() == 7


def test_seed_style_injected_instances_are_named_after_their_parameter(cache: Cache) -> None:
    @pipeline
    def injected(loader, summer):
        return summer(values=loader())

    run = injected(loader=numbers(n=4), summer=total()).run(cache=cache)
    assert list(run.steps) == ["loader", "summer"]
    assert run.output() == 6
    assert total.fn([1, 2]) == 3  # the plain function stays callable


def test_a_failing_step_is_recorded_and_other_branches_stay_cached(cache: Cache) -> None:
    @step
    def boom(values: list) -> int:
        raise RuntimeError("the data is bad")

    @pipeline
    def branches():
        values = numbers(n=5)
        return total(values=values), inc(x=boom(values=values)), parity(values=values)

    with pytest.raises(StepFailedError, match=r"boom.*the data is bad") as caught:
        branches().run(cache=cache)
    assert caught.value.step == "boom"
    record = cache.index.last("runs")
    assert record is not None
    from zencache.storage.records import RunRecord

    run_record = RunRecord.decode(record[1])
    statuses = {s.name: s.status for s in run_record.steps}
    assert statuses == {
        "numbers": "executed",
        "total": "executed",
        "boom": "failed",
        "inc": "skipped",
        "parity": "executed",
    }
    assert run_record.status == "failed"
    assert "the data is bad" in next(s.error for s in run_record.steps if s.name == "boom")

    @pipeline
    def healthy():
        values = numbers(n=5)
        return total(values=values), parity(values=values)

    check_execution(healthy().run(cache=cache), executed=[], cached=["numbers", "total", "parity"])


def test_wrong_number_of_outputs_names_the_step(cache: Cache) -> None:
    @step
    def two() -> Output(a=int, b=int):
        return 1, 2, 3

    @pipeline
    def p():
        a, _b = two()
        return a

    with pytest.raises(StepOutputError, match="'two' must return 2 values"):
        p().run(cache=cache)


def test_wrong_output_type_names_output_and_types(cache: Cache) -> None:
    @step
    def says_int() -> int:
        return "not an int"

    @pipeline
    def p():
        return says_int()

    with pytest.raises(StepOutputError, match=r"declared int but the step returned builtins\.str"):
        p().run(cache=cache)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("a, b, c = split()", "returns 2 outputs .* unpacked"),
        ("total()", "missing input 'values'"),
        ("total(values=numbers)", "was given a step"),
        ("a, b = total(values=numbers())", "single output"),
        ("total(values=split())", "all outputs of step 'split'"),
        ("pass", "calls no step"),
    ],
)
def test_definition_errors_name_pipeline_step_and_argument(
    cache: Cache, body: str, message: str
) -> None:
    namespace: dict[str, Any] = {"split": split, "total": total, "numbers": numbers}
    exec(f"def broken():\n    {body}\n", namespace)
    with pytest.raises(PipelineDefinitionError, match=message):
        pipeline(namespace["broken"])().run(cache=cache)


def test_unhashable_parameter_names_step_parameter_and_type(cache: Cache) -> None:
    import threading

    @step
    def use(obj: object) -> int:
        return 1

    @pipeline
    def p():
        return use(obj=threading.Lock())

    with pytest.raises(UnhashableParameterError, match=r"parameter 'obj' of step 'use'.*lock"):
        p().run(cache=cache)


def test_damaged_object_turns_a_hit_into_a_reexecution(cache: Cache, flip_byte: Any) -> None:
    @step
    def big(n: int = 200_000) -> np.ndarray:
        return np.arange(n, dtype=np.float64)

    @step
    def mean(data: np.ndarray) -> float:
        return float(data.mean())

    @pipeline
    def p(n: int = 200_000):
        return mean(data=big(n=n))

    p().run(cache=cache)
    for object_id, _ in cache.store.iter_objects():
        flip_byte(cache.store.path(object_id), 100)
    # A hit loads no data, so the damage goes unnoticed while nothing needs it.
    run = p().run(cache=cache)
    check_execution(run, executed=[], cached=["big", "mean"])
    assert run.output() == pytest.approx(99999.5)  # mean's own output is inline, intact

    # A new consumer loads big's output, finds it damaged, re-executes big and
    # rewrites the objects.

    @step
    def median(data: np.ndarray) -> float:
        return float(np.median(data))

    @pipeline
    def q():
        return median(data=big(n=200_000))

    run = q().run(cache=cache)
    assert run.output() == pytest.approx(99999.5)
    for object_id, _ in cache.store.iter_objects():
        cache.store.verify(object_id)


def test_run_record_and_environment_are_stored_once_per_run(cache: Cache) -> None:
    run = summed(n=2).run(cache=cache)
    record = cache.index.get_run(run.run_id)
    assert record is not None and record.status == "completed"
    assert [s.name for s in record.steps] == ["numbers", "total", "inc", "inc_2"]
    assert record.params == {"n": "2"}
    env = cache.index.get_env(record.env_id)
    assert env is not None and env.python.count(".") == 2 and "numpy" in env.distributions
    assert cache.index.latest_key("summed", "total") == run.steps["total"].key


def test_cache_location_from_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZENCACHE_DIR", str(tmp_path / "elsewhere"))
    run = summed(n=1).run()
    try:
        assert run.cache.path == tmp_path / "elsewhere"
        assert (tmp_path / "elsewhere" / "index.lmdb").is_dir()
    finally:
        run.cache.close()
