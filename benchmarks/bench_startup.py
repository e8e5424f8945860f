"""Goal 6: what a fresh process pays: `import zencache`, `zencache --help`, `cache status`.

Whole-process wall times (fork, exec, interpreter start, imports, the command),
repeated and interleaved, medians. The references are measured in the same run:
`python -c "import lmdb, xxhash, click"` (zencache's own dependencies) for the
import and --help, and `python -c "import <the user's pipeline module>"` for
`zencache cache status` on that pipeline (its cache filled beforehand, so every
step is looked up). Bytecode caching is on, as for an installed package.

    .venv/bin/python benchmarks/bench_startup.py [--reps 21]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from harness import REPO, child_env, header, precompile, row, scratch, verdict

HERE = Path(__file__).resolve().parent
ZENCACHE = str(Path(sys.executable).parent / "zencache")
PIPELINES = {
    # label: (module, pipeline, env)
    "bench_large (2 steps, numpy)": ("bench_large", "large", {"BENCH_LARGE_MIB": "8"}),
    "bench_chain (1,000 steps)": ("bench_chain", "chain", {}),
}


def wall(argv: list[str], env: dict[str, str]) -> float:
    out = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{argv} failed:\n{out.stderr}")
    return float(out.stderr.strip().splitlines()[-1])


def timed_argv(argv: list[str]) -> list[str]:
    """argv run under a tiny wrapper that prints its wall time (fork to exit) on stderr."""
    code = (
        "import subprocess, sys, time; t = time.perf_counter(); "
        "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
        "print(time.perf_counter() - t, file=sys.stderr); sys.exit(r.returncode)"
    )
    return [sys.executable, "-c", code, *argv]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=21)
    args = parser.parse_args()
    header("fresh-process startup: import, --help, cache status (goal 6)")
    precompile()
    env = child_env()
    cases: dict[str, tuple[list[str], dict[str, str]]] = {
        "python -c 'import lmdb, xxhash, click'": (
            [sys.executable, "-c", "import lmdb, xxhash, click"],
            env,
        ),
        "python -c 'import zencache'": ([sys.executable, "-c", "import zencache"], env),
        "zencache --help": ([ZENCACHE, "--help"], env),
    }
    with scratch("startup") as root:
        for label, (module, name, extra) in PIPELINES.items():
            cache_dir = root / module
            penv = child_env(extra)
            fill = subprocess.run(
                [ZENCACHE, "--cache-dir", str(cache_dir), "run", f"benchmarks/{module}.py:{name}"],
                capture_output=True,
                text=True,
                env=penv,
                cwd=REPO,
                check=False,
            )
            assert fill.returncode == 0, fill.stderr
            importer = f"import sys; sys.path.insert(0, {str(HERE)!r}); import {module}"
            cases[f"python -c 'import {module}'"] = ([sys.executable, "-c", importer], penv)
            status = [ZENCACHE, "--cache-dir", str(cache_dir), "cache", "status"]
            cases[f"zencache cache status {label}"] = (
                [*status, f"benchmarks/{module}.py:{name}"],
                penv,
            )
        times: dict[str, list[float]] = {label: [] for label in cases}
        for _ in range(args.reps):
            for label, (argv, cenv) in cases.items():
                times[label].append(wall(timed_argv(argv), cenv))

    print("\nwhole process, milliseconds, medians of the repetitions:")
    m = {label: row(label, values, "ms", 1e3) for label, values in times.items()}
    base = m["python -c 'import lmdb, xxhash, click'"]
    print()
    imp = m["python -c 'import zencache'"] - base
    hlp = m["zencache --help"] - base
    verdict(
        "goal 6 import (within 30 ms of lmdb+xxhash+click)", f"+{imp * 1e3:.1f} ms", imp <= 0.03
    )
    verdict(
        "goal 6 --help (within 30 ms of lmdb+xxhash+click)", f"+{hlp * 1e3:.1f} ms", hlp <= 0.03
    )
    for label, (module, _, _) in PIPELINES.items():
        extra = m[f"zencache cache status {label}"] - m[f"python -c 'import {module}'"]
        verdict(
            f"goal 6 cache status, {label} (import of the module + <= 50 ms)",
            f"+{extra * 1e3:.1f} ms",
            extra <= 0.05,
        )


if __name__ == "__main__":
    main()
