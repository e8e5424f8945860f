"""`@step`: typed functions whose outputs become artifacts.

Owns step definitions, their output specs and configured step instances; the
tracing of calls inside a pipeline lives in dag.py. Imports hashing,
materializers (lazily, at plan time) and errors; never an executor.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar, overload

from ..errors import PipelineDefinitionError
from ..hashing import module_label
from . import dag
from .step_config import _REQUIRED, config_class

P = ParamSpec("P")
R = TypeVar("R")

SINGLE_OUTPUT = "output"


class Output:
    """Names a step's several outputs: `-> Output(X_train=np.ndarray, y_train=np.ndarray)`."""

    def __init__(self, **outputs: Any) -> None:
        if not outputs:
            raise PipelineDefinitionError("Output() needs at least one name=type pair")
        self.outputs = outputs

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={getattr(v, '__name__', v)}" for k, v in self.outputs.items())
        return f"Output({inner})"


@dataclass(frozen=True, slots=True)
class OutputSpec:
    name: str
    declared: Any  # the annotation, or None when the step declares nothing


@dataclass(frozen=True, slots=True)
class StepOptions:
    cache: bool = True
    version: str | None = None
    materializers: Any = None  # one class for every output, or {output name: class}
    ignore: frozenset[str] = frozenset()
    deterministic: bool = True
    # True: what the fingerprint cannot track is an error; None: the project's setting
    strict: bool | None = None
    by_name: frozenset[str] = frozenset()  # path parameters keyed by their text only
    env: tuple[str, ...] = ()  # environment variables in the key


