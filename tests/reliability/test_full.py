"""A full disk and a full LMDB map.

Disk full is real: the cache lives on a 2 MiB tmpfs mounted for the test (root
only; skipped with the reason otherwise). Writing fails with StorageFullError
naming the cache directory; what was committed before stays intact and loads;
after space is freed the next run goes on from there. The map is made full by
opening the index with a tiny map (what a process under an address-space limit
gets): one line, and a process with the full map goes on.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import reliability_flows as rf

from zencache import Cache, maintenance, pipeline, step
from zencache.errors import StorageFullError
from zencache.storage.cache import _indexes
from zencache.storage.index import Index


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, unmounted at teardown."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@step
def small(n: int = 10) -> list:
    return list(range(n))


@step
def large(n: int = 600_000) -> np.ndarray:  # 4.8 MB of distinct chunks: more than the disk holds
    return np.random.default_rng(0).random(n)


@step
def length(values: list) -> int:
    return len(values)


@pipeline
def fits():
    return length(values=small())


@pipeline
def overflows():
    values = small()
    return length(values=values), large()


def test_disk_full_is_a_clear_error_and_keeps_what_was_committed(small_disk: Path) -> None:
    cache = Cache(small_disk / "cache")
    try:
        first = fits().run(cache=cache)
        assert first.output() == 10

        with pytest.raises(StorageFullError) as caught:
            overflows().run(cache=cache)
        message = str(caught.value)
        assert str(small_disk / "cache") in message
        assert "no space left" in message.lower() or "disk is full" in message.lower()
        assert "\n" not in message

        # What was committed before is intact and loads; verify sees no damage.
        again = fits().run(cache=cache)
        assert {s.status for s in again.steps.values()} == {"cached"}
        assert again.output() == 10
        state = rf.check_cache(cache)
        assert state["problems"] == []
        assert state["temporary"] == 0  # a failed write removes its temporary file

        # Freeing the space (the partial array's chunks are unreferenced) is enough.
        maintenance.gc(cache, grace=0)
        assert fits().run(cache=cache).output() == 10
        assert not maintenance.verify(cache).damaged
    finally:
        cache.close()


def test_index_writes_on_a_full_disk_fail_cleanly_and_lose_nothing(small_disk: Path) -> None:
    """The index itself hits the full disk: LMDB aborts the transaction; every entry
    committed before is still there, in this process and in a fresh one."""
    path = small_disk / "index.lmdb"
    index = Index(path)
    committed = [(f"key{i}".encode(), os.urandom(64)) for i in range(200)]
    try:
        index.write([("latest", k, v) for k, v in committed])
        with pytest.raises(StorageFullError, match=str(path)):
            for i in range(1000):  # ~3 MB of values, in 30 kB transactions
                index.write([("runs", f"{i}-{j}".encode(), os.urandom(1000)) for j in range(30)])
        assert dict(index.items("latest")) == dict(committed)
    finally:
        index.close()
    for name in os.listdir(small_disk):  # nothing else on the disk to free
        assert name == "index.lmdb"
    reopened = Index(path)
    try:
        assert dict(reopened.items("latest")) == dict(committed)
    finally:
        reopened.close()


def test_a_pipeline_that_fills_its_map_is_one_line_and_the_cache_stays_usable(
    tmp_path: Path,
) -> None:
    """The map is opened once, large (index.py); a process that could map less (an
    address-space limit) and fills it gets one line naming the index and the limit,
    the run records what it committed, and a process with the full map goes on."""
    cache = Cache(tmp_path / "cache")
    cache.store  # noqa: B018  (lays out the cache folder)
    key = cache.path.resolve()
    _indexes[key] = Index(cache.path / "index.lmdb", map_size=128 << 10)

    @step
    def piece(i: int) -> str:
        return f"{i}" * 2000

    @pipeline
    def many():
        return tuple(piece(i=i) for i in range(200))

    try:
        with pytest.raises(StorageFullError) as info:
            many().run(cache=cache)
        message = str(info.value)
        assert "\n" not in message
        assert str(cache.path / "index.lmdb") in message
        assert "ulimit" in message and "nothing already cached was lost" in message
        committed = len(cache.index.keys("steps"))
    finally:
        cache.close()
    assert committed > 0
    reopened = Cache(tmp_path / "cache")
    try:
        assert rf.check_cache(reopened)["problems"] == []
        run = many().run(cache=reopened)
        assert run.output()[199] == "199" * 2000
        statuses = [s.status for s in run.steps.values()]
        assert statuses.count("cached") == committed
        assert {s.status for s in many().run(cache=reopened).steps.values()} == {"cached"}
    finally:
        reopened.close()
