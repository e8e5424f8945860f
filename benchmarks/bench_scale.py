"""Goal 7: scale. Index lookups at 10k vs 1M entries; stats/verify/gc at 10k-100k
objects; a pipeline of 10,000 steps traced, checked (cache status) and run cached.

Index: step records of a real encoded size under random 32-hex keys, looked up
(the hit path, `Index.step_output_ids`) at random, 200,000 times, timed in
batches of 1,000; medians of the batches. Maintenance: a cache of N one-chunk
artifacts (4 KiB + 1 byte objects, each referenced by a step and its artifact
record, plus 5% unreferenced and old) written straight to disk (setup, not timed;
the store's own fsyncs would take minutes), then `stats`, `verify` and `gc`
timed once each per size. Pipeline: `chain` of 10,000 steps from bench_chain.

    .venv/bin/python benchmarks/bench_scale.py [--sizes 10000,30000,100000]
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path

import bench_chain
from harness import header, row, scratch, verdict

from zencache import Cache
from zencache.hashing import digest_bytes
from zencache.materializers.artifacts import artifact_id
from zencache.storage.index import Index
from zencache.storage.records import ArtifactRecord, FileEntry, StepRecord

IDENTITY = "zencache.materializers.builtin:BytesMaterializer@1"


def step_value(output_id: str) -> bytes:
    return StepRecord(
        key="0" * 32,
        step="flow:work",
        name="work",
        pipeline="flow",
        output_ids=(output_id,),
        output_names=("output",),
        fingerprint="f" * 32,
        code_parts={"code:flow:work": "a" * 32, "python": "3.11"},
        params={"k": {"hash": "b" * 32, "repr": "1"}},
        inputs={"x": "c" * 32},
        materializers={"output": IDENTITY},
        run_id="20260101T000000.000000-abcdef",
    ).encode()


def fill_index(path: Path, entries: int) -> list[bytes]:
    index = Index(path)
    value = step_value("d" * 32)
    rng = random.Random(entries)
    keys = [rng.randbytes(16).hex().encode() for _ in range(entries)]
    for start in range(0, entries, 100_000):
        index.write(("steps", key, value) for key in keys[start : start + 100_000])
    index.close()
    return keys


def lookup_latency(path: Path, keys: list[bytes], lookups: int = 200_000) -> list[float]:
    index = Index(path)
    rng = random.Random(1)
    probe = [rng.choice(keys).decode() for _ in range(lookups)]
    batches = []
    for start in range(0, lookups, 1000):
        t = time.perf_counter()
        for key in probe[start : start + 1000]:
            index.step_output_ids(key)
        batches.append((time.perf_counter() - t) / 1000)
    index.close()
    return batches


def fill_cache(root: Path, objects: int) -> Cache:
    """`objects` referenced one-chunk artifacts and 5% unreferenced old objects."""
    cache = Cache(root)
    cache.store  # noqa: B018  (creates the layout)
    objects_dir = cache.path / "objects"
    index = cache.index
    ops: list[tuple[str, bytes, bytes]] = []
    old = time.time() - 7 * 86400
    for i in range(objects + objects // 20):
        data = i.to_bytes(8, "little") * 512 + b"!"  # 4 KiB + 1: above the inline limit
        object_id = digest_bytes(data)
        shard = objects_dir / object_id[:2]
        shard.mkdir(exist_ok=True)
        target = shard / object_id[2:]
        target.write_bytes(data)
        if i >= objects:
            os.utime(target, (old, old))  # garbage, past gc's grace period
            continue
        files = {"value.bin": FileEntry(size=len(data), chunks=(object_id,))}
        content_id = artifact_id(IDENTITY, files)
        record = ArtifactRecord(content_id, IDENTITY, "builtins:bytes", files, created=old)
        ops.append(("artifacts", content_id.encode(), record.encode()))
        ops.append(("steps", f"{i:032x}".encode(), step_value(content_id)))
        if len(ops) >= 20_000:
            index.write(ops)
            ops = []
    index.write(ops)
    return cache


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,30000,100000")
    parser.add_argument("--entries", default="10000,1000000")
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    header("scale: index lookups, maintenance of 100k objects, a 10,000-step pipeline (goal 7)")
    from zencache import maintenance
    from zencache.inspection.status import pipeline_status

    lat: dict[int, float] = {}
    maint: dict[str, dict[int, float]] = {"stats": {}, "verify": {}, "gc": {}}
    with scratch("scale") as root:
        print("\nindex lookup (step_output_ids, random keys), µs, median of 1,000-lookup batches:")
        for entries in (int(n) for n in args.entries.split(",")):
            path = root / f"index{entries}"
            keys = fill_index(path, entries)
            size = sum(f.stat().st_size for f in path.iterdir()) / (1 << 20)
            lat[entries] = row(
                f"{entries:>9,} entries ({size:.0f} MiB file)",
                lookup_latency(path, keys),
                "µs",
                1e6,
            )

        print("\ncache maintenance, seconds (one run each; objects + 5% garbage):")
        for n in (int(s) for s in args.sizes.split(",")):
            cache = fill_cache(root / f"cache{n}", n)
            for name, fn in (
                ("stats", lambda c=cache: maintenance.stats(c)),
                ("verify", lambda c=cache: maintenance.verify(c)),
                ("gc", lambda c=cache: maintenance.gc(c)),
            ):
                t = time.perf_counter()
                report = fn()
                maint[name][n] = time.perf_counter() - t
                if name == "verify":
                    assert not report.damaged, report
                if name == "gc":
                    assert report.objects == n // 20, report.objects
            print(
                f"  {n:>7,} objects: stats {maint['stats'][n]:.2f} s, verify "
                f"{maint['verify'][n]:.2f} s, gc {maint['gc'][n]:.2f} s "
                f"({1e6 * maint['verify'][n] / n:.0f} µs/object verified)"
            )
            cache.close()

        bench_chain.STEPS = args.steps
        cache = Cache(root / "chain")
        bench_chain.chain().run(cache=cache)
        trace, status, run = [], [], []
        for _ in range(args.reps):
            t = time.perf_counter()
            bench_chain.chain().trace()
            trace.append(time.perf_counter() - t)
            t = time.perf_counter()
            statuses = pipeline_status(bench_chain.chain(), cache)
            status.append(time.perf_counter() - t)
            assert {s.status for s in statuses} == {"cached"}
            t = time.perf_counter()
            result = bench_chain.chain().run(cache=cache)
            run.append(time.perf_counter() - t)
            assert {s.status for s in result.steps.values()} == {"cached"}
        cache.close()
    print(f"\na pipeline of {args.steps:,} steps, seconds, medians:")
    t_trace = row("trace", trace, "s")
    t_status = row("cache status (trace, plan, one lookup per step)", status, "s")
    t_run = row("cached run (trace, plan, lookups, run record)", run, "s")

    print()
    small, big = min(lat), max(lat)
    verdict(
        f"goal 7 index ({big:,} entries within 2x the latency at {small:,})",
        f"{lat[big] * 1e6:.2f} µs vs {lat[small] * 1e6:.2f} µs: {lat[big] / lat[small]:.2f}x",
        lat[big] / lat[small] <= 2,
    )
    sizes = sorted(maint["verify"])
    growth = {
        name: (t[sizes[-1]] / t[sizes[0]]) / (sizes[-1] / sizes[0]) for name, t in maint.items()
    }
    verdict(
        f"goal 7 maintenance ({sizes[-1]:,} objects in seconds, linear)",
        ", ".join(f"{k} {maint[k][sizes[-1]]:.2f} s" for k in maint)
        + "; time per object at "
        + f"{sizes[-1]:,} vs {sizes[0]:,}: "
        + ", ".join(f"{k} {g:.2f}x" for k, g in growth.items()),
        all(maint[k][sizes[-1]] < 10 for k in maint) and all(g < 1.5 for g in growth.values()),
    )
    total = t_trace + t_status + t_run
    verdict(
        f"goal 7 pipeline ({args.steps:,} steps traced, checked and run cached in < 1 s)",
        f"trace {t_trace:.3f} s + status {t_status:.3f} s + run {t_run:.3f} s = {total:.3f} s",
        total < 1 and t_status < 1 and t_run < 1,
    )


if __name__ == "__main__":
    main()
