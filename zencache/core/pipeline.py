"""`@pipeline`: a function linking steps by the artifacts they pass.

Calling a pipeline binds its arguments (values, or step instances in the seed's
style) and returns a PipelineInstance; `.trace()` turns it into a DAG, `.run()`
executes it. Imports steps and dag; `.run()` reaches the executor layer through
one deferred import, the single upward call, so that `import zencache` stays light.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..config import load_settings
from ..errors import PipelineDefinitionError, UsageError
from ..integrations.constants import REQUIREMENTS
from ..storage.cache import Cache
from .dag import Dag, Tracer
from .steps import Step, StepInstance

if TYPE_CHECKING:
    from .runs import Run, StepEvent

log = logging.getLogger(__name__)


class Pipeline:
    """A pipeline definition; call it with arguments to get a runnable instance."""

    def __init__(
        self,
        fn: Callable[..., Any],
        name: str | None = None,
        required_integrations: Iterable[str] = (),
    ) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.name = name or fn.__name__
        self.signature = inspect.signature(fn)
        if isinstance(required_integrations, str):
            required_integrations = (required_integrations,)
        self.required_integrations = tuple(required_integrations)

    def check_requirements(self) -> None:
        """ZenML's `required_integrations`: each known one's modules must be importable
        (looked up, not imported); names zencache does not know are ignored, logged."""
        missing = []
        for name in self.required_integrations:
            known = REQUIREMENTS.get(str(name).lower())
            if known is None:
                log.info("pipeline %r: integration %r is not one zencache knows", self.name, name)
                continue
            modules, requirement = known
            if not all(_importable(m) for m in modules):
                missing.append((name, requirement))
        if missing:
            names = ", ".join(repr(n) for n, _ in missing)
            install = " ".join(sorted({r for _, r in missing}))
            raise UsageError(
                f"pipeline {self.name!r} requires the integration {names}, which is not "
                f"installed; pip install {install}"
            )

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
        call = inspect.BoundArguments(self.bound.signature, arguments)
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
        executor: Any = None,
        max_workers: int | None = None,
        *,
        scheduler: Any = None,
        cache: Cache | str | None = None,
        force: bool = False,
        progress: Callable[[StepEvent], None] | None = None,
        hooks: Any = None,
        strict_hooks: bool = False,
        remote: str | None = None,
        remote_mode: str | None = None,
    ) -> Run:
        """Execute what is not cached and return the Run. `force=True` ignores hits.
        `remote`: URL of a shared remote cache (else ZENCACHE_REMOTE / pyproject.toml);
        `remote_mode`: "read-write", "read-only" or "off".

        `executor`: "local", "processes", "dask" or an Executor instance;
        `scheduler`: a Dask scheduler address or distributed.Client (executor "dask").
        Without them, `executor`, `workers` and the cache folder come from the project's
        settings (`[tool.zencache]`, ZENCACHE_* variables: zencache.config), else local.
        `hooks`: objects (or names: "mlflow", "wandb", "module:attr") told about the
        run as it goes, after the project's and installed ones (docs/integrations.md);
        `strict_hooks`: a hook that raises fails the run (its cache entries are kept).
        """
        from ..executors import run_pipeline  # the executor layer sits above this one

        # The settings are read once per run (~0.1 ms) and passed down: the project's
        # hooks, size limit and remote come from them even when the rest is given.
        settings = load_settings()
        if executor is None:
            executor = settings.executor
        if max_workers is None and isinstance(executor, str) and executor != "local":
            max_workers = settings.workers
        if cache is None:
            cache = settings.cache_dir
        return run_pipeline(
            self,
            executor=executor,
            max_workers=max_workers,
            scheduler=scheduler,
            cache=cache if isinstance(cache, Cache) else Cache(cache),
            force=force,
            progress=progress,
            hooks=hooks,
            strict_hooks=strict_hooks,
            settings=settings,
            remote=remote,
            remote_mode=remote_mode,
        )


_ZENML_PIPELINE_OPTIONS = {"enable_cache", "requirements_file", "dockerignore_file"}


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def pipeline(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    required_integrations: Iterable[str] = (),
    **zenml_options: Any,
) -> Any:
    """Make `fn` a pipeline: `@pipeline` or `@pipeline(name="...")`.

    `required_integrations=[SKLEARN, ...]` (ZenML's; names in
    zencache.integrations.constants) are checked when the pipeline runs. ZenML's
    other pipeline options (`enable_cache=`, `requirements_file=`, ...) are accepted
    and ignored, with a debug-log note: caching is per step here.
    """
    unknown = sorted(set(zenml_options) - _ZENML_PIPELINE_OPTIONS)
    if unknown:
        raise TypeError(f"pipeline() got an unexpected keyword argument {unknown[0]!r}")
    if zenml_options:
        log.debug("pipeline options %s are ZenML's and ignored", sorted(zenml_options))
    if fn is None:
        return lambda f: Pipeline(f, name, required_integrations)
    return Pipeline(fn, name, required_integrations)
