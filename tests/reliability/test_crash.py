"""kill -9 at many moments of a run, each followed by a rerun in a fresh process.

The pipeline (reliability_flows.crashflow) writes two 8 MB arrays (62 fsynced
chunks each) and runs quick steps and a pause. A killed process never gets to
clean up, so what it leaves is what a power cut short of the OS would leave.
After every kill a fresh process checks the cache before touching it (every
index entry points at fully written, verifying objects; no temporary file is
listed as an object; `cache verify` is clean), reruns the pipeline (it must
succeed with the right result, every step committed before the kill must be a
hit, and nothing else), and checks the cache again.

Kill points come from inside (SIGKILL sent by the process itself at an exact
moment: half-way through writing an object, between its write and its fsync,
between fsync and rename, inside an index write transaction holding LMDB's
writer lock, right after a commit, inside a step) and from outside (SIGKILL
from this test after stepped delays). To keep the wall time down, each process
first reruns what its predecessor left killed, then starts the next seed and
is killed in turn; four lanes (four caches) run side by side.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import reliability_flows as rf

from zencache import Cache

# Per run on a warm cache: 124 object writes/renames (and their fsyncs: file and
# folder), a lease (a kernel lock) per step executed, and
# index write transactions: batches of step records from the committer thread
# (how many steps a batch holds depends on timing, so counted points stay early
# in the run), then the run record (named by what happens).
INJECTED = [
    "write:1",  # half of the first chunk of the first array
    "write:40",
    "write:63",  # the first chunk of the second array
    "fsync:1",  # written, not yet synced
    "fsync:77",
    "fsync:200",
    "replace:1",  # synced, not yet renamed
    "replace:62",  # the first array's last chunk
    "replace:124",
    "fsync:124",  # renamed, folder not yet synced
    "lease:1",  # holding the first lease, before its step runs
    "lease:2",
    "lease:5",
    "txn:1",  # inside the first batch's commit: objects durable, entries not committed
    "txn:2",
    "txn:3",
    "committed:1",  # right after the first batch's commit
    "committed:2",
    "call:1",  # inside a step function
    "call:5",  # inside the sleeping step
    "finish:0",  # every step done, no run record
    "runrecord:inside",  # inside the run record's transaction (writer lock held)
    "runrecord:after",  # the run record committed, the process not yet done
]
# A run takes ~0.35-1 s after "go" (more when the machine is busy; no fsync
# stands between its steps since the committer thread took the commits).
EXTERNAL_DELAYS = [round(0.02 + 0.035 * i, 3) for i in range(12)]  # seconds after "go"
LANES = 4


def _lane(flows: Any, cache_dir: Path, kills: list[str | float]) -> list[dict[str, Any]]:
    """One cache: process i reruns seed i-1, then runs seed i and is killed."""
    outcomes: list[dict[str, Any]] = []
    pending: dict[str, Any] | None = None
    temporary = 0
    for seed in range(len(kills) + 1):
        kill = kills[seed] if seed < len(kills) else None
        spec = "none" if kill is None else "external" if isinstance(kill, float) else kill
        proc = flows.start(
            "crash", str(cache_dir), str(seed - 1), str(-1 if kill is None else seed), spec
        )
        lines: list[str] = []
        if isinstance(kill, float):
            for line in proc.stdout:
                lines.append(line)
                if '"kind": "go"' in line:
                    break
            time.sleep(kill)
            proc.send_signal(signal.SIGKILL)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        result = rf_result("".join(lines) + out, err, proc.returncode)
        if pending is not None:
            pending["rerun"] = result["rerun"]
            pending["rerun_stderr"] = err
            if result["rerun"] is not None:
                # Temporary files this kill left (earlier kills' leftovers are still there).
                now = result["rerun"]["before"]["temporary"]
                pending["new_temporary"] = now - temporary
                temporary = result["rerun"]["after"]["temporary"]
            outcomes.append(pending)
        if kill is not None:
            pending = {
                "kill": kill,
                "returncode": proc.returncode,
                "completed": result["completed"],
                "stderr": err,
            }
    return outcomes


def rf_result(stdout: str, stderr: str, returncode: int) -> dict[str, Any]:
    import json

    found: dict[str, Any] = {"rerun": None, "completed": False}
    for line in stdout.splitlines():
        if not line.startswith("{"):
            continue
        message = json.loads(line)
        if message["kind"] == "rerun":
            found["rerun"] = message
        elif message["kind"] == "completed":
            found["completed"] = True
    return found


def _check_rerun(outcome: dict[str, Any]) -> None:
    kill, rerun = outcome["kill"], outcome["rerun"]
    assert rerun is not None, f"kill at {kill}: the rerun failed:\n{outcome['rerun_stderr']}"
    where = f"kill at {kill}"
    assert rerun["before"]["problems"] == [], where
    assert rerun["status"] == "completed" and rerun["output_ok"], where
    committed = set(rerun["before"]["committed"])
    for name, (status, key) in rerun["steps"].items():
        expected = "cached" if key in committed else "executed"
        assert status == expected, f"{where}: step {name} was {status}, expected {expected}"
    executed = sum(1 for status, _ in rerun["steps"].values() if status == "executed")
    assert rerun["logged"] == executed, where  # executions this process logged
    assert rerun["after"]["problems"] == [], where
    assert rerun["after"]["leases"] == 0, where
    assert set(rerun["after"]["committed"]) >= {k for _, k in rerun["steps"].values()}, where


def test_kill_9_at_many_points_leaves_a_cache_the_next_run_uses(flows: Any, tmp_path: Path) -> None:
    kills: list[str | float] = [*INJECTED, *EXTERNAL_DELAYS]
    lanes: list[list[str | float]] = [kills[i::LANES] for i in range(LANES)]
    caches = [tmp_path / f"cache{i}" for i in range(LANES)]
    started = time.perf_counter()
    with ThreadPoolExecutor(LANES) as pool:
        results = list(pool.map(_lane, [flows] * LANES, caches, lanes))
    outcomes = [o for lane in results for o in lane]

    assert len(outcomes) == len(kills)
    for outcome in outcomes:
        if isinstance(outcome["kill"], str):
            # An injected kill point must be reached: otherwise it tested nothing.
            assert outcome["returncode"] == -signal.SIGKILL, outcome
        _check_rerun(outcome)

    # What the kills landed on, as evidence that the points cover the run.
    landed = Counter()
    for outcome in outcomes:
        before = outcome["rerun"]["before"]
        if outcome["returncode"] != -signal.SIGKILL:
            landed["external kill after the run finished"] += 1
            continue
        done = sum(1 for s, k in outcome["rerun"]["steps"].values() if k in before["committed"])
        landed[f"{done}/7 steps committed"] += 1
        if outcome["new_temporary"]:
            landed["temporary files left"] += 1
    assert landed["external kill after the run finished"] <= len(EXTERNAL_DELAYS) // 2, landed
    assert landed["temporary files left"] >= 4, landed  # kills inside object writes
    assert landed["0/7 steps committed"] >= 2, landed
    assert sum(landed[f"{i}/7 steps committed"] for i in range(1, 7)) >= 3, landed
    assert landed["7/7 steps committed"] >= 1, landed
    print(
        f"\n{len(kills)} kill points ({len(INJECTED)} injected, {len(EXTERNAL_DELAYS)} "
        f"external) in {time.perf_counter() - started:.1f}s: {dict(sorted(landed.items()))}"
    )

    # Temporary files are only leftovers: gc removes them, verify stays clean.
    from zencache import maintenance

    for path in caches:
        cache = Cache(path)
        try:
            maintenance.gc(cache, temp_grace=0)
            state = rf.check_cache(cache)
            assert state["problems"] == [] and state["temporary"] == 0
            assert maintenance.verify(cache).damaged is False
        finally:
            cache.close()


def test_kill_9_while_holding_the_index_writer_lock_does_not_block_others(
    flows: Any, tmp_path: Path
) -> None:
    """LMDB's writer lock is a robust mutex: a holder killed mid-transaction frees it."""
    cache_dir = tmp_path / "cache"
    killed = flows.run("crash", str(cache_dir), "-1", "0", "txn:1")
    assert killed.returncode == -signal.SIGKILL
    started = time.perf_counter()
    rerun = flows.run("crash", str(cache_dir), "0", "-1", "none")
    assert rerun.returncode == 0, rerun.stderr
    message = rerun.one("rerun")
    assert message["status"] == "completed" and message["output_ok"]
    assert message["before"]["committed"] == []  # the killed commit left nothing
    assert time.perf_counter() - started < 20


@pytest.mark.parametrize("where", ["replace:3", "committed:2"])
def test_a_run_killed_while_another_reads_the_same_cache(
    flows: Any, tmp_path: Path, where: str
) -> None:
    """A killed writer does not disturb a reader with the index open in this process."""
    cache = Cache(tmp_path / "cache")
    try:
        assert cache.index.count("steps") == 0  # this process now holds the index open
        killed = flows.run("crash", str(cache.path), "-1", "0", where)
        assert killed.returncode == -signal.SIGKILL
        state = rf.check_cache(cache)
        assert state["problems"] == []
        rerun = flows.run("crash", str(cache.path), "0", "-1", "none")
        assert rerun.returncode == 0, rerun.stderr
        assert rf.check_cache(cache)["problems"] == []
    finally:
        cache.close()
