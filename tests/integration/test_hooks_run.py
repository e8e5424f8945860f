"""Hooks and step metrics in real runs on a real cache, with every executor.

Steps are module-level so that the workers of the parallel executors import them
by name. A recording hook checks the order and the fields of every call; a
cached rerun must show hooks the same metrics as the run that executed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import zencache
from zencache import Cache, pipeline, step
from zencache.errors import HookError, HookFailedWarning, StepFailedError, UsageError
from zencache.executors.dask import DaskExecutor
from zencache.executors.processes import ProcessExecutor


@step
def load(n: int = 5) -> list:
    zencache.log_metadata(rows=n, source="synthetic")
    return list(range(n))


@step
def fit(data: list, lr: float = 0.1) -> float:
    context = zencache.get_step_context()  # no assert here: pytest rewrites asserts, and
    # a Dask worker, importing this module plainly, would see other code
    zencache.log_metadata(
        executing=context.executing,
        step=context.step,
        key=context.key,
        params=context.params,
        uris=context.output_uris,
        run_id=context.run_id,
    )
    for epoch in range(3):
        zencache.log_metric("loss", 1.0 / (epoch + 1) + lr, step=epoch)
    zencache.log_metric("accuracy", 0.5 + lr)
    return sum(data) * lr


@step
def report(score: float) -> str:
    return f"score {score}"


@pipeline
def tracked(lr: float = 0.1):
    return report(score=fit(data=load(), lr=lr))


@step
def explode(data: list) -> float:
    zencache.log_metric("before_failure", 1.0)
    raise ValueError("bad data")


@pipeline
def failing():
    data = load()
    return report(score=explode(data=data)), report(score=fit(data=data))


class Recorder:
    """Everything every hook method got, in order; checks get_step_context in hooks."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def on_run_start(self, **fields: Any) -> None:
        self.calls.append(("on_run_start", fields))

    def on_step_start(self, **fields: Any) -> None:
        context = zencache.get_step_context()
        fields["context_status"] = context.status
        self.calls.append(("on_step_start", fields))

    def on_step_end(self, **fields: Any) -> None:
        fields["context_status"] = zencache.get_step_context().status
        self.calls.append(("on_step_end", fields))

    def on_run_end(self, **fields: Any) -> None:
        self.calls.append(("on_run_end", fields))

    def ends(self) -> dict[str, dict[str, Any]]:
        return {f["step"]: f for name, f in self.calls if name == "on_step_end"}

    def sequence(self) -> list[tuple[str, str]]:
        return [(name, f.get("step", "")) for name, f in self.calls]


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    )
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


@pytest.fixture(params=["local", "processes", "dask"])
def executor(request: pytest.FixtureRequest) -> Any:
    if request.param == "processes":
        return ProcessExecutor(max_workers=2)
    if request.param == "dask":
        return DaskExecutor(request.getfixturevalue("dask_client"))
    return "local"


