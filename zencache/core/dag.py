"""Tracing a pipeline function into a DAG of step invocations.

While a pipeline function runs under a Tracer, step calls record invocations
and return artifact handles instead of data. Invocations are recorded in call
order, which is a topological order: a handle can only name an earlier call.
Imports errors only (steps are duck-typed here to keep the layering flat).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..errors import PipelineDefinitionError

_tracer: ContextVar[Tracer | None] = ContextVar("zencache_tracer", default=None)

# The tracer of the pipeline being traced, if any: the ContextVar's own method,
# without a function of ours around it (every step call asks).
current_tracer: Callable[[], Tracer | None] = _tracer.get

_EMPTY = inspect.Parameter.empty


class StepLike:
    """Marker base of steps and step instances, so tracing can refuse them as data."""

    __slots__ = ()


@dataclass(frozen=True, slots=True, init=False)
class ArtifactHandle:
    """Stands for one output of one invocation while a pipeline is traced."""

    invocation: str
    output: str

    def __init__(self, invocation: str, output: str) -> None:
        # Through the slots' descriptors: the generated __init__ of a frozen class
        # goes through object.__setattr__ per field, and tracing makes one per call.
        _set_invocation(self, invocation)
        _set_output(self, output)

    def __iter__(self) -> Iterator[Any]:
        raise PipelineDefinitionError(
            f"step {self.invocation!r} has a single output ({self.output!r}) and cannot be "
            "unpacked into several names; declare -> Output(a=..., b=...) to return several"
        )

    def __bool__(self) -> bool:
        raise PipelineDefinitionError(
            f"the output of step {self.invocation!r} was used as a truth value while the "
            "pipeline was traced; artifacts are not data there, so branch inside a step instead"
        )


# The slots' descriptors, to initialise a handle whose own __setattr__ refuses writes.
_set_invocation = vars(ArtifactHandle)["invocation"].__set__
_set_output = vars(ArtifactHandle)["output"].__set__


class OutputHandles(tuple):
    """The handles of a multi-output invocation; remembers being unpacked for error messages."""

    invocation: str

    def __iter__(self) -> Iterator[ArtifactHandle]:
        tracer = current_tracer()
        if tracer is not None:
            tracer.last_unpacked = self
        return super().__iter__()


# The parameters of an invocation that has none: one shared read-only mapping, not
# an empty dict per call (a run's objects are what the cyclic collector walks).
NO_PARAMS: Mapping[str, Any] = MappingProxyType({})


@dataclass(slots=True)
class Invocation:
    name: str
    step: Any  # steps.Step
    inputs: dict[str, ArtifactHandle]
    params: Mapping[str, Any]  # read-only: NO_PARAMS when it has none

    @property
    def upstream(self) -> list[str]:
        if len(self.inputs) == 1:  # most invocations: no set to build and sort
            return [h.invocation for h in self.inputs.values()]
        return sorted({h.invocation for h in self.inputs.values()})


@dataclass(slots=True)
class Dag:
    pipeline: str
    invocations: dict[str, Invocation]
    output: Any  # None, an ArtifactHandle, or a tuple of them
    # How many invocations read each one's outputs (each counted once), kept as
    # calls come: ints, not a list per invocation that the collector would follow.
    consumer_counts: dict[str, int] = field(default_factory=dict)

    @property
    def consumers(self) -> dict[str, list[str]]:
        """Each invocation's consumers, once each, in call order (one pass)."""
        found: dict[str, list[str]] = {name: [] for name in self.invocations}
        for inv in self.invocations.values():
            for upstream in inv.upstream:
                found[upstream].append(inv.name)
        return found

    def output_handles(self) -> tuple[ArtifactHandle, ...]:
        if self.output is None:
            return ()
        if isinstance(self.output, ArtifactHandle):
            return (self.output,)
        return tuple(self.output)


