"""Throughput of the foundation layer: hashing, the object store, the index hit path.

A plain script, not a test:

    .venv/bin/python benchmarks/bench_foundation.py [--mib 256] [--runs 5] [--dir PATH]

Prints the median of --runs runs for each figure. `put_blob` is cold (a new, empty
store each run) and includes every fsync; `read_blob` reads back what was just
written, so it measures verification and copying from the page cache, not the disk.
`step_output_ids` is the cache-hit lookup: the median of 100k single calls on an
index holding 10k step records.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from zencache.hashing import array_digest, digest_bytes
from zencache.storage.index import Index
from zencache.storage.records import StepRecord
from zencache.storage.store import CHUNK_SIZE, ObjectStore

GB = 1e9


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def throughput(label: str, nbytes: int, seconds: list[float]) -> None:
    median = statistics.median(seconds)
    rates = sorted(nbytes / s / GB for s in seconds)
    print(
        f"{label:<34} {nbytes / median / GB:7.2f} GB/s   "
        f"(median {median * 1e3:8.1f} ms; runs {rates[0]:.2f}..{rates[-1]:.2f} GB/s)"
    )


def bench_array_digest(array: np.ndarray, runs: int) -> None:
    array_digest(array)  # warm the pages
    throughput(
        "array_digest", array.nbytes, [timed(lambda: array_digest(array)) for _ in range(runs)]
    )


def bench_store(array: np.ndarray, runs: int, workdir: Path) -> None:
    put_times, read_times = [], []
    for run in range(runs):
        root = workdir / f"objects-{run}"
        store = ObjectStore(root)
        blobs = []
        put_times.append(
            timed(lambda store=store, blobs=blobs: blobs.append(store.put_blob(array)))
        )
        blob = blobs[0]
        read_times.append(timed(lambda store=store, blob=blob: store.read_blob(blob)))
        if run == 0:
            assert bytes(store.read_blob(blob)) == array.tobytes()
            files = sum(1 for _ in store.iter_objects())
            print(f"  ({len(blob.chunks)} chunks of {CHUNK_SIZE >> 10} KiB, {files} files)")
        shutil.rmtree(root)
    throughput("ObjectStore.put_blob (cold, fsync)", array.nbytes, put_times)
    throughput("ObjectStore.read_blob (verified)", array.nbytes, read_times)

    # Reference only, not a supported mode: the same cold put with fsync a no-op, to
    # show how much of put_blob's time is durability (2 fsyncs per chunk).
    fsync, os.fsync = os.fsync, lambda fd: None
    try:
        no_sync = []
        for run in range(runs):
            root = workdir / f"nosync-{run}"
            store = ObjectStore(root)
            no_sync.append(timed(lambda store=store: store.put_blob(array)))
            shutil.rmtree(root)
    finally:
        os.fsync = fsync
    throughput("  reference: put_blob without fsync", array.nbytes, no_sync)


def bench_step_output_ids(workdir: Path, calls: int = 100_000, records: int = 10_000) -> None:
    index = Index(workdir / "index.lmdb")
    try:
        keys = [digest_bytes(b"key%d" % i) for i in range(records)]
        ops = []
        for key in keys:
            record = StepRecord(
                key=key,
                step="bench:step",
                name="step",
                pipeline="bench:pipeline",
                output_ids=(digest_bytes(key.encode()), digest_bytes(key.encode() + b"2")),
                output_names=("a", "b"),
                fingerprint=key,
                params={"p": {"hash": key, "repr": "1"}},
            )
            ops.append(("steps", key.encode(), record.encode()))
        index.write(ops)
        lookup = index.step_output_ids
        probe = [keys[(i * 7919) % records] for i in range(calls)]
        for key in probe[:1000]:
            lookup(key)
        samples = []
        clock = time.perf_counter_ns
        for key in probe:
            start = clock()
            lookup(key)
            samples.append(clock() - start)
        total = sum(samples)
        samples.sort()
        print(
            f"{'Index.step_output_ids (hit)':<34} {statistics.median(samples) / 1e3:7.2f} µs   "
            f"(median of {calls} calls; p99 {samples[int(calls * 0.99)] / 1e3:.2f} µs, "
            f"mean {total / calls / 1e3:.2f} µs)"
        )
    finally:
        index.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="array size in MiB")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (a real disk)")
    args = parser.parse_args()

    print(
        f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}, "
        f"{os.cpu_count()} cpus, {sys.platform}"
    )
    array = np.random.default_rng(0).random((args.mib << 20) // 8)  # float64
    print(f"array: {array.nbytes >> 20} MiB float64; medians of {args.runs} runs")
    with tempfile.TemporaryDirectory(prefix="zencache-bench-", dir=args.dir) as tmp:
        workdir = Path(tmp)
        bench_array_digest(array, args.runs)
        bench_store(array, args.runs, workdir)
        bench_step_output_ids(workdir)


if __name__ == "__main__":
    main()
