"""Executors: where and when steps run. They share runner.py's caching core.

`local` runs in-process; `processes` runs independent steps in parallel worker
processes (joblib's loky); `dask` runs them on a Dask distributed cluster. Each
is an `Executor` (base.py) whose `execute(runner)` calls the runner's pieces for
every planned step in an order that respects the DAG; the parallel ones share
scheduler.py (the driver) and worker.py (what a worker does). Their modules
import joblib and dask only when a run first needs a worker.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ..core.plan import plan
from ..errors import UsageError
from ..storage.cache import Cache
from . import collector
from .base import Executor
from .runner import Progress, Runner

if TYPE_CHECKING:
    from ..core.pipeline import PipelineInstance
    from ..core.runs import Run

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


class InspectionStop(BaseException):
    """The user's module used the result of a run that was skipped because the command
    only inspects. A BaseException, so that the module's `except Exception` lets it
    through to the importer, which keeps what the module defined up to there."""


class SkippedRun:
    """What `run()` returns while a command only imports the user's code: nothing ran.

    Reading anything from it stops the import (InspectionStop) rather than inventing
    results the module might act on."""

    def __init__(self, pipeline: str) -> None:
        self._pipeline = pipeline

    def __repr__(self) -> str:
        return f"<run of {self._pipeline!r} skipped: the command only inspects>"

    def __getattr__(self, name: str) -> Any:
        raise InspectionStop(
            f"the module used .{name} of the run of pipeline {self._pipeline!r}, which was "
            "skipped because the command only inspects"
        )


# The pipelines whose run() was skipped, while a command imports the user's code
# (None: runs execute). One per process: the CLI imports user code on one thread.
_skipped: list[str] | None = None


@contextlib.contextmanager
def runs_skipped() -> Iterator[list[str]]:
    """While it lasts, `run()` executes nothing, records nothing and returns a SkippedRun;
    the names of the pipelines it was called for are collected in the yielded list."""
    global _skipped
    outer, _skipped = _skipped, []
    try:
        yield _skipped
    finally:
        _skipped = outer


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
) -> Run:
    """Trace, plan and execute a pipeline instance; an interrupted run keeps what it committed."""
    if _skipped is not None:
        _skipped.append(instance.name)
        return SkippedRun(instance.name)  # type: ignore[return-value]
    instance.pipeline.check_requirements()
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise UsageError(
            f"pipeline {instance.name!r} was run while a new process was importing the main "
            "script (multiprocessing's spawn, which Dask's LocalCluster uses, re-imports it); "
            'put the code that runs the pipeline under `if __name__ == "__main__":`'
        )
    chosen = make_executor(executor, max_workers, scheduler)
    with collector.paused():  # see collector.py: the run's bookkeeping makes no cycles
        dag = instance.trace()
        planned = plan(dag)
        params = {name: repr(value) for name, value in instance.params.items()}
        runner = Runner(cache, dag, planned, params, force=force, progress=progress, target=target)
    try:
        chosen.execute(runner)
    except KeyboardInterrupt:
        runner.finish("interrupted")
        raise
    with collector.paused():
        return runner.finish()
