"""The parallel executors against the local one: identical content ids and keys, failing
branches, cached reruns that start no worker, and a worker killed mid-step.

Steps here are module-level so that workers import them by name (this folder is on
the driver's sys.path, which workers inherit); the digits steps come from
examples/digits the same way. One Dask LocalCluster (2 worker processes on
127.0.0.1) serves the module.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from zencache import Cache, pipeline, step
from zencache.core.runs import Run
from zencache.errors import StepFailedError, UsageError
from zencache.executors.dask import DaskExecutor
from zencache.executors.processes import ProcessExecutor

DIGITS = str(Path(__file__).resolve().parents[2] / "examples" / "digits")


@step
def source(n: int = 50_000) -> np.ndarray:
    return np.arange(n, dtype=np.float64)  # 400 kB: chunked into the object store


@step
def scale(data: np.ndarray, factor: float) -> np.ndarray:
    return data * factor


@step
def combine(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> float:
    return float(a.sum() + b.sum() + c.sum() + d.sum())


@pipeline
def fan(n: int = 50_000):
    data = source(n=n)
    a, b, c, d = (scale(data=data, factor=f) for f in (1.0, 2.0, 3.0, 4.0))
    return combine(a=a, b=b, c=c, d=d)


@step
def boom(data: np.ndarray) -> float:
    raise ValueError("bad batch")


@step
def total(data: np.ndarray) -> float:
    return float(data.sum())


@pipeline
def branches():
    data = source(n=1000)
    return total(data=boom(data=data)), total(data=scale(data=data, factor=2.0))


@step
def victim(workdir: str) -> int:
    """Announces its worker's pid; sleeps until killed while the test has armed it."""
    Path(workdir, f"pid-{os.getpid()}").touch()
    if Path(workdir, "armed").exists():
        time.sleep(60)
    return 1


@step
def bystander(seconds: float = 0.5) -> int:
    time.sleep(seconds)
    return 2


@step
def after(x: int) -> int:
    return x + 1


@pipeline
def crashy(workdir: str):
    return after(x=victim(workdir=workdir)), bystander()


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",  # not 8787: another cluster may hold it
    )
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


@pytest.fixture(params=["processes", "dask"])
def executor(request: pytest.FixtureRequest) -> Any:
    """A fresh executor instance (its stats start at zero)."""
    if request.param == "processes":
        return ProcessExecutor(max_workers=2)
    return DaskExecutor(request.getfixturevalue("dask_client"))


def _prepend_path(path: str) -> None:
    if path not in sys.path:
        sys.path.insert(0, path)


def _import(name: str) -> None:
    importlib.import_module(name)


def outcome(run: Run) -> dict[str, tuple[str, str, dict[str, str]]]:
    return {name: (s.status, s.key, s.outputs) for name, s in run.steps.items()}


