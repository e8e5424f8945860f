"""Category 9: inputs cannot be changed behind the cache's back. A step that
changes an input in place must not change what its sibling or downstream steps
receive in the same run: every reader but the last gets its own copy, loaded
from the store (a large array is mapped copy-on-write)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zencache import Cache, pipeline, step


@step
def produce() -> np.ndarray:
    return np.arange(4.0)


@step
def produce_list() -> list:
    return [1, 2, 3]


@step
def vandal(values: np.ndarray) -> float:
    values[0] = 1000.0  # a step that changes its input in place
    return float(values.sum())


@step
def vandal_list(values: list) -> int:
    values.append(1000)
    return len(values)


@step
def reader(values: np.ndarray) -> float:
    return float(values.sum())


@step
def list_reader(values: list) -> int:
    return sum(values)


@pipeline
def fan_out():
    values = produce()
    items = produce_list()
    return (
        vandal(values=values),
        reader(values=values),
        vandal_list(values=items),
        list_reader(values=items),
        values,
    )


def test_a_step_that_changes_its_input_does_not_change_its_siblings(tmp_path: Path) -> None:
    run = fan_out().run(cache=Cache(tmp_path / "a"))
    vandalised, read, length, total, values = run.output()
    assert vandalised == 1006.0 and read == 6.0
    assert length == 4 and total == 6
    assert values.tolist() == [0.0, 1.0, 2.0, 3.0]  # the run's result as produce returned it
    again = fan_out().run(cache=Cache(tmp_path / "a"))
    assert {s.status for s in again.steps.values()} == {"cached"}
    assert again.output()[:4] == (1006.0, 6.0, 4, 6)


@step
def big() -> np.ndarray:
    return np.ones(1 << 18)  # 2 MiB: mapped from the store, copy-on-write


@pipeline
def big_fan_out():
    values = big()
    return vandal(values=values), reader(values=values)


def test_large_arrays_are_copied_on_write_only(tmp_path: Path) -> None:
    vandalised, read = big_fan_out().run(cache=Cache(tmp_path / "b")).output()
    assert read == float(1 << 18)
    assert vandalised == read - 1 + 1000
