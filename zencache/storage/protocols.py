"""The two narrow interfaces of the storage layer: what the layers above may ask of
an object store and of an index, so that a second implementation (a remote store)
can stand where the first one does.

Each protocol lists exactly the methods code outside `storage/` calls (and the
Fetcher's `adopt`); the file-system `store.ObjectStore` and the LMDB `index.Index`
implement them with no other public method (a test checks it, with the few
file-system extras named and explained), and tests/unit/test_storage_contract.py
is the suite every implementation must pass.
`Fetcher` (defined in store.py, re-exported here) is what the local store asks when
an object it should hold is not there: the remote cache (storage/remote/). Imports hashing only at
run time (records, errors and the index's types for annotations).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from ..hashing import ContentId
from .store import Fetcher as Fetcher  # re-exported: the read-through hook of a store

if TYPE_CHECKING:
    from ..errors import ReadOnlyCacheError
    from .index import Op
    from .records import ArtifactRecord, EnvRecord, RunRecord, StepRecord
    from .store import Blob

T = TypeVar("T")


@runtime_checkable
class ContentStore(Protocol):
    """Immutable objects named by the digest of their bytes."""

    def contains(self, object_id: ContentId) -> bool: ...

    def put(self, data: Any) -> ContentId:
        """Store bytes-like `data`, durable when this returns; an object of that id
        already stored (and sound) is not written again."""
        ...

    def get(self, object_id: ContentId) -> bytes:
        """The object's bytes, verified against its id (MissingObjectError,
        CorruptObjectError: never wrong bytes)."""
        ...

    def delete(self, object_id: ContentId) -> bool:
        """Whether there was an object to delete."""
        ...

    def iter_objects(self) -> Iterator[tuple[ContentId, int]]:
        """Every stored object with its size (temporary files excluded)."""
        ...


@runtime_checkable
class ObjectStore(ContentStore, Protocol):
    """A ContentStore with chunked blobs (what materializers write and read) and what
    maintenance needs (verify, age, leftovers of interrupted writes)."""

    def put_blob(self, data: Any) -> Blob:
        """Store bytes split into chunks; identical chunks are stored once."""
        ...

    def read_blob(self, blob: Blob) -> bytearray:
        """The blob's bytes, each chunk verified."""
        ...

    def map_blob(self, blob: Blob) -> memoryview:
        """The blob's bytes, verified, mapped where the store can (else read)."""
        ...

    def verify(self, object_id: ContentId) -> None:
        """Raise MissingObjectError or CorruptObjectError unless the object is sound."""
        ...

    def modified(self, object_id: ContentId) -> float | None:
        """When the object was last written or freshened (epoch seconds); None when
        absent. gc's grace period is measured against it."""
        ...

    def iter_temporary(self) -> Iterator[Path]:
        """Leftovers of interrupted writes."""
        ...

    def distrust_existing(self) -> None:
        """From now on, check an object already stored before deduplicating a put
        against it, and rewrite it when damaged (a forced rerun repairs what it writes)."""
        ...

    def adopt(self, object_id: ContentId, data: Any, *, verified: bool = False) -> None:
        """Store bytes fetched from elsewhere (a Fetcher: the remote cache) under their
        id, replacing a damaged copy; CorruptObjectError when they are not that object
        (`verified=True`: the caller has hashed them already)."""
        ...


@runtime_checkable
class View(Protocol):
    """A consistent read across the index's databases (one transaction)."""

    def get(self, db: str, key: bytes) -> bytes | None: ...

    def items(self, db: str, prefix: bytes = b"") -> list[tuple[bytes, bytes]]: ...

    def keys(self, db: str) -> list[bytes]: ...

    def count(self, db: str) -> int: ...


@runtime_checkable
class Update(View, Protocol):
    """A View that writes in the transaction it reads from, committed as a whole."""

    def put(self, db: str, key: bytes, value: bytes) -> None: ...

    def delete(self, db: str, key: bytes) -> bool: ...

    def clear(self, db: str) -> None: ...


@runtime_checkable
class Index(Protocol):
    """Records by key in named databases (steps, artifacts, runs, envs, latest, pins,
    used);
    a step entry's hit row follows every write of it. No policy."""

    # Why this process may read the index but not write it (a read-only mount, a
    # cache of another user); empty when it may write. Writes then raise
    # read_only_error(...), and runs serve hits without recording.
    read_only: str

    def read_only_error(self, action: str) -> ReadOnlyCacheError:
        """The one-line error for `action` (what could not be done) on a read-only index."""
        ...

    def close(self) -> None:
        """Release the index (files, maps); the cache reopens it when next used."""
        ...

    # --- raw entries -------------------------------------------------------------------
    def get(self, db: str, key: bytes) -> bytes | None: ...

    def items(self, db: str, prefix: bytes = b"") -> list[tuple[bytes, bytes]]: ...

    def get_many(self, db: str, keys: list[bytes]) -> list[bytes | None]:
        """Several values of one database from one consistent read, in `keys`' order."""
        ...

    def keys(self, db: str) -> list[bytes]: ...

    def last(self, db: str) -> tuple[bytes, bytes] | None: ...

    def count(self, db: str) -> int: ...

    def write(self, ops: Iterable[Op]) -> None:
        """Puts and deletes (value None) in one transaction; a background thread may
        call it beside the owner thread's reads."""
        ...

    def view(self, fn: Callable[[Any], T]) -> T:
        """`fn(View)` over one consistent read."""
        ...

    def update(self, fn: Callable[[Any], T]) -> T:
        """`fn(Update)` in one write transaction: all of it or nothing."""
        ...

    # --- typed records -----------------------------------------------------------------
    def step_output_ids(self, key: str, *, snapshot: bool = False) -> tuple[str, ...] | None:
        """The hit path; `snapshot=True` may reuse a read across calls until end_snapshot."""
        ...

    def hit_lookup(self) -> Callable[[str], tuple[str, ...] | None]:
        """`step_output_ids(key, snapshot=True)` as one function, for a run's streak of
        hits; valid until end_snapshot."""
        ...

    def end_snapshot(self) -> None: ...

    def record_use(self, keys: Iterable[str], now: float | None = None) -> None:
        """Note step entries' outputs loaded outside a run (the `used` table, for
        size-limit LRU); coarse and unsynced by design."""
        ...

    def get_step(self, key: str) -> StepRecord | None: ...

    def get_artifact(self, content_id: str) -> ArtifactRecord | None: ...

    def iter_steps(self) -> Iterator[StepRecord]:
        """Every step entry, decoded."""
        ...

    def get_run(self, run_id: str) -> RunRecord | None: ...

    def get_env(self, env_id: str) -> EnvRecord | None: ...

    def latest_key(self, pipeline: str, step: str) -> str | None: ...

    def write_run(self, run: RunRecord, env: EnvRecord | None, latest: dict[str, str]) -> None:
        """A run record, its environment (unless present) and the pipeline's latest
        pointers (step name -> key), in one transaction."""
        ...