class Step(dag.StepLike, Generic[P, R]):
    """A step definition. Call it outside a pipeline to configure it, inside to use it."""

    def __init__(self, fn: Callable[P, R], options: StepOptions) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.name = fn.__name__
        self.identity = f"{module_label(fn.__module__)}:{fn.__qualname__}"
        self.options = options
        self.signature = inspect.signature(fn)
        for param in self.signature.parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise PipelineDefinitionError(
                    f"step {self.name!r} takes *{param.name}; steps take named inputs only, "
                    "so list each input or parameter explicitly"
                )
        for option in ("ignore", "by_name"):
            unknown = getattr(options, option) - set(self.signature.parameters)
            if unknown:
                raise PipelineDefinitionError(
                    f"step {self.name!r}: {option}= names {sorted(unknown)}, which are not "
                    f"parameters of {self.name}{self.signature}; fix the names"
                )
        # Each parameter's name and default (inspect.Parameter.empty if none), in
        # signature order: what tracing reads for every call, without inspect's properties.
        self.parameter_defaults = tuple(
            (name, _default(p, fn)) for name, p in self.signature.parameters.items()
        )
        # Names that may be passed by keyword, in signature order: the fast path of _bind.
        self._keywords = tuple(
            p.name
            for p in self.signature.parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        )
        self._keyword_set = frozenset(self._keywords)

    def __repr__(self) -> str:
        return f"<step {self.identity}>"

    # Read when first needed (annotations may name classes defined after the step),
    # then plain attributes: tracing reads `outputs` once per call.
    @functools.cached_property
    def outputs(self) -> tuple[OutputSpec, ...]:
        return parse_outputs(self.fn)

    @functools.cached_property
    def input_types(self) -> dict[str, Any]:
        return _annotations(self.fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        tracer = dag.current_tracer()
        if tracer is None:
            return StepInstance(self, self._bind(args, kwargs))
        if not args and self._keyword_set.issuperset(kwargs):
            return tracer.invoke(self, kwargs, None)  # it takes arguments in any order
        return tracer.invoke(self, self._bind(args, kwargs), None)

    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if not args and self._keyword_set.issuperset(kwargs):
            # What bind_partial returns for keywords only, without its cost (a
            # pipeline of 10,000 steps traces 10,000 calls).
            return {name: kwargs[name] for name in self._keywords if name in kwargs}
        try:
            return dict(self.signature.bind_partial(*args, **kwargs).arguments)
        except TypeError as exc:
            raise PipelineDefinitionError(
                f"step {self.name!r}: {exc}; its signature is {self.name}{self.signature}"
            ) from exc


class StepInstance(dag.StepLike):
    """A step with some arguments bound, as the seed injects into pipelines."""

    def __init__(
        self, step: Step[Any, Any], bound: Mapping[str, Any], name: str | None = None
    ) -> None:
        self.step = step
        self.bound = dict(bound)
        self.name = name  # the pipeline parameter it was injected as, if any

    def __repr__(self) -> str:
        return f"<configured step {self.step.identity} {self.bound}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        tracer = dag.current_tracer()
        if tracer is None:
            raise PipelineDefinitionError(
                f"step {self.step.name!r} was called outside a pipeline; call it inside an "
                f"@pipeline function, or call {self.step.name}.fn(...) to run the plain function"
            )
        arguments = {**self.bound, **self.step._bind(args, kwargs)}
        return tracer.invoke(self.step, arguments, self.name)


def _default(param: inspect.Parameter, fn: Callable[..., Any]) -> Any:
    """A parameter's default; a ZenML step config (`config: TrainerConfig`) without one
    gets its class's defaults, as ZenML did when the pipeline passed no config."""
    if param.default is not inspect.Parameter.empty:
        return param.default
    cls = config_class(param.annotation, getattr(fn, "__globals__", {}))
    if cls is not None and all(d is not _REQUIRED for _, d in cls.fields().values()):
        return cls()
    return param.default


@overload
def step(fn: Callable[P, R], /) -> Step[P, R]: ...
@overload
def step(
    *,
    cache: bool = True,
    version: str | None = None,
    materializers: Any = None,
    ignore: tuple[str, ...] | list[str] = (),
    deterministic: bool = True,
    strict: bool | None = None,
    enable_cache: bool | None = None,
    by_name: tuple[str, ...] | list[str] = (),
    env: tuple[str, ...] | list[str] = (),
) -> Callable[[Callable[P, R]], Step[P, R]]: ...


def step(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    cache: bool = True,
    version: str | None = None,
    materializers: Any = None,
    ignore: tuple[str, ...] | list[str] = (),
    deterministic: bool = True,
    strict: bool | None = None,
    enable_cache: bool | None = None,
    by_name: tuple[str, ...] | list[str] = (),
    env: tuple[str, ...] | list[str] = (),
) -> Any:
    """Make `fn` a step. `version=` pins its code fingerprint; `ignore=` keeps
    parameters (say `verbose`) out of the key; `cache=False` always executes
    (`enable_cache=False` is ZenML's spelling of it); `strict=True` makes what its
    fingerprint cannot track an error, not a warning (None: the project's `strict`
    setting). Path parameters enter the key by content; `by_name=` keys the listed
    ones by their text only (an output location, a name). `env=` puts the named
    environment variables' values in the key (literal reads in the code do too)."""
    if enable_cache is not None:
        cache = cache and bool(enable_cache)
    if isinstance(by_name, str) or isinstance(env, str):
        raise PipelineDefinitionError(
            "by_name= and env= take a tuple of names, not one string: write "
            'env=("MODE",) with the trailing comma'
        )
    for variable in env:
        if not isinstance(variable, str) or not variable or "=" in variable:
            raise PipelineDefinitionError(
                f"env= names {variable!r}, which is not an environment variable name"
            )
    options = StepOptions(
        cache=cache,
        version=None if version is None else str(version),
        materializers=materializers,
        ignore=frozenset(ignore),
        deterministic=deterministic,
        strict=strict,
        by_name=frozenset(by_name),
        env=tuple(sorted(set(env))),
    )
    if fn is None:
        return lambda f: Step(f, options)
    return Step(fn, options)


def parse_outputs(fn: Callable[..., Any]) -> tuple[OutputSpec, ...]:
    """Output names and declared types from the return annotation."""
    declared = _annotations(fn).get("return", inspect.Signature.empty)
    if declared is inspect.Signature.empty:
        return (OutputSpec(SINGLE_OUTPUT, None),)
    if declared is None or declared is type(None):
        return ()
    if isinstance(declared, Output):
        return tuple(OutputSpec(name, kind) for name, kind in declared.outputs.items())
    if typing.get_origin(declared) is tuple:
        args = typing.get_args(declared)
        named = [a for a in args if typing.get_origin(a) is typing.Annotated]
        if args and len(named) == len(args):
            specs = []
            for arg in args:
                kind, *meta = typing.get_args(arg)
                names = [m for m in meta if isinstance(m, str)]
                if not names:
                    break
                specs.append(OutputSpec(names[0], kind))
            else:
                return tuple(specs)
    return (OutputSpec(SINGLE_OUTPUT, declared),)


def _annotations(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return inspect.get_annotations(fn, eval_str=True)
    except Exception as exc:
        raise PipelineDefinitionError(
            f"cannot evaluate the type annotations of step {fn.__qualname__!r}: {exc}; "
            "import every name its annotations use"
        ) from exc
