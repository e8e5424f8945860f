"""From a traced DAG to what a cache lookup needs: static key parts per invocation.

Shared by the executors and by `cache status`/`explain`, so that what is checked
is exactly what is run. Fingerprints, parameter digests, materializer choices and
what a step reads from outside (path contents, environment variables) are
computed here once per invocation; nothing here writes the cache (the caller
flushes the stat memo that path contents were read with).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import PipelineDefinitionError, UnhashableParameterError, UsageError
from ..fingerprint import Fingerprint, fingerprint, new_epoch
from ..fingerprint.carried import carried_classes
from ..hashing import hash_value
from ..inputs.external import External, step_externals
from ..inputs.trees import StatMemo
from ..materializers import registry
from ..materializers.base import BaseMaterializer
from .dag import NO_PARAMS, Dag, Invocation
from .keys import RUNTIME_MATERIALIZER, KeyParts, KeyTemplate
from .step_config import BaseStepConfig, key_params

_REPR_LIMIT = 200


@dataclass(slots=True)
class PlannedStep:
    invocation: Invocation
    # The invocation's name and step, as fields: the runner reads them several
    # times per step, and a property costs a call each time.
    name: str
    step: Any  # steps.Step
    parts: KeyParts
    fingerprint: Fingerprint | None  # None when version= pins the code
    materializers: dict[str, type[BaseMaterializer] | None]  # None: choose from the value
    output_names: tuple[str, ...]  # materializers' keys, in order: what a hit zips with ids
    param_reprs: Mapping[str, str]  # read-only, shared by invocations alike
    input_names: tuple[str, ...]  # sorted: the order of the ids in the key
    key_template: KeyTemplate  # the key's fixed fields, prepared once
    # Paths and environment variables it reads (in the key; recorded in its entry).
    externals: tuple[External, ...] = ()


def plan(dag: Dag, memo: StatMemo | None = None, cwd: str | None = None) -> list[PlannedStep]:
    """Static key parts of every invocation, in topological order.

    Path parameters are hashed now, relative ones against `cwd` (default: the
    current directory), with `memo`'s file digests (default: none kept).
    """
    # A step invoked many times with the same parameters has the same static parts:
    # computed once per plan (the registry, fingerprints, files and environment
    # variables are read once per run).
    shared: dict[Any, Any] = {
        _CONTEXT: (memo or StatMemo(None), os.getcwd() if cwd is None else cwd)
    }
    # Each plan checks the per-process fingerprint memos again (a notebook may have
    # redefined a helper or edited a module-level dict since the last run).
    new_epoch()
    return [plan_invocation(dag.pipeline, inv, shared) for inv in dag.invocations.values()]


_CONTEXT = object()  # the key of (memo, cwd) in a plan's shared dict
_REACHED = object()  # the key of {invocation: the user classes its code reaches}


def plan_invocation(
    pipeline: str, inv: Invocation, shared: dict[Any, Any] | None = None
) -> PlannedStep:
    """`shared` memoizes per-step work across the invocations of one plan (and
    holds the stat memo and working directory that path parameters are read with)."""
    step = inv.step
    options = step.options
    inputs = inv.inputs
    names = tuple(sorted(inputs)) if len(inputs) > 1 else tuple(inputs)
    params: Mapping[str, str]
    reprs: Mapping[str, str]
    if inv.params:
        params, reprs = _key_params(pipeline, inv)
        # The classes the parameters' values are instances of (or are) bring their
        # methods into the step, like helpers it calls.
        carried = carried_classes(v for n, v in inv.params.items() if n not in options.ignore)
    else:  # most invocations: nothing to hash
        params, reprs, carried = NO_PARAMS, NO_PARAMS, ()
    # So do the classes that upstream code reaches: make() builds a Box, measure()
    # calls box.area(); a pickle names Box but not its code, and make() need not
    # call area(), so measure must carry Box itself.
    reached_by = None if shared is None else shared.get(_REACHED)
    if reached_by:  # most pipelines: no user class anywhere, nothing to look up
        for handle in inputs.values():
            inherited = reached_by.get(handle.invocation)
            if inherited:
                carried = _union(carried, inherited)
    memo = (step, tuple(params.items()), names, carried) if params else (step, names, carried)
    found = None if shared is None else shared.get(memo)
    if found is None:
        context = None if shared is None else shared.get(_CONTEXT)
        memo_, cwd = context or (StatMemo(None), os.getcwd())
        found = (
            *_static_parts(
                step, inv.params, params, names, memo_, cwd, pipeline, inv.name, carried
            ),
            names,
        )
        if shared is not None:
            shared[memo] = found
    # What the plan keeps is shared where invocations agree (the input names, the
    # static parts, no parameters): a run's objects are what the cyclic collector walks.
    parts, fp, materializers, outputs, template, externals, names = found
    reached = fp.classes if fp is not None else carried
    if reached and shared is not None:
        shared.setdefault(_REACHED, {})[inv.name] = reached
    return PlannedStep(
        inv,
        inv.name,
        step,
        parts,
        fp,
        materializers,
        outputs,
        reprs,
        names,
        template,
        externals,
    )


def _key_params(pipeline: str, inv: Invocation) -> tuple[dict[str, str], dict[str, str]]:
    """The digests of an invocation's parameters in the key (by name), and their reprs."""
    params: dict[str, str] = {}
    reprs: dict[str, str] = {}
    for given, value in inv.params.items():
        if given in inv.step.options.ignore:
            continue
        # A ZenML step config enters field by field (`config.gamma`): status names the field.
        pairs = key_params(given, value) if isinstance(value, BaseStepConfig) else ((given, value),)
        for name, part in pairs:
            try:
                params[name] = hash_value(part)
            except UnhashableParameterError as exc:
                raise UnhashableParameterError(
                    f"pipeline {pipeline!r}: cannot hash parameter {name!r} of step "
                    f"{inv.name!r}: {exc}"
                ) from exc
            except RecursionError:
                raise UnhashableParameterError(
                    f"pipeline {pipeline!r}: cannot hash parameter {name!r} of step "
                    f"{inv.name!r}: a {type(part).__name__} nested too deeply or that refers "
                    "to itself; pass it as an artifact (the output of a step), or add it to ignore="
                ) from None
            reprs[name] = short_repr(part)
    return params, reprs


