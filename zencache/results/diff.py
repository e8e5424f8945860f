"""`zencache runs diff A B` as data: what changed between two runs.

Parameters of the pipeline; per step, which code changed (which helper, constant,
package), which parameters and inputs, whether it ran or hit, which outputs have
other content ids; and numeric outputs (numbers, dicts of numbers) and logged
metrics side by side with their deltas, as `dvc metrics diff` shows them.
Data, not words: a code change is the fingerprint part that differs (the CLI's
phrasing names it "helper `fit` in helpers.py"). Read-only; imports core runs and
materializers, and prints nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..core.runs import Run, StepResult
from ..errors import ZencacheError
from ..materializers.artifacts import load_artifact

# Outputs loaded to look for numbers: builtin values (and 0-d arrays) up to this size.
MAX_METRIC_BYTES = 64 << 10
_METRIC_MATERIALIZERS = ("zencache.materializers.builtin:", "zencache.materializers.numpy:")


@dataclass(frozen=True, slots=True)
class Change:
    name: str
    a: Any  # None: absent in run A
    b: Any

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "a": self.a, "b": self.b}


@dataclass(frozen=True, slots=True)
class CodeChange:
    """A part of the code fingerprint that differs: `code:<module>:<qualname>`,
    `const:<module>:<name>`, `dist:<name>`, `python`; `version` when either run's
    step was pinned by hand (a and b are then the fingerprints); "" when only the
    fingerprint's format differs."""

    part: str
    a: str | None  # None: not a part in run A
    b: str | None
    own: bool = False  # the step function's own source

    def to_json(self) -> dict[str, Any]:
        return {"part": self.part, "a": self.a, "b": self.b, "own": self.own}


@dataclass(frozen=True, slots=True)
class MetricChange:
    step: str
    name: str  # output name, `output.key.sub` inside a dict, or `metric:name` when logged
    a: float | None
    b: float | None

    @property
    def delta(self) -> float | None:
        if self.a is None or self.b is None:
            return None
        return self.b - self.a

    @property
    def changed(self) -> bool:
        return not _same(self.a, self.b)

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "name": self.name,
            "a": self.a,
            "b": self.b,
            "delta": self.delta,
            "changed": self.changed,
        }


@dataclass(frozen=True, slots=True)
class StepDiff:
    name: str
    status_a: str | None  # None: the step is not in run A
    status_b: str | None
    key_a: str | None
    key_b: str | None
    code: tuple[CodeChange, ...] = ()
    params: tuple[Change, ...] = ()
    inputs: tuple[Change, ...] = ()  # input name, content id in A and in B
    outputs: tuple[Change, ...] = ()  # outputs whose content ids differ

    @property
    def changed(self) -> bool:
        """Anything differs, whether it ran or hit included."""
        return self.status_a != self.status_b or self.content_changed

    @property
    def content_changed(self) -> bool:
        """Its key or outputs differ (or it is in one run only): not just ran vs hit."""
        return (
            self.status_a is None
            or self.status_b is None
            or self.key_a != self.key_b
            or bool(self.code or self.params or self.inputs or self.outputs)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "changed": self.changed,
            "content_changed": self.content_changed,
            "status": {"a": self.status_a, "b": self.status_b},
            "key": {"a": self.key_a, "b": self.key_b},
            "code": [c.to_json() for c in self.code],
            "params": [c.to_json() for c in self.params],
            "inputs": [c.to_json() for c in self.inputs],
            "outputs": [c.to_json() for c in self.outputs],
        }


@dataclass(frozen=True, slots=True)
class RunDiff:
    a: Run = field(repr=False)
    b: Run = field(repr=False)
    params: tuple[Change, ...]
    steps: tuple[StepDiff, ...]
    metrics: tuple[MetricChange, ...]

    @property
    def changed_steps(self) -> list[StepDiff]:
        return [s for s in self.steps if s.changed]

    def to_json(self) -> dict[str, Any]:
        return {
            "a": _run_json(self.a),
            "b": _run_json(self.b),
            "params": [c.to_json() for c in self.params],
            "steps": [s.to_json() for s in self.steps],
            "metrics": [m.to_json() for m in self.metrics],
        }


def _run_json(run: Run) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "pipeline": run.pipeline,
        "status": run.status,
        "started": run.started,
        "params": run.parameters,
    }


