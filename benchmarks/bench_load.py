"""Goal 5: loading a cached 256 MiB float64 array into a downstream step, with a full pass.

Both sides start from a warm cache (the array's bytes in the page cache) and end
when `array.sum()` has read every element. zencache: the output of a cached step
loaded through its materializer (what a downstream step receives: a private
copy-on-write map of the chunk files, each chunk verified) and, for the record,
the same load forced to read into fresh memory. joblib.Memory: a warm call of the
memoized producer (its load), default settings, and with mmap_mode="r" for
reference (no verification, read-only array). Also the same through a pipeline:
the downstream step's own duration when only it re-executes.

    .venv/bin/python benchmarks/bench_load.py [--mib 256] [--reps 7]
"""

from __future__ import annotations

import argparse

import joblib
import numpy as np
from harness import header, row, scratch, timed, verdict

from zencache import Cache, pipeline, step
from zencache.materializers import artifacts

MIB = 256


def produce(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((MIB << 20) // 8)


@step
def make(seed: int = 0) -> np.ndarray:
    return produce(seed)


@step
def consume(a: np.ndarray, k: int = 0) -> float:
    return float(a.sum()) + k


@pipeline
def flow(k: int = 0):
    return consume(a=make(seed=0), k=k)


def main() -> None:
    global MIB
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=MIB)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    MIB = args.mib
    header(f"load a cached {MIB} MiB float64 array and sum it (goal 5)")
    results: dict[str, list[float]] = {}
    with scratch("load") as root:
        cache = Cache(root / "zc")
        run = flow(k=0).run(cache=cache)
        made = run.steps["make"]
        expected = float(produce().sum())
        memory = joblib.Memory(root / "jl", verbose=0)
        memory_mmap = joblib.Memory(root / "jlm", verbose=0, mmap_mode="r")
        cached_jl, cached_jlm = memory.cache(produce), memory_mmap.cache(produce)
        cached_jl(), cached_jlm()  # fill both caches

        def zc_map() -> None:
            assert float(made.output().sum()) == expected

        def zc_read() -> None:
            saved = artifacts.MAP_THRESHOLD
            artifacts.MAP_THRESHOLD = 1 << 62
            try:
                assert float(made.output().sum()) == expected
            finally:
                artifacts.MAP_THRESHOLD = saved

        def jl() -> None:
            assert float(cached_jl().sum()) == expected

        def jlm() -> None:
            assert float(cached_jlm().sum()) == expected

        cases = {
            "zencache load (mapped chunks, verified) + sum": zc_map,
            "zencache load (read into memory) + sum": zc_read,
            "joblib.Memory load + sum": jl,
            "joblib.Memory mmap_mode='r' load + sum (reference)": jlm,
        }
        for fn in cases.values():
            fn()  # warm-up: page cache, imports
        for rep in range(args.reps):
            for name, fn in cases.items():
                results.setdefault(name, []).append(timed(fn))
            step_run = flow(k=rep + 1).run(cache=cache).steps["consume"]
            assert step_run.status == "executed"
            results.setdefault(
                "pipeline: downstream step re-executed (load+sum+commit)", []
            ).append(step_run.duration)
        cache.close()
    a = np.ones((MIB << 20) // 8)
    results["sum alone, array in anonymous memory"] = [timed(a.sum) for _ in range(args.reps)]

    print("\nmilliseconds, medians of the repetitions:")
    medians = {name: row(name, values, "ms", 1e3) for name, values in results.items()}
    zc = medians["zencache load (mapped chunks, verified) + sum"]
    jlt = medians["joblib.Memory load + sum"]
    print()
    verdict("goal 5 (>= 5x faster than joblib.Memory's load)", f"{jlt / zc:.2f}x", jlt / zc >= 5)


if __name__ == "__main__":
    main()