_StaticParts = tuple[
    KeyParts,
    Fingerprint | None,
    dict[str, type[BaseMaterializer] | None],
    tuple[str, ...],  # the output names
    KeyTemplate,
    tuple[External, ...],  # files, folders and environment variables read by content
]


def _static_parts(
    step: Any,
    values: Mapping[str, Any],
    params: Mapping[str, str],
    input_names: tuple[str, ...],
    memo: StatMemo,
    cwd: str,
    pipeline: str,
    name: str,
    carried: tuple[type, ...] = (),
) -> _StaticParts:
    """What every invocation of `step` with these parameters and inputs shares."""
    materializers = output_materializers(step)
    outputs = tuple(
        (name, RUNTIME_MATERIALIZER if m is None else m.identity())
        for name, m in materializers.items()
    )
    version = step.options.version
    if version is not None:
        fp, code = None, f"version:{version}"
    else:
        # The user classes its annotations name: an input declared `cfg: Config`
        # calls Config's methods on whatever upstream wrote, byte-identical or not.
        declared = carried_classes(annotations=step.input_types.values())
        fp = fingerprint(step.fn, _union(carried, declared))
        code = fp.digest
    env_names = (*step.options.env, *(fp.env if fp is not None else ()))
    try:
        externals = step_externals(step, values, env_names, memo, cwd)
    except UsageError as exc:
        raise type(exc)(f"pipeline {pipeline!r}, step {name!r}: {exc}") from exc
    parts = KeyParts.make(
        step.identity, code, params, outputs, tuple((e.name, e.digest) for e in externals)
    )
    template = KeyTemplate(parts.static, input_names)
    return parts, fp, materializers, tuple(materializers), template, externals


def _union(a: tuple[type, ...], b: tuple[type, ...]) -> tuple[type, ...]:
    if not a or not b:
        return a or b
    merged = {id(c): c for c in (*a, *b)}
    return tuple(sorted(merged.values(), key=lambda c: (str(c.__module__), c.__qualname__, id(c))))


def output_materializers(step: Any) -> dict[str, type[BaseMaterializer] | None]:
    """Each output's materializer: the step's override, else by declared type."""
    chosen = step.options.materializers
    result: dict[str, type[BaseMaterializer] | None] = {}
    for spec in step.outputs:
        override = chosen.get(spec.name) if isinstance(chosen, dict) else chosen
        if override is not None and not (
            isinstance(override, type) and issubclass(override, BaseMaterializer)
        ):
            raise PipelineDefinitionError(
                f"step {step.name!r}: materializers= must be a BaseMaterializer subclass or a dict "
                f"of them by output name (got {override!r} for output {spec.name!r})"
            )
        result[spec.name] = override or registry.for_type(spec.declared)
    if isinstance(chosen, dict):
        unknown = set(chosen) - set(result)
        if unknown:
            raise PipelineDefinitionError(
                f"step {step.name!r}: materializers= names outputs {sorted(unknown)}, but its "
                f"outputs are {list(result)}"
            )
    return result


def short_repr(value: Any) -> str:
    """A value's repr for records and messages, at most _REPR_LIMIT characters (a
    parameter of 24 MB made every run record 24 MB)."""
    try:
        text = repr(value)
    except RecursionError:
        return f"<{type(value).__name__} nested too deeply to show>"
    return text if len(text) <= _REPR_LIMIT else text[: _REPR_LIMIT - 3] + "..."
