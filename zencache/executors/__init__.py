"""Executors: where and when steps run. They share runner.py's caching core.

`local` runs in-process; `processes` runs independent steps in parallel worker
processes (joblib's loky); `dask` runs them on a Dask distributed cluster. Each
is an `Executor` (base.py) whose `execute(runner)` calls the runner's pieces for
every planned step in an order that respects the DAG; the parallel ones share
scheduler.py (the driver) and worker.py (what a worker does). Whoever executes a
step does it through execute.py (load inputs, call, split and materialize outputs). Their modules
import joblib and dask only when a run first needs a worker.
"""

from __future__ import annotations

import importlib
import multiprocessing
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ..config import Settings, load_settings
from ..core.plan import plan, short_repr
from ..errors import CacheSizeWarning, UsageError, ZencacheError
from ..inputs.trees import StatMemo
from ..storage.cache import Cache
from . import hooks as hook_registry
from .base import Executor
from .events import Listener
from .remote_tier import RemoteTier
from .runner import Progress, Runner
from .skipping import InspectionStop, SkippedRun, runs_skipped, skip_run

__all__ = [
    "EXECUTORS",
    "InspectionStop",
    "SkippedRun",
    "make_executor",
    "run_pipeline",
    "runs_skipped",
]

if TYPE_CHECKING:
    from ..core.pipeline import PipelineInstance
    from ..core.runs import Run
    from ..storage.records import RunRecord

EXECUTORS = {
    "local": "zencache.executors.local",
    "processes": "zencache.executors.processes",
    "dask": "zencache.executors.dask",
}


def _module(name: str) -> ModuleType:
    module = EXECUTORS.get(name) if isinstance(name, str) else None
    if module is None:
        raise UsageError(
            f"unknown executor {name!r}; choose one of {', '.join(sorted(EXECUTORS))}, "
            "or pass an Executor instance"
        )
    loaded = importlib.import_module(module)
    check = getattr(loaded, "check_available", None)
    if check is not None:
        check()  # e.g. dask not installed: say so before any user code runs
    return loaded


def make_executor(
    executor: str | Executor = "local", max_workers: int | None = None, scheduler: Any = None
) -> Executor:
    """An Executor from `run()`'s arguments: a name, or an instance used as it is."""
    if isinstance(executor, Executor):
        if max_workers is not None or scheduler is not None:
            raise UsageError(
                "max_workers and scheduler are options of a named executor; pass them to "
                f"the constructor of {type(executor).__qualname__} instead"
            )
        return executor
    module = _module(executor)
    if scheduler is not None:
        if executor != "dask":
            raise UsageError(
                f"a Dask scheduler was given, but the executor is {executor!r}; choose "
                "executor 'dask' to run on a Dask cluster"
            )
        return module.EXECUTOR(scheduler, max_workers)
    return module.EXECUTOR(max_workers=max_workers)


def run_pipeline(
    instance: PipelineInstance,
    *,
    executor: str | Executor = "local",
    max_workers: int | None = None,
    scheduler: Any = None,
    cache: Cache,
    force: bool = False,
    progress: Progress | None = None,
    target: str = "",
    hooks: Any = None,
    strict_hooks: bool = False,
    settings: Settings | None = None,
    remote: str | None = None,
    remote_mode: str | None = None,
    listeners: Sequence[Listener] = (),
) -> Run:
    """Trace, plan and execute a pipeline instance; an interrupted run keeps what it committed.

    `hooks`: hook objects or names for this run, called after the installed and the
    project's hooks (hooks.py); `strict_hooks`: a hook that raises fails the run.
    `settings`: the project's, when the caller read them already (read once per run).
    `listeners`: callables told the run's events (events.py), after the hooks, before
    `progress`."""
    skipped = skip_run(instance.name)
    if skipped is not None:  # the module calling run() is only being imported
        return skipped  # type: ignore[return-value]
    instance.pipeline.check_requirements()
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise UsageError(
            f"pipeline {instance.name!r} was run while a new process was importing the main "
            "script (multiprocessing's spawn, which Dask's LocalCluster uses, re-imports it); "
            'put the code that runs the pipeline under `if __name__ == "__main__":`'
        )
    chosen = make_executor(executor, max_workers, scheduler)
    if hooks is not None and (isinstance(hooks, str) or not isinstance(hooks, list | tuple)):
        hooks = [hooks]  # one hook, given alone
    if settings is None:
        settings = load_settings()
    found = hook_registry.collect(hooks, strict=strict_hooks, project=settings.hooks)
    dag = instance.trace()
    memo = StatMemo(cache.index)
    planned = plan(dag, memo)
    memo.flush()
    params = {name: short_repr(value) for name, value in instance.params.items()}
    tier = _remote_tier(cache, dag.pipeline, remote, remote_mode, settings)
    runner = Runner(
        cache,
        dag,
        planned,
        params,
        force=force,
        progress=progress,
        target=target,
        hooks=found,
        executor=chosen.name or type(chosen).__qualname__,
        remote=tier,
        listeners=listeners,
    )
    try:
        runner.run_started()
        chosen.execute(runner)
    except KeyboardInterrupt:
        runner.write_run("interrupted")
        raise
    run = runner.write_run()
    if not cache.index.read_only:
        limit_size(cache, run.record, settings.max_size)
    runner.raise_failures()
    runner.raise_hook_errors()
    return run


def limit_size(cache: Cache, record: RunRecord, limit: int | None) -> None:
    """Enforce the project's size limit after a run; a failure here never fails the run."""
    if limit is None:
        return
    from ..maintenance.eviction import after_run  # loaded only when a limit is set

    try:
        report = after_run(cache, record, limit)
    except (ZencacheError, OSError) as exc:
        warnings.warn(f"the cache size limit was not enforced: {exc}", CacheSizeWarning, 2)
        return
    if report is not None and report.latest_evicted:
        warnings.warn(
            f"the cache at {cache.path} is over its limit of {report.limit} bytes: evicted "
            f"the latest run of {', '.join(report.latest_evicted)}; raise max_size or pin "
            "the runs to keep",
            CacheSizeWarning,
            2,
        )
    if report is not None and report.over_limit:
        warnings.warn(
            f"the cache at {cache.path} holds {report.after} bytes, over its limit of "
            f"{report.limit}, in what it may not evict (this run, pinned runs, steps being "
            "executed, objects written in the last 10 minutes); raise max_size or unpin runs",
            CacheSizeWarning,
            2,
        )


def _remote_tier(
    cache: Cache, pipeline: str, url: str | None, mode: str | None, settings: Settings
) -> RemoteTier | None:
    """The run's remote tier: `run(remote=..., remote_mode=...)` win over the settings.
    The remote itself is opened on the first local miss (a cached rerun never does)."""
    if not cache.select_remote(url, mode, settings):
        return None
    return RemoteTier(cache, pipeline, defer=settings.remote_upload == "defer")
