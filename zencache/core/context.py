"""What a running step can ask and tell: `get_step_context()`, `log_metric`, `log_metadata`.

The executor activates a StepContext around a step's function (in the driver or
in a worker process) and around the hooks it calls for that step; the step's
metrics and metadata are collected in the context's StepLog, stored with the
step's cache entry and replayed to hooks on a hit. A context variable, so that
threads (a Dask worker's) keep their steps apart. Imports errors only.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from ..errors import StepContextError, UsageError

_EXECUTING = "executing"
_REPLAYED = "replayed"


@dataclass(slots=True)
class StepLog:
    """What one execution of a step logged: final metric values, the series of any
    metric logged more than once or with a `step`, and metadata."""

    metrics: dict[str, float] = field(default_factory=dict)
    history: dict[str, list[tuple[float, int | None]]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def add_metric(self, name: str, value: float, step: int | None) -> None:
        series = self.history.setdefault(name, [])
        series.append((value, step))
        self.metrics[name] = value

    def series(self) -> dict[str, list[tuple[float, int | None]]]:
        """The histories worth keeping: a metric logged once without a step has none."""
        return {
            name: list(points)
            for name, points in self.history.items()
            if len(points) > 1 or points[0][1] is not None
        }

    def __bool__(self) -> bool:
        return bool(self.metrics or self.metadata)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.metrics:
            out["metrics"] = dict(self.metrics)
        series = self.series()
        if series:
            out["history"] = {n: [list(p) for p in s] for n, s in series.items()}
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> StepLog:
        log = cls()
        if not data:
            return log
        log.metrics = dict(data.get("metrics", {}))
        log.history = {
            n: [(float(v), None if s is None else int(s)) for v, s in points]
            for n, points in data.get("history", {}).items()
        }
        log.metadata = dict(data.get("metadata", {}))
        return log


@dataclass(slots=True)
class StepContext:
    """The step being executed (or replayed from the cache, while hooks run for it)."""

    run_id: str
    pipeline: str
    step: str  # the invocation name, e.g. "trainer" or "inc_2"
    key: str  # the step's cache key
    status: str = _EXECUTING  # "executing" or "replayed"
    output_names: tuple[str, ...] = ()
    output_ids: dict[str, str] = field(default_factory=dict)  # known once stored
    params: dict[str, Any] = field(default_factory=dict)
    log: StepLog = field(default_factory=StepLog)

    @property
    def executing(self) -> bool:
        return self.status == _EXECUTING

    @property
    def replayed(self) -> bool:
        return self.status == _REPLAYED

    @property
    def cached(self) -> bool:
        """True while hooks run for a step replayed from the cache."""
        return self.status == _REPLAYED

    @property
    def cache_key(self) -> str:
        return self.key

    @property
    def step_name(self) -> str:
        return self.step

    @property
    def pipeline_name(self) -> str:
        return self.pipeline

    @property
    def output_uris(self) -> dict[str, str]:
        """Each output's address, `RUN:STEP.OUTPUT`, as `zencache show` and
        `zencache lineage` take it; valid from the moment the run is recorded."""
        return {name: f"{self.run_id}:{self.step}.{name}" for name in self.output_names}

    @property
    def metrics(self) -> dict[str, float]:
        return dict(self.log.metrics)

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.log.metadata)


_current: ContextVar[StepContext | None] = ContextVar("zencache_step_context", default=None)


@contextmanager
def activated(context: StepContext | None) -> Iterator[StepContext | None]:
    """Make `context` the current step's for the duration of the block."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def get_step_context() -> StepContext:
    """The context of the step running now; raises StepContextError outside a step."""
    context = _current.get()
    if context is None:
        raise StepContextError(
            "get_step_context() was called outside a running step; call it from inside a "
            "@step function while its pipeline runs (or from a hook)"
        )
    return context


def log_metric(name: str, value: float, step: int | None = None) -> None:
    """Record a metric of the running step, stored with its cache entry and replayed
    to hooks on a hit. Outside a running step (a unit test calling `my_step.fn()`) it
    does nothing, so a step's plain function stays callable anywhere."""
    if not isinstance(name, str) or not name:
        raise UsageError(f"a metric's name must be a non-empty string (got {name!r})")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UsageError(
            f"metric {name!r} must be a real number (got {value!r} of type "
            f"{type(value).__qualname__}); log other values with log_metadata()"
        )
    if step is not None and (isinstance(step, bool) or not isinstance(step, numbers.Integral)):
        raise UsageError(f"the step of metric {name!r} must be an integer or None (got {step!r})")
    context = _current.get()
    if context is None:
        return
    context.log.add_metric(name, float(value), None if step is None else int(step))


def log_metadata(**values: Any) -> None:
    """Record metadata of the running step (JSON values: strings, numbers, booleans,
    None, lists and dicts of them), stored with its cache entry and replayed to hooks
    on a hit. A name logged twice keeps its last value. Outside a step: nothing."""
    checked = {name: _json_value(value, name) for name, value in values.items()}
    context = _current.get()
    if context is None:
        return
    context.log.metadata.update(checked)


def _json_value(value: Any, where: str) -> Any:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return repr(value)  # JSON has no nan or inf; the text says what it was
        return value
    if isinstance(value, numbers.Number) and hasattr(value, "item"):  # a numpy scalar
        return _json_value(value.item(), where)
    if isinstance(value, list | tuple):
        return [_json_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise UsageError(
                    f"metadata {where!r} has a key {k!r} of type {type(k).__qualname__}; "
                    "use string keys"
                )
            out[k] = _json_value(v, f"{where}.{k}")
        return out
    raise UsageError(
        f"metadata {where!r} is {type(value).__module__}.{type(value).__qualname__}, which "
        "is not a JSON value; log strings, numbers, booleans, None, or lists and dicts of them"
    )
