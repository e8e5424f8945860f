"""The default executor: every step in this process, in topological order."""

from __future__ import annotations

from .runner import Runner


def execute(runner: Runner, max_workers: int | None = None) -> None:
    for ps in runner.planned.values():
        runner.run_step(ps)
