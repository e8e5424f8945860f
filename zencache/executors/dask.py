"""`dask`: steps as tasks on a Dask distributed cluster (`pip install 'zencache[dask]'`).

The driver decides and commits, as with `processes` (scheduler.py); the workers
read and write the object store by path, so every worker must see the cache
directory at the same path as the driver: on one machine, the local folder; on
a cluster, a shared file system (docs/executors.md). Without a scheduler, a
LocalCluster of worker processes on 127.0.0.1 is started on the first miss and
closed at the end of the run; a given address or Client is used as it is, and
Dask's own retries (`distributed.scheduler.allowed-failures`) apply when a worker
dies. Imports dask only when a run first needs a worker.
"""

from __future__ import annotations

import importlib.util
import logging
import time
import uuid
from typing import Any

from ..errors import UsageError
from .base import Executor, check_workers
from .runner import Runner
from .scheduler import Stats, run_parallel
from .worker import StepTask, TaskResult, run_task

_INSTALL = "pip install 'zencache[dask]'"
_SLICE = 0.25  # seconds


def check_available() -> None:
    if importlib.util.find_spec("distributed") is None:
        raise UsageError(
            f"executor 'dask' needs Dask distributed, which is not installed: {_INSTALL}"
        )


class DaskExecutor(Executor):
    """`DaskExecutor()` (a LocalCluster per run), `DaskExecutor("tcp://host:8786")`, or
    `DaskExecutor(client)`. `max_workers` caps the tasks in flight (and sizes the
    LocalCluster); by default every ready step is sent and Dask balances them."""

    name = "dask"

    def __init__(self, scheduler: Any = None, max_workers: int | None = None) -> None:
        check_available()
        if scheduler is not None and not isinstance(scheduler, str):
            from distributed import Client

            if not isinstance(scheduler, Client):
                raise UsageError(
                    "scheduler must be an address such as 'tcp://host:8786' or a "
                    f"distributed.Client (got {type(scheduler).__name__})"
                )
        self.scheduler = scheduler
        self.max_workers = check_workers(max_workers)
        self.stats = Stats()

    def execute(self, runner: Runner) -> None:
        run_parallel(runner, self._open_pool, self.stats)

    def _open_pool(self) -> _DaskPool:
        from distributed import Client, LocalCluster

        if self.scheduler is None:
            # Worker processes, not threads: steps hold the GIL, and a worker that
            # dies must not take the driver with it.
            try:
                cluster = LocalCluster(
                    n_workers=self.max_workers,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    # A free port: without one the scheduler's HTTP server takes 8787 and
                    # warns when another cluster holds it.
                    dashboard_address="127.0.0.1:0",
                    silence_logs=logging.ERROR,
                )
            except RuntimeError as exc:
                raise UsageError(
                    f"cannot start a local Dask cluster ({exc}); in a script, put the code "
                    'that runs the pipeline under `if __name__ == "__main__":`, because Dask '
                    "starts each worker by re-importing the main module"
                ) from exc
            return _DaskPool(Client(cluster), self.max_workers, owned=(cluster,))
        if isinstance(self.scheduler, str):
            try:
                client = Client(self.scheduler, timeout="10s")
            except OSError as exc:
                raise UsageError(
                    f"cannot reach the Dask scheduler at {self.scheduler}: {exc}; start one "
                    "with 'dask scheduler' (and workers with 'dask worker ADDRESS'), or "
                    "check the address"
                ) from exc
            return _DaskPool(client, self.max_workers, owned=())
        return _DaskPool(self.scheduler, self.max_workers, owned=None)


class _DaskPool:
    broken: tuple[type[BaseException], ...] = ()  # Dask reschedules a dead worker's tasks
    check_code = True  # a cluster's workers outlive runs, and may run another environment
    remote_workers = True  # and may be on machines that share only the remote cache

    def __init__(self, client: Any, max_workers: int | None, owned: tuple[Any, ...] | None):
        self.client = client
        self.capacity = max_workers or 1 << 30
        self.owned = owned  # None: the caller's client, left open
        self.pending: set[Any] = set()

    def submit(self, task: StepTask) -> Any:
        key = f"zencache-{task.name}-{uuid.uuid4().hex}"
        future = self.client.submit(run_task, task, key=key, pure=False)
        self.pending.add(future)
        return future

    def wait(
        self, handles: list[Any], every: bool = False, timeout: float | None = None
    ) -> list[tuple[Any, TaskResult | BaseException]]:
        from distributed import wait

        when = "ALL_COMPLETED" if every else "FIRST_COMPLETED"
        give_up = None if timeout is None else time.monotonic() + timeout
        done: set[Any] = set()
        while True:
            left = _SLICE if give_up is None else min(_SLICE, give_up - time.monotonic())
            try:  # in slices, so that Ctrl-C reaches this thread while steps run
                done, _ = wait(handles, timeout=max(left, 0.001), return_when=when)
                break
            except TimeoutError:
                if give_up is not None and time.monotonic() >= give_up:
                    # Those finished by then (distributed.wait raises instead of saying).
                    done = {f for f in handles if f.done()}
                    break
                continue
        outcomes: list[tuple[Any, TaskResult | BaseException]] = []
        self.pending.difference_update(done)
        for future in done:
            if future.status == "finished":
                outcomes.append((future, future.result()))
            elif future.status == "error":
                outcomes.append((future, future.exception()))
            else:
                outcomes.append((future, RuntimeError(f"the task was {future.status}")))
        return outcomes

    def describe(self, exc: BaseException) -> str:
        from distributed import KilledWorker

        if isinstance(exc, KilledWorker):
            return (
                "the Dask workers running it died (killed, out of memory, or a crash in native "
                f"code) as many times as distributed.scheduler.allowed-failures permits: {exc}"
            )
        return f"the Dask cluster could not run it ({type(exc).__name__}: {exc})"

    def close(self, kill: bool) -> None:
        if kill and self.pending:
            self.client.cancel(list(self.pending))  # a cluster that outlives the run stops them
        self.pending.clear()
        if self.owned is None:
            return
        self.client.close()
        for cluster in self.owned:
            cluster.close()


EXECUTOR = DaskExecutor
