"""The remote through the command line, in subprocesses: --remote, `cached (remote)` in
run tables and `cache status`, push/pull, `cache stats`, `cache gc --remote`, and a
down remote as one warning line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from .conftest import FaultProxy, remote_paths

ZENCACHE = Path(sys.executable).parent / "zencache"

PIPELINE = textwrap.dedent(
    """
    import numpy as np

    from zencache import pipeline, step


    @step
    def source(n: int = 50000) -> np.ndarray:
        return np.arange(n, dtype=np.float64)


    @step
    def total(x: np.ndarray) -> float:
        return float(x.sum())


    @pipeline
    def sums(n: int = 50000):
        return total(x=source(n=n))
    """
)


def zencache(*args: str, cwd: Path, env: dict[str, str] | None = None):
    full = {**os.environ, **(env or {})}
    for name in ("ZENCACHE_REMOTE", "ZENCACHE_REMOTE_MODE", "ZENCACHE_DIR"):
        if name not in (env or {}):
            full.pop(name, None)
    return subprocess.run(
        [str(ZENCACHE), *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=120
    )


def setup(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "sums.py").write_text(PIPELINE)
    return project


def test_two_machines_through_the_cli(tmp_path: Path, file_remote: str):
    project = setup(tmp_path)
    ci = ["--cache-dir", str(tmp_path / "ci")]
    laptop = ["--cache-dir", str(tmp_path / "laptop")]
    done = zencache(*ci, "run", "sums.py:sums", "--remote", file_remote, cwd=project)
    assert done.returncode == 0, done.stderr
    assert "executed" in done.stdout

    status = zencache(
        *laptop, "--remote", file_remote, "cache", "status", "sums.py:sums", cwd=project
    )
    assert status.returncode == 0, status.stderr
    assert [line.split()[1:3] for line in status.stdout.splitlines()] == [
        ["cached", "(remote)"],
        ["cached", "(remote)"],
    ]
    as_json = zencache(
        *laptop, "cache", "status", "sums.py:sums", "--json", "--remote", file_remote, cwd=project
    )
    assert {s["source"] for s in json.loads(as_json.stdout)} == {"remote"}

    env = {"ZENCACHE_REMOTE": file_remote}
    hit = zencache(*laptop, "run", "sums.py:sums", cwd=project, env=env)
    assert hit.returncode == 0, hit.stderr
    assert hit.stdout.count("cached (remote)") == 2
    assert "output: " in hit.stdout

    pulled = zencache(*laptop, "pull", "latest:source", "--json", cwd=project, env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert json.loads(pulled.stdout)["steps"] == 1

    stats = zencache(*laptop, "cache", "stats", "--json", cwd=project)
    remote = json.loads(stats.stdout)["remote"]
    assert remote["hits"] == 2 and remote["bytes_down"] > 0 and remote["errors"] == 0
    text = zencache(*laptop, "cache", "stats", cwd=project).stdout
    assert "remote hits" in text

    # Deferred uploads reach the remote with push.
    other = tmp_path / "remote2"
    other.mkdir()
    deferred = zencache(
        *ci,
        "run",
        "sums.py:sums",
        "--remote",
        other.as_uri(),
        cwd=project,
        env={"ZENCACHE_REMOTE_UPLOAD": "defer"},
    )
    assert deferred.returncode == 0, deferred.stderr
    assert remote_paths(other.as_uri()) == []
    pushed = zencache(*ci, "--remote", other.as_uri(), "push", "--json", cwd=project)
    assert pushed.returncode == 0, pushed.stderr
    assert json.loads(pushed.stdout)["steps"] == 2
    assert sum(p.startswith("ac/") for p in remote_paths(other.as_uri())) == 2


def test_pull_a_run_another_machine_pushed(tmp_path: Path, file_remote: str):
    project = setup(tmp_path)
    env = {"ZENCACHE_REMOTE": file_remote}
    done = zencache(
        "--cache-dir",
        str(tmp_path / "ci"),
        "run",
        "sums.py:sums",
        "-p",
        "n=777",
        cwd=project,
        env=env,
    )
    run_id = done.stdout.split("\nrun ")[1].split(":")[0]
    pulled = zencache("--cache-dir", str(tmp_path / "laptop"), "pull", run_id, cwd=project, env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert f"pulled run {run_id}: 2 steps" in pulled.stdout
    # Offline now: the remote is gone, the data is here.
    status = zencache(
        "--cache-dir",
        str(tmp_path / "laptop"),
        "cache",
        "status",
        "sums.py:sums",
        "-p",
        "n=777",
        cwd=project,
    )
    assert [line.split()[1] for line in status.stdout.splitlines()] == ["cached", "cached"]


def test_gc_remote_keeps_what_entries_name_and_young_objects(tmp_path: Path, file_remote: str):
    from zencache.storage.remote.backends import open_backend

    project = setup(tmp_path)
    env = {"ZENCACHE_REMOTE": file_remote}
    zencache("--cache-dir", str(tmp_path / "ci"), "run", "sums.py:sums", cwd=project, env=env)
    backend = open_backend(file_remote)
    backend.put("cas/" + "ab" * 15 + "0" * 2, b"an orphan", create_only=True)
    before = [p for p in remote_paths(file_remote) if p.startswith("cas/")]
    young = zencache("cache", "gc", "--remote", "--json", cwd=project, env=env)
    assert young.returncode == 0, young.stderr
    assert json.loads(young.stdout)["removed"] == 0
    assert json.loads(young.stdout)["kept_young"] == 1
    old = zencache("cache", "gc", "--remote", "--grace", "0", cwd=project, env=env)
    assert old.returncode == 0, old.stderr
    assert "deleted 1 remote object" in old.stdout
    after = [p for p in remote_paths(file_remote) if p.startswith("cas/")]
    assert len(after) == len(before) - 1
    hit = zencache("--cache-dir", str(tmp_path / "l"), "run", "sums.py:sums", cwd=project, env=env)
    assert hit.stdout.count("cached (remote)") == 2 and "output: " in hit.stdout


def test_a_down_remote_is_one_warning_line(tmp_path: Path, s3_remote: str, s3_proxy: FaultProxy):
    project = setup(tmp_path)
    s3_proxy.mode = "down"
    done = zencache(
        "run",
        "sums.py:sums",
        "--remote",
        s3_remote,
        cwd=project,
        env={"ZENCACHE_REMOTE_TIMEOUT": "1"},
    )
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, done.stderr
    assert "unavailable" in warnings[0]
    assert "Traceback" not in done.stderr


def test_a_bad_remote_url_is_a_one_line_error(tmp_path: Path):
    project = setup(tmp_path)
    done = zencache("run", "sums.py:sums", "--remote", "ftp://nowhere/x", cwd=project)
    assert done.returncode != 0
    assert done.stderr.startswith("error: remote 'ftp://nowhere/x' has no supported scheme")
    assert len(done.stderr.strip().splitlines()) == 1