class Tracer:
    def __init__(self, pipeline: str) -> None:
        self.pipeline = pipeline
        self.invocations: dict[str, Invocation] = {}
        self.last_unpacked: OutputHandles | None = None
        # The next suffix to try per base name: a pipeline calling one step 10,000
        # times would otherwise probe inc_2, inc_3, ... for every call (quadratic).
        self._next_suffix: dict[str, int] = {}
        # Dag.consumer_counts, kept as calls come: cheaper than a pass over the
        # finished DAG, which asked every invocation for its sorted upstream.
        self._consumer_counts: dict[str, int] = {}

    @contextlib.contextmanager
    def active(self) -> Iterator[Tracer]:
        token = _tracer.set(self)
        try:
            yield self
        finally:
            _tracer.reset(token)

    def invoke(self, step: Any, arguments: dict[str, Any], name: str | None) -> Any:
        """Record a call of `step`; `arguments` by parameter name, in any order."""
        invocations = self.invocations
        if name is None:
            name = step.name
        if name in invocations:  # called again: base_2, base_3, ... (_unique's usual case inlined)
            n = self._next_suffix.get(name, 2)
            unique = f"{name}_{n}"
            if unique in invocations:
                unique = self._unique(name)
            else:
                self._next_suffix[name] = n + 1
            name = unique
        inputs: dict[str, ArtifactHandle] = {}
        params: dict[str, Any] = {}
        # Plain (name, default) pairs, not inspect.Parameters: this runs for every call.
        for pname, default in step.parameter_defaults:
            if pname in arguments:
                value = arguments[pname]
                if isinstance(value, ArtifactHandle):
                    producer = value.invocation
                    if producer not in invocations:
                        self._check_handle(value, name, pname)
                    inputs[pname] = value
                else:
                    self._check_parameter(value, name, pname)
                    params[pname] = value
            elif default is not _EMPTY:
                params[pname] = default
            else:
                raise PipelineDefinitionError(
                    f"pipeline {self.pipeline!r}: step {name!r} is missing input {pname!r}; "
                    f"pass it the output of an upstream step, e.g. {step.name}({pname}=...)"
                )
        invocations[name] = Invocation(name, step, inputs, params or NO_PARAMS)
        counts = self._consumer_counts
        counts[name] = 0
        if len(inputs) == 1:  # most calls: `producer` is its one input's
            counts[producer] += 1
        elif inputs:  # each producer once, however many of its outputs this call takes
            for producer in {h.invocation for h in inputs.values()}:
                counts[producer] += 1
        outputs = step.outputs
        if len(outputs) == 1:
            return ArtifactHandle(name, outputs[0].name)
        if not outputs:
            return None
        handles = OutputHandles(ArtifactHandle(name, o.name) for o in outputs)
        handles.invocation = name
        return handles

    def finish(self, result: Any) -> Dag:
        if isinstance(result, OutputHandles):
            result = tuple(result)
        for handle in (result,) if isinstance(result, ArtifactHandle) else result or ():
            if not isinstance(handle, ArtifactHandle):
                raise PipelineDefinitionError(
                    f"pipeline {self.pipeline!r} returns {type(handle).__name__}; a pipeline "
                    "returns nothing, one step output, or a tuple of step outputs"
                )
            self._check_handle(handle, "<return>", "return")
        return Dag(self.pipeline, self.invocations, result, self._consumer_counts)

    def unpack_error(self, exc: ValueError) -> PipelineDefinitionError | None:
        """Say which step's outputs were unpacked into the wrong number of names."""
        handles = self.last_unpacked
        if handles is None or "values to unpack" not in str(exc):
            return None
        names = ", ".join(h.output for h in handles)
        return PipelineDefinitionError(
            f"pipeline {self.pipeline!r}: step {handles.invocation!r} returns {len(handles)} "
            f"outputs ({names}) but they were unpacked into a different number of names ({exc})"
        )

    def _unique(self, base: str) -> str:
        """A name for another invocation of `base`, which is taken: base_2, base_3, ..."""
        n = self._next_suffix.get(base, 2)
        name = f"{base}_{n}"
        while name in self.invocations:
            n += 1
            name = f"{base}_{n}"
        self._next_suffix[base] = n + 1
        return name

    def _check_handle(self, handle: ArtifactHandle, step: str, arg: str) -> None:
        if handle.invocation not in self.invocations:
            raise PipelineDefinitionError(
                f"pipeline {self.pipeline!r}: input {arg!r} of step {step!r} comes from "
                f"{handle.invocation!r}, which is not a step of this pipeline run"
            )

    def _check_parameter(self, value: Any, step: str, arg: str) -> None:
        if isinstance(value, OutputHandles):
            names = ", ".join(h.output for h in value)
            raise PipelineDefinitionError(
                f"pipeline {self.pipeline!r}: input {arg!r} of step {step!r} was given all outputs "
                f"of step {value.invocation!r} ({names}); unpack them and pass one"
            )
        if isinstance(value, StepLike):
            raise PipelineDefinitionError(
                f"pipeline {self.pipeline!r}: input {arg!r} of step {step!r} was given a step, "
                "not its output; call the step and pass what it returns"
            )
