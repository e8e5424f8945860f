"""ObjectStore.map_blob: a blob's chunks mapped into one region, verified, copy-on-write."""

from __future__ import annotations

import mmap
from collections.abc import Callable

import numpy as np
import pytest

from zencache import Cache, pipeline, step
from zencache.errors import CorruptObjectError, MissingObjectError
from zencache.store import ObjectStore


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
