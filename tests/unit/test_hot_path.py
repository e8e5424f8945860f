"""The cache-hit path's structure, counted rather than timed (benchmarks/ times it).

A cached rerun computes each step's key and looks it up in one read snapshot
shared by the streak of hits; the run record (with the latest keys) is the run's
only write transaction.
"""

from __future__ import annotations

import gc
import json
import logging
from typing import Any

import pytest

from zencache import Cache, pipeline, step
from zencache.storage.records import RUN_RECORD_VERSION, RunRecord, StepRun

STEPS = 40


@step
def inc(x: int) -> int:
    return x + 1


@pipeline
def chain(start: int = 0):
    x = inc(x=start)
    for _ in range(STEPS - 1):
        x = inc(x=x)
    return x


def test_a_cached_rerun_reads_one_snapshot_and_writes_once(
    cache: Cache, count_transactions: Any
) -> None:
    assert chain().run(cache=cache).output() == STEPS
    with count_transactions(cache.index) as counting:
        run = chain().run(cache=cache)
    assert {s.status for s in run.steps.values()} == {"cached"}
    assert counting.writes == 1  # the run record, its environment and latest keys
    assert 1 <= counting.reads <= 3  # the hits' snapshot, plus the run's own reads


def test_a_cached_rerun_leaves_unchanged_latest_keys_alone(cache: Cache) -> None:
    chain().run(cache=cache)
    before = dict(cache.index.items("latest"))
    run = chain().run(cache=cache)
    assert dict(cache.index.items("latest")) == before
    assert before[b"chain/inc_7"] == run.steps["inc_7"].key.encode()


def test_latest_keys_follow_each_run_and_writes_made_in_between(cache: Cache) -> None:
    """write_run trusts what it last wrote only when no commit came after it."""

    def latest() -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in cache.index.items("latest")}

    for start in (0, 5, 0, 5):  # back to back: each run's own keys, step by step
        run = chain(start=start).run(cache=cache)
        assert latest() == {f"chain/{n}": s.key for n, s in run.steps.items()}
    # Another writer in between (gc, another process): its change is seen, and mended.
    cache.index.write([("latest", b"chain/inc_7", b"elsewhere"), ("latest", b"chain/inc_8", None)])
    run = chain(start=5).run(cache=cache)
    assert latest() == {f"chain/{n}": s.key for n, s in run.steps.items()}


def test_a_damaged_hit_entry_is_a_miss_said_once(
    cache: Cache, caplog: pytest.LogCaptureFixture
) -> None:
    first = chain().run(cache=cache)
    damaged = bytes.fromhex(first.steps["inc_5"].key)
    cache.index.write([("hits", damaged, b"\x09\x01\x00" + bytes(16))])  # an unknown version
    with caplog.at_level(logging.WARNING, logger="zencache"):
        run = chain().run(cache=cache)
    assert [n for n, s in run.steps.items() if s.status != "cached"] == ["inc_5"]
    assert run.output() == STEPS
    assert sum("is damaged; re-executing it" in r.getMessage() for r in caplog.records) == 1


class _Hook:
    def on_step_end(self, **_: Any) -> None:
        pass


def test_a_run_is_freed_when_it_returns_not_by_the_cyclic_collector(cache: Cache) -> None:
    """No reference cycle through the runner: its thousands of objects per run would
    otherwise wait for (and lengthen) the collector's passes over the whole heap."""
    kinds = {"Runner", "PlannedStep", "Invocation", "Dag", "StepRun"}

    def ours() -> dict[int, object]:
        return {id(o): o for o in gc.get_objects() if type(o).__name__ in kinds}

    gc.collect()
    gc.disable()
    try:
        before = ours()  # what other tests keep alive
        for hooks in (None, [_Hook()]):
            chain().run(cache=cache, hooks=hooks)  # the first executes, the rest hit
            chain().run(cache=cache, hooks=hooks)
            assert [o for i, o in ours().items() if i not in before] == []
    finally:
        gc.enable()


def test_run_records_encode_as_sorted_json() -> None:
    steps = (
        StepRun("b", "m:f", "k1", "cached", 0.25, {"z": "1" * 32, "a": "2" * 32}),
        StepRun("a", "m:f", "k2", "failed", 1e-06, {}, "boom"),
    )
    record = RunRecord("r", "p", {"y": "2", "x": "1"}, "failed", 1.0, 2.0, "e", steps)
    body = json.loads(record.encode()[1:])
    expected = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    assert record.encode() == bytes([RUN_RECORD_VERSION]) + expected
    assert RunRecord.decode(record.encode()) == record
