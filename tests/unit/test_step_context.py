"""Inside a step: log_metric, log_metadata and get_step_context, checked without a run."""

from __future__ import annotations

import math

import numpy as np
import pytest

import zencache
from zencache.core.context import StepContext, StepLog, activated
from zencache.errors import StepContextError, UsageError, ZencacheError


def make_context(**kwargs: object) -> StepContext:
    fields: dict[str, object] = {"run_id": "r1", "pipeline": "p", "step": "train", "key": "k" * 32}
    fields.update(kwargs)
    return StepContext(**fields)  # type: ignore[arg-type]


def test_outside_a_step_logging_does_nothing_and_the_context_is_an_error() -> None:
    zencache.log_metric("accuracy", 0.5)  # a step's plain function, called in a unit test
    zencache.log_metadata(note="x")
    with pytest.raises(StepContextError, match="outside a running step") as caught:
        zencache.get_step_context()
    assert isinstance(caught.value, ZencacheError) and isinstance(caught.value, RuntimeError)


def test_metrics_keep_final_values_and_series_worth_keeping() -> None:
    context = make_context(output_names=("model",))
    with activated(context):
        zencache.log_metric("accuracy", 0.9)
        zencache.log_metric("loss", 1.0, step=0)
        zencache.log_metric("loss", 0.25, step=1)
        zencache.log_metric("lr", 1)
        zencache.log_metric("lr", np.float32(0.5))
        zencache.log_metric("count", np.int64(3))
        assert zencache.get_step_context() is context
    log = context.log
    assert log.metrics == {"accuracy": 0.9, "loss": 0.25, "lr": 0.5, "count": 3.0}
    assert all(type(v) is float for v in log.metrics.values())
    # One value without a step has no series; repeated or numbered ones do.
    assert log.series() == {"loss": [(1.0, 0), (0.25, 1)], "lr": [(1.0, None), (0.5, None)]}
    back = StepLog.from_json(log.to_json())
    assert (back.metrics, back.series(), back.to_json()) == (
        log.metrics,
        log.series(),
        log.to_json(),
    )


def test_metadata_is_json_and_numpy_scalars_become_numbers() -> None:
    context = make_context()
    with activated(context):
        zencache.log_metadata(kernel="rbf", n=np.int64(7), nested={"a": [1, 2.5, None]})
        zencache.log_metadata(kernel="linear", bad_float=float("nan"))
    assert context.log.metadata == {
        "kernel": "linear",
        "n": 7,
        "nested": {"a": [1, 2.5, None]},
        "bad_float": "nan",
    }
    assert type(context.log.metadata["n"]) is int


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: zencache.log_metric("", 1.0), "non-empty string"),
        (lambda: zencache.log_metric("a", "0.5"), "must be a real number"),
        (lambda: zencache.log_metric("a", True), "must be a real number"),
        (lambda: zencache.log_metric("a", 1.0, step=1.5), "must be an integer"),
        (lambda: zencache.log_metadata(model=object()), "not a JSON value"),
        (lambda: zencache.log_metadata(table={1: "x"}), "use string keys"),
    ],
)
def test_bad_values_are_one_line_usage_errors(call: object, message: str) -> None:
    # Refused also outside a step: a wrong call fails in unit tests, not only in runs.
    for active in (None, make_context()):
        with activated(active), pytest.raises(UsageError, match=message) as caught:
            call()  # type: ignore[operator]
        assert "\n" not in str(caught.value)


def test_nan_metrics_are_kept() -> None:
    context = make_context()
    with activated(context):
        zencache.log_metric("loss", float("nan"))
    assert math.isnan(context.log.metrics["loss"])


def test_the_context_says_what_it_is() -> None:
    context = make_context(output_names=("a", "b"), status="replayed")
    assert context.replayed and not context.executing
    assert context.cache_key == context.key
    assert context.output_uris == {"a": "r1:train.a", "b": "r1:train.b"}


def test_contexts_nest_and_are_restored() -> None:
    outer, inner = make_context(step="outer"), make_context(step="inner")
    with activated(outer):
        with activated(inner):
            assert zencache.get_step_context().step == "inner"
        assert zencache.get_step_context().step == "outer"
    with pytest.raises(StepContextError):
        zencache.get_step_context()
