"""Goal 3 and the memory check: `make() -> 1 GiB array -> total`, cold and warm, in fresh processes.

Every figure is a whole fresh process (python -c ...), as a user rerunning a
script would see it. zencache runs the pipeline; joblib.Memory runs the same two
functions memoized (`a = make(); total(a)`: joblib must load `a` and hash it to
look up `total`). Cold: an empty cache; zencache's hashing (xxh3 of every chunk)
and writing (files, fsync, rename) are timed apart by wrapping the store's
digest function. Warm: the same process again on the filled cache, with its peak
RSS against an interpreter that only imports numpy and zencache (nothing
loaded), and the list of heavy modules it imported.

    .venv/bin/python benchmarks/bench_large.py [--mib 1024] [--reps 5]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from harness import header, median, precompile, row, run_python, scratch, verdict

from zencache import pipeline, step

MIB = int(os.environ.get("BENCH_LARGE_MIB", "1024"))
HERE = Path(__file__).resolve().parent


def produce() -> np.ndarray:
    return np.arange((MIB << 20) // 8, dtype=np.float64)


@step
def make() -> np.ndarray:
    return produce()


@step
def total(a: np.ndarray) -> float:
    return float(a.sum())


@pipeline
def large():
    return total(a=make())


def make_plain() -> np.ndarray:
    return produce()


def total_plain(a: np.ndarray) -> float:
    return float(a.sum())


_PRELUDE = f"""
import json, resource, sys, time
started = time.perf_counter()
sys.path.insert(0, {str(HERE)!r})
"""

ZENCACHE = (
    _PRELUDE
    + """
import zencache.storage.store as store
hashed = [0, 0.0]
digest = store.digest_bytes
def timed_digest(data):
    t = time.perf_counter()
    out = digest(data)
    hashed[0] += memoryview(data).nbytes
    hashed[1] += time.perf_counter() - t
    return out
store.digest_bytes = timed_digest
put_blob = store.ObjectStore.put_blob
stored = [0.0]
def timed_put_blob(self, data):
    t = time.perf_counter()
    try:
        return put_blob(self, data)
    finally:
        stored[0] += time.perf_counter() - t
store.ObjectStore.put_blob = timed_put_blob
from zencache import Cache
import bench_large as m
run = m.large().run(cache=Cache(sys.argv[1]))
statuses = sorted({s.status for s in run.steps.values()})
heavy = [n for n in ("sklearn", "joblib", "pandas", "scipy", "pyarrow", "dask") if n in sys.modules]
print(json.dumps({"wall": time.perf_counter() - started, "statuses": statuses,
    "hashed_bytes": hashed[0], "hash_seconds": hashed[1], "put_blob_seconds": stored[0],
    "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "heavy": heavy,
    "modules": len(sys.modules)}))
"""
)

JOBLIB = (
    _PRELUDE
    + """
import joblib
import bench_large as m
memory = joblib.Memory(sys.argv[1], verbose=0)
a = memory.cache(m.make_plain)()
loaded = time.perf_counter()
result = memory.cache(m.total_plain)(a)
print(json.dumps({"wall": time.perf_counter() - started, "total_call": time.perf_counter() - loaded,
    "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""
)

BASELINE = (
    _PRELUDE
    + """
import numpy, zencache
print(json.dumps({"wall": time.perf_counter() - started,
    "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=MIB)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    env = {"BENCH_LARGE_MIB": str(args.mib)}
    header(f"make() -> {args.mib} MiB array -> total, fresh processes (goal 3, memory check)")
    precompile()
    r: dict[str, list[float]] = {}
    cold_info: list[dict] = []
    warm_info: list[dict] = []
    with scratch("large") as root:
        for rep in range(args.reps):
            zc_dir, jl_dir = root / f"zc{rep}", root / f"jl{rep}"
            cold = run_python(ZENCACHE, str(zc_dir), env=env)
            assert cold["statuses"] == ["executed"], cold
            cold_info.append(cold)
            r.setdefault("zencache cold run (process)", []).append(cold["wall"])
            jcold = run_python(JOBLIB, str(jl_dir), env=env)
            r.setdefault("joblib.Memory cold run (process)", []).append(jcold["wall"])
            warm = run_python(ZENCACHE, str(zc_dir), env=env)
            assert warm["statuses"] == ["cached"], warm
            warm_info.append(warm)
            r.setdefault("zencache warm rerun (process)", []).append(warm["wall"])
            jwarm = run_python(JOBLIB, str(jl_dir), env=env)
            r.setdefault("joblib.Memory warm rerun (process)", []).append(jwarm["wall"])
            r.setdefault("  of which joblib's warm call total(a) (hashes a)", []).append(
                jwarm["total_call"]
            )
            base = run_python(BASELINE, env=env)
            r.setdefault("startup: python + import numpy, zencache", []).append(base["wall"])
            r.setdefault("rss:base", []).append(base["maxrss_kib"])
            r.setdefault("rss:warm", []).append(warm["maxrss_kib"])
            r.setdefault("rss:joblib warm", []).append(jwarm["maxrss_kib"])
            for path in (zc_dir, jl_dir):  # keep the disk footprint to one rep
                os.system(f"rm -rf {path}")

    print("\nseconds, medians of the repetitions:")
    m = {k: row(k, v, "s") for k, v in r.items() if not k.startswith("rss:")}
    gb = [c["hashed_bytes"] / c["hash_seconds"] / 1e9 for c in cold_info]
    row("zencache cold: hashing (xxh3 of every chunk)", [c["hash_seconds"] for c in cold_info], "s")
    write = [c["put_blob_seconds"] - c["hash_seconds"] for c in cold_info]
    row("zencache cold: writing chunks (files, fsync, rename)", write, "s")
    print(
        f"  zencache cold hashing throughput: {median(gb):.1f} GB/s (n={len(gb)}, {min(gb):.1f}-{max(gb):.1f})"
    )
    rss = {k[4:]: median(v) / 1024 for k, v in r.items() if k.startswith("rss:")}
    print(
        f"  peak RSS: baseline {rss['base']:.0f} MiB, zencache warm rerun {rss['warm']:.0f} MiB "
        f"(+{rss['warm'] - rss['base']:.0f} MiB), joblib warm rerun {rss['joblib warm']:.0f} MiB"
    )
    print(f"  heavy modules imported by the warm rerun: {warm_info[0]['heavy'] or 'none'}")
    warm, jwarm = m["zencache warm rerun (process)"], m["joblib.Memory warm rerun (process)"]
    jcall = m["  of which joblib's warm call total(a) (hashes a)"]
    startup = m["startup: python + import numpy, zencache"]
    print()
    verdict(
        "goal 3 warm (fresh process ~ startup, <= 0.1x joblib.Memory's warm call)",
        f"{warm:.3f} s = startup {startup:.3f} s + {1e3 * (warm - startup):.0f} ms; "
        f"{warm / jwarm:.3f}x joblib's warm rerun, {warm / jcall:.3f}x its warm call alone",
        warm / jwarm <= 0.1,
    )
    verdict("goal 3 cold (hashing >= 10 GB/s)", f"{median(gb):.1f} GB/s", median(gb) >= 10)
    verdict(
        "memory check (warm rerun RSS near the interpreter's baseline)",
        f"+{rss['warm'] - rss['base']:.0f} MiB over {rss['base']:.0f} MiB",
        rss["warm"] - rss["base"] < 32,
    )


if __name__ == "__main__":
    main()