def test_every_executor_calls_hooks_in_order_and_replays_metrics_on_a_hit(
    cache: Cache, executor: Any
) -> None:
    first, second = Recorder(), Recorder()
    run1 = tracked().run(executor=executor, cache=cache, hooks=[first])
    run2 = tracked().run(executor=executor, cache=cache, hooks=second)  # one hook, given alone

    steps = [("on_step_start", s) for s in ("load", "fit", "report")]
    for recorder in (first, second):
        seq = recorder.sequence()
        assert seq[0] == ("on_run_start", "") and seq[-1] == ("on_run_end", "")
        for name in ("load", "fit", "report"):  # each step starts before it ends
            assert seq.index(("on_step_start", name)) < seq.index(("on_step_end", name))
        assert [c for c in seq if c in steps] == steps  # topological order

    start = first.calls[0][1]
    assert start["run_id"] == run1.run_id and start["pipeline"] == "tracked"
    assert start["params"] == {"lr": "0.1"} and start["steps"] == ["load", "fit", "report"]

    executed, cached = first.ends(), second.ends()
    assert {s: f["status"] for s, f in executed.items()} == dict.fromkeys(executed, "executed")
    assert {s: f["status"] for s, f in cached.items()} == dict.fromkeys(cached, "cached")
    for name in ("load", "fit", "report"):
        a, b = executed[name], cached[name]
        assert a["source"] is None and b["source"] == "local"
        assert a["key"] == b["key"] == run1.steps[name].key
        assert a["outputs"] == b["outputs"] == run1.steps[name].outputs
        assert a["metrics"] == b["metrics"] and a["metadata"] == b["metadata"]
        assert a["metric_history"] == b["metric_history"]
        assert a["produced_by"] == b["produced_by"] == run1.run_id
        assert a["context_status"] == "executing" and b["context_status"] == "replayed"
        assert a["duration"] >= 0 and b["duration"] >= 0
    fit_end = executed["fit"]
    assert fit_end["params"] == {"lr": 0.1}
    assert fit_end["metrics"] == {"loss": pytest.approx(1 / 3 + 0.1), "accuracy": 0.6}
    assert fit_end["metric_history"]["loss"] == [
        (pytest.approx(1.1), 0),
        (pytest.approx(0.6), 1),
        (pytest.approx(1 / 3 + 0.1), 2),
    ]
    assert executed["load"]["metadata"] == {"rows": 5, "source": "synthetic"}
    seen = executed["fit"]["metadata"]  # what get_step_context() said inside the step
    assert seen["executing"] is True and seen["step"] == "fit" and seen["run_id"] == run1.run_id
    assert seen["key"] == run1.steps["fit"].key and seen["params"] == {"lr": 0.1}
    assert seen["uris"] == {"output": f"{run1.run_id}:fit.output"}
    assert executed["report"]["metrics"] == {}
    start_fields = [f for n, f in second.calls if n == "on_step_start"]
    assert all(f["cached"] for f in start_fields)

    end = second.calls[-1][1]
    assert end["status"] == "completed" and end["run"].run_id == run2.run_id
    assert end["steps"] == {"load": "cached", "fit": "cached", "report": "cached"}
    assert end["metrics"] == {"fit": fit_end["metrics"]}

    # The run views: executed from the run record, cached from the cache entry.
    for run in (run1, run2):
        assert run.steps["fit"].metrics == fit_end["metrics"]
        assert run.steps["fit"].metric_history["loss"][0] == (pytest.approx(1.1), 0)
        assert run.steps["load"].metadata == {"rows": 5, "source": "synthetic"}
        assert run.steps["report"].metrics == {}
    assert "fit" in run1.record.step_logs and run2.record.step_logs == {}


def test_a_run_with_no_hooks_still_stores_metrics(cache: Cache) -> None:
    run = tracked(lr=0.2).run(cache=cache)
    entry = cache.index.get_step(run.steps["fit"].key)
    assert entry is not None
    assert entry.metrics == {"loss": pytest.approx(1 / 3 + 0.2), "accuracy": 0.7}
    assert [p[1] for p in entry.metric_history["loss"]] == [0, 1, 2]
    again = tracked(lr=0.2).run(cache=cache)
    assert again.steps["fit"].status == "cached"
    assert again.steps["fit"].metrics == entry.metrics


def test_failed_and_skipped_steps_reach_hooks(cache: Cache) -> None:
    recorder = Recorder()
    with pytest.raises(StepFailedError, match="bad data"):
        failing().run(cache=cache, hooks=[recorder])
    ends = recorder.ends()
    assert ends["explode"]["status"] == "failed" and "bad data" in ends["explode"]["error"]
    assert ends["explode"]["metrics"] == {}  # a failed step stores nothing
    assert ends["report"]["status"] == "skipped"
    assert ends["fit"]["status"] == "executed"
    assert recorder.calls[-1][0] == "on_run_end" and recorder.calls[-1][1]["status"] == "failed"
    assert ("on_step_start", "report") not in recorder.sequence()  # skipped: it never started


class Broken:
    def on_run_start(self, **_: Any) -> None:
        raise ConnectionError("tracking server unreachable")

    def on_step_end(self, step: str) -> None:
        raise ConnectionError(f"lost {step}")


def test_a_failing_hook_never_fails_the_run_nor_loses_its_cache(cache: Cache) -> None:
    recorder = Recorder()
    with pytest.warns(HookFailedWarning, match="tracking server unreachable") as caught:
        run = tracked(lr=0.3).run(cache=cache, hooks=[Broken(), recorder])
    assert len(caught) == 1  # one report for the hook, however often it failed
    assert run.status == "completed"
    assert [s.status for s in run.steps.values()] == ["executed"] * 3
    assert len(recorder.ends()) == 3  # the hook after it was still called
    again = tracked(lr=0.3).run(cache=cache)
    assert [s.status for s in again.steps.values()] == ["cached"] * 3


