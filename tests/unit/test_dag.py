"""Tracing into a DAG: invocation names, each invocation's upstream and consumers
(kept as calls come), and the handles steps return while a pipeline is traced."""

from __future__ import annotations

import dataclasses

import pytest

from zencache import Output, pipeline, step
from zencache.core.dag import ArtifactHandle


@step
def source(n: int = 3) -> Output(a=int, b=int):
    return n, n + 1


@step
def join(x: int, y: int) -> int:
    return x + y


@step
def use(x: int) -> int:
    return x


@step
def sink(x: int, y: int, z: int) -> None:
    pass


@pipeline
def diamond():
    a, b = source()
    both = join(x=a, y=b)  # two inputs from one upstream: one consumer
    left = use(x=a)
    right = use(x=b)
    sink(x=both, y=left, z=right)
    return use(x=both)


def test_consumers_list_each_consumer_once_in_call_order() -> None:
    dag = diamond().trace()
    assert list(dag.invocations) == ["source", "join", "use", "use_2", "sink", "use_3"]
    assert dag.consumers == {
        "source": ["join", "use", "use_2"],
        "join": ["sink", "use_3"],
        "use": ["sink"],
        "use_2": ["sink"],
        "sink": [],
        "use_3": [],
    }
    # The same as asking every invocation for its upstream.
    expected: dict[str, list[str]] = {name: [] for name in dag.invocations}
    for inv in dag.invocations.values():
        for upstream in inv.upstream:
            expected[upstream].append(inv.name)
    assert dag.consumers == expected
    assert dag.consumer_counts == {name: len(c) for name, c in expected.items()}
    assert dag.invocations["sink"].upstream == ["join", "use", "use_2"]
    assert dag.invocations["join"].upstream == ["source"]


@step
def scale(x: int, factor: int = 2, offset: int = 0) -> int:
    return x * factor + offset


@pipeline
def scaled():
    a, _ = source()
    once = scale(x=a, factor=3)  # the input first, parameters after it
    return scale(offset=1, x=once)  # given in another order


def test_consumers_count_the_input_whatever_parameters_follow_it() -> None:
    dag = scaled().trace()
    assert dag.consumer_counts == {"source": 1, "scale": 1, "scale_2": 0}
    assert dag.invocations["scale_2"].params == {"factor": 2, "offset": 1}


def test_artifact_handles_are_frozen_values() -> None:
    handle = ArtifactHandle("inc_2", "output")
    assert handle == ArtifactHandle("inc_2", "output")
    assert hash(handle) == hash(ArtifactHandle("inc_2", "output"))
    assert (handle.invocation, handle.output) == ("inc_2", "output")
    assert repr(handle) == "ArtifactHandle(invocation='inc_2', output='output')"
    with pytest.raises(dataclasses.FrozenInstanceError):
        handle.output = "other"  # type: ignore[misc]
    assert dataclasses.replace(handle, output="b") == ArtifactHandle("inc_2", "b")
