"""Bad input: each is a clear error naming the step, parameter or output, the type,
and the fix; and nothing already cached is lost.

Every test starts from a cache holding a finished run of `healthy` and checks at
the end that its entries are all still there, verify clean, and still hits.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import reliability_flows as rf

from zencache import Cache, Output, maintenance, pipeline, step
from zencache.errors import (
    MaterializerError,
    StepFailedError,
    StepOutputError,
    UnhashableParameterError,
)
from zencache.executors.runner import UnstableParameterWarning
from zencache.hashing import register_hasher
from zencache.materializers.builtin import PickleFallbackWarning
from zencache.storage.records import RunRecord


@step
def numbers(n: int = 5) -> list:
    return list(range(n))


@step
def total(values: list) -> int:
    return sum(values)


@step
def largest(values: list) -> int:
    return max(values)


@pipeline
def healthy():
    values = numbers()
    return total(values=values), largest(values=values)


class Settings:
    """A plain object: its repr is `<...Settings object at 0x7f...>`, new every run."""

    def __init__(self, rate: float) -> None:
        self.rate = rate


class Tagged:
    def __init__(self, rate: float) -> None:
        self.rate = rate


@step
def configured(values: list, settings: Any = None) -> int:
    return len(values)


@pytest.fixture
def warm(cache: Cache) -> Iterator[Cache]:
    """A cache with `healthy` run; after the test, nothing of it may be lost."""
    healthy().run(cache=cache)
    before = {k: cache.index.get("steps", k) for k in cache.index.keys("steps")}
    yield cache
    after = {k: cache.index.get("steps", k) for k in cache.index.keys("steps")}
    assert {k: v for k, v in after.items() if k in before} == before
    assert rf.check_cache(cache)["problems"] == []
    assert not maintenance.verify(cache).damaged
    assert {s.status for s in healthy().run(cache=cache).steps.values()} == {"cached"}


def _last_run(cache: Cache) -> RunRecord:
    last = cache.index.last("runs")
    assert last is not None
    return RunRecord.decode(last[1])


# --- parameters ---------------------------------------------------------------------------------


def test_an_object_with_an_address_in_its_repr_is_refused_with_the_fix(warm: Cache) -> None:
    @pipeline
    def p():
        return configured(values=numbers(), settings=Settings(0.1))

    with pytest.raises(UnhashableParameterError) as caught:
        p().run(cache=warm)
    message = str(caught.value)
    assert "parameter 'settings' of step 'configured'" in message
    assert "test_bad_input:Settings" in message  # the type, qualified
    assert "object at 0x" in message  # what made it unhashable, shown
    assert "register_hasher" in message and "ignore=" in message and "artifact" in message
    assert "pipeline 'p'" in message
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"lock": threading.Lock()}, "['lock']"),
        ([1, 2, lambda x: x], "[2]"),
        ((1, (2, open)), "[1][1]"),
    ],
    ids=["lock in a dict", "lambda in a list", "builtin function in a tuple"],
)
def test_an_unhashable_value_inside_a_container_is_located(
    warm: Cache, value: Any, where: str
) -> None:
    @pipeline
    def p():
        return configured(values=numbers(), settings=value)

    with pytest.raises(
        UnhashableParameterError, match=r"parameter 'settings' of step 'configured'"
    ) as caught:
        p().run(cache=warm)
    assert where in str(caught.value)


def test_a_hasher_that_hashes_the_address_is_warned_about(warm: Cache) -> None:
    register_hasher(Tagged, repr)  # the classic mistake: repr holds the address

    @pipeline
    def p():
        return configured(values=numbers(), settings=Tagged(0.5))

    with pytest.warns(
        UnstableParameterWarning, match=r"'settings' of step 'configured'.*every run"
    ):
        p().run(cache=warm)


def test_a_string_made_from_an_object_repr_is_warned_about(warm: Cache) -> None:
    @pipeline
    def p(label: str):
        return configured(values=numbers(), settings=label)

    with pytest.warns(UnstableParameterWarning, match="memory address"):
        p(label=str(Settings(1.0))).run(cache=warm)


def test_an_object_with_a_content_hasher_is_not_warned_about(warm: Cache) -> None:
    class Rated:
        def __init__(self, rate: float) -> None:
            self.rate = rate

    register_hasher(Rated, lambda s: ("Rated", s.rate))

    @pipeline
    def p(rate: float = 0.1):
        return configured(values=numbers(), settings=Rated(rate))

    first = p().run(cache=warm)  # filterwarnings=error: any warning fails the test
    assert first.steps["configured"].status == "executed"
    assert p().run(cache=warm).steps["configured"].status == "cached"


# --- outputs ---------------------------------------------------------------------------------------


def test_wrong_number_of_outputs_fails_that_step_only(warm: Cache) -> None:
    @step
    def pair(values: list) -> Output(low=int, high=int):
        return min(values), max(values), 0

    @pipeline
    def p():
        values = numbers()
        low, _high = pair(values=values)
        return total(values=values), low

    with pytest.raises(StepOutputError) as caught:
        p().run(cache=warm)
    assert "step 'pair' must return 2 values (low, high) but returned 3 values" in str(caught.value)
    statuses = {s.name: s.status for s in _last_run(warm).steps}
    assert statuses == {"numbers": "cached", "pair": "failed", "total": "cached"}


def test_wrong_output_type_names_step_output_and_types(warm: Cache) -> None:
    @step
    def ratio(values: list) -> float:
        return "one half"

    @pipeline
    def p():
        return ratio(values=numbers())

    with pytest.raises(StepOutputError) as caught:
        p().run(cache=warm)
    message = str(caught.value)
    assert "output 'output' of step 'ratio' is declared float" in message
    assert "builtins.str" in message and "fix the annotation" in message


def test_a_raising_step_records_its_traceback_and_other_branches_stay_cached(
    warm: Cache,
) -> None:
    @step
    def fragile(values: list) -> int:
        checked = [v for v in values if v >= 0]
        raise ValueError(f"bad row {checked[-1]}")

    @step
    def after(x: int) -> int:
        return x

    @pipeline
    def p():
        values = numbers()
        return total(values=values), after(x=fragile(values=values)), largest(values=values)

    with pytest.raises(
        StepFailedError, match=r"step 'fragile' raised ValueError: bad row 4"
    ) as caught:
        p().run(cache=warm)
    assert caught.value.step == "fragile"
    assert 'raise ValueError(f"bad row {checked[-1]}")' in caught.value.traceback_text
    record = _last_run(warm)
    assert record.status == "failed"
    steps = {s.name: s for s in record.steps}
    assert {n: s.status for n, s in steps.items()} == {
        "numbers": "cached",
        "total": "cached",
        "fragile": "failed",
        "after": "skipped",
        "largest": "cached",
    }
    assert "in fragile" in steps["fragile"].error and "bad row 4" in steps["fragile"].error
    assert "fragile" in steps["after"].error


# --- values no materializer can store -------------------------------------------------------------


def test_a_declared_list_holding_a_lock_names_step_and_element(warm: Cache) -> None:
    @step
    def holder(values: list) -> list:
        return [*values, threading.Lock()]

    @pipeline
    def p():
        values = numbers()
        return holder(values=values), total(values=values)

    with pytest.raises(MaterializerError) as caught:
        p().run(cache=warm)
    message = str(caught.value)
    assert message.startswith("step 'holder': cannot store value[5] of type _thread.lock")
    assert "materializers=" in message
    assert {s.name: s.status for s in _last_run(warm).steps}["total"] == "cached"


def test_an_undeclared_unpicklable_value_warns_then_fails_clearly(warm: Cache) -> None:
    @step
    def opener(values: list):
        return threading.Lock()

    @pipeline
    def p():
        return opener(values=numbers())

    with (
        pytest.warns(PickleFallbackWarning, match="_thread.lock"),
        pytest.raises(MaterializerError) as caught,
    ):
        p().run(cache=warm)
    message = str(caught.value)
    assert message.startswith("step 'opener': ")
    assert "cannot pickle" in message and "declare the output type" in message


def test_an_object_array_is_refused_by_the_numpy_materializer(warm: Cache) -> None:
    @step
    def mixed(values: list) -> np.ndarray:
        return np.array([1, "two", None], dtype=object)

    @pipeline
    def p():
        return mixed(values=numbers())

    with pytest.raises(MaterializerError, match=r"step 'mixed': .*dtype object.*never pickles"):
        p().run(cache=warm)


def test_a_generator_output_is_refused_without_losing_the_run(warm: Cache) -> None:
    @step
    def lazy(values: list) -> Any:
        return (v for v in values)

    @pipeline
    def p():
        values = numbers()
        return lazy(values=values), largest(values=values)

    with (
        pytest.warns(PickleFallbackWarning, match="generator"),
        pytest.raises(MaterializerError, match=r"step 'lazy': .*generator"),
    ):
        p().run(cache=warm)
    assert _last_run(warm).status == "failed"
