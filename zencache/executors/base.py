"""The executor interface: where and when the steps of one run execute.

An executor gets a Runner (the run's caching core: decisions, records) and calls
its pieces for every planned step in an order that respects the DAG. Executors
own no storage and make no cache decisions of their own. Imports the runner only.
"""

from __future__ import annotations

from typing import ClassVar

from ..errors import UsageError
from .runner import Runner


class Executor:
    """Subclass it and implement `execute`; pass an instance as `run(executor=...)`."""

    name: ClassVar[str] = ""

    def execute(self, runner: Runner) -> None:
        raise NotImplementedError(f"{type(self).__qualname__} must implement execute(runner)")


def check_workers(max_workers: int | None) -> int | None:
    if max_workers is not None and (
        isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1
    ):
        raise UsageError(f"max_workers must be a positive integer or None (got {max_workers!r})")
    return max_workers
