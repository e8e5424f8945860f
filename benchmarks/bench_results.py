"""Results as data: what listing runs, finding NAME@latest, diffing and writing the
HTML report cost.

    .venv/bin/python benchmarks/bench_results.py [--runs 10000] [--reps 5]

Run records are written straight into the index (copies of one real run's record),
so the figures measure reading, not running. Prints medians (min-max).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from zencache import Cache, pipeline, step
from zencache.cli.report_html import build_report
from zencache.results import diff_runs
from zencache.storage.records import RunRecord


@step
def inc(x: int) -> int:
    return x + 1


@step
def head(x: int) -> int:
    return x


@pipeline
def chain(start: int = 0):
    x = inc(x=start)
    for _ in range(999):
        x = inc(x=x)
    return x


@pipeline
def small(start: int = 0):
    return inc(x=inc(x=head(x=start)))


def timed(fn: Callable[[], object], reps: int) -> str:
    samples = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return (
        f"{statistics.median(samples) * 1000:8.1f} ms "
        f"({min(samples) * 1000:.1f}-{max(samples) * 1000:.1f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        cache = Cache(Path(folder) / "cache")
        template = small().run(cache=cache).record
        ops = []
        for number in range(args.runs):
            # later than the real run's id: `small` has the oldest run of all
            run_id = f"29990101T000000.{number:06d}-{number:06x}"
            record = RunRecord(
                run_id=run_id,
                pipeline="other",
                params=template.params,
                status="completed",
                started=template.started,
                finished=template.finished,
                env_id=template.env_id,
                steps=template.steps,
            )
            ops.append(("runs", run_id.encode(), record.encode()))
        cache.index.write(ops)
        total = args.runs + 1
        print(f"{total:,} runs of 3 steps in the index")
        print(f"Cache().runs()                      {timed(cache.runs, args.reps)}")
        print(
            f"Cache().runs(pipeline='other')      "
            f"{timed(lambda: cache.runs(pipeline='other'), args.reps)}"
        )
        print(
            f"Cache().run('small@latest') (oldest)"
            f"{timed(lambda: cache.run('small@latest'), args.reps)}"
        )
        print(
            f"Cache().run('other@latest') (newest)"
            f"{timed(lambda: cache.run('other@latest'), args.reps)}"
        )

        chain().run(cache=cache)
        chain(start=1).run(cache=cache)
        a, b = cache.run("chain@latest~1"), cache.run("chain@latest")
        print("1,000-step chain, two runs")
        print(
            f"runs diff (with metrics)            "
            f"{timed(lambda: diff_runs(cache.run(a.id), cache.run(b.id)), args.reps)}"
        )
        print(
            f"report (previews)                   "
            f"{timed(lambda: build_report(cache, cache.run(b.id)), args.reps)}"
        )
        print(
            f"report --diff (previews)            "
            f"{timed(lambda: build_report(cache, cache.run(b.id), cache.run(a.id)), args.reps)}"
        )
        size = len(build_report(cache, cache.run(b.id)).encode())
        with_diff = len(build_report(cache, cache.run(b.id), cache.run(a.id)).encode())
        print(f"report size: {size / 1024:.0f} KiB, with --diff {with_diff / 1024:.0f} KiB")
        cache.close()


if __name__ == "__main__":
    main()