def test_digits_gives_identical_keys_and_content_ids(
    tmp_path: Path, executor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(DIGITS)  # process workers started from now on inherit it
    if isinstance(executor, DaskExecutor):  # the cluster's workers are already running
        executor.scheduler.run(_prepend_path, DIGITS)
    from pipeline import digits  # examples/digits/pipeline.py; its steps are in `steps`

    local = digits(gamma=0.001).run(cache=Cache(tmp_path / "local"))
    parallel = digits(gamma=0.001).run(executor=executor, cache=Cache(tmp_path / "parallel"))
    assert outcome(parallel) == outcome(local)
    assert parallel.output() == local.output() > 0.9
    Cache(tmp_path / "local").close()
    Cache(tmp_path / "parallel").close()


def test_fan_out_fan_in_gives_identical_keys_and_content_ids(tmp_path: Path, executor: Any) -> None:
    local = fan().run(cache=Cache(tmp_path / "local"))
    parallel = fan().run(executor=executor, cache=Cache(tmp_path / "parallel"))
    assert outcome(parallel) == outcome(local)
    assert parallel.output() == local.output() == 10 * sum(range(50_000))
    assert executor.stats.tasks_sent == 6
    Cache(tmp_path / "local").close()
    Cache(tmp_path / "parallel").close()


def test_dask_by_name_starts_a_local_cluster_for_the_run(cache: Cache) -> None:
    executor = DaskExecutor(max_workers=2)
    run = fan(n=1000).run(executor=executor, cache=cache)
    assert run.output() == 10 * sum(range(1000))
    assert executor.stats.pools_opened == 1
    assert all(s.status == "executed" for s in run.steps.values())


def test_failing_branch_stops_its_dependents_and_others_finish(cache: Cache, executor: Any) -> None:
    with pytest.raises(StepFailedError, match=r"boom.*bad batch") as caught:
        branches().run(executor=executor, cache=cache)
    assert caught.value.step == "boom"
    assert "ValueError: bad batch" in caught.value.traceback_text
    record = cache.index.get_run(cache.index.last("runs")[0].decode())
    assert record is not None and record.status == "failed"
    assert {s.name: s.status for s in record.steps} == {
        "source": "executed",
        "boom": "failed",
        "total": "skipped",
        "scale": "executed",
        "total_2": "executed",
    }
    assert "bad batch" in next(s.error for s in record.steps if s.name == "boom")


def test_cached_rerun_starts_no_worker(cache: Cache, executor: Any) -> None:
    first = fan().run(executor=executor, cache=cache)
    assert executor.stats.pools_opened == 1
    fresh = type(executor)(executor.scheduler) if isinstance(executor, DaskExecutor) else None
    fresh = fresh or ProcessExecutor(max_workers=2)
    children = {p.pid for p in psutil.Process().children(recursive=True)}
    rerun = fan().run(executor=fresh, cache=cache)
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= children
    assert (fresh.stats.pools_opened, fresh.stats.tasks_sent) == (0, 0)
    assert all(s.status == "cached" for s in rerun.steps.values())
    assert rerun.output() == first.output()


def _allow_failures(count: int, dask_scheduler: Any = None) -> None:
    dask_scheduler.allowed_failures = count


def test_killed_worker_is_a_failed_step_and_the_next_run_completes(
    cache: Cache, tmp_path: Path, executor: Any
) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "armed").touch()
    stop = threading.Event()
    killed: list[int] = []

    def killer() -> None:
        # Kills every worker that announces it is running the victim, each retry included.
        while not stop.is_set():
            for marker in workdir.glob("pid-*"):
                pid = int(marker.name.removeprefix("pid-"))
                if pid not in killed:
                    killed.append(pid)
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)

    dask = isinstance(executor, DaskExecutor)
    if dask:  # Dask retries a task whose worker died; fail at the first death instead
        executor.scheduler.run_on_scheduler(_allow_failures, 0)
    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        with pytest.raises(StepFailedError, match=r"'victim' did not finish.*died") as caught:
            crashy(workdir=str(workdir)).run(executor=executor, cache=cache)
    finally:
        stop.set()
        thread.join()
        if dask:
            executor.scheduler.run_on_scheduler(_allow_failures, 3)
    assert caught.value.step == "victim"
    assert killed and (dask or executor.stats.crashes >= 1)
    record = cache.index.get_run(cache.index.last("runs")[0].decode())
    assert record is not None
    assert {s.name: s.status for s in record.steps} == {
        "victim": "failed",
        "after": "skipped",
        "bystander": "executed",
    }
    assert not cache.leases.held(record.steps[0].key)  # its lease was released

    (workdir / "armed").unlink()
    again = type(executor)(executor.scheduler) if dask else ProcessExecutor(max_workers=2)
    run = crashy(workdir=str(workdir)).run(executor=again, cache=cache)
    assert {n: s.status for n, s in run.steps.items()} == {
        "victim": "executed",
        "after": "executed",
        "bystander": "cached",
    }
    assert run.output() == (2, 2)


def test_executor_options_are_checked_before_running(cache: Cache) -> None:
    with pytest.raises(UsageError, match="unknown executor 'threads'"):
        fan().run(executor="threads", cache=cache)
    with pytest.raises(
        UsageError, match="Dask scheduler was given, but the executor is 'processes'"
    ):
        fan().run(executor="processes", scheduler="tcp://127.0.0.1:1", cache=cache)
    with pytest.raises(UsageError, match="max_workers must be a positive integer"):
        fan().run(executor="processes", max_workers=0, cache=cache)
    assert not cache.exists() or cache.index.count("runs") == 0


@step
def median(data: np.ndarray) -> float:
    return float(np.median(data))


@pipeline
def middle(n: int = 50_000):
    return median(data=source(n=n))


def test_damaged_input_found_by_a_worker_is_repaired_by_the_driver(
    cache: Cache, flip_byte: Any
) -> None:
    fan().run(cache=cache)  # source's output is now in the store
    for object_id, _ in cache.store.iter_objects():
        flip_byte(cache.store.path(object_id), 100)
    run = middle().run(executor=ProcessExecutor(max_workers=2), cache=cache)
    # The worker could not load source's output: the driver re-executed source,
    # rewrote its objects, and ran median itself. source ran: it is reported executed.
    assert {n: s.status for n, s in run.steps.items()} == {
        "source": "executed",
        "median": "executed",
    }
    assert run.output() == pytest.approx(24999.5)
    record = cache.index.get_artifact(run.steps["source"].outputs["output"])
    assert record is not None and record.object_ids()
    for object_id in record.object_ids():
        cache.store.verify(object_id)


