"""Several processes on one cache at once: same and overlapping pipelines, dead lease
holders (reaped or zombies), and gc running beside the pipelines.

Every step execution appends a line to one log file opened with O_APPEND: the
count of lines per step is the number of times it really ran, whatever the
processes report about themselves.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import reliability_flows as rf

from zencache import Cache

# Forward and reversed orders make the processes meet in the middle of the list
# instead of trailing each other; the two lists overlap on k = 5..8.
PROCESSES = [
    "1,2,3,4,5,6,7,8",
    "8,7,6,5,4,3,2,1",
    "5,6,7,8,9,10,11,12",
    "12,11,10,9,8,7,6,5",
]


def _wait_for(log: Path, predicate: Any, timeout: float = 30) -> list[tuple[str, str, int]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entries = rf.read_log(log)
        if predicate(entries):
            return entries
        time.sleep(0.02)
    raise AssertionError(f"timed out; log: {rf.read_log(log)}")


def test_processes_on_same_and_overlapping_pipelines_execute_each_step_once(
    flows: Any, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"
    start_at = {"RELIABILITY_START_AT": str(time.time() + 1.5)}
    procs = [flows.start("fanout", str(cache_dir), "7", ks, env=start_at) for ks in PROCESSES]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(json.loads(out.splitlines()[-1]))

    # All succeed, with the right values.
    assert all(r["status"] == "completed" and r["output_ok"] for r in results)
    # Each distinct key was executed by exactly one process; the others hit.
    executed: Counter[str] = Counter()
    outputs: dict[str, set[str]] = {}
    for r in results:
        for status, key, ids in r["steps"].values():
            assert status in ("executed", "cached")
            executed[key] += status == "executed"
            outputs.setdefault(key, set()).add(json.dumps(ids, sort_keys=True))
    assert len(executed) == 1 + 12 + 12  # base, work k=1..12, total of each
    assert set(executed.values()) == {1}, executed
    # ... and they agree on every output's content id.
    assert all(len(ids) == 1 for ids in outputs.values())
    # The log agrees: 25 executions, none repeated, spread over several processes.
    log = rf.read_log(flows.log)
    assert len(log) == 25
    assert len({(name, detail) for name, detail, _ in log}) == 25
    assert len({pid for *_, pid in log}) >= 2
    assert sum(len(r["steps"]) for r in results) == 4 * 17

    cache = Cache(cache_dir)
    try:
        state = rf.check_cache(cache)
        assert state["problems"] == [] and state["leases"] == 0
    finally:
        cache.close()


@pytest.mark.parametrize("reap", [True, False], ids=["reaped", "zombie"])
def test_a_killed_lease_holder_is_taken_over(flows: Any, tmp_path: Path, reap: bool) -> None:
    """kill -9 the process executing `slow`; the one waiting for it takes over at once.
    A holder killed but not reaped by its parent (a zombie) holds nothing either:
    the kernel closed its files, and with them its lock."""
    cache_dir = tmp_path / "cache"
    holder = flows.start("waiting", str(cache_dir), env={rf.SLEEP_SETTING: "60"})
    _wait_for(flows.log, lambda log: any(name == "slow" for name, *_ in log))
    waiter = flows.start("waiting", str(cache_dir), env={rf.SLEEP_SETTING: "0"})
    time.sleep(1.5)  # the waiter has started, hit `first`, and waits on `slow`'s lease
    assert waiter.poll() is None
    assert [name for name, *_ in rf.read_log(flows.log)] == ["first", "slow"]
    os.kill(holder.pid, signal.SIGKILL)
    if reap:
        holder.wait()
    out, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 0, err
    message = json.loads(out.splitlines()[-1])
    assert message["status"] == "completed" and message["output"] == 4
    assert {n: s for n, (s, _) in message["steps"].items()} == {
        "first": "cached",
        "slow": "executed",
        "last": "executed",
    }
    log = rf.read_log(flows.log)
    assert [(n, pid) for n, _, pid in log] == [
        ("first", holder.pid),
        ("slow", holder.pid),
        ("slow", waiter.pid),
        ("last", waiter.pid),
    ]
    holder.wait()


def test_gc_beside_running_pipelines_never_removes_what_they_reference(
    flows: Any, tmp_path: Path
) -> None:
    """The hard case: the pipelines dedupe against objects that are already on disk,
    unreferenced (their entries cleared) and older than gc's grace period, so gc
    would delete them unless the runs freshen them before referencing them."""
    from zencache import maintenance

    cache_dir = tmp_path / "cache"
    first = flows.run("fanout", str(cache_dir), "7", "1,2,3,4")
    assert first.returncode == 0, first.stderr
    cache = Cache(cache_dir)
    try:
        maintenance.clear(cache)
        old = time.time() - 3600
        for object_id, _ in cache.store.iter_objects():
            os.utime(cache.store.path(object_id), (old, old))
    finally:
        cache.close()

    stop = tmp_path / "stop"
    collector = flows.start("gc", str(cache_dir), str(stop))
    runs = [flows.start("fanout", str(cache_dir), "7", ks) for ks in ("1,2,3,4", "4,3,2,1,5")]
    results = []
    for proc in runs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(json.loads(out.splitlines()[-1]))
    stop.touch()
    out, err = collector.communicate(timeout=60)
    assert collector.returncode == 0, err
    passes = json.loads(out.splitlines()[-1])["passes"]
    assert passes >= 3
    assert all(r["status"] == "completed" and r["output_ok"] for r in results)

    cache = Cache(cache_dir)
    try:
        state = rf.check_cache(cache)
        assert state["problems"] == []
        # gc again now that nothing runs: every referenced object survives it.
        maintenance.gc(cache)
        assert rf.check_cache(cache)["problems"] == []
    finally:
        cache.close()
    rerun = flows.run("fanout", str(cache_dir), "7", "1,2,3,4,5")
    assert rerun.returncode == 0, rerun.stderr
    assert {s for s, *_ in json.loads(rerun.stdout.splitlines()[-1])["steps"].values()} == {
        "cached"
    }
