"""Ctrl-C (a real SIGINT) in the middle of a step: the run stops cleanly, keeps what
finished, records itself as interrupted, and leaves no lease behind."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import reliability_flows as rf

from zencache import Cache
from zencache.storage.records import RunRecord


def _wait_for_execution(log: Path, name: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(step == name for step, _, _ in rf.read_log(log)):
            return
        time.sleep(0.02)
    raise AssertionError(f"step {name} never started")


def _check_interrupted_then_resumed(flows: Any, cache_dir: Path) -> None:
    cache = Cache(cache_dir)
    try:
        last = cache.index.last("runs")
        assert last is not None
        record = RunRecord.decode(last[1])
        assert record.status == "interrupted"
        statuses = {s.name: s.status for s in record.steps}
        assert statuses == {"first": "executed", "slow": "interrupted"}
        assert cache.leases.held_slots() == []  # released on the way out
        assert rf.check_cache(cache)["problems"] == []
    finally:
        cache.close()
    resumed = flows.run("waiting", str(cache_dir), env={rf.SLEEP_SETTING: "0"})
    assert resumed.returncode == 0, resumed.stderr
    message = resumed.one("run")
    assert message["status"] == "completed" and message["output"] == 4
    assert {n: s for n, (s, _) in message["steps"].items()} == {
        "first": "cached",
        "slow": "executed",
        "last": "executed",
    }


def test_sigint_during_a_step_marks_the_run_interrupted_and_keeps_what_finished(
    flows: Any, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"
    proc = flows.start("waiting", str(cache_dir), env={rf.SLEEP_SETTING: "60"})
    _wait_for_execution(flows.log, "slow")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert '"kind": "interrupted"' in out
    assert "Traceback" not in err
    _check_interrupted_then_resumed(flows, cache_dir)


def test_ctrl_c_on_the_command_line_exits_130_with_one_line(flows: Any, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "zencache",
            "--cache-dir",
            str(cache_dir),
            "run",
            "reliability_flows:waiting",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=flows.env({rf.SLEEP_SETTING: "60"}),
    )
    flows.started.append(proc)
    _wait_for_execution(flows.log, "slow")
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted" in err.strip().splitlines()[-1]
    _check_interrupted_then_resumed(flows, cache_dir)
