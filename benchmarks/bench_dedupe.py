"""Goal 4: storage of 10 versions of a 64 MiB float64 array, 1% of rows changed each.

Version v+1 is version v with a contiguous block of 1% of its rows (at a random
place) rewritten, as an updated partition of a table would be. Each version is
the output of one pipeline run (the `version` parameter changes). Bytes on disk
are the object files' sizes (and their allocated blocks, du's view) plus the
index, against one version's 64 MiB; joblib.Memory stores each version whole
(measured the same way, in the same run). Also: two different steps returning
identical arrays store it once.

    .venv/bin/python benchmarks/bench_dedupe.py [--mib 64] [--versions 10]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import joblib
import numpy as np
from harness import header, scratch, verdict

from zencache import Cache, pipeline, step

MIB = 64
COLUMNS = 64  # 512-byte rows


def version_array(version: int) -> np.ndarray:
    rows = (MIB << 20) // (8 * COLUMNS)
    array = np.random.default_rng(0).random((rows, COLUMNS))
    rng = np.random.default_rng(1000)
    block = rows // 100
    for _ in range(version):
        start = int(rng.integers(0, rows - block))
        array[start : start + block] = rng.random((block, COLUMNS))
    return array


@step
def table(version: int) -> np.ndarray:
    return version_array(version)


@pipeline
def versions(version: int = 0):
    return table(version=version)


@step
def copy_a(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(1 << 20)


@step
def copy_b(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(1 << 20)


@pipeline
def twins(seed: int = 5):
    return copy_a(seed=seed), copy_b(seed=seed)


def disk_usage(path: Path) -> tuple[int, int]:
    """(apparent bytes, allocated bytes) of every file under `path`."""
    apparent = allocated = 0
    for dirpath, _, names in os.walk(path):
        for name in names:
            st = os.stat(os.path.join(dirpath, name))
            apparent += st.st_size
            allocated += st.st_blocks * 512
    return apparent, allocated


def main() -> None:
    global MIB
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=MIB)
    parser.add_argument("--versions", type=int, default=10)
    args = parser.parse_args()
    MIB = args.mib
    header(f"{args.versions} versions of a {MIB} MiB array, 1% of rows changed each (goal 4)")
    one = MIB << 20
    with scratch("dedupe") as root:
        cache = Cache(root / "zc")
        memory = joblib.Memory(root / "jl", verbose=0)
        cached = memory.cache(version_array)
        for v in range(args.versions):
            run = versions(version=v).run(cache=cache)
            assert run.steps["table"].status == "executed"
            cached(v)
        objects = disk_usage(cache.path / "objects")
        index = disk_usage(cache.path / "index.lmdb")
        chunks = sum(1 for _ in cache.store.iter_objects())
        jl = disk_usage(root / "jl")

        twin_run = twins().run(cache=cache)
        a, b = (twin_run.steps[n].outputs["output"] for n in ("copy_a", "copy_b"))
        after_twins = disk_usage(cache.path / "objects")
        cache.close()

    print(f"\none version: {one / (1 << 20):.0f} MiB; {chunks} chunk objects after all versions")
    print(
        f"  zencache objects: {objects[0] / one:.3f}x one version "
        f"({objects[0] / (1 << 20):.1f} MiB apparent, {objects[1] / (1 << 20):.1f} MiB allocated)"
    )
    print(
        f"  zencache index (LMDB file, records of all versions): {index[0] / (1 << 20):.1f} MiB "
        f"apparent, {index[1] / (1 << 20):.2f} MiB allocated"
    )
    total = objects[1] + index[1]
    print(f"  zencache objects + index, allocated: {total / one:.3f}x one version")
    print(f"  joblib.Memory: {jl[0] / one:.3f}x one version ({jl[0] / (1 << 20):.1f} MiB)")
    twin_growth = after_twins[0] - objects[0]
    print(
        f"  two steps returning the same 8 MiB array: same content id {a == b}, "
        f"objects grew by {twin_growth / (1 << 20):.2f} MiB (once)"
    )
    print()
    verdict(
        "goal 4 (<= 1.15x one version on disk; identical outputs stored once)",
        f"{total / one:.3f}x (objects {objects[0] / one:.3f}x + index), joblib "
        f"{jl[0] / one:.2f}x; twins stored once: {a == b and twin_growth <= (8 << 20) + 65536}",
        total / one <= 1.15 and a == b,
    )


if __name__ == "__main__":
    main()
