"""`@pipeline`: a function linking steps by the artifacts they pass.

Calling a pipeline binds its arguments (values, or step instances in the seed's
style) and returns a PipelineInstance; `.trace()` turns it into a DAG, `.run()`
executes it. Imports steps and dag; `.run()` reaches the executor layer through
one deferred import, the single upward call, so that `import zencache` stays light.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import PipelineDefinitionError
from ..storage.cache import Cache
from .dag import Dag, Tracer
from .steps import Step, StepInstance

if TYPE_CHECKING:
    from .runs import Run, StepEvent


class Pipeline:
    """A pipeline definition; call it with arguments to get a runnable instance."""

    def __init__(self, fn: Callable[..., Any], name: str | None = None) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.name = name or fn.__name__
        self.signature = inspect.signature(fn)

    def __repr__(self) -> str:
        return f"<pipeline {self.fn.__module__}:{self.fn.__qualname__}>"

    def __call__(self, *args: Any, **kwargs: Any) -> PipelineInstance:
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise PipelineDefinitionError(
                f"pipeline {self.name!r}: {exc}; its signature is {self.name}{self.signature}"
            ) from exc
        bound.apply_defaults()
        return PipelineInstance(self, bound)

    def run(self, **kwargs: Any) -> Run:
        """Shorthand for `pipeline().run(...)` when every argument has a default."""
        return self().run(**kwargs)


class PipelineInstance:
    def __init__(self, pipeline: Pipeline, bound: inspect.BoundArguments) -> None:
        self.pipeline = pipeline
        self.bound = bound
        self._dag: Dag | None = None

    @property
    def name(self) -> str:
        return self.pipeline.name

    @property
    def params(self) -> dict[str, Any]:
        """The arguments that are values, not injected steps: recorded with each run."""
        return {
            k: v for k, v in self.bound.arguments.items() if not isinstance(v, Step | StepInstance)
        }

    def trace(self) -> Dag:
        """Run the pipeline function once with artifact handles in place of data."""
        if self._dag is not None:
            return self._dag
        tracer = Tracer(self.name)
        arguments = {}
        for name, value in self.bound.arguments.items():
            if isinstance(value, Step):
                value = StepInstance(value, {}, name)
            elif isinstance(value, StepInstance):
                value = StepInstance(value.step, value.bound, name)
            arguments[name] = value
        call = inspect.BoundArguments(self.bound.signature, arguments)  # type: ignore[arg-type]
        with tracer.active():
            try:
                result = self.pipeline.fn(*call.args, **call.kwargs)
            except ValueError as exc:
                better = tracer.unpack_error(exc)
                if better is not None:
                    raise better from exc
                raise
        if not tracer.invocations:
            raise PipelineDefinitionError(
                f"pipeline {self.name!r} calls no step; call steps inside the pipeline function"
            )
        self._dag = tracer.finish(result)
        return self._dag

    def run(
        self,
        executor: Any = "local",
        max_workers: int | None = None,
        *,
        scheduler: Any = None,
        cache: Cache | str | None = None,
        force: bool = False,
        progress: Callable[[StepEvent], None] | None = None,
        remote: str | None = None,
        remote_mode: str | None = None,
    ) -> Run:
        """Execute what is not cached and return the Run. `force=True` ignores hits.
        `remote`: URL of a shared remote cache (else ZENCACHE_REMOTE / pyproject.toml);
        `remote_mode`: "read-write", "read-only" or "off".

        `executor`: "local", "processes", "dask" or an Executor instance;
        `scheduler`: a Dask scheduler address or distributed.Client (executor "dask").
        """
        from ..executors import run_pipeline  # the executor layer sits above this one

        return run_pipeline(
            self,
            executor=executor,
            max_workers=max_workers,
            scheduler=scheduler,
            cache=cache if isinstance(cache, Cache) else Cache(cache),
            force=force,
            progress=progress,
            remote=remote,
            remote_mode=remote_mode,
        )


def pipeline(fn: Callable[..., Any] | None = None, /, *, name: str | None = None) -> Any:
    """Make `fn` a pipeline: `@pipeline` or `@pipeline(name="...")`."""
    if fn is None:
        return lambda f: Pipeline(f, name)
    return Pipeline(fn, name)
