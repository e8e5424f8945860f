"""The default executor: every step in this process, in topological order."""

from __future__ import annotations

import time

from .base import Executor, check_workers
from .runner import Runner


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, max_workers: int | None = None) -> None:
        check_workers(max_workers)  # accepted for a uniform signature; one step at a time

    def execute(self, runner: Runner) -> None:
        steps = list(runner.planned.values())  # topological order
        try:
            at, missed = runner.settle_hits(steps, 0)
            while at < len(steps):
                ps = steps[at]
                started = time.perf_counter()
                key = runner.decide(ps, started, missed, looked_up=bool(missed))
                if key is not None:
                    runner.execute_here(ps, key, started)
                at, missed = runner.settle_hits(steps, at + 1)
        finally:
            runner.wait_for_commits()  # the queued records of what finished, however the run ends


EXECUTOR = LocalExecutor
