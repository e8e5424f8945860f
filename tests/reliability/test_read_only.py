"""A cache zencache may read but not write: on a read-only mount (a real one: a
read-only bind mount, root only; skipped with the reason otherwise), or owned by
another user. Every reading command works; `run` serves hits and says plainly that
it cannot record; a step that must execute is a one-line error naming the cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

FLOW = """
from zencache import pipeline, step

@step
def make(n: int = 3000) -> list:
    return list(range(n))

@step
def total(values: list) -> int:
    return sum(values)

@pipeline
def flow(n: int = 3000):
    return total(values=make(n=n))
"""

READERS = [
    ["cache", "status", "flow.py:flow"],
    ["cache", "status", "flow.py:flow", "--json"],
    ["explain", "flow.py:flow", "total"],
    ["runs", "ls"],
    ["runs", "show", "latest"],
    ["cache", "stats"],
    ["cache", "ls"],
    ["cache", "verify"],
]


def cli(
    project: Path, cache: Path, *args: str, user: int | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zencache", "--cache-dir", str(cache), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=project,
        env={**os.environ, "HOME": str(project)},
        user=user,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("read-only")
    (root / "flow.py").write_text(FLOW)
    done = cli(root, root / "cache", "run", "flow.py:flow")
    assert done.returncode == 0, done.stderr
    return root


@pytest.fixture
def read_only(built: Path, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(project, cache): a copy of the cache behind a read-only bind mount."""
    project = tmp_path / "project"
    shutil.copytree(built, project)
    mount_point = tmp_path / "ro-cache"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "--bind", str(project / "cache"), str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount here (needs root): {done.stderr.strip()}")
    try:
        done = subprocess.run(
            ["mount", "-o", "remount,ro,bind", str(mount_point)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot remount read-only here: {done.stderr.strip()}")
        yield project, mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _snapshot(cache: Path) -> list[tuple[str, int, float]]:
    return sorted(
        (str(p.relative_to(cache)), p.stat().st_size, p.stat().st_mtime)
        for p in cache.rglob("*")
        if p.is_file()
    )


@pytest.mark.parametrize("command", READERS, ids=lambda c: " ".join(c))
def test_reading_commands_work_on_a_read_only_mount(
    read_only: tuple[Path, Path], command: list[str]
) -> None:
    project, cache = read_only
    done = cli(project, cache, *command)
    assert done.returncode == 0, done.stdout + done.stderr
    if command[-1] == "--json" and command[1] == "status":
        assert [s["status"] for s in json.loads(done.stdout)] == ["cached", "cached"]


def test_run_serves_hits_and_says_it_cannot_record(read_only: tuple[Path, Path]) -> None:
    project, cache = read_only
    before = _snapshot(project / "cache")
    done = cli(project, cache, "run", "flow.py:flow")
    assert done.returncode == 0, done.stderr
    assert "cached" in done.stdout
    assert "read-only" in done.stderr and "not recorded" in done.stderr, done.stderr
    assert _snapshot(project / "cache") == before


def test_a_step_that_must_execute_is_a_clear_error(read_only: tuple[Path, Path]) -> None:
    project, cache = read_only
    before = _snapshot(project / "cache")
    done = cli(project, cache, "run", "flow.py:flow", "-p", "n=10")
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr
    assert "read-only" in errors[0] and str(cache) in errors[0], done.stderr
    assert "internal error" not in done.stderr
    assert _snapshot(project / "cache") == before


def test_a_cache_owned_by_another_user_can_be_read(built: Path, tmp_path: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to run a command as another user")
    project = tmp_path / "project"
    shutil.copytree(built, project)
    for path in (tmp_path, project):
        path.chmod(0o755)
    os.chmod(project / "flow.py", 0o644)
    nobody = 65534
    try:
        probe = subprocess.run(
            [sys.executable, "-c", "import zencache"],
            user=nobody,
            capture_output=True,
            check=False,
            cwd=project,
        )
    except OSError as exc:
        pytest.skip(f"user {nobody} cannot run this interpreter: {exc}")
    if probe.returncode != 0:
        pytest.skip(f"user {nobody} cannot run this interpreter: {probe.stderr[-200:]!r}")
    for command in READERS:
        done = cli(project, project / "cache", *command, user=nobody)
        assert done.returncode == 0, (command, done.stdout + done.stderr)
    done = cli(project, project / "cache", "run", "flow.py:flow", user=nobody)
    assert done.returncode == 0, done.stderr
    assert "read-only" in done.stderr or "cannot write" in done.stderr
