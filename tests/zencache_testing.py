"""Helpers the test files share (imported as `from zencache_testing import ...`; the
folder is on sys.path through tests/conftest.py). Fixtures live in conftest.py;
these are plain functions because module-level helpers of the tests call them too."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# The console script of the environment running the tests.
ZENCACHE = Path(sys.executable).parent / "zencache"


def check_execution(run: Any, executed: list[str], cached: list[str]) -> None:
    """Which steps a run executed and which it took from the cache (Hamilton's style).

    `run` is a Run, or a mapping of invocation name -> status (what a run in a
    subprocess reports)."""
    statuses = (
        dict(run) if isinstance(run, Mapping) else {n: s.status for n, s in run.steps.items()}
    )
    assert sorted(n for n, s in statuses.items() if s == "executed") == sorted(executed), statuses
    assert sorted(n for n, s in statuses.items() if s == "cached") == sorted(cached), statuses


def run_cli(
    *args: str,
    cache: Path | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """The CLI in a subprocess: the installed console script (else `python -m zencache`),
    with `--cache-dir cache` when given, stdin that is not a terminal, ZENCACHE_DIR
    unset unless `env` sets it, and no .pyc written (tests rewrite sources within one
    second at the same size, and a stale .pyc would run the old code)."""
    command = [str(ZENCACHE)] if ZENCACHE.exists() else [sys.executable, "-m", "zencache"]
    options = ["--cache-dir", str(cache)] if cache is not None else []
    environment = {k: v for k, v in os.environ.items() if k != "ZENCACHE_DIR"}
    environment["PYTHONDONTWRITEBYTECODE"] = "1"
    environment.update(env or {})
    return subprocess.run(
        [*command, *options, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=environment,
        timeout=timeout,
        check=False,
    )
