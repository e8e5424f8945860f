"""A damaged index.lmdb never kills a command with a signal and never gives
"internal error": a truncated data.mdb is caught before LMDB maps it, the
maintenance commands read the index through in a child process first, and
`cache verify --repair` copies what is readable into a fresh index (objects stay;
lost entries rerun)."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from zencache import Cache

FLOW = """
from zencache import pipeline, step

@step
def make(i: int) -> list:
    return list(range(i, i + 600))  # over the inline limit: stored as an object

@step
def total(values: list) -> int:
    return sum(values)

@pipeline
def many(n: int = 40):
    return [total(values=make(i=i)) for i in range(n)]
"""


def cli(cache_dir: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zencache", "--cache-dir", str(cache_dir), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose cache has 80 step entries and a few hundred other entries."""
    root = tmp_path_factory.mktemp("damaged-index")
    (root / "flow.py").write_text(FLOW)
    done = cli(root / "cache", "run", "flow.py:many", cwd=root)
    assert done.returncode == 0, done.stderr
    cache = Cache(root / "cache")
    try:
        cache.index.write(
            [("latest", f"p/step{i}".encode(), os.urandom(60).hex().encode()) for i in range(600)]
        )
    finally:
        cache.close()
    return root


def _copy(project: Path, tmp_path: Path) -> Path:
    target = tmp_path / "project"
    shutil.copytree(project, target)
    return target


def _one_line_error(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "internal error" not in done.stderr


@pytest.mark.parametrize("command", [["cache", "stats"], ["cache", "ls"], ["runs", "ls"], ["run"]])
def test_a_truncated_index_is_a_one_line_error_not_a_sigbus(
    project: Path, tmp_path: Path, command: list[str]
) -> None:
    root = _copy(project, tmp_path)
    data = root / "cache" / "index.lmdb" / "data.mdb"
    with open(data, "r+b") as fh:
        fh.truncate(data.stat().st_size // 2)
    args = [*command, "flow.py:many"] if command == ["run"] else command
    done = cli(root / "cache", *args, cwd=root)
    _one_line_error(done)
    assert "truncated" in done.stderr and "verify --repair" in done.stderr


def test_verify_repair_salvages_a_truncated_index(project: Path, tmp_path: Path) -> None:
    root = _copy(project, tmp_path)
    data = root / "cache" / "index.lmdb" / "data.mdb"
    objects = sorted(p.name for p in (root / "cache" / "objects").rglob("*") if p.is_file())
    with open(data, "r+b") as fh:
        fh.truncate(data.stat().st_size * 3 // 4)

    done = cli(root / "cache", "cache", "verify", "--repair", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["salvage"] is not None
    assert Path(report["salvage"]["moved_to"]).is_dir()
    # What survives depends on where the cut fell (the salvage reads the last commit and
    # the one before, each up to the first missing page); something always does here.
    assert sum(report["salvage"]["entries"].values()) > 0, report["salvage"]
    assert report["salvage"]["entries"]["steps"] <= 80

    # The new index reads cleanly, objects are all still there, and a run completes:
    # entries that were kept hit, lost ones rerun.
    assert cli(root / "cache", "cache", "verify").returncode == 0
    assert sorted(p.name for p in (root / "cache" / "objects").rglob("*") if p.is_file()) == (
        objects
    )
    done = cli(root / "cache", "run", "flow.py:many", cwd=root)
    assert done.returncode == 0, done.stderr


DRIVER = r"""
import json, os, random, resource, shutil, sys
from zencache.cli import main  # imported once; each case runs in a forked child

source, work, pages, commands = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
rng = random.Random(5)
for page in pages:
    garbage = rng.randbytes(4096)
    for sequence in commands:
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(source, work)
        with open(os.path.join(work, "index.lmdb", "data.mdb"), "r+b") as fh:
            fh.seek(page * 4096)
            fh.write(garbage)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            os.close(read)
            os.dup2(write, 2)
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            codes = []
            for command in sequence:
                try:
                    code = main(["--cache-dir", work, *command], standalone_mode=False)
                    codes.append(code or 0)
                except SystemExit as exc:
                    codes.append(exc.code)
                except BaseException as exc:
                    codes.append(repr(exc))
            os.write(write, ("\nCODES " + json.dumps(codes)).encode())
            os._exit(0)
        os.close(write)
        with os.fdopen(read) as fh:
            text = fh.read()
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"page": page, "commands": sequence, "status": status, "text": text}), flush=True)
"""

COMMANDS = [
    [["cache", "verify"]],
    [["cache", "verify", "--repair"], ["cache", "verify"]],
    [["cache", "stats"]],
    [["cache", "ls"]],
    [["cache", "gc"]],
]


def test_damaged_pages_never_kill_a_command_or_give_an_internal_error(
    project: Path, tmp_path: Path, python: Any
) -> None:
    """Random bytes over pages spread through the index, one page at a time: verify,
    verify --repair (then verify: the repaired index is sound), stats, ls and gc each
    either work or give a one-line error; never a signal, never "internal error"."""
    cache_dir = project / "cache"
    pages = (cache_dir / "index.lmdb" / "data.mdb").stat().st_size // 4096
    chosen = sorted(random.Random(5).sample(range(2, pages), min(20, pages - 2)))
    done = python.run(
        DRIVER,
        str(cache_dir),
        str(tmp_path / "work"),
        json.dumps(chosen),
        json.dumps(COMMANDS),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    outcomes: dict[str, int] = {}
    for line in done.stdout.splitlines():
        case = json.loads(line)
        where = (case["page"], case["commands"], case["status"], case["text"][-3000:])
        assert case["status"] == 0, where  # no signal, no uncaught exception
        assert "internal error" not in case["text"], where
        codes = json.loads(case["text"].rpartition("CODES ")[2])
        assert all(c in (0, 1, 2) for c in codes), where
        errors = [x for x in case["text"].splitlines() if x.startswith("error: ")]
        assert len(errors) <= len(codes), where
        if case["commands"][0] == ["cache", "verify", "--repair"]:
            assert codes == [0, 0], where  # repaired, then clean
        label = " ".join(case["commands"][0][1:])
        outcomes.setdefault(label, {})
        outcomes[label][codes[0]] = outcomes[label].get(codes[0], 0) + 1
    assert len(done.stdout.splitlines()) == len(chosen) * len(COMMANDS)
    print(f"\n{len(chosen)} damaged pages of {pages}, exit codes: {outcomes}")


def test_the_library_refuses_a_truncated_index_in_the_user_process(
    project: Path, tmp_path: Path, python: Any
) -> None:
    root = _copy(project, tmp_path)
    data = root / "cache" / "index.lmdb" / "data.mdb"
    with open(data, "r+b") as fh:
        fh.truncate(8192 * 3)
    done = python.run(
        "import sys\nfrom zencache import Cache\nfrom zencache.errors import CorruptIndexError\n"
        "try:\n    Cache(sys.argv[1]).index\nexcept CorruptIndexError as exc:\n    print(exc)\n",
        str(root / "cache"),
    )
    assert done.returncode == 0, done.stderr
    assert "truncated" in done.stdout
