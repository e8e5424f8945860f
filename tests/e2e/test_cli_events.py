"""`zencache run` and the run's hooks read one event stream: in a subprocess, a
project hook writes what it was told, and the table, `--json` and the progress
lines on stderr say the same, run after run (executed, cached, failed, skipped)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from zencache_testing import run_cli

FLOW = """
from zencache import pipeline, step


@step
def load(n: int = 3) -> list:
    return list(range(n))


@step
def total(xs: list, fail: bool = False) -> int:
    if fail:
        raise ValueError("boom")
    return sum(xs)


@step
def report(value: int) -> str:
    return f"total={value}"


@pipeline
def flow(n: int = 3, fail: bool = False):
    return report(value=total(xs=load(n=n), fail=fail))
"""

HOOK = """
import json
import os


class Hook:
    def on_step_end(self, step, status, key, duration, source):
        with open(os.environ["HOOK_LOG"], "a") as fh:
            fh.write(json.dumps([step, status, key, duration, source]) + "\\n")
"""


def _run(project: Path, log: Path, *args: str) -> tuple[int, dict, list[str], dict]:
    log.write_text("")
    done = run_cli(
        "run",
        "flow.py:flow",
        "--json",
        *args,
        cache=project / "cache",
        cwd=project,
        env={"ZENCACHE_HOOKS": "hook:Hook", "HOOK_LOG": str(log), "PYTHONPATH": str(project)},
    )
    told = {}
    for line in log.read_text().splitlines():
        step, status, key, duration, source = json.loads(line)
        told[step] = (status, key, duration, source)
    lines = [line for line in done.stderr.splitlines() if re.match(r"\[\d+/\d+\] ", line)]
    return done.returncode, json.loads(done.stdout), lines, told


def test_the_cli_and_the_hooks_agree_on_every_step(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "flow.py").write_text(FLOW)
    (project / "hook.py").write_text(HOOK)
    log = tmp_path / "hook.log"
    expected = {
        (): ["executed"] * 3,
        ("-p", "n=3"): ["cached"] * 3,
        ("-p", "n=4"): ["executed"] * 3,
        ("-p", "fail=true"): ["cached", "failed", "skipped"],
    }
    for args, statuses in expected.items():
        code, document, lines, told = _run(project, log, *args)
        assert code == (1 if "fail=true" in args else 0), document
        steps = document["steps"]
        assert [s["status"] for s in steps] == statuses
        for s in steps:
            status, key, duration, source = told[s["step"]]
            assert (status, key or None, duration) == (s["status"], s["key"], s["duration"])
            assert source == ("local" if status == "cached" else None)
        # one plain progress line per settled step, in the order they settled
        assert [line.split()[1:3] for line in lines] == [[s["step"], s["status"]] for s in steps]
        assert lines[-1].startswith(f"[{len(steps)}/3] ")
