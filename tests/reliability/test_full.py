"""A full disk and a full LMDB map.

Disk full is real: the cache lives on a 2 MiB tmpfs mounted for the test (root
only; skipped with the reason otherwise). Writing fails with StorageFullError
naming the cache directory; what was committed before stays intact and loads;
after space is freed the next run goes on from there. The map is made full by
opening the index with a tiny map: it grows by itself, also when two processes
grow it at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def test_a_pipeline_on_an_index_with_a_tiny_map_grows_it(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    cache.store  # noqa: B018  (lays out the cache folder)
    key = cache.path.resolve()
    _indexes[key] = Index(cache.path / "index.lmdb", map_size=32 << 10)
    try:
        start = cache.index.env.info()["map_size"]

        @step
        def piece(i: int) -> str:
            return f"{i}" * 200

        @pipeline
        def many():
            return tuple(piece(i=i) for i in range(60))

        remaps: list[bool] = []
        real_remap = Index.remap

        def remap(self: Index, need: Any) -> None:
            remaps.append(need.grow)  # a commit on the committer's thread asked the driver
            real_remap(self, need)

        Index.remap = remap  # type: ignore[method-assign]
        try:
            run = many().run(cache=cache)
        finally:
            Index.remap = real_remap  # type: ignore[method-assign]
        assert run.output()[59] == "59" * 200
        assert cache.index.env.info()["map_size"] > start
        assert True in remaps  # the map grew for the committer, by the driver
        assert rf.check_cache(cache)["problems"] == []
        assert {s.status for s in many().run(cache=cache).steps.values()} == {"cached"}
    finally:
        cache.close()


GROW_TOGETHER = """
import json, os, sys
from zencache.storage.index import Index
index = Index(sys.argv[1], map_size=32 << 10)
name = sys.argv[2]
for i in range(150):
    index.write([("latest", f"{name}/{i}".encode(), os.urandom(600))])
print(json.dumps({"map_size": index.env.info()["map_size"], "mine": len(index.items("latest", name.encode()))}))
"""


def test_two_processes_growing_a_tiny_map_at_once_both_succeed(python: Any, tmp_path: Path) -> None:
    path = tmp_path / "index.lmdb"
    Index(path, map_size=32 << 10).close()
    names = [uuid.uuid4().hex[:8] for _ in range(3)]
    procs = [python.popen(GROW_TOGETHER, str(path), name) for name in names]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    assert all(r["mine"] == 150 for r in results)
    with contextlib.closing(Index(path, map_size=32 << 10)) as index:
        assert index.count("latest") == 3 * 150
        assert index.env.info()["map_size"] >= 256 << 10
