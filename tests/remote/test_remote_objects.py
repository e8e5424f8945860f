"""The storage contract's object-store tests against the remote's objects on a real
S3 API server (moto): the same functions that
tests/unit/test_storage_contract.py runs on the file-system store and on a file://
remote, with this module's `store` and `store_impl`."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "unit"))

from test_storage_contract import (
    CHUNK,
    StoreImplementation,
    test_a_blob_of_repeated_chunks_stores_each_chunk_once,
    test_a_blob_with_a_damaged_chunk_is_never_read,
    test_a_blob_with_a_missing_chunk_is_never_read,
    test_a_distrusting_store_repairs_damage_it_has_not_seen,
    test_a_missing_object_raises_and_is_absent,
    test_blobs_round_trip_read_and_mapped,
    test_damaged_bytes_are_never_returned,
    test_delete_removes_an_object,
    test_identical_content_is_stored_once,
    test_iter_objects_lists_every_object_with_its_size,
    test_modified_is_when_the_object_was_written,
    test_objects_outlive_the_handle,
    test_put_names_an_object_by_its_content_and_get_returns_it,
    test_store_is_an_object_store,
)

from zencache.storage.remote.objects import RemoteObjects

from .conftest import make_bucket, point_s3_at

__all__ = [
    "test_a_blob_of_repeated_chunks_stores_each_chunk_once",
    "test_a_blob_with_a_damaged_chunk_is_never_read",
    "test_a_blob_with_a_missing_chunk_is_never_read",
    "test_a_distrusting_store_repairs_damage_it_has_not_seen",
    "test_a_missing_object_raises_and_is_absent",
    "test_blobs_round_trip_read_and_mapped",
    "test_damaged_bytes_are_never_returned",
    "test_delete_removes_an_object",
    "test_identical_content_is_stored_once",
    "test_iter_objects_lists_every_object_with_its_size",
    "test_modified_is_when_the_object_was_written",
    "test_objects_outlive_the_handle",
    "test_put_names_an_object_by_its_content_and_get_returns_it",
    "test_store_is_an_object_store",
]


def _damage_s3(store: RemoteObjects, object_id: str) -> None:
    path = f"cas/{object_id}"
    data = bytearray(store.backend.get(path) or b"")
    data[0] ^= 0xFF
    store.backend.put(path, bytes(data), create_only=False)


@pytest.fixture
def s3_direct(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """s3://<new bucket>/objects on moto itself: no proxy, so no server thread in this
    process outlives a test (a later test counts threads)."""
    pytest.importorskip("obstore")
    point_s3_at(moto_endpoint, monkeypatch)
    return f"s3://{make_bucket(moto_endpoint)}/objects"


@pytest.fixture
def store_impl(s3_direct: str) -> StoreImplementation:
    return StoreImplementation(
        "remote-s3", lambda _root: RemoteObjects(s3_direct, chunk_size=CHUNK), _damage_s3
    )


@pytest.fixture
def store(store_impl: StoreImplementation, tmp_path: Path) -> Iterator[Any]:
    opened = store_impl.open(tmp_path / "objects")
    yield opened
    store_impl.close(opened)
