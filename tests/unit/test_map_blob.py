"""ObjectStore.map_blob: a blob's chunks mapped into one region, verified, copy-on-write."""

from __future__ import annotations

import ctypes
import errno
import logging
import mmap
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from zencache import Cache, pipeline, step
from zencache.errors import CorruptObjectError, MissingObjectError
from zencache.storage import store as store_module
from zencache.storage.store import ObjectStore


def _blob(store: ObjectStore, size: int) -> tuple[np.ndarray, object]:
    data = np.random.default_rng(3).integers(0, 255, size, dtype=np.uint8)
    return data, store.put_blob(data)


@pytest.mark.parametrize("size", [1, 4096, (128 << 10) * 3, (128 << 10) * 5 + 17])
def test_a_mapped_blob_has_the_stored_bytes(store: ObjectStore, size: int) -> None:
    data, blob = _blob(store, size)
    view = store.map_blob(blob)
    assert len(view) == size and bytes(view) == data.tobytes()


def test_writes_to_a_mapped_blob_stay_private(store: ObjectStore) -> None:
    data, blob = _blob(store, (128 << 10) * 2 + 5)
    view = store.map_blob(blob)
    view[0] ^= 0xFF
    view[-1] ^= 0xFF
    again = store.map_blob(blob)
    assert bytes(again) == data.tobytes()
    store.verify(blob.chunks[0])  # the file is untouched


def test_a_damaged_or_missing_chunk_is_refused(
    store: ObjectStore, flip_byte: Callable[..., None]
) -> None:
    _, blob = _blob(store, (128 << 10) * 3)
    flip_byte(store.path(blob.chunks[1]), 100)
    with pytest.raises(CorruptObjectError):
        store.map_blob(blob)
    store.path(blob.chunks[2]).unlink()
    other = ObjectStore(store.root)
    with pytest.raises((MissingObjectError, CorruptObjectError)):
        other.map_blob(blob)


@pytest.mark.parametrize("new_size", [1000, (128 << 10) + 1])
def test_a_chunk_of_the_wrong_size_is_refused_not_mapped(store: ObjectStore, new_size: int) -> None:
    _, blob = _blob(store, (128 << 10) * 2)
    path = store.path(blob.chunks[0])
    path.chmod(0o644)
    with open(path, "r+b") as fh:
        fh.truncate(new_size)  # mapping past a file's end would crash on access
    with pytest.raises(CorruptObjectError, match=f"{blob.chunks[0]} .* wrong size"):
        store.map_blob(blob)
    assert not store.contains(blob.chunks[0])  # marked damaged: the next put rewrites it


class _OutOfMappings:
    """libc whose mmap fails as it does past vm.max_map_count (ENOMEM) after `allowed` calls."""

    def __init__(self, libc: Any, allowed: int) -> None:
        self.madvise = libc.madvise
        self._mmap = libc.mmap
        self._allowed = allowed

    def mmap(self, *args: object) -> object:
        if self._allowed == 0:
            ctypes.set_errno(errno.ENOMEM)
            return None
        self._allowed -= 1
        return self._mmap(*args)


def test_a_process_out_of_mappings_reads_the_blob_instead(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    data, blob = _blob(store, (128 << 10) * 4)
    libc = store_module._libc()
    monkeypatch.setattr(store_module, "_libc", lambda: _OutOfMappings(libc, allowed=2))
    with caplog.at_level(logging.WARNING, logger="zencache.storage.store"):
        view = store.map_blob(blob)
    assert bytes(view) == data.tobytes()
    assert not isinstance(view.obj, mmap.mmap)  # read, not mapped
    assert "vm.max_map_count" in caplog.text


def _small_chunked_blob(store: ObjectStore) -> tuple[ObjectStore, np.ndarray, object]:
    """A blob with enough 4 KiB chunks to be verified on two threads."""
    small = ObjectStore(store.root, chunk_size=mmap.PAGESIZE)
    data, blob = _blob(small, mmap.PAGESIZE * (store_module._PARALLEL_VERIFY + 3) + 17)
    return small, data, blob


def test_a_blob_verified_on_two_threads_has_the_stored_bytes(store: ObjectStore) -> None:
    small, data, blob = _small_chunked_blob(store)
    assert bytes(small.map_blob(blob)) == data.tobytes()


def test_damaged_chunks_found_on_either_thread_are_all_refused(
    store: ObjectStore, flip_byte: Callable[..., None]
) -> None:
    small, _, blob = _small_chunked_blob(store)
    first, last = blob.chunks[5], blob.chunks[-2]
    flip_byte(small.path(first), 7)
    flip_byte(small.path(last), 7)
    with pytest.raises(CorruptObjectError, match=f"object {first} .* does not match its hash"):
        small.map_blob(blob)
    assert not small.contains(first) and not small.contains(last)


def test_an_error_on_the_helper_thread_reaches_the_caller(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    small, _, blob = _small_chunked_blob(store)
    helper_failed = threading.Event()
    real_digest = store_module.digest_bytes

    def digest(data: object) -> str:
        if threading.current_thread() is not threading.main_thread():
            helper_failed.set()
            raise RuntimeError("boom")
        helper_failed.wait(timeout=10)  # the helper takes a chunk before this thread goes on
        return real_digest(data)

    monkeypatch.setattr(store_module, "digest_bytes", digest)
    before = set(threading.enumerate())  # other tests' idle committers may end meanwhile
    with pytest.raises(RuntimeError, match="boom"):
        small.map_blob(blob)
    assert set(threading.enumerate()) - before == set()  # the helper did not outlive the call


@step
def big() -> np.ndarray:
    return np.arange(1 << 18, dtype=np.float64)  # 2 MiB


@pipeline
def flow():
    return big()


def _memory_owner(array: np.ndarray) -> object:
    owner: object = array
    while isinstance(owner, np.ndarray) and owner.base is not None:
        owner = owner.base
    return owner.obj if isinstance(owner, memoryview) else owner


def test_a_large_array_loads_as_a_writable_private_map(cache: Cache) -> None:
    flow().run(cache=cache)
    rerun = flow().run(cache=cache)
    assert rerun.steps["big"].status == "cached"
    array = rerun.output()
    assert isinstance(_memory_owner(array), mmap.mmap)  # mapped, not copied
    assert array.flags.writeable
    array[0] = -1.0
    assert flow().run(cache=cache).output()[0] == 0.0  # the store was not written
