"""Drivers with parallel executors that reach shared keys in opposite orders never
block each other forever.

Each driver takes the lease of its first shared key, sends that step to its pool,
then needs the key another driver is executing. A driver that waits for another's
lease must keep collecting and committing its own finished steps: otherwise each
waits for an entry the other can never commit (the deadlock this file guards
against). Every process gets a deadline, so a regression fails instead of hanging.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import reliability_flows as rf

from zencache import Cache

DEADLINE = 60.0  # seconds per driver: the steps take ~4 s; a deadlock never ends


def _orders(drivers: int, keys: list[str]) -> list[list[str]]:
    """Driver i starts with keys[i % n] and goes round: every key is first for someone,
    so each driver's second key is being executed by another one."""
    n = len(keys)
    return [[keys[(i + j) % n] for j in range(n)] for i in range(drivers)]


def tag(order: list[str]) -> tuple[str, str]:
    return ",".join(order), uuid.uuid4().hex


def _run_drivers(
    flows: Any, cache_dir: Path, executors: list[str], orders: list[list[str]]
) -> list[dict[str, Any]]:
    env = flows.env({"RELIABILITY_START_AT": str(time.time() + 2.0)})
    code = "import sys, reliability_flows; reliability_flows.main(sys.argv[1:])"
    procs = [
        # A session each, so that a stuck driver is killed with its pool's workers.
        subprocess.Popen(
            [sys.executable, "-c", code, "crossed", str(cache_dir), executor, *tag(order)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        for executor, order in zip(executors, orders, strict=True)
    ]
    deadline = time.monotonic() + DEADLINE
    results = []
    try:
        for proc in procs:
            try:
                out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired as exc:
                raise AssertionError(
                    f"drivers {orders} with {executors} did not finish in {DEADLINE:.0f} s "
                    "(deadlocked on each other's leases)"
                ) from exc
            assert proc.returncode == 0, err
            results.append(json.loads(out.splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
    return results


def _check(flows: Any, cache_dir: Path, results: list[dict[str, Any]], keys: list[str]) -> None:
    assert all(r["status"] == "completed" and r["output_ok"] for r in results), results
    executed: Counter[str] = Counter()
    for r in results:
        for name, (status, key) in r["steps"].items():
            if name.startswith("shared"):
                executed[key] += status == "executed"
    # Every shared key ran exactly once across all drivers; the others hit.
    assert len(executed) == len(keys) and set(executed.values()) == {1}, executed
    log = Counter(detail for name, detail, _ in rf.read_log(flows.log) if name == "shared")
    assert log == Counter(keys), log
    cache = Cache(cache_dir)
    try:
        state = rf.check_cache(cache)
        assert state["problems"] == [] and state["leases"] == 0
    finally:
        cache.close()


@pytest.mark.parametrize("drivers", [2, 3, 4])
def test_process_pool_drivers_in_crossed_orders_all_finish(
    flows: Any, tmp_path: Path, drivers: int
) -> None:
    keys = ["a", "b"] if drivers != 3 else ["a", "b", "c"]
    orders = _orders(drivers, keys)
    results = _run_drivers(flows, tmp_path / "cache", ["processes"] * drivers, orders)
    _check(flows, tmp_path / "cache", results, keys)


def test_dask_drivers_in_crossed_orders_all_finish(flows: Any, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    keys = ["a", "b"]
    results = _run_drivers(flows, tmp_path / "cache", ["dask", "dask"], _orders(2, keys))
    _check(flows, tmp_path / "cache", results, keys)


def test_mixed_executors_in_crossed_orders_all_finish(flows: Any, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    keys = ["a", "b"]
    results = _run_drivers(flows, tmp_path / "cache", ["processes", "dask"], _orders(2, keys))
    _check(flows, tmp_path / "cache", results, keys)
