"""The remote's content-addressed objects (`cas/<object id>`) as an ObjectStore.

The second implementation of storage/protocols.py's ObjectStore, over any remote
backend (file://, s3://, ...): write-once puts (create-only: an object already
there is not sent again), every read verified against its id, an object found
damaged rewritten by the next put of its bytes. Blobs are chunked as the local
store chunks them, one remote object per chunk. It passes the storage contract
suite (tests/unit/test_storage_contract.py) unchanged.

The Remote client (client.py) reads and writes the same `cas/` folder, also in
packs of consecutive chunks, whose id is the digest of their chunk ids, not of
their bytes: such a pack is listed here but reads as corrupt (the client unpacks
it, verifying each chunk). Imports hashing, errors, the store's Blob and the backends.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ...errors import CorruptObjectError, MissingObjectError, RemoteError
from ...hashing import ContentId, digest_bytes
from ..store import CHUNK_SIZE, Blob
from .backends import Backend, RemoteUnavailable, open_backend

_PREFIX = "cas/"


class RemoteObjects:
    """Objects named by the digest of their bytes, under `cas/` of one remote."""

    def __init__(
        self,
        url: str,
        *,
        chunk_size: int = CHUNK_SIZE,
        timeout: float = 10.0,
        backend: Backend | None = None,
    ) -> None:
        self.url = url
        self.chunk_size = chunk_size
        self.backend = backend if backend is not None else open_backend(url, timeout=timeout)
        self._damaged: set[ContentId] = set()  # found corrupt here: the next put rewrites
        self._distrust = False

    def __repr__(self) -> str:
        return f"RemoteObjects({self.url!r})"

    # --- single objects ---------------------------------------------------------------

    def contains(self, object_id: ContentId) -> bool:
        return object_id not in self._damaged and self._call(
            self.backend.exists, _PREFIX + object_id
        )

    def put(self, data: Any) -> ContentId:
        """Store bytes-like `data` (durable when the backend's put returns); an object
        of that id already there is not sent again, unless it was found damaged (or
        the store distrusts existing objects and it is damaged)."""
        view = memoryview(data).cast("B")
        object_id = digest_bytes(view)
        self._write(object_id, view)
        return object_id

    def adopt(self, object_id: ContentId, data: Any, *, verified: bool = False) -> None:
        view = memoryview(data).cast("B")
        if not verified and digest_bytes(view) != object_id:
            raise CorruptObjectError(
                f"bytes offered for object {object_id} do not match its hash; not stored",
                object_id=object_id,
            )
        self._call(self.backend.put, _PREFIX + object_id, bytes(view), create_only=False)
        self._damaged.discard(object_id)

    def _write(self, object_id: ContentId, view: memoryview) -> None:
        path = _PREFIX + object_id
        rewrite = object_id in self._damaged
        if not rewrite and self._distrust:
            found = self._call(self.backend.get, path)
            rewrite = found is not None and digest_bytes(found) != object_id
        self._call(self.backend.put, path, bytes(view), create_only=not rewrite)
        self._damaged.discard(object_id)

    def get(self, object_id: ContentId) -> bytes:
        """The object's bytes, verified against its id."""
        data = self._call(self.backend.get, _PREFIX + object_id)
        if data is None:
            raise MissingObjectError(
                f"object {object_id} is missing from remote cache {self.url}; rerun the "
                "pipeline that produced it, or `zencache push` from a cache that has it",
                object_id=object_id,
            )
        if digest_bytes(data) != object_id:
            self._damaged.add(object_id)
            raise CorruptObjectError(
                f"object {object_id} on remote cache {self.url} is corrupt (its bytes do not "
                "match their hash); it is rewritten when the step that made it runs again",
                object_id=object_id,
            )
        return data

    def verify(self, object_id: ContentId) -> None:
        self.get(object_id)

    def delete(self, object_id: ContentId) -> bool:
        path = _PREFIX + object_id
        if not self._call(self.backend.exists, path):
            return False
        self._call(self.backend.delete, path)
        self._damaged.discard(object_id)
        return True

    def modified(self, object_id: ContentId) -> float | None:
        """When the object was written; None when absent. A listing of `cas/` (object
        stores list by folder, not by name prefix): for maintenance, not a hot path."""
        path = _PREFIX + object_id
        return next(
            (
                i.modified
                for i in self._call(lambda: list(self.backend.list(_PREFIX)))
                if i.path == path
            ),
            None,
        )

    def iter_objects(self) -> Iterator[tuple[ContentId, int]]:
        for item in self._call(lambda: list(self.backend.list(_PREFIX))):
            name = item.path[len(_PREFIX) :]
            if "/" not in name:
                yield name, item.size

    def iter_temporary(self) -> Iterator[Path]:
        """None to clean up here: a backend's puts are atomic (an upload left half
        done is the object store's own to expire; file:// skips its temporary names)."""
        return iter(())

    def distrust_existing(self) -> None:
        self._distrust = True

    # --- chunked blobs ----------------------------------------------------------------

    def put_blob(self, data: Any) -> Blob:
        view = memoryview(data).cast("B")
        size = self.chunk_size
        chunks = tuple(self.put(view[i : i + size]) for i in range(0, len(view), size))
        return Blob(len(view), chunks or (self.put(b""),))

    def read_blob(self, blob: Blob) -> bytearray:
        buffer = bytearray()
        for chunk in blob.chunks:
            buffer += self.get(chunk)
        if len(buffer) != blob.size:
            raise CorruptObjectError(
                f"the chunks of a blob of {blob.size} bytes on remote cache {self.url} hold "
                f"{len(buffer)}; run 'zencache cache verify --repair', then rerun the pipeline",
                object_id=blob.chunks[0] if blob.chunks else "",
            )
        return buffer

    def map_blob(self, blob: Blob) -> memoryview:
        """Nothing to map on a remote: the blob's bytes, read and verified."""
        return memoryview(self.read_blob(blob))

    # --- faults -------------------------------------------------------------------------

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RemoteUnavailable as exc:
            raise RemoteError(
                f"remote cache {self.url} unavailable ({exc}); check the URL, the network "
                "and the credentials"
            ) from exc
