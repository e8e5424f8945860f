"""Group commit: executed steps' records are committed by a background thread,
batched, while the next steps run (executors/committer.py).

Counted and ordered, not timed. The guarantees: records reach the index in the
order their steps finished, each batch atomically; a run returns only after all
are committed; a kill -9 loses at most records still queued (those steps rerun)
and never a committed one; a step that waits sees the steps before it committed
while it runs (no fsync stands between one step and the next).
"""

from __future__ import annotations

import signal
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from zencache import Cache, pipeline, step
from zencache.errors import StorageFullError
from zencache.storage.index import Index
from zencache.storage.records import RunRecord

STEPS = 12
RELEASE_AT = 9  # the input of the step that lets the committer go (see below)
_held: list[threading.Event] = []


# version= pins the code: the step reads _held, which the test empties, and the
# fingerprint (rightly) sees that module-level list change between runs.
@step(version="1")
def inc(x: int) -> int:
    if x == RELEASE_AT and _held:
        _held.pop().set()
    return x + 1


@pipeline
def chain(start: int = 0):
    x = inc(x=start)
    for _ in range(STEPS - 1):
        x = inc(x=x)
    return x


def test_records_queued_while_a_commit_waits_are_committed_in_one_batch(
    cache: Cache, count_transactions: Any
) -> None:
    # The committer's first commit waits at a gate until the 10th step opens it,
    # so the records of steps 1-9 must all go in one transaction.
    gate = threading.Event()
    real_write = cache.index.write

    def gated_write(ops: Any) -> None:
        gate.wait(60)
        real_write(ops)

    cache.index.write = gated_write  # type: ignore[method-assign]
    _held.append(gate)
    try:
        with count_transactions(cache.index) as counting:
            run = chain().run(cache=cache)
    finally:
        del cache.index.write  # the class's own again
    assert not _held
    assert {s.status for s in run.steps.values()} == {"executed"}
    # One batch of >= 9 steps, at most three more for steps 10-12, the run record.
    assert 2 <= counting.writes <= 5
    assert len(cache.index.keys("steps")) == STEPS
    assert cache.leases.held_slots() == []
    assert {s.status for s in chain().run(cache=cache).steps.values()} == {"cached"}


def test_a_cold_run_commits_every_step_before_it_returns(cache: Cache) -> None:
    run = chain(start=100).run(cache=cache)
    for s in run.steps.values():
        assert cache.index.step_output_ids(s.key) == tuple(s.outputs.values())
    assert cache.index.get_run(run.run_id) is not None
    assert cache.leases.held_slots() == []


def test_the_same_key_twice_in_a_run_executes_once(cache: Cache) -> None:
    @pipeline
    def twice():
        return inc(x=1), inc(x=1)

    run = twice().run(cache=cache)
    assert run.steps["inc"].status == "executed"
    assert run.steps["inc_2"].status == "cached"  # recorded by this run, maybe not yet committed
    assert run.output() == (2, 2)


def test_a_commit_that_fails_stops_the_run_and_keeps_what_was_committed(
    cache: Cache, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert chain().run(cache=cache).output() == STEPS
    real_write = Index.write

    def full(self: Index, ops: Any, **kwargs: Any) -> None:
        raise StorageFullError(f"cannot write the index at {self.path}: the disk is full")

    monkeypatch.setattr(Index, "write", full)
    with pytest.raises(StorageFullError, match="disk is full"):
        chain(start=50).run(cache=cache)
    monkeypatch.setattr(Index, "write", real_write)
    assert cache.leases.held_slots() == []  # released although never committed
    assert len(cache.index.keys("steps")) == STEPS  # the first run's entries, intact
    again = chain(start=50).run(cache=cache)
    assert {s.status for s in again.steps.values()} == {"executed"}


KILLER = textwrap.dedent(
    """
    import os, signal, sys, time
    from zencache import Cache, pipeline, step

    @step
    def inc(x: int) -> int:
        # Read from argv here: a module constant would be part of the step's key.
        if x == int(sys.argv[2]):
            # Let the committer catch up while this step runs, as a slow step would.
            index, deadline = Cache(sys.argv[1]).index, time.monotonic() + 30
            while sys.argv[3] == "wait" and len(index.keys("steps")) < x:
                assert time.monotonic() < deadline, "the committer never caught up"
                time.sleep(0.005)
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


def _rerun_statuses(python: Any, cache_dir: Path) -> tuple[list[str], int]:
    cache = Cache(cache_dir)
    try:
        committed = len(cache.index.keys("steps"))
        assert cache.index.keys("runs") == []
    finally:
        cache.close()
    rerun = python.run(KILLER, str(cache_dir), "-1", "no")
    assert rerun.returncode == 0, rerun.stderr
    cache = Cache(cache_dir)
    try:
        assert len(cache.index.keys("steps")) == 10
        (record,) = [RunRecord.decode(v) for _, v in cache.index.items("runs")]
        return [s.status for s in record.steps], committed
    finally:
        cache.close()


def test_steps_that_finished_are_committed_while_the_next_one_runs(
    python: Any, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"
    killed = python.run(KILLER, str(cache_dir), "6", "wait")  # inside the 7th step
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    statuses, committed = _rerun_statuses(python, cache_dir)
    assert committed == 6
    assert statuses == ["cached"] * 6 + ["executed"] * 4


def test_a_kill_9_right_after_steps_finish_loses_only_queued_ones_in_order(
    python: Any, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"
    killed = python.run(KILLER, str(cache_dir), "6", "no")  # no time to catch up
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    statuses, committed = _rerun_statuses(python, cache_dir)
    # Whatever was committed is a prefix of the chain, and exactly it is a hit.
    assert 0 <= committed <= 6
    assert statuses == ["cached"] * committed + ["executed"] * (10 - committed)
