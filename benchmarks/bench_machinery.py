"""Does each piece of the concurrency machinery pay for itself? (issue 14)

Each section measures a piece of zencache against the simpler design it was
chosen over, in the same process and interleaved repetitions, so that a busy
shared machine slows both alike. The simpler designs live here only, as
diagnostics: they are not configurations zencache offers.

    commit   the background committer thread against committing each step's
             records inline in the driver: the 1,000-step chain cold (with and
             without the index's fsync), and the `processes` executor on a wide
             DAG of trivial steps and of 5 ms steps, where a thread could overlap
             commits with collecting results

    map      the index's map, opened once at 1 TiB: opening, and committing 100,000
             step-sized entries (~90 MiB) in batches of 50. Growing it by doubling
             from 64 MiB was measured beside it at commit b5f9221 (the same
             figures), and deleted after

    lease    leases as kernel-released locks (storage/lease_slots.py): taking and
             releasing a free lease, the same through the runner's lease path
             (`Leases.attempt`: take, look the entry up), and how soon a waiter
             takes over from a holder killed with SIGKILL (reaped or a zombie).
             The per-boot LMDB lease table they replaced was measured beside them
             at commit 8b9d2b0 (same command), and deleted after

    .venv/bin/python benchmarks/bench_machinery.py commit [--reps 5]
    .venv/bin/python benchmarks/bench_machinery.py map [--reps 5]
    .venv/bin/python benchmarks/bench_machinery.py lease [--reps 5]
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from bench_chain import STEPS as CHAIN
from bench_chain import chain
from harness import header, row, scratch, timed

import zencache.executors.runner as runner_module
import zencache.storage.index as index_module
from zencache import Cache, pipeline, step
from zencache.executors.processes import ProcessExecutor

WIDE = 64


@step
def leaf(i: int, seconds: float) -> int:
    if seconds:
        time.sleep(seconds)
    return i


@pipeline
def wide(n: int = WIDE, seconds: float = 0.0, salt: int = 0):
    return [leaf(i=i + salt * n, seconds=seconds) for i in range(n)][-1]


# --- the commit thread against inline commits ---------------------------------------------------


class InlineCommitter:
    """The simpler design: `submit` commits the step's records at once, in the
    driver, then releases its lease (entry first, lease after, as the thread does)."""

    def __init__(self, index: Any, committed: Callable[[list[Any]], None]) -> None:
        self.index = index
        self._committed = committed

    def submit(self, ops: list[Any], token: Any) -> None:
        self.index.end_snapshot()
        try:
            self.index.write(ops)
        finally:
            self._committed([token])

    def check(self) -> None:
        pass

    def drain(self) -> None:
        pass


@contextlib.contextmanager
def committing(how: str) -> Iterator[None]:
    real = runner_module.Committer
    if how == "inline":
        runner_module.Committer = InlineCommitter  # type: ignore[misc,assignment]
    try:
        yield
    finally:
        runner_module.Committer = real  # type: ignore[misc]


@contextlib.contextmanager
def index_sync(on: bool) -> Iterator[None]:
    """Open indexes (inside the block) with or without their commits' fsync."""
    real = index_module.lmdb.open

    def opener(*args: Any, **kwargs: Any) -> Any:
        return real(*args, **{**kwargs, "sync": on})

    index_module.lmdb.open = opener  # type: ignore[assignment]
    try:
        yield
    finally:
        index_module.lmdb.open = real  # type: ignore[assignment]


def bench_commit(reps: int) -> None:
    header(f"commit thread against inline commits: chain of {CHAIN}, processes on {WIDE} leaves")
    designs = ("thread", "inline")
    figures: dict[str, list[float]] = {}

    def record(name: str, seconds: float) -> None:
        figures.setdefault(name, []).append(seconds)

    with scratch("machinery-commit") as root:
        # Warm-up: imports and fingerprints, once per design.
        for how in designs:
            with committing(how):
                chain().run(cache=Cache(root / f"warm-{how}"))
        counter = 0
        for _ in range(reps):
            for how in designs:
                for sync in (True, False):
                    counter += 1
                    with index_sync(sync):
                        cache = Cache(root / f"chain{counter}")
                        cache.index  # noqa: B018  (opened inside the block)
                    with committing(how):
                        seconds = timed(lambda: chain().run(cache=cache))  # noqa: B023
                    cache.close()
                    label = "durable" if sync else "no fsync (diagnostic)"
                    record(f"chain cold, {how}, {label}", seconds / CHAIN)
            for seconds_per_step in (0.0, 0.005):
                for how in designs:
                    counter += 1
                    cache = Cache(root / f"wide{counter}")
                    with committing(how):
                        began = time.perf_counter()
                        run = wide(seconds=seconds_per_step, salt=counter).run(
                            cache=cache, executor=ProcessExecutor(max_workers=2)
                        )
                        seconds = time.perf_counter() - began
                    assert all(s.status == "executed" for s in run.steps.values())
                    cache.close()
                    kind = "trivial" if not seconds_per_step else "5 ms"
                    record(f"processes, {WIDE} {kind} leaves, {how}", seconds)
    print_medians(figures, {"chain": ("µs/step", 1e6)}, ("ms", 1e3))


