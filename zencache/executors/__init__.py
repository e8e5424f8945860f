"""Executors: where and when steps run. They share runner.py's caching core.

`local` runs in-process. An executor is a function `execute(runner, max_workers)`
that calls `runner.run_step` (or the runner's lookup/commit pieces) for every
planned step in an order that respects the DAG.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..cache import Cache
from ..errors import UsageError
from ..plan import plan
from .runner import Progress, Runner

if TYPE_CHECKING:
    from ..pipeline import PipelineInstance
    from ..runs import Run

EXECUTORS = {"local": "zencache.executors.local"}


def get_executor(name: str) -> Callable[[Runner, int | None], None]:
    module = EXECUTORS.get(name)
    if module is None:
        raise UsageError(f"unknown executor {name!r}; choose one of {', '.join(sorted(EXECUTORS))}")
    return importlib.import_module(module).execute


def run_pipeline(
    instance: PipelineInstance,
    *,
    executor: str = "local",
    max_workers: int | None = None,
    cache: Cache,
    force: bool = False,
    progress: Progress | None = None,
    target: str = "",
) -> Run:
    """Trace, plan and execute a pipeline instance; an interrupted run keeps what it committed."""
    execute = get_executor(executor)
    dag = instance.trace()
    planned = plan(dag)
    params = {name: repr(value) for name, value in instance.params.items()}
    runner = Runner(cache, dag, planned, params, force=force, progress=progress, target=target)
    try:
        execute(runner, max_workers)
    except KeyboardInterrupt:
        runner.finish("interrupted")
        raise
    return runner.finish()
