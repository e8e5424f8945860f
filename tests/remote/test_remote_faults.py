"""Faults at the server and untrusted input: the remote down, slow, failing, refusing
credentials, a corrupted object, forged entries, pickles. None of them fails a run
(unless the remote is strict) and none of them loads wrong data."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from zencache import Cache
from zencache.errors import RemoteError
from zencache.materializers.builtin import PickleFallbackWarning
from zencache.storage.records import StepRecord
from zencache.storage.remote import RemoteEntry, RemoteWarning
from zencache.storage.remote.backends import open_backend
from zencache.storage.remote.client import load_stats

from .conftest import FaultProxy, remote_paths
from .pipelines import boxes, chain, fan


def statuses(run) -> dict[str, tuple[str, str]]:
    return {name: (s.status, s.source) for name, s in run.steps.items()}


@pytest.mark.parametrize("fault", ["down", "error", "forbidden", "slow"])
def test_a_failing_remote_never_fails_the_run(
    tmp_path: Path, s3_remote: str, s3_proxy: FaultProxy, monkeypatch, fault: str
):
    monkeypatch.setenv("ZENCACHE_REMOTE_TIMEOUT", "0.5")
    s3_proxy.mode, s3_proxy.delay = fault, 2.0
    cache = Cache(tmp_path / "c")
    started = time.monotonic()
    with pytest.warns(RemoteWarning, match="unavailable") as caught:
        run = fan(width=6).run(cache=cache, remote=s3_remote)
    elapsed = time.monotonic() - started
    assert {s.status for s in run.steps.values()} == {"executed"}
    assert run.output() == sum(i * i for i in range(6))
    assert len([w for w in caught if issubclass(w.category, RemoteWarning)]) == 1
    # Given up once for the whole run, not per step: a handful of requests at most.
    assert s3_proxy.requests <= 8, s3_proxy.requests
    assert elapsed < 8, elapsed
    assert load_stats(cache.index).errors >= 1
    cache.close()


def test_a_strict_remote_makes_faults_fatal(
    tmp_path: Path, s3_remote: str, s3_proxy: FaultProxy, monkeypatch
):
    monkeypatch.setenv("ZENCACHE_REMOTE_STRICT", "1")
    monkeypatch.setenv("ZENCACHE_REMOTE_TIMEOUT", "0.5")
    s3_proxy.mode = "down"
    cache = Cache(tmp_path / "c")
    with pytest.raises(RemoteError, match=r"unavailable.*strict"):
        fan(width=3).run(cache=cache, remote=s3_remote)
    cache.close()


def test_the_remote_stopped_mid_run_leaves_a_usable_cache(
    tmp_path: Path, s3_remote: str, s3_proxy: FaultProxy, monkeypatch
):
    monkeypatch.setenv("ZENCACHE_REMOTE_TIMEOUT", "0.5")
    ci, laptop = Cache(tmp_path / "ci"), Cache(tmp_path / "laptop")
    fan(width=3).run(cache=ci, remote=s3_remote)
    s3_proxy.mode = "down"  # stopped between runs of a team
    with pytest.warns(RemoteWarning):
        run = fan(width=4).run(cache=laptop, remote=s3_remote)
    assert run.output() == sum(i * i for i in range(4))
    s3_proxy.mode = "ok"
    again = fan(width=4).run(cache=laptop, remote=s3_remote)  # a new run tries again
    assert {s.source for s in again.steps.values()} == {"local"}
    ci.close()
    laptop.close()


def corrupt_largest_object(url: str) -> str:
    backend = open_backend(url)
    largest = max((item for item in backend.list("cas/")), key=lambda item: item.size)
    data = bytearray(backend.get(largest.path))
    data[len(data) // 2] ^= 0xFF
    backend.put(largest.path, bytes(data), create_only=False)
    return largest.path


def test_a_corrupted_remote_object_is_never_loaded_and_is_recomputed(
    tmp_path: Path, remote_url: str
):
    ci, laptop, other = Cache(tmp_path / "ci"), Cache(tmp_path / "laptop"), Cache(tmp_path / "o")
    chain(n=100_000).run(cache=ci, remote=remote_url)
    damaged = corrupt_largest_object(remote_url)
    with pytest.warns(RemoteWarning, match="corrupt"):
        run = chain(n=100_000, scale=3.0).run(cache=laptop, remote=remote_url)
    # Its remote hit was damaged, so it ran after all, and the run record says so.
    assert statuses(run)["make"] == ("executed", "")
    assert run.output() == f"total={float(np.arange(100_000).sum()) * 3.0}"
    assert load_stats(laptop.index).errors >= 1
    # The laptop re-executed the producer and rewrote the damaged object.
    assert damaged in remote_paths(remote_url)
    hit = chain(n=100_000).run(cache=other, remote=remote_url)
    np.testing.assert_array_equal(hit.steps["make"].output(), np.arange(100_000, dtype=float))
    for cache in (ci, laptop, other):
        cache.close()


def test_signed_entries_and_forged_ones(tmp_path: Path, remote_url: str, monkeypatch):
    monkeypatch.setenv("ZENCACHE_REMOTE_KEY", "team-secret")
    ci, laptop = Cache(tmp_path / "ci"), Cache(tmp_path / "laptop")
    run = fan(width=2).run(cache=ci, remote=remote_url)
    backend = open_backend(remote_url)
    add_key = run.steps["add"].key
    stored = backend.get(f"ac/{add_key}")
    assert stored is not None and not stored.split(b"\n")[0].endswith(b" -")
    # A forger without the key rewrites the entry to claim another output.
    genuine = RemoteEntry.decode(stored, add_key, b"team-secret")
    record = genuine.step
    forged_step = StepRecord(
        **{**{f: getattr(record, f) for f in record.__slots__}, "output_ids": record.output_ids}
    )
    for secret in (None, b"wrong-secret"):
        backend.put(
            f"ac/{add_key}",
            RemoteEntry(forged_step, genuine.artifacts, genuine.env).encode(secret),
            create_only=False,
        )
        backend.delete("pipelines/fan")
        cache = Cache(tmp_path / f"l-{secret!r}")
        with pytest.warns(RemoteWarning, match="ignored entries"):
            got = fan(width=2).run(cache=cache, remote=remote_url)
        assert statuses(got)["add"] == ("executed", "")
        assert statuses(got)["square"] == ("cached", "remote")
        cache.close()
    # Without a key set, a reader takes unsigned entries (the team chose not to sign).
    monkeypatch.delenv("ZENCACHE_REMOTE_KEY")
    backend.put(
        f"ac/{add_key}",
        RemoteEntry(forged_step, genuine.artifacts, genuine.env).encode(None),
        create_only=False,
    )
    backend.delete("pipelines/fan")
    got = fan(width=2).run(cache=laptop, remote=remote_url)
    assert statuses(got)["add"] == ("cached", "remote")
    ci.close()
    laptop.close()


def test_an_entry_stored_under_another_key_is_refused(tmp_path: Path, file_remote: str):
    ci, laptop = Cache(tmp_path / "ci"), Cache(tmp_path / "laptop")
    run = fan(width=2, base=5).run(cache=ci, remote=file_remote)
    backend = open_backend(file_remote)
    square_keys = [s.key for n, s in run.steps.items() if n.startswith("square")]
    # Swap two entries: each now claims the other's key.
    a, b = (backend.get(f"ac/{k}") for k in square_keys)
    backend.put(f"ac/{square_keys[0]}", b, create_only=False)
    backend.put(f"ac/{square_keys[1]}", a, create_only=False)
    backend.delete("pipelines/fan")
    with pytest.warns(RemoteWarning, match="ignored entries"):
        got = fan(width=2, base=5).run(cache=laptop, remote=file_remote)
    assert got.output() == 25 + 36
    assert {statuses(got)[n][0] for n in ("square", "square_2")} == {"executed"}
    ci.close()
    laptop.close()


@pytest.mark.filterwarnings("ignore::zencache.materializers.builtin.PickleFallbackWarning")
def test_pickles_from_a_remote_are_refused_unless_it_is_trusted(
    tmp_path: Path, file_remote: str, monkeypatch
):
    # A first run in a process settles which materializer stores a Box (the pickle
    # fallback), which its key names: CI and the laptop are each such a later run.
    boxes(value=7).run(cache=Cache(tmp_path / "warm-up"), remote_mode="off")
    ci = Cache(tmp_path / "ci")
    boxes(value=7).run(cache=ci, remote=file_remote)
    laptop = Cache(tmp_path / "laptop")
    with pytest.warns(RemoteWarning, match="pickle"):
        run = boxes(value=7).run(cache=laptop, remote=file_remote)
    assert statuses(run)["boxed"] == ("executed", "")
    monkeypatch.setenv("ZENCACHE_REMOTE_TRUSTED", "1")
    trusting = Cache(tmp_path / "trusting")
    run = boxes(value=7).run(cache=trusting, remote=file_remote)
    assert statuses(run)["boxed"] == ("cached", "remote")
    assert run.output().value == 7
    assert PickleFallbackWarning  # the fallback warns where it stores, not here
    for cache in (ci, laptop, trusting):
        cache.close()
