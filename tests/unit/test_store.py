"""The content-addressed object store on real files: round trips, dedupe, chunking,
corruption and missing objects (never wrong bytes), repair, atomic writes, and
several processes writing at once."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zencache.errors import CorruptObjectError, MissingObjectError, StoreError
from zencache.hashing import digest_bytes
from zencache.storage.store import CHUNK_SIZE, Blob, ObjectStore

MiB = 1 << 20


def stored_bytes(store: ObjectStore) -> int:
    return sum(size for _, size in store.iter_objects())


def pseudo_random(n: int, seed: int = 0) -> bytes:
    import numpy as np

    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


# --- round trips and dedupe -------------------------------------------------------------

# One store for all examples: dedupe across examples is part of what is exercised.
_fixture_ok = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_fixture_ok
@given(data=st.binary(max_size=4096))
def test_put_get_round_trip_of_any_bytes(store: ObjectStore, data: bytes) -> None:
    object_id = store.put(data)
    assert object_id == digest_bytes(data)
    assert store.contains(object_id)
    assert store.get(object_id) == data
    assert bytes(store.map_blob(Blob(len(data), (object_id,)))) == data
    store.verify(object_id)


@_fixture_ok
@given(data=st.binary(max_size=3000), chunk_size=st.sampled_from([1, 7, 64, 1024]))
def test_blob_round_trip_of_any_bytes(tmp_path: Path, data: bytes, chunk_size: int) -> None:
    store = ObjectStore(tmp_path / f"objects-{chunk_size}", chunk_size=chunk_size)
    blob = store.put_blob(data)
    assert blob.size == len(data)
    assert len(blob.chunks) == max(1, -(-len(data) // chunk_size))
    assert store.read_blob(blob) == data


def test_put_accepts_any_buffer(store: ObjectStore) -> None:
    import numpy as np

    array = np.arange(10, dtype=np.float64)
    object_id = store.put(array)
    assert store.get(object_id) == array.tobytes()
    assert store.put(memoryview(array.tobytes())) == object_id
    assert store.put(bytearray(array.tobytes())) == object_id


def test_same_bytes_are_stored_once(store: ObjectStore) -> None:
    data = b"x" * 1000
    first = store.put(data)
    inode = store.path(first).stat().st_ino
    assert store.put(bytes(data)) == first
    assert store.put(bytearray(data)) == first
    assert list(store.iter_objects()) == [(first, 1000)]
    assert store.path(first).stat().st_ino == inode  # not rewritten (os.replace makes a new one)


def test_blobs_share_chunks(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "objects", chunk_size=1024)
    data = pseudo_random(10 * 1024)
    store.put_blob(data)
    store.put_blob(data)
    assert stored_bytes(store) == len(data)
    store.put_blob(data + data)  # the same ten chunks twice over
    assert stored_bytes(store) == len(data)


def test_objects_live_in_two_character_shards(store: ObjectStore) -> None:
    object_id = store.put(b"shard me")
    path = store.path(object_id)
    assert path == store.root / object_id[:2] / object_id[2:]
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) & 0o222 == 0  # written read-only


def test_empty_bytes(store: ObjectStore) -> None:
    object_id = store.put(b"")
    assert store.get(object_id) == b""
    assert bytes(store.map_blob(Blob(0, (object_id,)))) == b""
    blob = store.put_blob(b"")
    assert blob == Blob(0, (object_id,))
    assert store.read_blob(blob) == b""


# --- chunking ---------------------------------------------------------------------------


def test_large_blob_is_split_into_chunks(store: ObjectStore) -> None:
    data = pseudo_random(3 * CHUNK_SIZE + 123)
    blob = store.put_blob(data)
    assert blob.size == len(data)
    assert len(blob.chunks) == 4
    assert [store.path(c).stat().st_size for c in blob.chunks] == [CHUNK_SIZE] * 3 + [123]
    assert store.read_blob(blob) == data
    assert bytes(store.map_blob(blob)) == data


@pytest.mark.parametrize("chunk_size", [CHUNK_SIZE, 4096])
def test_a_one_percent_edit_stores_about_one_percent_new_bytes(
    tmp_path: Path, chunk_size: int
) -> None:
    store = ObjectStore(tmp_path / "objects", chunk_size=chunk_size)
    size = 4 * MiB
    original = pseudo_random(size, seed=1)
    store.put_blob(original)
    before = stored_bytes(store)
    assert before == size

    edited = bytearray(original)
    start, length = size // 3, size // 100  # 1% of the bytes, in place, unaligned
    edited[start : start + length] = pseudo_random(length, seed=2)
    blob = store.put_blob(edited)
    new_bytes = stored_bytes(store) - before

    # Fixed chunks: at most the chunks the edit touches, i.e. the edit plus one chunk.
    assert length <= new_bytes <= length + chunk_size
    if chunk_size <= 4096:
        assert new_bytes / size < 0.011
    assert store.read_blob(blob) == edited


# --- corruption and missing objects: never wrong bytes ------------------------------------


def test_flipped_byte_is_detected_by_every_read(store: ObjectStore, flip_byte) -> None:
    data = pseudo_random(5000)
    object_id = store.put(data)
    flip_byte(store.path(object_id), 1234)
    reads = {
        "get": lambda: store.get(object_id),
        "read_blob": lambda: store.read_blob(Blob(len(data), (object_id,))),
        "map_blob": lambda: store.map_blob(Blob(len(data), (object_id,))),
        "verify": lambda: store.verify(object_id),
    }
    for name, read in reads.items():
        with pytest.raises(CorruptObjectError) as info:
            read()
        assert object_id in str(info.value), name
        assert info.value.object_id == object_id
        assert "verify --repair" in str(info.value)
        assert isinstance(info.value, StoreError)
        assert isinstance(info.value, OSError)


def test_flipped_byte_in_one_chunk_fails_read_blob(tmp_path: Path, flip_byte) -> None:
    store = ObjectStore(tmp_path / "objects", chunk_size=1024)
    data = pseudo_random(10 * 1024)
    blob = store.put_blob(data)
    flip_byte(store.path(blob.chunks[7]), 1023)
    with pytest.raises(CorruptObjectError) as info:
        store.read_blob(blob)
    assert info.value.object_id == blob.chunks[7]
    assert blob.chunks[7] in str(info.value)


@pytest.mark.parametrize("new_size", [0, 10, 4999, 5001])
def test_wrong_size_on_disk_is_corrupt(store: ObjectStore, new_size: int) -> None:
    data = pseudo_random(5000)
    object_id = store.put(data)
    path = store.path(object_id)
    os.chmod(path, 0o644)
    os.truncate(path, new_size)
    for read in (
        lambda: store.get(object_id),
        lambda: store.map_blob(Blob(len(data), (object_id,))),
        lambda: store.read_blob(Blob(len(data), (object_id,))),
    ):
        with pytest.raises(CorruptObjectError, match=object_id):
            read()


def test_an_emptied_object_is_corrupt_for_map(store: ObjectStore) -> None:
    # mmap cannot map an empty file: that path must still verify the digest.
    object_id = store.put(b"not empty")
    os.chmod(store.path(object_id), 0o644)
    os.truncate(store.path(object_id), 0)
    with pytest.raises(CorruptObjectError, match=object_id):
        store.map_blob(Blob(len(b"not empty"), (object_id,)))


def test_deleted_object_is_missing(store: ObjectStore) -> None:
    object_id = store.put(b"soon gone")
    assert store.delete(object_id)
    assert not store.delete(object_id)
    assert not store.contains(object_id)
    for read in (
        lambda: store.get(object_id),
        lambda: store.map_blob(Blob(9, (object_id,))),
        lambda: store.verify(object_id),
        lambda: store.read_blob(Blob(9, (object_id,))),
    ):
        with pytest.raises(MissingObjectError) as info:
            read()
        assert info.value.object_id == object_id
        assert object_id in str(info.value)
        assert isinstance(info.value, StoreError)


def test_put_repairs_an_object_found_corrupt(store: ObjectStore, flip_byte) -> None:
    data = pseudo_random(2000)
    object_id = store.put(data)
    flip_byte(store.path(object_id), 0)
    with pytest.raises(CorruptObjectError):
        store.get(object_id)
    assert not store.contains(object_id)  # known damaged: not a hit any more
    assert store.put(data) == object_id  # same size on disk, rewritten anyway
    assert store.contains(object_id)
    assert store.get(object_id) == data


def test_put_repairs_a_missing_object_and_a_corrupt_chunk(tmp_path: Path, flip_byte) -> None:
    store = ObjectStore(tmp_path / "objects", chunk_size=1024)
    data = pseudo_random(4096)
    blob = store.put_blob(data)
    store.delete(blob.chunks[0])
    flip_byte(store.path(blob.chunks[2]), 5)
    with pytest.raises(MissingObjectError):
        store.read_blob(blob)
    with pytest.raises(CorruptObjectError):
        store.verify(blob.chunks[2])
    assert store.put_blob(data) == blob
    assert store.read_blob(blob) == data


def test_a_fresh_store_repairs_an_object_found_corrupt(tmp_path: Path, flip_byte) -> None:
    # A later process (a new ObjectStore) finds the damage by reading, then repairs it.
    data = pseudo_random(2000)
    object_id = ObjectStore(tmp_path / "objects").put(data)
    flip_byte(ObjectStore(tmp_path / "objects").path(object_id), 10)
    store = ObjectStore(tmp_path / "objects")
    with pytest.raises(CorruptObjectError):
        store.verify(object_id)
    store.put(data)
    store.verify(object_id)


# --- atomic writes and temporary files ------------------------------------------------------


def test_put_rewrites_a_truncated_object(store: ObjectStore) -> None:
    # What a non-atomic writer would leave after a crash: the final name, too few bytes.
    data = pseudo_random(3000)
    object_id = digest_bytes(data)
    path = store.path(object_id)
    path.parent.mkdir(parents=True)
    path.write_bytes(data[:1000])
    assert store.put(data) == object_id
    assert path.stat().st_size == len(data)
    assert store.get(object_id) == data
    assert list(store.iter_temporary()) == []


def test_interrupted_write_leaves_only_a_temporary_file(store: ObjectStore) -> None:
    kept = store.put(b"kept")
    shard = store.path(kept).parent
    leftover = shard / ".tmp-12345-abcdef012345"
    leftover.write_bytes(b"half of someth")
    other_shard = store.root / "zz"
    other_shard.mkdir()
    (other_shard / ".tmp-999-000000000000").write_bytes(b"")
    assert list(store.iter_objects()) == [(kept, 4)]
    assert sorted(store.iter_temporary()) == sorted(
        [leftover, other_shard / ".tmp-999-000000000000"]
    )


def test_successful_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "objects", chunk_size=512)
    for i in range(20):
        store.put_blob(pseudo_random(2000, seed=i))
    assert list(store.iter_temporary()) == []
    for object_id, size in store.iter_objects():
        assert size == store.path(object_id).stat().st_size
        store.verify(object_id)


def test_iteration_ignores_foreign_files(store: ObjectStore) -> None:
    object_id = store.put(b"real")
    (store.root / "README").write_text("not an object")
    (store.path(object_id).parent / "notes.txt").write_text("nor this")
    (store.root / "abc").mkdir()
    assert list(store.iter_objects()) == [(object_id, 4)]


def test_iteration_of_a_store_that_was_never_written(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "nothing-here")
    assert list(store.iter_objects()) == []
    assert list(store.iter_temporary()) == []


def test_a_folder_in_an_objects_place_is_replaced_and_leaves_no_temporary_file(
    tmp_path: Path,
) -> None:
    """os.replace cannot overwrite a folder: it is in the store's way, so it goes (it was
    a StoreError, and a run could never rewrite that object)."""
    root = tmp_path / "objects"
    store = ObjectStore(root)
    object_id = digest_bytes(b"blocked")
    (root / object_id[:2] / object_id[2:] / "inside").mkdir(parents=True)
    assert store.put(b"blocked") == object_id
    assert store.get(object_id) == b"blocked"
    assert list(store.iter_temporary()) == []


def test_write_failure_is_a_store_error_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    store = ObjectStore(root)
    object_id = digest_bytes(b"blocked")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    root.mkdir()
    (root / object_id[:2]).symlink_to(outside)  # never written through
    with pytest.raises(StoreError, match="is a link"):
        store.put(b"blocked")
    assert list(outside.iterdir()) == []
    assert list(store.iter_temporary()) == []


# --- several processes at once ------------------------------------------------------------

_WRITER = """
import json, os, sys, time
import numpy as np
from zencache.storage.store import ObjectStore

