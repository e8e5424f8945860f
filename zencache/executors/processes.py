"""`processes`: independent steps in parallel worker processes on this machine (joblib's loky).

Workers are started on the first miss, so a fully cached run starts none, and
live for one run. A worker imports the step's modules when it starts, so a module
saved after the driver imported it (an edit while a run is under way) would be
what runs: each worker checks, before running a step, that its code has the
driver's fingerprint, and fails the step with a message otherwise. Steps are sent by
name when their module is importable (workers get the driver's sys.path) and by
value with cloudpickle otherwise, so a script needs no `if __name__ == "__main__":`
guard. Each worker's BLAS/OpenMP thread pools are sized to its share of the CPUs,
as joblib does. Imports joblib only when a pool opens.
"""

from __future__ import annotations

import concurrent.futures
import os
import time
from typing import Any

from .base import Executor, check_workers
from .runner import Runner
from .scheduler import Stats, run_parallel
from .worker import StepTask, TaskResult, run_task

_SLICE = 0.25  # seconds

_THREAD_SETTINGS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


class ProcessExecutor(Executor):
    """`run(executor="processes", max_workers=N)`; N defaults to the CPUs this process may use."""

    name = "processes"

    def __init__(self, max_workers: int | None = None) -> None:
        self.max_workers = check_workers(max_workers)
        self.stats = Stats()

    def execute(self, runner: Runner) -> None:
        run_parallel(runner, self._open_pool, self.stats)

    def _open_pool(self) -> _LokyPool:
        from joblib.externals.loky import cpu_count

        workers = self.max_workers or cpu_count()
        return _LokyPool(workers, max(cpu_count() // workers, 1))


class _LokyPool:
    def __init__(self, workers: int, threads: int) -> None:
        from joblib.externals.loky import ProcessPoolExecutor
        from joblib.externals.loky.process_executor import BrokenProcessPool

        env = {name: str(threads) for name in _THREAD_SETTINGS if name not in os.environ}
        self.executor = ProcessPoolExecutor(max_workers=workers, env=env)
        self.capacity = workers
        self.broken: tuple[type[BaseException], ...] = (BrokenProcessPool,)
        # Workers import the modules as they are on disk now, which may no longer be
        # what the driver imported and fingerprinted.
        self.check_code = True
        self.remote_workers = False  # on this machine: they share the cache folder

    def submit(self, task: StepTask) -> concurrent.futures.Future[TaskResult]:
        return self.executor.submit(run_task, task)

    def wait(
        self, handles: list[Any], every: bool = False, timeout: float | None = None
    ) -> list[tuple[Any, TaskResult | BaseException]]:
        when = concurrent.futures.ALL_COMPLETED if every else concurrent.futures.FIRST_COMPLETED
        done: set[Any] = set()
        give_up = None if timeout is None else time.monotonic() + timeout
        while not done or (every and len(done) < len(handles)):
            left = _SLICE if give_up is None else min(_SLICE, give_up - time.monotonic())
            # In slices, so that Ctrl-C reaches this thread while steps run.
            done, _ = concurrent.futures.wait(handles, timeout=max(left, 0), return_when=when)
            if give_up is not None and time.monotonic() >= give_up:
                break
        return [(f, f.exception() or f.result()) for f in done]

    def describe(self, exc: BaseException) -> str:
        from joblib.externals.loky.process_executor import TerminatedWorkerError

        if isinstance(exc, TerminatedWorkerError):
            codes = str(exc).partition("exit codes of the workers are")[2].split("\n")[0].strip()
            return (
                "the worker process running it died (killed by a signal, by the system when "
                "out of memory, or a crash in native code)"
                + (f"; worker exit codes {codes}" if codes else "")
            )
        cause = exc.__cause__
        detail = f": {str(cause).strip().splitlines()[-1]}" if cause is not None else ""
        return f"the process pool failed ({type(exc).__name__}: {exc}{detail})"

    def close(self, kill: bool) -> None:
        self.executor.shutdown(wait=True, kill_workers=kill)


EXECUTOR = ProcessExecutor
