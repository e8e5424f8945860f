"""The remote's storage pieces on their own: signed entries, the file:// backend's
create-only puts, packs of chunks, verified fetches. No server needed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from zencache.errors import RemoteError
from zencache.hashing import digest_bytes
from zencache.storage.records import ArtifactRecord, EnvRecord, FileEntry, StepRecord
from zencache.storage.remote import (
    PACK_CHUNKS,
    EntryRefused,
    Remote,
    RemoteEntry,
    RemoteWarning,
    pack_groups,
)
from zencache.storage.remote.backends import FileBackend, open_backend
from zencache.storage.store import Blob, ObjectStore

KEY = "0123456789abcdef0123456789abcdef"


def entry(key: str = KEY) -> RemoteEntry:
    artifact = ArtifactRecord("a" * 32, "m@1", "builtins:int", {"v": FileEntry(2, inline=b"42")})
    step = StepRecord(
        key=key, step="m:f", name="f", pipeline="p", output_ids=("a" * 32,),
        output_names=("output",), fingerprint="code",
    )  # fmt: skip
    env = EnvRecord("e" * 32, "3.11", "cpython", "linux", "x86_64", {"numpy": "2"})
    return RemoteEntry(step, (artifact,), env)


def test_entries_round_trip_with_and_without_a_key() -> None:
    for secret in (None, b"k"):
        data = entry().encode(secret)
        back = RemoteEntry.decode(data, KEY, secret)
        assert back == entry()
        assert back.raw == data
        assert back.index_records() == (entry().step.encode(), (entry().artifacts[0].encode(),))


@pytest.mark.parametrize(
    ("written_with", "read_with", "why"),
    [(None, b"k", "unsigned"), (b"other", b"k", "signature does not match")],
)
def test_a_key_refuses_unsigned_and_wrongly_signed_entries(written_with, read_with, why) -> None:
    with pytest.raises(EntryRefused, match=why):
        RemoteEntry.decode(entry().encode(written_with), KEY, read_with)


def test_a_signed_entry_whose_body_changed_is_refused() -> None:
    data = entry().encode(b"k").replace(b'"key"', b'"kex"', 1)
    with pytest.raises(EntryRefused, match="signature"):
        RemoteEntry.decode(data, KEY, b"k")


def test_an_entry_under_another_key_or_damaged_is_refused() -> None:
    with pytest.raises(EntryRefused, match="describes step key"):
        RemoteEntry.decode(entry().encode(), "f" * 32)
    with pytest.raises(EntryRefused, match="format"):
        RemoteEntry.decode(b"garbage", KEY)
    with pytest.raises(EntryRefused, match="decoded"):
        RemoteEntry.decode(b"zencache-remote-entry/1 -\n{not json", KEY)


def test_file_backend_puts_are_create_only(tmp_path: Path) -> None:
    backend = open_backend((tmp_path / "r").as_uri())
    assert isinstance(backend, FileBackend)
    assert backend.get("cas/x") is None
    assert backend.put("cas/x", b"one") is True
    assert backend.put("cas/x", b"two") is False  # an existing object is already right
    assert backend.get("cas/x") == b"one"
    assert backend.put("cas/x", b"two", create_only=False) is True
    assert backend.get("cas/x") == b"two"
    assert [(i.path, i.size) for i in backend.list("cas/")] == [("cas/x", 3)]
    backend.delete("cas/x")
    backend.delete("cas/x")
    assert list(backend.list("")) == []


def test_bad_urls_are_one_line_errors() -> None:
    with pytest.raises(RemoteError, match="no supported scheme"):
        open_backend("ftp://host/x")
    with pytest.raises(RemoteError, match="local path"):
        open_backend("file://otherhost/x")


def test_packs_keep_single_chunks_as_themselves_and_group_the_rest() -> None:
    ids = tuple(digest_bytes(str(i).encode()) for i in range(PACK_CHUNKS + 1))
    assert pack_groups(ids[:1]) == [(ids[0], ids[:1])]
    groups = pack_groups(ids)
    assert [len(g) for _, g in groups] == [PACK_CHUNKS, 1]
    assert groups[1][0] == ids[-1]
    # A pack's id is the digest of its chunk ids: pinned, since readers derive it.
    assert pack_groups(ids[:2])[0][0] == "1a0c0bba3d8ebf0c7330a4050021bbff"


def test_fetch_verifies_every_chunk_and_rejects_a_corrupt_pack(tmp_path: Path) -> None:
    source = ObjectStore(tmp_path / "a", chunk_size=1024)
    blob = source.put_blob(os.urandom(5000))
    record = ArtifactRecord("b" * 32, "m@1", "t", {"f": FileEntry(blob.size, blob.chunks)})
    remote = Remote((tmp_path / "r").as_uri())
    assert remote.upload_artifacts(source, [record])
    target = ObjectStore(tmp_path / "b", chunk_size=1024)
    assert remote.fetch_blob(target, blob)
    assert bytes(target.read_blob(blob)) == bytes(source.read_blob(blob))

    ((pack, _),) = pack_groups(blob.chunks)
    damaged = bytearray(remote.backend.get(f"cas/{pack}"))
    damaged[10] ^= 1
    remote.backend.put(f"cas/{pack}", bytes(damaged), create_only=False)
    fresh = ObjectStore(tmp_path / "c", chunk_size=1024)
    assert not remote.fetch_blob(fresh, blob)
    assert list(fresh.iter_objects()) == []
    with pytest.warns(RemoteWarning, match="corrupt"):
        remote.check()
    # The next upload of that object rewrites it although it exists.
    assert remote.upload_artifacts(source, [record])
    assert remote.fetch_blob(fresh, blob)


def test_a_store_with_a_fetcher_reads_through(tmp_path: Path) -> None:
    source = ObjectStore(tmp_path / "a", chunk_size=1024)
    data = os.urandom(3000)
    blob = source.put_blob(data)
    record = ArtifactRecord("c" * 32, "m@1", "t", {"f": FileEntry(blob.size, blob.chunks)})
    remote = Remote((tmp_path / "r").as_uri())
    remote.upload_artifacts(source, [record])
    target = ObjectStore(tmp_path / "b", chunk_size=1024)
    target.fetcher = remote
    assert bytes(target.read_blob(Blob(blob.size, blob.chunks))) == data
    assert sorted(i for i, _ in target.iter_objects()) == sorted(blob.chunks)
    assert remote.take_stats().bytes_down == 3000