def bench_map(reps: int) -> None:
    import os

    from zencache.storage.index import MAP_SIZE, Index

    header("index map: opened once, large")
    designs = {f"{MAP_SIZE >> 30} GiB once": MAP_SIZE}
    figures: dict[str, list[float]] = {}
    entries, batch = 100_000, 50
    with scratch("machinery-map") as root:
        for rep in range(reps):
            for name, size in designs.items():
                path = root / f"{rep}-{size}"
                Index(path, map_size=size).close()  # created: what follows opens an existing one
                began = time.perf_counter()
                index = Index(path, map_size=size)
                figures.setdefault(f"open an existing index, {name}", []).append(
                    time.perf_counter() - began
                )
                began = time.perf_counter()
                for _ in range(0, entries, batch):
                    index.write(
                        [
                            ("steps", os.urandom(16).hex().encode(), os.urandom(600))
                            for _ in range(batch)
                        ]
                    )
                figures.setdefault(f"commit {entries} entries, {name}", []).append(
                    time.perf_counter() - began
                )
                final = index.env.info()["map_size"] >> 20
                figures.setdefault(f"map at the end (MiB), {name}", []).append(final)
                index.close()
    print_medians(figures, {"open": ("ms", 1e3), "commit": ("µs/entry", 1e6 / entries)}, ("MiB", 1))


# --- leases: kernel-released locks -------------------------------------------------------------

_HOLD = """
import sys, time
from zencache import Cache
from zencache.executors.leases import Leases
assert Leases(Cache(sys.argv[2]), "holder").attempt(sys.argv[1], looked_up=True) is None
print("held", flush=True)
time.sleep(60)
"""


def bench_lease(reps: int) -> None:
    import os
    import signal
    import subprocess
    import sys

    from zencache.executors.leases import Leases
    from zencache.storage.lease_slots import LeaseSlots

    header("leases: fcntl locks on slots of one file (the LMDB table: see README, 8b9d2b0)")
    figures: dict[str, list[float]] = {}
    n = 2000
    with scratch("machinery-lease") as root:
        for rep in range(reps):
            cache = Cache(root / f"cache{rep}")
            keys = [os.urandom(16).hex() for _ in range(n)]
            slots = LeaseSlots(cache.leases.folder)  # through the cache: it lays it out
            began = time.perf_counter()
            for key in keys:
                assert slots.take(key)
                slots.release(key)
            figures.setdefault("take + release a free lease", []).append(
                (time.perf_counter() - began) / n
            )
            slots.close()
            leases = Leases(cache, f"run{rep}")
            began = time.perf_counter()
            for key in keys:
                assert leases.attempt(key, looked_up=True) is None
                leases.release(key)
            figures.setdefault("runner's path (attempt + release)", []).append(
                (time.perf_counter() - began) / n
            )
            leases.close()
            # Takeover from a holder killed with SIGKILL, polled every 1 ms.
            for reaped in (True, False):
                key = os.urandom(16).hex()
                proc = subprocess.Popen(
                    [sys.executable, "-c", _HOLD, key, str(cache.path)],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                assert proc.stdout is not None and proc.stdout.readline() == "held\n"
                waiter = Leases(cache, "waiter")
                assert waiter.attempt(key, looked_up=True) is not None
                began = time.perf_counter()
                os.kill(proc.pid, signal.SIGKILL)
                if reaped:
                    proc.wait()
                while waiter.attempt(key, looked_up=True) is not None:
                    time.sleep(0.001)
                elapsed = time.perf_counter() - began
                proc.wait()
                proc.stdout.close()
                waiter.close()
                how = "reaped" if reaped else "a zombie"
                figures.setdefault(f"takeover after kill -9 ({how})", []).append(elapsed)
            cache.close()
    print_medians(figures, {"takeover": ("ms", 1e3)}, ("µs", 1e6))


def print_medians(
    figures: dict[str, list[float]],
    units: dict[str, tuple[str, float]],
    otherwise: tuple[str, float],
) -> None:
    """Each figure's median row, in the unit of the first prefix of `units` its name
    starts with (unit, scale), else in `otherwise`."""
    print("\nmedians of the repetitions:")
    for name, values in figures.items():
        unit, scale = next((u for p, u in units.items() if name.startswith(p)), otherwise)
        row(name, values, unit, scale)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("section", choices=["commit", "map", "lease"])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    if args.section == "commit":
        bench_commit(args.reps)
    elif args.section == "map":
        bench_map(args.reps)
    elif args.section == "lease":
        bench_lease(args.reps)


if __name__ == "__main__":
    main()
