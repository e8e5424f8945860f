"""The size limit from the command line: max_size in pyproject.toml, `cache gc
--max-size`, `cache stats`, `cache ls --sort last-used`, `pin` / `unpin`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ZENCACHE = Path(sys.executable).parent / "zencache"

FLOW = textwrap.dedent(
    """
    import numpy as np
    from zencache import pipeline, step

    @step
    def noise(seed: int = 0) -> np.ndarray:
        return np.random.default_rng(seed).random(125_000)

    @step
    def total(x: np.ndarray) -> float:
        return float(x.sum())

    @pipeline
    def noisy(seed: int = 0):
        return total(x=noise(seed=seed))
    """
)


def zencache(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZENCACHE_")}
    env["PYTHONWARNINGS"] = "ignore"
    done = subprocess.run(
        [str(ZENCACHE), *args],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "flow.py").write_text(FLOW)
    (tmp_path / "pyproject.toml").write_text('[tool.zencache]\nmax_size = "3MB"\n')
    return tmp_path


def test_max_size_in_pyproject_holds_after_every_run(project: Path) -> None:
    for seed in range(6):
        zencache(project, "run", "flow.py:noisy", "-p", f"seed={seed}")
    stats = json.loads(zencache(project, "cache", "stats", "--json").stdout)
    assert stats["max_size"] == 3 * 10**6
    assert stats["disk_bytes"] <= 3 * 10**6
    assert stats["last_eviction"]["evicted_steps"]
    text = zencache(project, "cache", "stats").stdout
    assert "size limit" in text and "pyproject.toml" in text
    assert "last eviction" in text and "never" not in text.split("last eviction")[1]


def test_pinned_runs_survive_and_ls_sorts_by_last_use(project: Path) -> None:
    zencache(project, "run", "flow.py:noisy", "-p", "seed=50")
    assert "pinned run" in zencache(project, "pin", "latest").stdout
    assert json.loads(zencache(project, "cache", "pins", "--json").stdout)
    for seed in range(5):
        zencache(project, "run", "flow.py:noisy", "-p", f"seed={seed}")
    table = zencache(project, "run", "flow.py:noisy", "-p", "seed=50").stdout
    assert "executed" not in table
    listed = json.loads(zencache(project, "cache", "ls", "--sort", "last-used", "--json").stdout)
    used = [entry["last_used"] for entry in listed]
    assert used == sorted(used)
    pinned_id = json.loads(zencache(project, "cache", "pins", "--json").stdout)[0]
    assert "unpinned run" in zencache(project, "unpin", pinned_id).stdout
    assert json.loads(zencache(project, "cache", "pins", "--json").stdout) == []


def test_gc_max_size_once(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    for seed in range(4):
        zencache(tmp_path, "run", "flow.py:noisy", "-p", f"seed={seed}")
    dry = json.loads(
        zencache(
            tmp_path, "cache", "gc", "--max-size", "2MB", "--dry-run", "--grace", "0", "--json"
        ).stdout
    )
    assert dry["dry_run"] and dry["evicted_steps"]
    done = zencache(tmp_path, "cache", "gc", "--max-size", "2MB", "--grace", "0")
    assert done.stdout.startswith("evicted ")
    stats = json.loads(zencache(tmp_path, "cache", "stats", "--json").stdout)
    assert stats["disk_bytes"] <= 2 * 10**6
    assert stats["max_size"] is None  # once, not a setting


@pytest.mark.parametrize("size", ["lots", "20 parsecs", "-1GB"])
def test_a_bad_size_is_a_one_line_usage_error(tmp_path: Path, size: str) -> None:
    done = zencache(tmp_path, "cache", "gc", "--max-size", size, check=False)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "20GB" in done.stderr