root, go, worker = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = ObjectStore(root, chunk_size=16 * 1024)
shared = [np.random.default_rng(100 + i).bytes(50_000 + i) for i in range(8)]
own = [np.random.default_rng(1000 * worker + i).bytes(30_000) for i in range(8)]
while not os.path.exists(go):
    time.sleep(0.001)
out = {"shared": [], "own": []}
for _ in range(3):
    out["shared"] = [list(store.put_blob(b).chunks) for b in shared]
    out["own"] = [list(store.put_blob(b).chunks) for b in own]
    out["single"] = [store.put(b[:1000]) for b in shared]
print(json.dumps(out))
"""


def test_four_processes_writing_same_and_different_blobs(tmp_path: Path, python) -> None:
    root, go = tmp_path / "objects", tmp_path / "go"
    workers = [python.popen(_WRITER, str(root), str(go), str(w)) for w in range(4)]
    go.touch()
    results = []
    for proc in workers:
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        results.append(json.loads(stdout))

    # Everyone computed the same ids for the same bytes...
    assert all(r["shared"] == results[0]["shared"] for r in results)
    assert all(r["single"] == results[0]["single"] for r in results)
    # ...every object is whole and sound, and nothing was left half written.
    store = ObjectStore(root, chunk_size=16 * 1024)
    listed = dict(store.iter_objects())
    expected = {c for r in results for key in ("shared", "own") for b in r[key] for c in b}
    expected |= set(results[0]["single"])
    assert set(listed) == expected
    for object_id in listed:
        store.verify(object_id)
    assert list(store.iter_temporary()) == []


def test_a_file_where_a_shard_folder_should_be_is_a_clear_error(store: ObjectStore) -> None:
    from zencache.errors import MissingObjectError, StoreError

    data = b"shard" * 3000
    object_id = digest_bytes(data)
    shard = store.path(object_id).parent
    shard.parent.mkdir(parents=True, exist_ok=True)
    shard.write_text("not a folder")
    with pytest.raises(MissingObjectError):
        store.get(object_id)
    with pytest.raises(
        StoreError, match="is a file where the object store keeps a folder"
    ) as caught:
        store.put(data)
    assert str(shard) in str(caught.value) and "\n" not in str(caught.value)
    shard.unlink()
    assert store.put(data) == object_id  # moved away: it works again
