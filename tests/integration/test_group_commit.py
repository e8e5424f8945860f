"""Group commit: an executed step's records ride on the run's next write transaction.

Counted, not timed: a cold run of N steps makes one index write per executed
step (its lease, carrying the previous step's records), one for the last
step's records and one for the run record. The guarantee: when a step's
function starts, every step that finished before it is committed, so a kill -9
inside a step loses nothing that finished.
"""

from __future__ import annotations

import signal
import textwrap
from pathlib import Path
from typing import Any

from zencache import Cache, pipeline, step

STEPS = 12


@step
def inc(x: int) -> int:
    return x + 1


@pipeline
def chain(start: int = 0):
    x = inc(x=start)
    for _ in range(STEPS - 1):
        x = inc(x=x)
    return x


def test_a_cold_run_writes_the_index_once_per_executed_step(
    cache: Cache, count_transactions: Any
) -> None:
    with count_transactions(cache.index) as counting:
        run = chain().run(cache=cache)
    assert {s.status for s in run.steps.values()} == {"executed"}
    assert counting.writes == STEPS + 2  # leases, the last step's records, the run record
    assert len(cache.index.keys("steps")) == STEPS
    assert cache.index.keys("leases") == []


def test_the_same_key_twice_in_a_run_executes_once(cache: Cache) -> None:
    @pipeline
    def twice():
        return inc(x=1), inc(x=1)

    run = twice().run(cache=cache)
    assert run.steps["inc"].status == "executed"
    assert run.steps["inc_2"].status == "cached"  # found in the lease's transaction
    assert run.output() == (2, 2)


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from zencache import Cache, pipeline, step

    @step
    def inc(x: int) -> int:
        if x == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)
        return x + 1

    @pipeline
    def chain():
        x = inc(x=0)
        for _ in range(9):
            x = inc(x=x)
        return x

    chain().run(cache=Cache(sys.argv[1]))
    """
)


def test_kill_9_inside_a_step_keeps_every_step_that_finished(python: Any, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    killed = python.run(KILLER, str(cache_dir), "6")  # inside the 7th step
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    cache = Cache(cache_dir)
    try:
        assert len(cache.index.keys("steps")) == 6  # inc(0) .. inc(5) finished and committed
        assert cache.index.keys("runs") == []
    finally:
        cache.close()
    rerun = python.run(KILLER, str(cache_dir), "-1")
    assert rerun.returncode == 0, rerun.stderr
    cache = Cache(cache_dir)
    try:
        assert len(cache.index.keys("steps")) == 10
        (record,) = cache.index.iter_runs()
        statuses = [s.status for s in record.steps]
        assert statuses == ["cached"] * 6 + ["executed"] * 4
    finally:
        cache.close()
