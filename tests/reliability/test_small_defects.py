"""The smaller integrity defects, each on a real cache: a lease left by Ctrl-C at the
wrong moment, a self-referential parameter, an output name with a dot, a file where
`objects/` should be, a bad lease record, `--no-cache` over a damaged chunk of the
right size, a re-executed producer reported as `cached`, `gc --keep-last` counting a
failed run, and run records keeping the whole repr of a huge parameter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pytest

from zencache import Cache, pipeline, step
from zencache import maintenance as m
from zencache.errors import CacheError, StepFailedError, UnhashableParameterError
from zencache.executors.runner import Runner
from zencache.storage.records import RunRecord

# --- Ctrl-C right after a lease was taken ----------------------------------------------------


@step
def quick(n: int = 1) -> int:
    return n + 1


@pipeline
def one(n: int = 1):
    return quick(n=n)


def test_ctrl_c_between_taking_a_lease_and_running_the_step_releases_it(
    cache: Cache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 1-in-45 leak: SIGINT landing after decide() took the lease and before the
    step's own cleanup could run. Whatever is still held when a run ends is released."""

    def interrupted(self: Runner, *args: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Runner, "execute_here", interrupted)
    with pytest.raises(KeyboardInterrupt):
        one(n=5).run(cache=cache)
    assert cache.leases.held_slots() == []
    monkeypatch.undo()
    assert one(n=5).run(cache=cache).output() == 6


# --- parameters that cannot be encoded --------------------------------------------------------


@step
def takes(value: Any) -> int:
    return 1


@pipeline
def taking(value: Any = None):
    return takes(value=value)


def _deep(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("kind", ["self-referential", "deeply nested"])
def test_a_recursive_parameter_is_a_clear_error(cache: Cache, kind: str) -> None:
    if kind == "self-referential":
        value: Any = {"a": 1}
        value["self"] = value
    else:
        value = _deep(100_000)
    with pytest.raises(UnhashableParameterError, match=r"'value'.*(nested|refers to itself)"):
        taking(value=value).run(cache=cache)


# --- an output name with a dot -----------------------------------------------------------------


@step
def dotted() -> tuple[Annotated[int, "v1.0"], Annotated[int, "v2.0"]]:
    return 1, 2


@pipeline
def dotted_flow():
    return dotted()


def test_an_output_name_with_a_dot_loads(cache: Cache) -> None:
    run = dotted_flow().run(cache=cache)
    assert run.output() == (1, 2)
    assert dotted_flow().run(cache=cache).output() == (1, 2)


# --- damaged cache folders ---------------------------------------------------------------------


def _cli(cache_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zencache", "--cache-dir", str(cache_dir), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_file_where_objects_should_be_is_a_one_line_error(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    cache = Cache(cache_dir)
    one(n=2).run(cache=cache)
    cache.close()
    (cache_dir / "objects").rename(tmp_path / "moved")
    (cache_dir / "objects").write_text("not a folder")
    with pytest.raises(CacheError, match="objects"):
        one(n=3).run(cache=Cache(cache_dir))
    for args in (["cache", "stats"], ["cache", "verify"], ["cache", "gc"]):
        done = _cli(cache_dir, *args)
        assert "internal error" not in done.stderr, (args, done.stderr)
        assert done.returncode in (0, 1, 2), (args, done.stderr)


# --- --no-cache and damage -------------------------------------------------------------------


@step
def array(n: int = 200_000) -> np.ndarray:
    return np.arange(n, dtype=np.float64)


@step
def array_sum(values: np.ndarray) -> float:
    return float(values.sum())


@pipeline
def summed():
    return array_sum(values=array())


def _damage_same_size(path: Path) -> None:
    os.chmod(path, 0o644)
    with open(path, "r+b") as fh:
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 0xFF]))


def test_no_cache_rewrites_a_damaged_chunk_of_the_right_size(cache: Cache) -> None:
    run = summed().run(cache=cache)
    record = cache.index.get_artifact(run.steps["array"].outputs["output"])
    chunk = sorted(record.object_ids())[0]
    _damage_same_size(cache.store.path(chunk))
    summed().run(cache=cache, force=True)
    assert not m.verify(Cache(cache.path)).damaged


def test_a_producer_reexecuted_for_damage_is_reported_executed(cache: Cache) -> None:
    run = summed().run(cache=cache)
    record = cache.index.get_artifact(run.steps["array"].outputs["output"])
    for chunk in record.object_ids():
        _damage_same_size(cache.store.path(chunk))
    # A new consumer: it misses, loads the damaged input, re-executes `array`.
    rerun = summed_twice().run(cache=cache)
    assert rerun.steps["array"].status == "executed"
    assert rerun.output() == float(np.arange(200_000).sum()) * 2


@step
def twice(values: np.ndarray) -> float:
    return float(values.sum()) * 2


@pipeline
def summed_twice():
    return twice(values=array())


# --- gc --keep-last and failed runs -----------------------------------------------------------


@step
def maybe_fail(x: np.ndarray, fail: bool = False) -> float:
    if fail:
        raise ValueError("asked to")
    return float(x.sum())


@step
def make(n: int = 50_000, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(n)


@pipeline
def fragile(seed: int = 0, fail: bool = False):
    return maybe_fail(x=make(seed=seed), fail=fail)


def test_gc_keep_last_does_not_count_a_failed_run(cache: Cache) -> None:
    good = fragile(seed=0).run(cache=cache)
    with pytest.raises(StepFailedError):
        fragile(seed=1, fail=True).run(cache=cache)
    m.gc(cache, keep_last=1, grace=0)
    assert cache.index.get_run(good.run_id) is not None
    assert not m.verify(cache).damaged
    assert good.output() == fragile(seed=0).run(cache=cache).output()
    rerun = fragile(seed=0).run(cache=cache)
    assert {s.status for s in rerun.steps.values()} == {"cached"}


# --- huge parameters --------------------------------------------------------------------------


def test_run_records_do_not_keep_the_whole_repr_of_a_huge_parameter(cache: Cache) -> None:
    huge = "x" * 5_000_000
    taking(value=huge).run(cache=cache)
    for db in ("runs", "steps"):
        sizes = [len(v) for _, v in cache.index.items(db)]
        assert max(sizes) < 100_000, (db, sizes)
    shown = json.dumps([RunRecord.decode(v).params for _, v in cache.index.items("runs")])
    assert "xxxx" in shown  # still recognisable
