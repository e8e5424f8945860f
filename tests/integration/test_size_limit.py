"""The size limit on a real cache: runs larger than the limit stay under it, the most
recently used results stay hits, pinned runs stay, the run just made stays, a
concurrent run is never broken, and a crash mid-eviction leaves a cache that
verifies clean."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

from zencache import pipeline, step
from zencache.errors import CacheSizeWarning
from zencache.maintenance import verify
from zencache.maintenance.eviction import enforce, measure, pin, unpin
from zencache.storage.cache import Cache

MB = 10**6
ZENCACHE = Path(sys.executable).parent / "zencache"


@step
def noise(seed: int = 0) -> np.ndarray:
    # 1 MB that no other seed shares (random bytes do not deduplicate)
    return np.random.default_rng(seed).random(MB // 8)


@step
def total(x: np.ndarray) -> float:
    return float(x.sum())


@pipeline
def noisy(seed: int = 0):
    return total(x=noise(seed=seed))


def run_seed(cache: Cache, seed: int):
    return noisy(seed=seed).run(cache=cache)


def statuses(run) -> dict[str, str]:
    return {name: s.status for name, s in run.steps.items()}


def expected(seed: int) -> float:
    return float(np.random.default_rng(seed).random(MB // 8).sum())


@pytest.fixture
def limited(monkeypatch: pytest.MonkeyPatch):
    def set_limit(text: str) -> None:
        monkeypatch.setenv("ZENCACHE_MAX_SIZE", text)

    return set_limit


def test_a_series_of_runs_larger_than_the_limit_stays_under_it(
    cache: Cache, limited: object
) -> None:
    limited("5MB")  # type: ignore[operator]
    for seed in range(10):
        run = run_seed(cache, seed)
        assert run.output() == expected(seed)
        usage, _ = measure(cache)
        assert usage.total <= 5 * MB, f"after seed {seed}: {usage}"
    # the most recent results are still hits, with the right values
    for seed in (9, 8):
        run = run_seed(cache, seed)
        assert statuses(run) == {"noise": "cached", "total": "cached"}
        assert run.output() == expected(seed)
    # the oldest were evicted and run again, correctly
    run = run_seed(cache, 0)
    assert statuses(run)["noise"] == "executed"
    assert run.output() == expected(0)


def test_a_result_used_again_outlives_newer_unused_ones(cache: Cache, limited: object) -> None:
    limited("4MB")  # type: ignore[operator]
    for seed in range(3):
        run_seed(cache, seed)
    assert statuses(run_seed(cache, 0))["noise"] == "cached"  # 0 is now the most recent use
    for seed in (3, 4):
        run_seed(cache, seed)
    assert statuses(run_seed(cache, 0))["noise"] == "cached"
    assert statuses(run_seed(cache, 1))["noise"] == "executed"


def test_a_pinned_run_is_never_evicted(cache: Cache, limited: object) -> None:
    limited("3MB")  # type: ignore[operator]
    kept = run_seed(cache, 100)
    pin(cache, kept.run_id)
    for seed in range(6):
        run_seed(cache, seed)
    again = run_seed(cache, 100)
    assert statuses(again) == {"noise": "cached", "total": "cached"}
    assert again.output() == expected(100)
    assert unpin(cache, kept.run_id)
    assert not unpin(cache, kept.run_id)


def test_the_run_just_made_is_kept_even_over_the_limit(cache: Cache, limited: object) -> None:
    run_seed(cache, 1)
    limited("500kB")  # type: ignore[operator]  # smaller than one result
    with pytest.warns(CacheSizeWarning, match="over its limit"):
        run = run_seed(cache, 2)
    assert run.output() == expected(2)  # its own result is still there
    with pytest.warns(CacheSizeWarning):
        again = run_seed(cache, 1)
    assert statuses(again)["noise"] == "executed"  # the older run went


def test_without_a_limit_nothing_is_evicted(cache: Cache, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZENCACHE_MAX_SIZE", raising=False)
    for seed in range(4):
        run_seed(cache, seed)
    for seed in range(4):
        assert statuses(run_seed(cache, seed))["noise"] == "cached"


def test_enforce_evicts_least_recently_used_first_and_reports(cache: Cache) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for seed in range(5):
            run_seed(cache, seed)
    before, _ = measure(cache)
    report = enforce(cache, 3 * MB, grace=0)
    assert report.before == before.total
    assert report.after <= 0.9 * 3 * MB
    assert report.freed_bytes >= before.total - 0.9 * 3 * MB
    assert len(report.evicted_steps) >= 2
    assert statuses(run_seed(cache, 4))["noise"] == "cached"  # the newest stays
    assert statuses(run_seed(cache, 0))["noise"] == "executed"
    assert verify(cache).ok


def test_a_dry_run_evicts_nothing(cache: Cache) -> None:
    for seed in range(4):
        run_seed(cache, seed)
    report = enforce(cache, 2 * MB, dry_run=True, grace=0)
    assert report.evicted_steps
    for seed in range(4):
        assert statuses(run_seed(cache, seed))["noise"] == "cached"


FLOW = textwrap.dedent(
    """
    import sys
    import numpy as np
    from zencache import Cache, pipeline, step

    @step
    def noise(seed: int = 0) -> np.ndarray:
        return np.random.default_rng(seed).random(125_000)

    @step
    def total(x: np.ndarray) -> float:
        return float(x.sum())

    @pipeline
    def noisy(seed: int = 0):
        return total(x=noise(seed=seed))

    if __name__ == "__main__":
        cache = Cache(sys.argv[1])
        first, count = int(sys.argv[2]), int(sys.argv[3])
        for seed in range(first, first + count):
            run = noisy(seed=seed).run(cache=cache)
            got = run.output()
            want = float(np.random.default_rng(seed).random(125_000).sum())
            assert got == want, (seed, got, want)
        print("ok")
    """
)


def test_a_concurrent_run_is_never_broken_by_eviction(tmp_path: Path) -> None:
    flow = tmp_path / "flow.py"
    flow.write_text(FLOW)
    folder = tmp_path / "cache"
    env = {"PYTHONWARNINGS": "ignore", "ZENCACHE_MAX_SIZE": "3MB"}
    import os

    evicting = subprocess.Popen(
        [sys.executable, str(flow), str(folder), "0", "12"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    plain_env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    plain_env.pop("ZENCACHE_MAX_SIZE", None)
    plain = subprocess.Popen(
        [sys.executable, str(flow), str(folder), "100", "12"],
        env=plain_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for proc in (evicting, plain):
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        assert out.strip() == "ok"
    done = subprocess.run(
        [str(ZENCACHE), "--cache-dir", str(folder), "cache", "verify"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


CRASH = textwrap.dedent(
    """
    import os, sys
    from zencache import Cache
    from zencache.maintenance.eviction import enforce
    from zencache.storage import store

    deletions = int(sys.argv[2])
    real_delete = store.ObjectStore.delete

    def delete_then_die(self, object_id):
        global deletions
        if deletions == 0:
            os._exit(9)  # a kill in the middle of deleting objects
        deletions -= 1
        return real_delete(self, object_id)

    store.ObjectStore.delete = delete_then_die
    enforce(Cache(sys.argv[1]), 2_000_000, grace=0)
    """
)


@pytest.mark.parametrize("deletions", [0, 3])
def test_a_crash_during_eviction_leaves_a_cache_that_verifies_clean(
    tmp_path: Path, deletions: int
) -> None:
    folder = tmp_path / "cache"
    cache = Cache(folder)
    for seed in range(5):
        run_seed(cache, seed)
    cache.close()
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH, str(folder), str(deletions)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert crashed.returncode == 9, crashed.stderr
    done = subprocess.run(
        [str(ZENCACHE), "--cache-dir", str(folder), "cache", "verify", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["ok"] is True
    cache = Cache(folder)
    try:
        for seed in range(5):
            assert run_seed(cache, seed).output() == expected(seed)
    finally:
        cache.close()


def test_an_entry_whose_key_another_run_is_executing_is_never_evicted(
    cache: Cache, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zencache.storage.lease_slots import LeaseSlots

    monkeypatch.delenv("ZENCACHE_MAX_SIZE", raising=False)
    runs = [run_seed(cache, seed) for seed in range(3)]
    leased = runs[0].steps["noise"].key  # the oldest: first to go without its lease
    other = LeaseSlots(cache.path / "leases")  # another run executing it again
    try:
        assert other.take(leased)
        enforce(cache, MB // 2, grace=0.0)
        assert cache.index.step_output_ids(leased) is not None
        assert cache.index.step_output_ids(runs[1].steps["noise"].key) is None
    finally:
        other.close()
