"""Hostile files where objects should be: a FIFO, a symlink to /dev/zero, a directory,
a symlink loop, a shard folder that is a symlink out of the store. zencache reads
only regular files, never follows a symlink out of the store, bounds every read,
and gc / clear never delete anything outside the cache folder.

Every command runs in a subprocess with a deadline: a hang fails the test."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FLOW = """
from zencache import pipeline, step

@step
def make(n: int = 3000) -> list:
    return list(range(n))  # over the inline limit: stored as an object

@step
def total(values: list) -> int:
    return sum(values)

@pipeline
def flow():
    return total(values=make())
"""


def cli(root: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [sys.executable, "-m", "zencache", "--cache-dir", str(root / "cache"), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=root,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"zencache {' '.join(args)} hung ({timeout} s)") from exc


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile")
    (root / "flow.py").write_text(FLOW)
    done = cli(root, "run", "flow.py:flow")
    assert done.returncode == 0, done.stderr
    return root


@pytest.fixture
def project(built: Path, tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(built, root, symlinks=True)
    return root


def _objects(root: Path) -> list[Path]:
    return sorted(p for p in (root / "cache" / "objects").glob("*/*") if not p.name.startswith("."))


def _make_hostile(path: Path, kind: str) -> None:
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "directory":
        path.mkdir()
        (path / "inside").write_bytes(b"x")
    elif kind == "symlink-loop":
        path.symlink_to(path.name)
    elif kind == "dir-loop":
        path.symlink_to(".")


KINDS = ["fifo", "dev-zero", "directory", "symlink-loop", "dir-loop"]


@pytest.mark.parametrize("kind", KINDS)
def test_verify_repair_and_run_survive_a_hostile_object(project: Path, kind: str) -> None:
    victim = _objects(project)[0]
    _make_hostile(victim, kind)
    object_id = victim.parent.name + victim.name

    done = cli(project, "cache", "verify", "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert [d["object_id"] for d in report["objects"]] == [object_id], report

    done = cli(project, "cache", "verify", "--repair")
    assert done.returncode == 0, done.stdout + done.stderr
    done = cli(project, "run", "flow.py:flow")
    assert done.returncode == 0, done.stderr
    assert cli(project, "cache", "verify").returncode == 0
    assert victim.is_file() and not victim.is_symlink()  # rewritten as a regular object


@pytest.mark.parametrize("kind", KINDS)
def test_a_run_on_a_hostile_object_reexecutes_instead_of_hanging(project: Path, kind: str) -> None:
    (project / "flow.py").write_text(FLOW.replace("return sum(values)", "return sum(values) + 0"))
    victim = _objects(project)[0]
    _make_hostile(victim, kind)
    done = cli(project, "run", "flow.py:flow")  # total misses and must load make's output
    assert done.returncode == 0, done.stderr


def test_gc_and_clear_never_delete_through_a_symlinked_shard(project: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    precious = outside / ("f" * 30)  # named like an object
    precious.write_bytes(b"not yours")
    shard = project / "cache" / "objects" / "ff"
    shutil.rmtree(shard, ignore_errors=True)
    shard.symlink_to(outside, target_is_directory=True)
    objects = project / "cache" / "objects"
    (objects / "fe").mkdir(exist_ok=True)
    (objects / "fe" / ("e" * 30)).symlink_to(precious)  # an object that is a link out

    for args in (["cache", "gc", "--grace", "0s"], ["cache", "clear", "--yes"]):
        done = cli(project, *args)
        assert done.returncode == 0, done.stdout + done.stderr
        assert precious.read_bytes() == b"not yours", args
        assert sorted(p.name for p in outside.iterdir()) == [precious.name]
    done = cli(project, "run", "flow.py:flow")
    assert done.returncode == 0, done.stderr
