"""The narrow interfaces of the storage layer, so that a second implementation can
stand where the first one does.

`ContentStore` is what a store of content-addressed objects offers: the local
file-system store (store.ObjectStore) is one, the remote's `cas/` (remote.objects)
another. `Fetcher` is what the local store asks when an object it should hold is
not there: the remote cache, which fills it in. Imports hashing only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from ..hashing import ContentId

if TYPE_CHECKING:
    from .store import Blob, ObjectStore


class ContentStore(Protocol):
    """Immutable objects named by the digest of their bytes."""

    def contains(self, object_id: ContentId) -> bool: ...

    def put(self, data: Any) -> ContentId:
        """Store bytes-like `data` (an existing object of that id is already right)."""
        ...

    def get(self, object_id: ContentId) -> bytes:
        """The object's bytes, verified against its id (MissingObjectError, CorruptObjectError)."""
        ...

    def delete(self, object_id: ContentId) -> bool: ...

    def iter_objects(self) -> Iterator[tuple[ContentId, int]]:
        """Every object with its size."""
        ...


class Fetcher(Protocol):
    """Fills a local store with objects it lacks (the remote cache's read-through)."""

    def fetch_blob(self, store: ObjectStore, blob: Blob) -> bool:
        """Write every chunk of `blob` into `store`, verified; False when it cannot."""
        ...