def test_strict_hooks_fail_the_run_after_its_entries_are_committed(cache: Cache) -> None:
    class FailsAtEnd:
        def on_step_end(self, step: str) -> None:
            if step == "fit":
                raise RuntimeError("could not log fit")

    with pytest.raises(HookError, match="could not log fit"):
        tracked(lr=0.4).run(cache=cache, hooks=[FailsAtEnd()], strict_hooks=True)
    again = tracked(lr=0.4).run(cache=cache)
    assert [s.status for s in again.steps.values()] == ["cached"] * 3


def test_strict_hooks_failing_at_run_start_run_nothing(cache: Cache) -> None:
    with pytest.raises(HookError, match="tracking server unreachable"):
        tracked(lr=0.5).run(cache=cache, hooks=[Broken()], strict_hooks=True)
    run = tracked(lr=0.5).run(cache=cache)
    assert [s.status for s in run.steps.values()] == ["executed"] * 3


def test_bad_hooks_are_refused_before_any_step_runs(cache: Cache) -> None:
    with pytest.raises(UsageError, match="unknown hook 'nope'"):
        tracked().run(cache=cache, hooks=["nope"])
    with pytest.raises(UsageError, match="has none of"):
        tracked().run(cache=cache, hooks=[object()])
    assert cache.index.count("steps") == 0


class ProjectHook:
    """Named in a pyproject.toml; writes what it saw to a file the test reads."""

    def on_step_end(self, step: str, status: str, metrics: dict[str, float]) -> None:
        with open(os.environ["ZC_HOOK_LOG"], "a") as fh:
            fh.write(json.dumps([step, status, metrics]) + "\n")


def test_project_settings_name_hooks_and_run_hooks_come_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        f'[tool.zencache]\nhooks = ["{__name__}:ProjectHook"]\n'
    )
    log = tmp_path / "hook.log"
    monkeypatch.setenv("ZC_HOOK_LOG", str(log))
    monkeypatch.chdir(project)
    order: list[str] = []

    class Mine:
        def on_step_end(self, step: str) -> None:
            order.append(f"run:{step}")
            order.append("project saw it first" if log.exists() else "project was late")

    run = tracked(lr=0.6).run(hooks=[Mine()])
    assert run.cache.path == project / ".zencache"
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line[:2] for line in lines] == [
        ["load", "executed"],
        ["fit", "executed"],
        ["report", "executed"],
    ]
    assert order[:2] == ["run:load", "project saw it first"]
    run.cache.close()


def test_runs_show_prints_metrics_and_the_record_has_them(cache: Cache) -> None:
    tracked(lr=0.7).run(cache=cache)
    tracked(lr=0.7).run(cache=cache)
    cache.close()
    env = {**os.environ, "PYTHONPATH": str(Path(zencache.__file__).parents[1])}
    shown = subprocess.run(
        [
            sys.executable,
            "-m",
            "zencache",
            "--cache-dir",
            str(cache.path),
            "runs",
            "show",
            "latest",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    assert "fit: metrics accuracy=1.2, loss=1.03333" in shown  # names sorted (the entry JSON)
    assert "load: metadata rows=5, source=synthetic" in shown
    record = json.loads(
        subprocess.run(
            [
                sys.executable,
                "-m",
                "zencache",
                "--cache-dir",
                str(cache.path),
                "runs",
                "show",
                "latest",
                "--json",
            ],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stdout
    )
    steps = {s["name"]: s for s in record["steps"]}
    assert steps["fit"]["status"] == "cached"
    assert steps["fit"]["metrics"] == {"loss": pytest.approx(1 / 3 + 0.7), "accuracy": 1.2}
    assert [p[1] for p in steps["fit"]["metric_history"]["loss"]] == [0, 1, 2]
    assert steps["load"]["metadata"] == {"rows": 5, "source": "synthetic"}
    assert steps["fit"]["entry"]["metrics"] == steps["fit"]["metrics"]
