"""Executors: 8 independent CPU-bound steps (~1 s each) under local, processes and dask,
and what each executor adds per step to a fully cached rerun.

Cold: a fresh cache per repetition, so every step executes; the executors'
start-up (loky workers, a Dask LocalCluster) is inside the wall time, because a
run pays for it. "dask (warm cluster)" sends to a cluster started beforehand
(the `scheduler=` case), which isolates that start-up. Cached: the same
pipeline of 200 trivial steps rerun on a filled cache; a cached rerun must start
no worker (checked), so the per-step cost of every executor should be the local
one. Repetitions are interleaved (local, processes, dask, ...) so that a busy
shared machine slows all of them alike; medians are reported with their spread.

    .venv/bin/python benchmarks/bench_executors.py [--reps 3] [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from zencache import Cache, pipeline, step
from zencache.executors.dask import DaskExecutor
from zencache.executors.processes import ProcessExecutor

WIDTH = 8
CACHED_STEPS = 200
SMALL_STEPS = 40


@step
def burn(i: int, loops: int) -> int:
    """Pure-Python arithmetic: holds the GIL, so only processes run it in parallel."""
    total = i
    for k in range(loops):
        total = (total * 31 + k) % 1_000_003
    return total


@step
def collect(a: int, b: int, c: int, d: int, e: int, f: int, g: int, h: int) -> list:
    """The fan-in, so that the run has one output."""
    return [a, b, c, d, e, f, g, h]


@pipeline
def eight(loops: int = 1_000_000, salt: int = 0):
    results = [burn(i=i + salt * WIDTH, loops=loops) for i in range(WIDTH)]
    return collect(**dict(zip("abcdefgh", results, strict=True)))


@step
def tiny(i: int) -> int:
    return i


@pipeline
def many(n: int = CACHED_STEPS, salt: int = 0):
    return [tiny(i=i + salt * n) for i in range(n)][-1]


def calibrate(seconds: float) -> int:
    """Loops for `seconds` of CPU on an idle core: the fastest of a few short timings,
    since other work on the machine only ever makes a timing longer."""
    loops = 100_000
    while True:
        started = time.perf_counter()
        burn.fn(0, loops)
        if time.perf_counter() - started > 0.05:
            break
        loops *= 2
    fastest = float("inf")
    for _ in range(7):
        started = time.perf_counter()
        burn.fn(0, loops)
        fastest = min(fastest, time.perf_counter() - started)
    return int(loops * seconds / fastest)


def executors(client: Any) -> dict[str, Any]:
    return {
        "local": lambda: "local",
        "processes": lambda: ProcessExecutor(max_workers=2),
        "dask (LocalCluster per run)": lambda: DaskExecutor(max_workers=2),
        "dask (warm cluster)": lambda: DaskExecutor(client),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()

    from distributed import Client, LocalCluster

    loops = calibrate(args.seconds)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print(f"one step: burn(loops={loops}) ~ {args.seconds:.1f} s on an idle core\n")
    root = Path(tempfile.mkdtemp(prefix="zcbench-executors-"))
    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    )
    client = Client(cluster)
    makers = executors(client)
    cold: dict[str, list[float]] = {name: [] for name in makers}
    # Step time over wall time: how many steps ran at once. On a machine shared with
    # other work a step takes longer when two run, so this shows parallelism that
    # the wall time may not.
    overlap: dict[str, list[float]] = {name: [] for name in makers}
    try:
        for rep in range(args.reps):
            for number, (name, make) in enumerate(makers.items()):
                cache = Cache(root / f"cold-{rep}-{number}")
                started = time.perf_counter()
                # salt: no step of one run is in another run's cache, nor in the workers' memory
                run = eight(loops=loops, salt=rep).run(executor=make(), cache=cache)
                wall = time.perf_counter() - started
                cold[name].append(wall)
                assert all(s.status == "executed" for s in run.steps.values())
                busy = sum(s.duration for n, s in run.steps.items() if n.startswith("burn"))
                overlap[name].append(busy / wall)
                cache.close()

        print(f"cold run of {WIDTH} independent steps + a fan-in, 2 workers")
        print(
            f"  {'executor':<30} {'wall (median)':>14} {'spread':>14} {'speedup':>8} "
            f"{'steps at once':>14}"
        )
        base = statistics.median(cold["local"])
        for name, times in cold.items():
            median = statistics.median(times)
            print(
                f"  {name:<30} {median:>12.2f} s {min(times):>6.2f}-{max(times):<6.2f} "
                f"{base / median:>7.2f}x {statistics.median(overlap[name]):>14.2f}"
            )

        # Where a miss's time goes: start-up (to the first result), then each further step.
        phases: dict[str, list[tuple[float, float, float]]] = {name: [] for name in makers}
        for rep in range(args.reps):
            for number, (name, make) in enumerate(makers.items()):
                cache = Cache(root / f"small-{rep}-{number}")
                stamps: list[float] = []
                started = time.perf_counter()
                many(n=SMALL_STEPS, salt=rep + 1).run(
                    executor=make(),
                    cache=cache,
                    progress=lambda _, s=stamps, t=started: s.append(time.perf_counter() - t),
                )
                total = time.perf_counter() - started
                per_step = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
                phases[name].append((stamps[0], per_step, total - stamps[-1]))
                cache.close()
        print(f"\ncold run of {SMALL_STEPS} independent trivial steps (the cost of a miss)")
        print(
            f"  {'executor':<30} {'to first result':>16} {'each further step':>18} {'closing':>9}"
        )
        for name, values in phases.items():
            first, each, close = (statistics.median(v[i] for v in values) for i in range(3))
            print(f"  {name:<30} {first:>14.2f} s {each * 1000:>15.1f} ms {close:>7.2f} s")

        cached: dict[str, list[float]] = {name: [] for name in makers}
        cache = Cache(root / "cached")
        many().run(cache=cache)
        for _ in range(args.reps * 3):
            for name, make in makers.items():
                executor = make()
                started = time.perf_counter()
                run = many().run(executor=executor, cache=cache)
                cached[name].append(time.perf_counter() - started)
                assert all(s.status == "cached" for s in run.steps.values())
                stats = getattr(executor, "stats", None)
                assert stats is None or (stats.pools_opened, stats.tasks_sent) == (0, 0)
        cache.close()
        print(f"\nfully cached rerun of {CACHED_STEPS} steps (no worker started: checked)")
        print(f"  {'executor':<30} {'wall (median)':>14} {'per step':>10} {'vs local':>10}")
        base = statistics.median(cached["local"]) / CACHED_STEPS
        for name, times in cached.items():
            per_step = statistics.median(times) / CACHED_STEPS
            print(
                f"  {name:<30} {statistics.median(times) * 1000:>11.1f} ms "
                f"{per_step * 1e6:>7.1f} µs {(per_step - base) * 1e6:>+8.1f} µs"
            )
    finally:
        client.close()
        cluster.close()
        shutil.rmtree(root, ignore_errors=True)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":  # Dask's LocalCluster re-imports this script in its workers
    main()
