"""Files and environment variables through the CLI, each command in a fresh process:
`cache status` names what changed, `explain`, `runs show` and `lineage` list what a
step read, `audit` says the data moved, and a bad path is a one-line error (exit 2)."""

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
    import os
    from pathlib import Path

    from zencache import pipeline, step


    @step
    def load(path: Path) -> int:
        return len(path.read_bytes())


    @step
    def images(folder: Path) -> int:
        return len(list(folder.iterdir()))


    @step
    def report(n: int, m: int) -> str:
        return f"{n} {m} {os.environ.get('ZC_MODE', 'default')}"


    @pipeline
    def flow(path: Path = Path("data/train.csv"), folder: Path = Path("data/images")):
        return report(n=load(path=path), m=images(folder=folder))
    """
)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ZENCACHE_DIR", "ZC_MODE")}
    env["PYTHONWARNINGS"] = "error"
    env.update(extra)
    return env


def _cli(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ZENCACHE), *args],
        cwd=project,
        capture_output=True,
        text=True,
        env=_env(**env),
        timeout=120,
        check=False,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "flow.py").write_text(FLOW)
    (tmp_path / "data" / "images").mkdir(parents=True)
    (tmp_path / "data" / "train.csv").write_bytes(b"x" * 12_100_000)
    for name in ("a.png", "b.png", "c.png", "d.png"):
        (tmp_path / "data" / "images" / name).write_bytes(name.encode())
    return tmp_path


def test_status_explain_runs_show_and_lineage_name_files_and_variables(project: Path) -> None:
    done = _cli(project, "run", "flow.py:flow", ZC_MODE="fast")
    assert done.returncode == 0, done.stderr

    (project / "data" / "train.csv").write_bytes(b"y" * 12_300_000)
    for name in ("a.png", "b.png", "c.png"):
        (project / "data" / "images" / name).write_bytes(b"changed")
    status = _cli(project, "cache", "status", "flow.py:flow", "--json", ZC_MODE="full")
    assert status.returncode == 0, status.stderr
    reasons = {s["step"]: s["reasons"] for s in json.loads(status.stdout)}
    assert reasons["load"] == ["file data/train.csv changed (12.1 MB -> 12.3 MB)"]
    assert reasons["images"] == ["3 files changed in data/images/ (a.png, b.png, c.png)"]
    assert 'env ZC_MODE: "fast" -> "full"' in reasons["report"]

    explained = _cli(project, "explain", "flow.py:flow", "load")
    assert explained.returncode == 0, explained.stderr
    assert "file data/train.csv" in explained.stdout

    shown = _cli(project, "runs", "show", "latest", "--json")
    record = json.loads(shown.stdout)
    entries = {s["name"]: s["entry"] for s in record["steps"]}
    assert entries["load"]["external"]["path:path"]["size"] == 12_100_000
    assert entries["report"]["external"]["env:ZC_MODE"]["value"] == "fast"

    lineage = _cli(project, "lineage", "latest:report")
    assert lineage.returncode == 0, lineage.stderr
    assert 'env ZC_MODE = "fast"' in lineage.stdout
    assert "file data/train.csv" in lineage.stdout


def test_audit_says_the_data_moved(project: Path) -> None:
    assert _cli(project, "run", "flow.py:flow").returncode == 0
    (project / "data" / "train.csv").write_bytes(b"other")
    audited = _cli(project, "audit", "latest", "--json")
    steps = {s["name"]: s for s in json.loads(audited.stdout)["steps"]}
    assert steps["load"]["status"] == "not checkable"
    assert "file data/train.csv changed since" in steps["load"]["reason"]
    assert steps["images"]["status"] == "reproducible"


def test_a_fifo_parameter_is_a_one_line_error(project: Path) -> None:
    os.mkfifo(project / "pipe")
    done = _cli(project, "run", "flow.py:flow", "-p", "path=pipe")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "'path'" in lines[0] and "pipe" in lines[0] and "FIFO" in lines[0]
    assert "Traceback" not in done.stderr
