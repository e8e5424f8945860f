"""Goals 1 and 2: a chain of 1,000 steps (int -> int + 1), cached and cold, in-process.

zencache runs `chain()` (1,000 invocations of one step, each fed the previous
output) against joblib.Memory calling the same memoized `inc` 1,000 times, in
the same process and the same repetitions, interleaved. Cold: a fresh cache
folder each repetition (fingerprints and imports are warm in both, as they are
after the first call of a session). Warm: the same call again on the filled cache.
zencache's figures cover everything `chain().run()` does: trace, plan, one key
and one index lookup per step, and the run record.

    .venv/bin/python benchmarks/bench_chain.py [--steps 1000] [--reps 7]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import joblib
from harness import header, row, scratch, timed, verdict

from zencache import Cache, pipeline, step
from zencache.core.plan import plan
from zencache.executors import make_executor
from zencache.executors.runner import Runner

STEPS = 1000


@step
def inc(x: int) -> int:
    return x + 1


@pipeline
def chain(start: int = 0):
    x = inc(x=start)
    for _ in range(STEPS - 1):
        x = inc(x=x)
    return x


def inc_plain(x: int) -> int:
    return x + 1


def joblib_chain(memory: joblib.Memory) -> int:
    f = memory.cache(inc_plain)
    x = 0
    for _ in range(STEPS):
        x = f(x)
    return x


def phases(cache: Cache) -> dict[str, float]:
    """Where a cached rerun spends its time (the same work as chain().run())."""
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    instance = chain()
    dag = instance.trace()
    t1 = time.perf_counter()
    planned = plan(dag)
    t2 = time.perf_counter()
    runner = Runner(cache, dag, planned, {"start": "0"})
    make_executor("local").execute(runner)
    t3 = time.perf_counter()
    runner.write_run()
    t4 = time.perf_counter()
    out["trace"], out["plan"], out["execute (key + lookup)"], out["finish (run record)"] = (
        t1 - t0,
        t2 - t1,
        t3 - t2,
        t4 - t3,
    )
    return out


def cold_without_fsync(root: Path, reps: int) -> list[float]:
    """Diagnostic only (not a configuration zencache offers): the cold run with the
    index opened without fsync, to show how much of a cold step is the commit's fsync."""
    import lmdb

    import zencache.storage.index

    real_open = lmdb.open

    def open_nosync(*args: object, **kwargs: object) -> object:
        return real_open(*args, **{**kwargs, "sync": False})

    times = []
    for rep in range(reps):
        zencache.storage.index.lmdb.open = open_nosync
        try:
            cache = Cache(root / f"nosync{rep}")
            cache.index  # noqa: B018  (opened while patched)
        finally:
            zencache.storage.index.lmdb.open = real_open
        times.append(timed(lambda: chain().run(cache=cache)))  # noqa: B023
        cache.close()
    return times


def steady_state(folder: Path, reps: int) -> list[float]:
    """Diagnostic only: cached reruns back to back, after three untimed ones. The
    goal's figure above times one rerun per repetition, after a cold run and joblib's."""
    cache = Cache(folder)
    for _ in range(4):
        chain().run(cache=cache)
    times = [timed(lambda: chain().run(cache=cache)) for _ in range(reps)]
    cache.close()
    return times


def main() -> None:
    global STEPS
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    STEPS = args.steps
    header(f"chain of {STEPS} steps, int -> int + 1, in-process (goals 1 and 2)")

    zc_cold, zc_warm, jl_cold, jl_warm = [], [], [], []
    breakdown: dict[str, list[float]] = {}
    with scratch("chain") as root:
        # One untimed round: imports, fingerprints and joblib's code check warm up.
        warm_cache = Cache(root / "warmup-zc")
        chain().run(cache=warm_cache)
        warm_cache.close()
        joblib_chain(joblib.Memory(root / "warmup-jl", verbose=0))
        for rep in range(args.reps):
            cache = Cache(root / f"zc{rep}")
            memory = joblib.Memory(root / f"jl{rep}", verbose=0)
            run = None

            def zc() -> None:
                nonlocal run
                run = chain().run(cache=cache)  # noqa: B023

            zc_cold.append(timed(zc))
            assert run is not None and run.output() == STEPS
            assert all(s.status == "executed" for s in run.steps.values())
            jl_cold.append(timed(lambda: joblib_chain(memory)))  # noqa: B023
            # The cold runs just wrote ~1,000 files each (joblib's without fsync):
            # flushed first, so that the rerun's one fsync does not wait behind their
            # writeback (up to +4 µs/step here), which is not the cached path's cost.
            os.sync()
            zc_warm.append(timed(zc))
            assert all(s.status == "cached" for s in run.steps.values())
            jl_warm.append(timed(lambda: joblib_chain(memory)))  # noqa: B023
            for name, seconds in phases(cache).items():
                breakdown.setdefault(name, []).append(seconds)
            cache.close()
        nosync = cold_without_fsync(root, 3)
        os.sync()
        steady = steady_state(root / "steady", 25)

    us = 1e6 / STEPS
    print("\nper step (µs), medians of the repetitions:")
    warm = row("zencache cached rerun (chain().run())", zc_warm, "µs", us)
    jwarm = row("joblib.Memory warm call", jl_warm, "µs", us)
    for name, values in breakdown.items():
        row(f"  of which {name}", values, "µs", us)
    cold = row("zencache cold run (every entry durable)", zc_cold, "µs", us)
    jcold = row("joblib.Memory cold call", jl_cold, "µs", us)
    row("diagnostic: zencache cold, index without fsync", nosync, "µs", us)
    row("diagnostic: zencache cached, 25 reruns back to back", steady, "µs", us)
    print()
    verdict(
        "goal 1 (cached rerun <= 10 µs/step and <= 0.15x joblib warm)",
        f"{warm * us:.2f} µs/step, {warm / jwarm:.3f}x joblib.Memory",
        warm * us <= 10 and warm / jwarm <= 0.15,
    )
    verdict(
        "goal 2 (cold run <= 2x joblib cold)",
        f"{cold * us:.0f} µs/step, {cold / jcold:.2f}x joblib.Memory",
        cold / jcold <= 2,
    )
    print(
        f"  per-repetition ratios warm: {sorted(round(z / j, 3) for z, j in zip(zc_warm, jl_warm, strict=True))}"
    )
    print(
        f"  per-repetition ratios cold: {sorted(round(z / j, 2) for z, j in zip(zc_cold, jl_cold, strict=True))}"
    )


if __name__ == "__main__":
    main()