def diff_runs(a: Run, b: Run, *, metrics: bool = True) -> RunDiff:
    """What changed from run `a` to run `b` (steps matched by invocation name).
    `metrics=False` loads nothing (numeric outputs are then not compared)."""
    params = tuple(
        Change(name, a.parameters.get(name), b.parameters.get(name))
        for name in _union(a.parameters, b.parameters)
        if a.parameters.get(name) != b.parameters.get(name)
    )
    steps_a, steps_b = a.steps, b.steps
    steps = []
    found: list[MetricChange] = []
    values: dict[str, dict[str, float]] = {}  # content id -> numbers found in it
    for name in _union(steps_a, steps_b):
        sa, sb = steps_a.get(name), steps_b.get(name)
        steps.append(_step_diff(name, sa, sb))
        if metrics:
            found.extend(_metrics(name, sa, sb, values))
    return RunDiff(a, b, params, tuple(steps), tuple(found))


def _union(first: Any, second: Any) -> list[str]:
    """Keys of both, in first's order, then the new ones in second's."""
    return [*first, *(k for k in second if k not in first)]


def _step_diff(name: str, sa: StepResult | None, sb: StepResult | None) -> StepDiff:
    if sa is None or sb is None:
        return StepDiff(
            name,
            sa.status if sa else None,
            sb.status if sb else None,
            sa.key if sa else None,
            sb.key if sb else None,
        )
    outputs = tuple(
        Change(o, sa.outputs.get(o), sb.outputs.get(o))
        for o in _union(sa.outputs, sb.outputs)
        if sa.outputs.get(o) != sb.outputs.get(o)
    )
    code: tuple[CodeChange, ...] = ()
    params: tuple[Change, ...] = ()
    inputs: tuple[Change, ...] = ()
    ea, eb = (sa.entry, sb.entry) if sa.key != sb.key else (None, None)
    if ea is not None and eb is not None:
        code = tuple(
            _code_changes(
                sa.step or eb.step, ea.fingerprint, eb.fingerprint, ea.code_parts, eb.code_parts
            )
        )
        params = tuple(
            Change(p, ea.params.get(p, {}).get("repr"), eb.params.get(p, {}).get("repr"))
            for p in _union(ea.params, eb.params)
            if ea.params.get(p, {}).get("hash") != eb.params.get(p, {}).get("hash")
        )
        inputs = tuple(
            Change(i, ea.inputs.get(i), eb.inputs.get(i))
            for i in _union(ea.inputs, eb.inputs)
            if ea.inputs.get(i) != eb.inputs.get(i)
        )
    return StepDiff(name, sa.status, sb.status, sa.key, sb.key, code, params, inputs, outputs)


def _code_changes(
    identity: str, before: str, after: str, parts_a: dict[str, str], parts_b: dict[str, str]
) -> list[CodeChange]:
    if before == after:
        return []
    if before.startswith("version:") or after.startswith("version:"):
        return [CodeChange("version", before, after)]
    own = f"code:{identity}"
    changes = [
        CodeChange(part, parts_a.get(part), parts_b.get(part), part == own)
        for part in sorted(set(parts_a) | set(parts_b))
        if parts_a.get(part) != parts_b.get(part)
    ]
    return changes or [CodeChange("", before, after)]


def _metrics(
    name: str, sa: StepResult | None, sb: StepResult | None, values: dict[str, dict[str, float]]
) -> list[MetricChange]:
    numbers_a = _step_numbers(sa, values) if sa else {}
    numbers_b = _step_numbers(sb, values) if sb else {}
    return [
        MetricChange(name, key, numbers_a.get(key), numbers_b.get(key))
        for key in _union(numbers_a, numbers_b)
    ]


def _step_numbers(step: StepResult, values: dict[str, dict[str, float]]) -> dict[str, float]:
    found: dict[str, float] = {}
    for key, value in step.metrics.items():
        if _is_number(value):
            found[f"metric:{key}"] = float(value)
    if not step.outputs or step.status not in ("executed", "cached"):
        return found
    for output, content_id in step.outputs.items():
        if content_id not in values:
            values[content_id] = _numbers_in(step, content_id)
        for path, number in values[content_id].items():
            found[output + path] = number
    return found


def _numbers_in(step: StepResult, content_id: str) -> dict[str, float]:
    """The numbers in a small builtin output: itself, or a (nested) dict's leaves."""
    record = step.cache.index.get_artifact(content_id)
    if (
        record is None
        or record.size > MAX_METRIC_BYTES
        or not record.materializer.startswith(_METRIC_MATERIALIZERS)
    ):
        return {}
    try:
        value = load_artifact(step.cache.store, record)
    except ZencacheError:
        return {}  # a damaged output has no numbers to compare; verify reports it
    if getattr(value, "shape", None) == () and hasattr(value, "item"):
        value = value.item()
    found: dict[str, float] = {}
    _flatten(value, "", found)
    return found


def _flatten(value: Any, path: str, found: dict[str, float]) -> None:
    if _is_number(value):
        found[path] = float(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{path}.{key}", found)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return a == b or (math.isnan(a) and math.isnan(b))
