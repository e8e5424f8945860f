"""The step-execution core: load inputs, call the function, split and materialize outputs.

Every place that executes a step goes through these functions: the runner (a miss in
this process), the workers of the process and Dask executors (worker.py) and the
audit's fresh interpreter (inspection/audit_worker.py). What differs between them is
where inputs come from (memory, the store, a recorded entry), which store receives
the outputs (the cache's, or the audit's digest-only one) and who writes the index
(only the runner, in the driver); those stay with the callers. Imports materializers
and storage records, and fingerprints (of the classes an output is made of); never the
index, never an executor.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..core.context import StepContext, activated
from ..errors import CorruptObjectError, MissingObjectError, StepFailedError, StepOutputError
from ..fingerprint import fingerprint
from ..fingerprint.carried import carried_classes
from ..hashing import module_label
from ..materializers import registry
from ..materializers.artifacts import load_artifact, save_artifact
from ..materializers.base import BaseMaterializer
from ..storage.records import ArtifactRecord
from ..storage.store import ObjectStore


class DamagedInputs(Exception):
    """Inputs whose artifacts cannot be loaded (no record, bytes missing or damaged).

    Raised once every input was tried: `loaded` holds the values that did load, so a
    caller that can repair the others (the runner) does not load them twice.
    """

    def __init__(
        self, damaged: dict[str, MissingObjectError | CorruptObjectError], loaded: dict[str, Any]
    ) -> None:
        super().__init__(", ".join(damaged))
        self.damaged = damaged
        self.loaded = loaded


@dataclass(frozen=True, slots=True)
class Executed:
    """What one execution of a step produced."""

    values: dict[str, Any]  # output name -> the value the function returned
    artifacts: dict[str, ArtifactRecord]  # output name -> its record (objects durable)
    seconds: float  # in the step's function


def load_inputs(
    store: ObjectStore,
    records: Mapping[str, ArtifactRecord | None],
    types: Mapping[str, Any],
) -> dict[str, Any]:
    """Each input's value, through the materializer its record names.

    A record of None means the artifact has no index record. Missing or damaged
    inputs raise DamagedInputs after the others were loaded; any other error of a
    materializer (a refused pickle) propagates at once.
    """
    values: dict[str, Any] = {}
    damaged: dict[str, MissingObjectError | CorruptObjectError] = {}
    for name, record in records.items():
        if record is None:
            damaged[name] = MissingObjectError(f"input {name!r} has no index record")
            continue
        try:
            values[name] = load_artifact(store, record, types.get(name))
        except (CorruptObjectError, MissingObjectError) as exc:
            damaged[name] = exc
    if damaged:
        raise DamagedInputs(damaged, values)
    return values


def call_step(
    name: str,
    step: Any,
    inputs: Mapping[str, Any],
    params: Mapping[str, Any],
    *,
    check_types: bool = True,
    context: StepContext | None = None,
) -> dict[str, Any]:
    """Call a step's function on loaded inputs and map what it returned onto its outputs.

    An exception of the function comes out as StepFailedError (its cause the original,
    its traceback text kept); a return value that does not fit the declared outputs as
    StepOutputError. `context`: what `zencache.get_step_context()` returns inside the
    function; what the step logs (`zencache.log_metric`, ...) goes to `context.log`.
    """
    try:
        with activated(context):
            returned = step.fn(**inputs, **params)
    except Exception as exc:
        raise StepFailedError(
            f"step {name!r} raised {type(exc).__name__}: {exc}",
            step=name,
            traceback_text="".join(traceback.format_exception(exc)),
        ) from exc
    return split_outputs(name, step.outputs, returned, check_types=check_types)


def materialize(
    store: ObjectStore,
    materializers: Mapping[str, type[BaseMaterializer] | None],
    outputs: Mapping[str, Any],
) -> dict[str, ArtifactRecord]:
    """Write each output's objects (durable on return); the records are committed later.
    An output without a materializer of its own takes the one registered for its value."""
    artifacts: dict[str, ArtifactRecord] = {}
    for name, value in outputs.items():
        materializer = materializers[name] or registry.for_value(value)
        artifacts[name] = save_artifact(store, value, materializer, carried_code(value))
    return artifacts


def carried_code(value: Any) -> bytes:
    """The fingerprints of the user classes a value is made of (artifacts.CODE_FILE):
    pickle stores a class by name, so a changed method must change the id another way."""
    classes = carried_classes([value])
    if not classes:
        return b""
    lines = [
        f"{module_label(c.__module__)}:{c.__qualname__} {fingerprint(c).digest}" for c in classes
    ]
    return "\n".join(lines).encode()


def execute_step(
    name: str,
    step: Any,
    inputs: Mapping[str, Any],
    params: Mapping[str, Any],
    store: ObjectStore,
    materializers: Mapping[str, type[BaseMaterializer] | None],
    context: StepContext | None = None,
) -> Executed:
    """Call the step on loaded inputs, then write its outputs to `store`."""
    started = time.perf_counter()
    values = call_step(name, step, inputs, params, context=context)
    seconds = time.perf_counter() - started
    return Executed(values, materialize(store, materializers, values), seconds)


def split_outputs(
    name: str, specs: tuple[Any, ...], returned: Any, *, check_types: bool = True
) -> dict[str, Any]:
    """Map a step's return value onto its declared outputs, checking count and types.

    `check_types=False` (the audit) skips the declared-type check: there a value of
    another type shows as a different content id instead.
    """
    if not specs:
        if returned is not None:
            raise StepOutputError(
                f"step {name!r} is declared to return None but returned "
                f"{type(returned).__name__}; declare its return type"
            )
        return {}
    if len(specs) == 1:
        values = (returned,)
    else:
        if not isinstance(returned, tuple | list) or len(returned) != len(specs):
            got = (
                f"{len(returned)} values"
                if isinstance(returned, tuple | list)
                else type(returned).__name__
            )
            raise StepOutputError(
                f"step {name!r} must return {len(specs)} values "
                f"({', '.join(s.name for s in specs)}) but returned {got}; return a tuple in that order"
            )
        values = tuple(returned)
    outputs = {}
    for spec, value in zip(specs, values, strict=True):
        if check_types:
            _check_type(name, spec.name, spec.declared, value)
        outputs[spec.name] = value
    return outputs


def _check_type(step: str, output: str, declared: Any, value: Any) -> None:
    if declared is None or registry.is_too_general(declared):
        return
    cls = registry.concrete_type(declared)
    if cls is float and isinstance(value, int) and not isinstance(value, bool):
        return  # the numeric tower: an int is an acceptable float
    if not isinstance(value, cls):
        raise StepOutputError(
            f"output {output!r} of step {step!r} is declared {getattr(cls, '__qualname__', cls)} "
            f"but the step returned {type(value).__module__}.{type(value).__qualname__}; "
            "return the declared type or fix the annotation"
        )
