"""A full disk met at the moments that used to give no message at all: a fresh cache,
a new index (SIGBUS: LMDB's lock file is a shared map), and the
index commit of a step. Each is a one-line error naming the cache folder and the
space needed, never a signal or "internal error", and the cache works once space
is freed. A real small tmpfs (root only; skipped with the reason otherwise)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

FLOW = """
import numpy as np
from zencache import pipeline, step

@step
def small(n: int = 10) -> list:
    return list(range(n))

@step
def records(values: list, k: int = 0) -> dict:
    return {"k": k, "values": values}

@pipeline
def fits(k: int = 0):
    return records(values=small(), k=k)

@pipeline
def many(count: int = 100):
    values = small()
    return [records(values=values, k=k) for k in range(count)]
"""


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def cli(project: Path, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zencache", "--cache-dir", str(cache), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=project,
    )


def _fill(disk: Path, leave: int = 0) -> Path:
    """Fill the disk with one file, leaving about `leave` bytes free."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(fd, b"\1" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    if leave:
        size = filler.stat().st_size
        os.truncate(filler, max(0, size - leave))
    return filler


def _one_line_full_error(done: subprocess.CompletedProcess[str], cache: Path) -> None:
    assert done.returncode not in (0,) and done.returncode > 0, (done.returncode, done.stderr)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr
    assert "internal error" not in done.stderr
    assert str(cache) in errors[0], errors[0]
    assert "space" in errors[0].lower() and "free" in errors[0].lower(), errors[0]


@pytest.mark.parametrize("leave", [0, 20_000], ids=["nothing-left", "20k-left"])
def test_a_fresh_cache_on_a_full_disk(disk: Path, tmp_path: Path, leave: int) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    cache = disk / "cache"
    filler = _fill(disk, leave)
    done = cli(tmp_path, cache, "run", "flow.py:fits")
    _one_line_full_error(done, cache)
    filler.unlink()
    done = cli(tmp_path, cache, "run", "flow.py:fits")
    assert done.returncode == 0, done.stderr
    assert cli(tmp_path, cache, "cache", "verify").returncode == 0


def test_a_full_disk_during_index_commits_names_the_cache(disk: Path, tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    cache = disk / "cache"
    assert cli(tmp_path, cache, "run", "flow.py:fits").returncode == 0
    filler = _fill(disk, 40_000)
    done = cli(tmp_path, cache, "run", "flow.py:many")
    _one_line_full_error(done, cache)
    filler.unlink()
    assert cli(tmp_path, cache, "cache", "verify").returncode == 0
    done = cli(tmp_path, cache, "run", "flow.py:many")
    assert done.returncode == 0, done.stderr
    assert cli(tmp_path, cache, "run", "flow.py:fits").returncode == 0
