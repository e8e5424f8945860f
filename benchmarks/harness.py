"""Shared helpers of the benchmark scripts: medians, scratch folders, the machine.

Figures on a shared 2-core machine are noisy: every script repeats each
measurement, interleaves zencache with its peer so both see the same noise, and
reports medians (with the spread) and ratios of medians, never a single time.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
# Scratch caches live here (same file system for zencache and joblib.Memory).
SCRATCH = Path(os.environ.get("ZENCACHE_BENCH_DIR", tempfile.gettempdir()))


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> str:
    """min-max of the repetitions, to show how noisy a median is."""
    return f"{min(values):.3g}-{max(values):.3g}"


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A fresh folder under SCRATCH, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=f"zcbench-{prefix}-", dir=SCRATCH))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kib / (1 << 20):.0f} GiB"
    import lmdb
    import xxhash

    versions = {"python": platform.python_version(), "lmdb": lmdb.__version__}
    versions["xxhash"] = xxhash.VERSION
    for name in ("joblib", "numpy"):
        with contextlib.suppress(ImportError):
            versions[name] = __import__(name).__version__
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "memory": mem,
        "os": f"{platform.system()} {platform.release()}",
        "versions": ", ".join(f"{k} {v}" for k, v in versions.items()),
        "commit": commit,
    }


def header(title: str) -> None:
    print(f"# {title}")
    for key, value in machine().items():
        print(f"#   {key}: {value}")
    print(f"#   command: {' '.join([Path(PYTHON).name, *sys.argv])}")


def row(label: str, values: list[float], unit: str, scale: float = 1.0) -> float:
    """Print one measured line (median and spread) and return the median, unscaled."""
    scaled = [v * scale for v in values]
    print(f"  {label:<52} {median(scaled):>10.3g} {unit:<6} (n={len(values)}, {spread(scaled)})")
    return median(values)


def verdict(goal: str, figure: str, ok: bool) -> None:
    print(f"  => {goal}: {figure}  [{'MET' if ok else 'NOT MET'}]")


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a measured child process: bytecode caching on, as for a
    user (this machine sets PYTHONDONTWRITEBYTECODE, which recompiles every import)."""
    env = {**os.environ, **(extra or {})}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def precompile() -> None:
    """Write zencache's and the benchmarks' .pyc files, as an installed package has them."""
    subprocess.run(
        [PYTHON, "-m", "compileall", "-q", str(REPO / "zencache"), str(REPO / "benchmarks")],
        check=True,
        env=child_env(),
    )


def run_python(code: str, *args: str, env: dict[str, str] | None = None) -> dict:
    """Run `code` in a fresh interpreter; it prints one JSON object as its last line."""
    out = subprocess.run(
        [PYTHON, "-c", code, *args],
        capture_output=True,
        text=True,
        check=False,
        env=child_env(env),
        cwd=REPO,
    )
    if out.returncode != 0:
        raise RuntimeError(f"child failed ({out.returncode}):\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])