@pytest.mark.parametrize("executor_name", ["processes", "dask"])
def test_cli_runs_a_file_target_on_a_parallel_executor(tmp_path: Path, executor_name: str) -> None:
    target = f"{Path(__file__).resolve()}:fan"
    command = [
        sys.executable,
        "-c",
        "from zencache.cli import main; main()",
        "--cache-dir",
        str(tmp_path / "cache"),
        "run",
        target,
        "--executor",
        executor_name,
        "--workers",
        "2",
        "-p",
        "n=1000",
    ]
    first = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert first.returncode == 0, first.stderr
    assert "completed (6 executed)" in first.stdout
    again = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0, again.stderr
    assert "completed (6 cached)" in again.stdout


INTERRUPTED_RUN = """
import sys, time
from pathlib import Path
from zencache import Cache, pipeline, step

@step
def nap(i: int, workdir: str) -> int:  # defined in __main__: sent by value
    Path(workdir, f"started-{i}").touch()
    time.sleep(30)
    return i

@pipeline
def naps(workdir: str):
    return [nap(i=i, workdir=workdir) for i in range(3)]

naps(workdir=sys.argv[2]).run(executor="processes", max_workers=2, cache=Cache(sys.argv[1]))
"""


def test_ctrl_c_kills_the_workers_and_records_the_running_steps(
    tmp_path: Path, python: Any
) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    process = python.popen(INTERRUPTED_RUN, str(tmp_path / "cache"), str(workdir))
    deadline = time.monotonic() + 60
    while len(list(workdir.glob("started-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = {
        p.pid
        for p in psutil.Process(process.pid).children(recursive=True)
        if "resource_tracker" not in " ".join(p.cmdline())  # outlives its parent a moment
    }
    assert len(workers) == 2
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0 and "KeyboardInterrupt" in stderr
    assert not [pid for pid in workers if psutil.pid_exists(pid) and _is_worker(pid)]
    cache = Cache(tmp_path / "cache")
    try:
        record = cache.index.get_run(cache.index.last("runs")[0].decode())
        assert record is not None and record.status == "interrupted"
        assert sorted(s.status for s in record.steps) == ["interrupted", "interrupted"]
        assert cache.leases.held_slots() == []
    finally:
        cache.close()


def _is_worker(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pipeline
def twice():
    data = source(n=1000)
    return scale(data=data, factor=2.0), scale(data=data, factor=2.0)


def test_two_invocations_with_one_key_execute_once(cache: Cache) -> None:
    # Both are ready at once; the second waits for the first instead of for its own lease.
    run = twice().run(executor=ProcessExecutor(max_workers=2), cache=cache)
    assert {n: s.status for n, s in run.steps.items()} == {
        "source": "executed",
        "scale": "executed",
        "scale_2": "cached",
    }
    assert run.steps["scale"].key == run.steps["scale_2"].key


STALE_MODULE = """
from zencache import pipeline, step

@step
def answer(x: int) -> int:
    return x + {delta}

@pipeline
def ask(x: int = 1):
    return answer(x=x)
"""


def test_a_dask_worker_with_old_code_refuses_to_run_the_step(
    tmp_path: Path, dask_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "code"
    folder.mkdir()
    module_file = folder / "edited_steps.py"
    module_file.write_text(STALE_MODULE.format(delta=1))
    monkeypatch.syspath_prepend(str(folder))
    dask_client.run(_prepend_path, str(folder))
    import edited_steps  # type: ignore[import-not-found]

    cache = Cache(tmp_path / "cache")
    try:
        assert edited_steps.ask().run(executor=DaskExecutor(dask_client), cache=cache).output() == 2
        dask_client.run(_import, "edited_steps")  # every worker, not only the one that ran it
        # Edited and reloaded in the driver; the workers keep the module they imported.
        module_file.write_text(STALE_MODULE.format(delta=2))
        importlib.reload(edited_steps)
        with pytest.raises(
            StepFailedError, match=r"step 'answer' was not run: the worker on .* holds other code"
        ):
            edited_steps.ask().run(executor=DaskExecutor(dask_client), cache=cache)
    finally:
        cache.close()
        sys.modules.pop("edited_steps", None)
