"""What the damaged-index check costs (docs/reliability.md, "A damaged or foreign index").

Every open of the index compares the file's state with the one last known sound
(`index_check.vouch`): that is all an unchanged index costs. Each run's last commit
records the state it left (`record_sound`). Only a file changed by something else
is read through in a child process (`walk_in_child`). Measured on a small index (an
80-step pipeline's entries) and a large one (~32 MB), medians of many repetitions.

    .venv/bin/python benchmarks/bench_index_check.py [--reps 2000] [--walks 7]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from harness import scratch

from zencache.storage import index_check
from zencache.storage.index import Index
from zencache.storage.lmdb_file import DataFile


def _fill(path: Path, batches: int, per_batch: int) -> None:
    rng = random.Random(1)
    index = Index(path)
    try:
        for _ in range(batches):
            index.write(
                [
                    (
                        rng.choice(["latest", "runs", "envs", "trees"]),
                        rng.randbytes(rng.randint(4, 40)).hex().encode(),
                        rng.randbytes(rng.choice([40, 100, 3000, 9000])),
                    )
                    for _ in range(per_batch)
                ]
            )
    finally:
        index.close()


def _median(fn: Callable[[], object], reps: int) -> float:
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--walks", type=int, default=7)
    args = parser.parse_args()
    with scratch("index-check") as root:
        for label, batches, per_batch in (("small", 3, 80), ("large", 30, 300)):
            folder = root / label / "index.lmdb"
            _fill(folder, batches, per_batch)
            index_check.vouch(folder, force=True)
            with DataFile.open(folder / "data.mdb") as data:  # type: ignore[union-attr]
                txnid, pages = data.metas[0].txnid, data.size // data.psize
            unchanged = _median(lambda f=folder: index_check.vouch(f), args.reps)
            record = _median(lambda f=folder, t=txnid: index_check.record_sound(f, t), args.reps)
            walk = _median(lambda f=folder: index_check.walk_in_child(f), args.walks)
            print(
                f"{label} index, {pages} pages: open check of an unchanged index "
                f"{unchanged * 1e6:.1f} us; recording the state after a commit "
                f"{record * 1e6:.1f} us; read-through in a child {walk * 1e3:.1f} ms"
            )


if __name__ == "__main__":
    main()
