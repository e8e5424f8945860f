"""Fixtures for the reliability tests: fresh interpreters that import the pipelines
in reliability_flows.py, and the flows module itself for checks in this process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent


class Flows:
    """Starts `reliability_flows.main([...])` in fresh interpreters."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.started: list[subprocess.Popen[str]] = []

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {**os.environ, "RELIABILITY_LOG": str(self.log), **(extra or {})}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(HERE), str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        env.pop("ZENCACHE_DIR", None)
        return env

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        code = "import sys, reliability_flows; reliability_flows.main(sys.argv[1:])"
        proc = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(env),
        )
        self.started.append(proc)
        return proc

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Result:
        proc = self.start(*args, env=env)
        out, err = proc.communicate(timeout=timeout)
        return Result(proc.returncode, out, err)

    def close(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.communicate()


class Result:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr

    def messages(self, kind: str | None = None) -> list[dict[str, Any]]:
        found = [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]
        return [m for m in found if kind is None or m["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.messages(kind)
        assert len(found) == 1, (kind, self.returncode, self.stdout, self.stderr)
        return found[0]


@pytest.fixture
def flows(tmp_path: Path) -> Iterator[Flows]:
    runner = Flows(tmp_path / "executions.log")
    try:
        yield runner
    finally:
        runner.close()


def messages(stdout: str, kind: str) -> list[dict[str, Any]]:
    return Result(0, stdout, "").messages(kind)
