"""The storage contract: every implementation of storage/protocols.py passes this one
suite, parametrized over IMPLEMENTATIONS (Hamilton's style): the file-system object
store, the remote cache's objects (storage/remote/objects.py, on a file:// remote)
and the LMDB index. A new store adds itself to the list, with a way to damage one
of its objects, and must pass unchanged."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from zencache.errors import CorruptObjectError, MissingObjectError, ReadOnlyCacheError
from zencache.hashing import digest_bytes
from zencache.storage import protocols
from zencache.storage.index import Index as LmdbIndex
from zencache.storage.records import (
    ArtifactRecord,
    EnvRecord,
    FileEntry,
    RunRecord,
    StepRecord,
    StepRun,
)
from zencache.storage.remote.objects import RemoteObjects
from zencache.storage.store import ObjectStore as FileObjectStore

CHUNK = 4096  # small chunks, so that a few KiB make a multi-chunk blob


@dataclass(frozen=True)
class StoreImplementation:
    name: str
    open: Callable[[Path], Any]  # a store rooted in a fresh folder; same folder = same store
    damage: Callable[[Any, str], None]  # flip the stored bytes of one object
    close: Callable[[Any], None] = lambda store: None


@dataclass(frozen=True)
class IndexImplementation:
    name: str
    open: Callable[[Path], Any]
    close: Callable[[Any], None]


def _damage_file(store: FileObjectStore, object_id: str) -> None:
    path = store.path(object_id)
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))


def _damage_remote(store: RemoteObjects, object_id: str) -> None:
    path = Path(store.backend.root) / "cas" / object_id  # type: ignore[attr-defined]
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))


STORES = [
    StoreImplementation(
        "filesystem", lambda root: FileObjectStore(root, chunk_size=CHUNK), _damage_file
    ),
    # The remote cache's objects, on its file:// backend (the S3 one speaks the same
    # Backend calls; tests/remote runs it against a real S3 API server).
    StoreImplementation(
        "remote-file",
        lambda root: RemoteObjects(root.as_uri(), chunk_size=CHUNK),
        _damage_remote,
    ),
]
INDEXES = [
    IndexImplementation("lmdb", lambda root: LmdbIndex(root / "index.lmdb"), LmdbIndex.close),
]
IMPLEMENTATIONS: list[StoreImplementation | IndexImplementation] = [*STORES, *INDEXES]


@pytest.fixture(params=STORES, ids=lambda i: i.name)
def store_impl(request: pytest.FixtureRequest) -> StoreImplementation:
    return request.param


@pytest.fixture
def store(store_impl: StoreImplementation, tmp_path: Path) -> Iterator[Any]:
    opened = store_impl.open(tmp_path / "objects")
    yield opened
    store_impl.close(opened)


@pytest.fixture(params=INDEXES, ids=lambda i: i.name)
def index_impl(request: pytest.FixtureRequest) -> IndexImplementation:
    return request.param


@pytest.fixture
def index(index_impl: IndexImplementation, tmp_path: Path) -> Iterator[Any]:
    opened = index_impl.open(tmp_path)
    yield opened
    index_impl.close(opened)


# --- public surfaces ----------------------------------------------------------------------------

# Public methods a concrete class has beyond its protocol, each with its reason. A new
# public method belongs in the protocol (and this suite) or is private.
BEYOND_PROTOCOL: dict[type, dict[str, str]] = {
    FileObjectStore: {
        "path": "where an object's file lives: tests damage objects through it",
    },
    RemoteObjects: {},
    LmdbIndex: {},
}
PROTOCOL_OF = {
    FileObjectStore: protocols.ObjectStore,
    RemoteObjects: protocols.ObjectStore,
    LmdbIndex: protocols.Index,
}


@pytest.mark.parametrize("cls", list(PROTOCOL_OF), ids=lambda c: c.__qualname__)
def test_the_public_surface_is_the_protocol(cls: type) -> None:
    public = {
        name
        for klass in cls.__mro__[:-1]
        for name, value in vars(klass).items()
        if not name.startswith("_")
        and (callable(value) or isinstance(value, staticmethod | classmethod | property))
    }
    declared = {name for name in dir(PROTOCOL_OF[cls]) if not name.startswith("_")}
    assert public - declared == set(BEYOND_PROTOCOL[cls])
    assert not set(BEYOND_PROTOCOL[cls]) & declared


# --- object stores ------------------------------------------------------------------------------


def test_store_is_an_object_store(store: Any) -> None:
    # runtime_checkable: every method of the protocol is there
    assert isinstance(store, protocols.ObjectStore)
    assert isinstance(store, protocols.ContentStore)


def test_put_names_an_object_by_its_content_and_get_returns_it(store: Any) -> None:
    for data in (b"", b"x", b"hello" * 1000, bytearray(b"mutable"), memoryview(b"view")):
        object_id = store.put(data)
        assert object_id == digest_bytes(bytes(data))
        assert store.contains(object_id)
        assert store.get(object_id) == bytes(data)
        store.verify(object_id)


def test_identical_content_is_stored_once(store: Any) -> None:
    first = store.put(b"same bytes")
    second = store.put(b"same bytes")
    assert first == second
    assert [oid for oid, _ in store.iter_objects()] == [first]


def test_iter_objects_lists_every_object_with_its_size(store: Any) -> None:
    ids = {store.put(bytes([i]) * (i + 1)): i + 1 for i in range(5)}
    assert dict(store.iter_objects()) == ids
    assert list(store.iter_temporary()) == []


def test_a_missing_object_raises_and_is_absent(store: Any) -> None:
    absent = digest_bytes(b"never stored")
    assert not store.contains(absent)
    assert store.modified(absent) is None
    with pytest.raises(MissingObjectError):
        store.get(absent)
    with pytest.raises(MissingObjectError):
        store.verify(absent)
    assert store.delete(absent) is False


def test_delete_removes_an_object(store: Any) -> None:
    object_id = store.put(b"short-lived")
    assert store.delete(object_id) is True
    assert not store.contains(object_id)
    assert list(store.iter_objects()) == []
    with pytest.raises(MissingObjectError):
        store.get(object_id)


def test_modified_is_when_the_object_was_written(store: Any) -> None:
    import time

    before = time.time()
    object_id = store.put(b"dated")
    modified = store.modified(object_id)
    assert modified is not None and before - 5 <= modified <= time.time() + 5


def test_damaged_bytes_are_never_returned(store_impl: StoreImplementation, store: Any) -> None:
    object_id = store.put(b"precious" * 100)
    store_impl.damage(store, object_id)
    with pytest.raises(CorruptObjectError):
        store.get(object_id)
    with pytest.raises(CorruptObjectError):
        store.verify(object_id)
    # Putting the right bytes again repairs it, though an object of that id exists.
    assert store.put(b"precious" * 100) == object_id
    assert store.get(object_id) == b"precious" * 100


def test_a_distrusting_store_repairs_damage_it_has_not_seen(
    store_impl: StoreImplementation, store: Any
) -> None:
    """After distrust_existing (a forced rerun), a put checks the object it would
    dedupe against: damage nobody has read yet is rewritten too."""
    object_id = store.put(b"unread" * 100)
    store_impl.damage(store, object_id)
    store.distrust_existing()
    assert store.put(b"unread" * 100) == object_id
    assert store.get(object_id) == b"unread" * 100
    store.verify(object_id)


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, 3 * CHUNK + 17])
def test_blobs_round_trip_read_and_mapped(store: Any, size: int) -> None:
    data = bytes(i % 251 for i in range(size))
    blob = store.put_blob(data)
    assert blob.size == size
    assert bytes(store.read_blob(blob)) == data
    assert bytes(store.map_blob(blob)) == data
    for chunk in blob.chunks:
        store.verify(chunk)


def test_a_blob_of_repeated_chunks_stores_each_chunk_once(store: Any) -> None:
    blob = store.put_blob(b"a" * CHUNK * 4)
    assert len(blob.chunks) == 4 and len(set(blob.chunks)) == 1
    assert len(list(store.iter_objects())) == 1


def test_a_blob_with_a_damaged_chunk_is_never_read(
    store_impl: StoreImplementation, store: Any
) -> None:
    data = bytes(range(256)) * (2 * CHUNK // 256)
    blob = store.put_blob(data)
    store_impl.damage(store, blob.chunks[1])
    with pytest.raises(CorruptObjectError):
        store.read_blob(blob)
    with pytest.raises(CorruptObjectError):
        store.map_blob(blob)


def test_a_blob_with_a_missing_chunk_is_never_read(store: Any) -> None:
    blob = store.put_blob(bytes(range(256)) * (2 * CHUNK // 256))
    store.delete(blob.chunks[0])
    with pytest.raises(MissingObjectError):
        store.read_blob(blob)
    with pytest.raises(MissingObjectError):
        store.map_blob(blob)


def test_objects_outlive_the_handle(store_impl: StoreImplementation, tmp_path: Path) -> None:
    first = store_impl.open(tmp_path / "objects")
    object_id = first.put(b"durable")
    store_impl.close(first)
    again = store_impl.open(tmp_path / "objects")
    assert again.get(object_id) == b"durable"


# --- indexes ------------------------------------------------------------------------------------


def _cid(text: str) -> str:
    return digest_bytes(text.encode())


def _step(key: str) -> StepRecord:
    return StepRecord(
        key=key,
        step="pkg.mod:trainer",
        name="trainer",
        pipeline="pkg.mod:training",
        output_ids=(_cid(f"{key}/out"),),
        output_names=("output",),
        fingerprint=_cid("code"),
        code_parts={"pkg.mod:trainer": _cid("a")},
        params={"gamma": {"hash": _cid("0.01"), "repr": "0.01"}},
        inputs={"X": _cid("X")},
        materializers={"output": "zencache.builtin@1"},
        untracked=(),
        run_id="r1",
        created=1700000000.0,
        duration=0.5,
    )


def _env(python: str = "3.11.7") -> EnvRecord:
    return EnvRecord(_cid("env"), python, "CPython", "Linux", "x86_64", {"numpy": "2.0"})


def _run(run_id: str, steps: tuple[StepRun, ...] = ()) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        pipeline="pkg.mod:training",
        params={},
        status="completed",
        started=1.0,
        finished=2.0,
        env_id=_cid("env"),
        steps=steps,
    )


def test_index_is_an_index(index: Any) -> None:
    assert isinstance(index, protocols.Index)


def test_a_writable_index_says_so_and_names_what_read_only_refuses(index: Any) -> None:
    assert index.read_only == ""  # this process may write it
    error = index.read_only_error("record anything")
    assert isinstance(error, ReadOnlyCacheError)
    assert "record anything" in str(error) and "\n" not in str(error)


def test_get_many_reads_several_values_in_their_order(index: Any) -> None:
    index.write([("latest", b"a", b"1"), ("latest", b"c", b"3")])
    assert index.get_many("latest", [b"c", b"b", b"a"]) == [b"3", None, b"1"]
    assert index.get_many("latest", []) == []


def test_raw_entries_write_read_list_count_and_delete(index: Any) -> None:
    assert index.get("latest", b"a") is None
    assert index.last("runs") is None
    index.write([("latest", b"p/a", b"1"), ("latest", b"p/b", b"2"), ("latest", b"q/c", b"3")])
    assert index.get("latest", b"p/a") == b"1"
    assert index.items("latest") == [(b"p/a", b"1"), (b"p/b", b"2"), (b"q/c", b"3")]
    assert index.items("latest", b"p/") == [(b"p/a", b"1"), (b"p/b", b"2")]
    assert index.items("latest", b"z") == []
    assert index.keys("latest") == [b"p/a", b"p/b", b"q/c"]
    assert index.count("latest") == 3
    assert index.last("latest") == (b"q/c", b"3")
    index.write([("latest", b"p/a", None), ("latest", b"p/d", b"4")])
    assert index.keys("latest") == [b"p/b", b"p/d", b"q/c"]


def test_typed_records_round_trip_and_absent_ones_are_none(index: Any) -> None:
    step = _step(_cid("key"))
    artifact = ArtifactRecord(
        content_id=_cid("artifact"),
        materializer="zencache.builtin@1",
        type_name="builtins:int",
        files={"data": FileEntry(size=1, inline=b"1")},
        created=1.0,
    )
    run = _run("0001", (StepRun("trainer", "pkg.mod:trainer", step.key, "executed", 0.5, {}),))
    index.write(
        [
            ("steps", step.key.encode(), step.encode()),
            ("artifacts", artifact.content_id.encode(), artifact.encode()),
        ]
    )
    index.write_run(run, _env(), {"trainer": step.key})
    assert index.get_step(step.key) == step
    assert index.step_output_ids(step.key) == step.output_ids
    assert index.get_artifact(artifact.content_id) == artifact
    assert index.get_run("0001") == run
    assert index.get_env(_env().env_id) == _env()
    assert index.latest_key("pkg.mod:training", "trainer") == step.key
    assert index.last("runs") == (b"0001", run.encode())
    assert list(index.iter_steps()) == [step]
    missing = _cid("missing")
    assert index.get_step(missing) is None
    assert index.step_output_ids(missing) is None
    assert index.get_artifact(missing) is None
    assert index.get_run("nope") is None
    assert index.get_env("nope") is None
    assert index.latest_key("pkg.mod:training", "nope") is None


def test_write_run_keeps_a_known_environment_and_unchanged_pointers(index: Any) -> None:
    index.write_run(_run("0001"), _env("3.11.7"), {"a": "k1", "b": "k2"})
    index.write_run(_run("0002"), _env("3.12.0"), {"a": "k1", "b": "k3"})
    assert index.get_env(_env().env_id) == _env("3.11.7")
    assert index.items("latest") == [
        (b"pkg.mod:training/a", b"k1"),
        (b"pkg.mod:training/b", b"k3"),
    ]
    assert index.keys("runs") == [b"0001", b"0002"]


def test_a_step_entry_is_a_hit_until_deleted_by_any_path(index: Any) -> None:
    keys = [_cid(f"k{i}") for i in range(3)]
    index.write([("steps", k.encode(), _step(k).encode()) for k in keys])
    assert all(index.step_output_ids(k) is not None for k in keys)
    index.write([("steps", keys[0].encode(), None)])
    assert index.update(lambda u: u.delete("steps", keys[1].encode())) is True
    assert index.step_output_ids(keys[0]) is None
    assert index.step_output_ids(keys[1]) is None
    assert index.step_output_ids(keys[2]) is not None
    index.update(lambda u: u.clear("steps"))
    assert index.step_output_ids(keys[2]) is None
    assert index.count("steps") == 0


def test_uses_are_recorded_coarsely(index: Any) -> None:
    key = _cid("used")
    index.record_use([key], now=1000.0)
    index.record_use([key], now=1030.0)  # within a minute of the last: not rewritten
    first = index.items("used")
    assert [k for k, _ in first] == [key.encode()]
    index.record_use([key], now=1100.0)
    assert index.items("used") != first


def test_the_lookup_snapshot_sees_nothing_newer_until_it_ends(index: Any) -> None:
    key = _cid("late")
    assert index.step_output_ids(key, snapshot=True) is None
    index.write([("steps", key.encode(), _step(key).encode())])
    index.end_snapshot()
    assert index.step_output_ids(key, snapshot=True) == _step(key).output_ids
    index.end_snapshot()


def test_the_hit_lookup_reads_the_lookup_snapshot(index: Any) -> None:
    """hit_lookup() is step_output_ids(key, snapshot=True) as one function (a run's
    streak of hits): the same answers, the same snapshot, until end_snapshot."""
    old, late = _cid("old"), _cid("late")
    index.write([("steps", old.encode(), _step(old).encode())])
    lookup = index.hit_lookup()
    assert lookup(old) == _step(old).output_ids == index.step_output_ids(old, snapshot=True)
    assert lookup(late) is None
    index.write([("steps", late.encode(), _step(late).encode())])
    assert lookup(late) is None and index.hit_lookup()(late) is None  # the same snapshot
    index.end_snapshot()
    assert index.hit_lookup()(late) == _step(late).output_ids
    index.end_snapshot()


def test_a_view_is_consistent_and_an_update_is_all_or_nothing(index: Any) -> None:
    index.write([("runs", b"1", b"a"), ("envs", b"e", b"x")])

    def read(view: protocols.View) -> tuple[list[bytes], list[bytes], int, bytes | None]:
        return view.keys("runs"), view.keys("envs"), view.count("runs"), view.get("envs", b"e")

    assert index.view(read) == ([b"1"], [b"e"], 1, b"x")

    def fail(update: protocols.Update) -> None:
        update.put("runs", b"2", b"b")
        update.delete("envs", b"e")
        assert update.items("runs") == [(b"1", b"a"), (b"2", b"b")]
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        index.update(fail)
    assert index.items("runs") == [(b"1", b"a")]
    assert index.get("envs", b"e") == b"x"

    def move(update: protocols.Update) -> int:
        update.put("runs", b"2", b"b")
        update.delete("runs", b"1")
        return update.count("runs")

    assert index.update(move) == 1
    assert index.items("runs") == [(b"2", b"b")]


def test_entries_outlive_the_handle(index_impl: IndexImplementation, tmp_path: Path) -> None:
    first = index_impl.open(tmp_path / "again")
    first.write_run(_run("0001"), _env(), {})
    index_impl.close(first)
    again = index_impl.open(tmp_path / "again")
    try:
        assert again.get_run("0001") == _run("0001")
    finally:
        index_impl.close(again)
