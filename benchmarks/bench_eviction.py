"""Size limits: enforcement over 10k-100k objects, and what a limit costs a cached run.

Enforcement: a cache of N one-chunk artifacts (bench_scale.fill_cache: 4 KiB + 1
byte objects, each named by a step entry, plus 5% old unreferenced ones) and 100
run records naming the entries, then `enforce` with a limit the cache is 10% over
(so eviction takes it to the 90% low-water mark: about a fifth of it goes), timed
once per size (the walk of the object folders, the LRU plan over every entry,
one index transaction, the deletions). Per run: the fully cached 1,000-step
chain of bench_chain, with and without a limit set (the limit is never reached,
so this is the check every run pays: one settings lookup, one meta read),
interleaved, medians.

    .venv/bin/python benchmarks/bench_eviction.py [--sizes 10000,100000] [--reps 7]
"""

from __future__ import annotations

import argparse
import os
import time

import bench_chain
from bench_scale import fill_cache
from harness import header, row, scratch, verdict

from zencache import Cache
from zencache.maintenance.eviction import enforce, measure
from zencache.storage.records import RunRecord, StepRun


def add_runs(cache: Cache, entries: int, runs: int = 100) -> None:
    """Run records naming the entries, so that last use comes from runs as it does in use."""
    per_run = entries // runs
    ops = []
    for r in range(runs):
        steps = tuple(
            StepRun(f"work_{i}", "flow:work", f"{i:032x}", "cached", 0.0)
            for i in range(r * per_run, (r + 1) * per_run)
        )
        finished = time.time() - 86400 + r
        record = RunRecord(
            f"20260101T{r:06d}.000000-abcdef",
            "flow",
            {},
            "completed",
            finished,
            finished,
            "",
            steps,
        )
        ops.append(("runs", record.run_id.encode(), record.encode()))
    cache.index.write(ops)


def cached_chain_us(cache: Cache) -> float:
    t = time.perf_counter()
    run = bench_chain.chain().run(cache=cache)
    elapsed = time.perf_counter() - t
    assert {s.status for s in run.steps.values()} == {"cached"}
    return elapsed / bench_chain.STEPS * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    header("size limits: LRU enforcement over 100k objects; the cost of a limit per run")
    timings: dict[int, float] = {}
    with scratch("eviction") as root:
        print("\nenforce a limit the cache is 10% over, seconds (one run each):")
        for n in (int(s) for s in args.sizes.split(",")):
            cache = fill_cache(root / f"cache{n}", n)
            add_runs(cache, n)
            before, _ = measure(cache)
            t = time.perf_counter()
            limit = int(before.total / 1.1)
            report = enforce(cache, limit, grace=0)
            timings[n] = time.perf_counter() - t
            assert report.after <= limit * 0.9, report
            print(
                f"  {n:>7,} objects: {timings[n]:.2f} s, evicted {len(report.evicted_steps):,} "
                f"entries and {report.deleted_objects:,} objects"
            )
            cache.close()

        cache = Cache(root / "chain")
        bench_chain.chain().run(cache=cache)
        without, limited = [], []
        for _ in range(args.reps):
            os.environ.pop("ZENCACHE_MAX_SIZE", None)
            without.append(cached_chain_us(cache))
            os.environ["ZENCACHE_MAX_SIZE"] = "100GB"
            limited.append(cached_chain_us(cache))
        os.environ.pop("ZENCACHE_MAX_SIZE", None)
        cache.close()
    print("\ncached 1,000-step chain, µs per step, medians:")
    base = row("no limit", without, "µs")
    with_limit = row("max_size = 100GB (under it)", limited, "µs")
    print()
    largest = max(timings)
    verdict(
        f"enforcement over {largest:,} objects in seconds at most",
        f"{timings[largest]:.2f} s",
        timings[largest] < 10,
    )
    verdict(
        "a limit costs a cached run nothing measurable (within 5% per step)",
        f"{with_limit:.2f} vs {base:.2f} µs/step: {with_limit / base:.3f}x",
        with_limit / base < 1.05,
    )


if __name__ == "__main__":
    main()
