"""The remote cache: an action cache (`ac/<step key>`) and a content-addressed store
(`cas/<object id>`) on an object store, as Bazel's remote cache has them.

Layout under the remote URL:

    ac/<step key>          a signed step entry (entries.py); rewritten by each writer
    cas/<object id>        write-once (create-only puts): a chunk, or a pack of up to
                           PACK_CHUNKS consecutive chunks of one blob, whose id is the
                           digest of its chunk ids (so any reader derives it from the
                           artifact record, and verifies every chunk it unpacks)
    runs/<run id>          the entries of one run, for `zencache pull RUN` elsewhere
    pipelines/<name>       the same for the newest run of a pipeline: a rerun on an
                           empty cache gets all its entries in one request

Objects are uploaded before the entry naming them, so a reader never finds an
entry whose objects are missing (gc spares young objects for the same reason).

Faults never fail a run unless the remote is strict: the first unanswered call
(down, slow, 5xx, credentials) marks the remote down for RETRY_AFTER seconds, so
a run gives up on it once, not per step; the failure is counted and reported once
on the caller's thread by `check` (a RemoteWarning, or RemoteError when strict).
Imports the object store, records, hashing and errors.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from typing import Any
from urllib.parse import quote

from ...errors import MissingObjectError, RemoteError
from ...hashing import ContentId, Hasher, digest_bytes
from ..index import Index, Update
from ..records import ArtifactRecord
from ..store import Blob, ObjectStore
from .backends import Backend, RemoteUnavailable, open_backend
from .entries import EntryRefused, RemoteEntry

log = logging.getLogger(__name__)

# 64 chunks of 128 KiB: 8 MiB a request. On loopback S3 a request costs ~2.7 ms
# whatever its size, so 128 KiB objects read at 46 MiB/s and 8 MiB ones at ~400.
PACK_CHUNKS = 64
RETRY_AFTER = 60.0  # seconds a remote found down is left alone
_IO_THREADS = 16
_PUBLISH_THREADS = 16  # entries in flight; each uploads its objects first
_HEAD_ABOVE = 1 << 20  # larger objects are looked up before they are sent


class RemoteWarning(UserWarning):
    """The remote cache could not be used for part of this run; the run went on locally."""


@dataclass(slots=True)
class RemoteStats:
    hits: int = 0
    misses: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    errors: int = 0
    refused: int = 0  # entries ignored: unsigned, wrongly signed, damaged, untrusted pickles
    objects_up: int = 0

    def add(self, other: RemoteStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def to_json(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RemoteStats:
        names = {f.name for f in fields(cls)}
        return cls(**{k: int(v) for k, v in data.items() if k in names})


def pack_groups(chunks: tuple[ContentId, ...]) -> list[tuple[ContentId, tuple[ContentId, ...]]]:
    """A blob's chunks as the remote objects holding them: (object id, chunk ids)."""
    groups = []
    for start in range(0, len(chunks), PACK_CHUNKS):
        group = chunks[start : start + PACK_CHUNKS]
        pack = group[0] if len(group) == 1 else Hasher("zencache/pack/v1").texts(group).hexdigest()
        groups.append((pack, group))
    return groups


def artifact_packs(record: ArtifactRecord) -> Iterator[tuple[ContentId, tuple[ContentId, ...]]]:
    for entry in record.files.values():
        if entry.chunks:
            yield from pack_groups(entry.chunks)


_DOWN = object()
_STATS_KEY = b"remote-stats"


def load_stats(index: Index) -> RemoteStats:
    """The remote counts a cache has accumulated (`zencache cache stats`)."""
    data = index.get("meta", _STATS_KEY)
    if data is None:
        return RemoteStats()
    try:
        return RemoteStats.from_json(json.loads(data))
    except (ValueError, TypeError):
        return RemoteStats()


def save_stats(index: Index, stats: RemoteStats) -> None:
    """Add `stats` to the cache's totals, in one transaction."""
    if stats == RemoteStats():
        return
    if index.read_only:
        return  # counts are a convenience: a cache this process may only read keeps its own

    def add(update: Update) -> None:
        total = RemoteStats()
        data = update.get("meta", _STATS_KEY)
        if data is not None:
            with contextlib.suppress(ValueError, TypeError):  # a damaged total restarts at 0
                total = RemoteStats.from_json(json.loads(data))
        total.add(stats)
        update.put("meta", _STATS_KEY, json.dumps(total.to_json(), sort_keys=True).encode())

    index.update(add)


class Remote:
    """One remote cache, used by one run (or one command); thread-safe."""

    def __init__(
        self,
        url: str,
        *,
        mode: str = "read-write",
        strict: bool = False,
        secret: bytes | None = None,
        trusted: bool = False,
        timeout: float = 10.0,
        backend: Backend | None = None,
    ) -> None:
        self.url = url
        self.mode = mode
        self.timeout = timeout
        self.strict = strict
        self.secret = secret
        self.trusted = trusted
        self.backend = backend if backend is not None else open_backend(url, timeout=timeout)
        self.stats = RemoteStats()
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._problems: list[str] = []  # to report on the caller's thread (check)
        self._reported: set[str] = set()
        self._io: ThreadPoolExecutor | None = None
        self._publisher: ThreadPoolExecutor | None = None
        self._pending: list[Future[bool]] = []
        self._damaged: set[ContentId] = set()  # remote objects found corrupt: rewritten
        self._manifest: dict[str, str] | None = None

    def __repr__(self) -> str:
        return f"Remote({self.url!r}, mode={self.mode!r})"

    @property
    def writable(self) -> bool:
        return self.mode == "read-write"

    @property
    def down(self) -> bool:
        return time.monotonic() < self._down_until

    # --- faults ---------------------------------------------------------------------------

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """fn's answer, or _DOWN when the remote is down or does not answer now."""
        if self.down:
            return _DOWN
        try:
            return fn(*args, **kwargs)
        except RemoteUnavailable as exc:
            self._fail(str(exc))
            return _DOWN

    def _fail(self, reason: str) -> None:
        with self._lock:
            self.stats.errors += 1
            if not self.down:
                self._down_until = time.monotonic() + RETRY_AFTER
                self._problems.append(
                    f"remote cache {self.url} unavailable ({reason}); going on with the local "
                    "cache only for this run"
                )

    def _problem(self, text: str, *, error: bool = False) -> None:
        with self._lock:
            if error:
                self.stats.errors += 1
            self._problems.append(text)

    def check(self) -> None:
        """Report what went wrong since the last check, once per kind: a RemoteWarning,
        or RemoteError for a strict remote. Call on the thread that owns the run."""
        with self._lock:
            problems, self._problems = self._problems, []
        for text in problems:
            kind = text.split(" (", 1)[0]
            if kind in self._reported:
                continue
            self._reported.add(kind)
            if self.strict:
                raise RemoteError(f"{text}; the remote is strict (remote_strict)")
            warnings.warn(text, RemoteWarning, stacklevel=3)

    # --- the action cache ---------------------------------------------------------------------

    def prefetch(self, pipeline: str) -> None:
        """Read the entries of the pipeline's newest published run into memory, once."""
        if self._manifest is not None:
            return
        self._manifest = {}
        data = self._call(self.backend.get, f"pipelines/{quote(pipeline, safe='')}")
        if data is _DOWN or data is None:
            return
        try:
            manifest = json.loads(data)
            entries = manifest["entries"]
            if isinstance(entries, dict):
                self._manifest = {str(k): str(v) for k, v in entries.items()}
        except (ValueError, KeyError, TypeError):
            log.warning("ignored the damaged run manifest of pipeline %r on %s", pipeline, self.url)
        with self._lock:
            self.stats.bytes_down += len(data)

    def lookup(self, key: str) -> RemoteEntry | None:
        """The verified entry stored for `key`, or None (a miss, a refused entry, no answer)."""
        raw = self._manifest.get(key) if self._manifest else None
        data: Any = raw.encode() if raw is not None else None
        if data is None:
            data = self._call(self.backend.get, f"ac/{key}")
            if data is _DOWN:
                return None
            if data is not None:
                with self._lock:
                    self.stats.bytes_down += len(data)
        if data is None:
            with self._lock:
                self.stats.misses += 1
            return None
        try:
            return RemoteEntry.decode(data, key, self.secret)
        except EntryRefused as exc:
            self.refuse(key, str(exc))
            return None

    def refuse(self, key: str, reason: str) -> None:
        """An entry found but not used: counted, and reported once per reason."""
        with self._lock:
            self.stats.refused += 1
            self.stats.misses += 1
        log.warning("ignored remote entry ac/%s on %s: %s", key, self.url, reason)
        self._problem(f"ignored entries of remote cache {self.url} ({reason})")

    def take_stats(self) -> RemoteStats:
        """The counts since the last call (they are added to the cache's totals)."""
        with self._lock:
            taken, self.stats = self.stats, RemoteStats()
        return taken

    def count_hit(self) -> None:
        with self._lock:
            self.stats.hits += 1

    def begin_run(self) -> None:
        """A new run tries a remote found down before, and reports its problems anew."""
        with self._lock:
            self._down_until = 0.0
            self._reported.clear()
            self._manifest = None

    def publish(self, entry: RemoteEntry, store: ObjectStore, *, wait_done: bool = False) -> bytes:
        """Upload the entry's objects, then the entry, in the background (bounded);
        the entry's encoding is returned."""
        data = entry.encode(self.secret)
        if not self.writable:
            return data
        if self._publisher is None:
            self._publisher = ThreadPoolExecutor(_PUBLISH_THREADS, thread_name_prefix="zc-publish")
        future = self._publisher.submit(self._publish, entry, data, store)
        with self._lock:
            self._pending.append(future)
        if wait_done:
            future.result()
        return data

    def _publish(self, entry: RemoteEntry, data: bytes, store: ObjectStore) -> bool:
        if not self.upload_artifacts(store, entry.artifacts):
            return False
        written = self._call(self.backend.put, f"ac/{entry.key}", data, create_only=False)
        if written is _DOWN:
            return False
        with self._lock:
            self.stats.bytes_up += len(data)
        return True

    def publish_run(self, pipeline: str, run_id: str, entries: dict[str, bytes]) -> None:
        """Write the run's manifest (runs/<id>) and the pipeline's pointer to it, after
        every entry it names."""
        if not self.writable or not entries:
            return
        self.wait()
        body = json.dumps(
            {
                "format": "zencache-remote-run/1",
                "pipeline": pipeline,
                "run_id": run_id,
                "entries": {k: v.decode() for k, v in sorted(entries.items())},
            },
            separators=(",", ":"),
        ).encode()
        for path in (f"runs/{run_id}", f"pipelines/{quote(pipeline, safe='')}"):
            if self._call(self.backend.put, path, body, create_only=False) is _DOWN:
                return
            with self._lock:
                self.stats.bytes_up += len(body)

    def run_manifest(self, run_id: str) -> dict[str, str] | None:
        data = self._call(self.backend.get, f"runs/{run_id}")
        if data is _DOWN or data is None:
            return None
        try:
            entries = json.loads(data)["entries"]
        except (ValueError, KeyError, TypeError):
            return None
        return {str(k): str(v) for k, v in entries.items()}

    def wait(self) -> bool:
        """Wait until every publish is durable (or failed); True when all succeeded."""
        with self._lock:
            pending, self._pending = self._pending, []
        ok = True
        for future in pending:
            try:
                ok = future.result() and ok
            except Exception as exc:  # a local object missing or corrupt, a bug: not fatal
                log.warning("could not upload to %s: %s", self.url, exc)
                self._problem(f"could not upload to remote cache {self.url} ({exc})", error=True)
                ok = False
        return ok

    # --- the content-addressed store ------------------------------------------------------------

    def upload_artifacts(self, store: ObjectStore, artifacts: Iterable[ArtifactRecord]) -> bool:
        """Every object of these artifacts on the remote (create-only); True when all are."""
        groups = dict(pack for record in artifacts for pack in artifact_packs(record))
        if not groups:
            return True
        futures = [self._pool().submit(self._upload, store, p, g) for p, g in groups.items()]
        return all(f.result() for f in futures)

    def _upload(self, store: ObjectStore, pack: ContentId, group: tuple[ContentId, ...]) -> bool:
        rewrite = pack in self._damaged
        if not rewrite and len(group) * store.chunk_size > _HEAD_ABOVE:
            found = self._call(self.backend.exists, f"cas/{pack}")
            if found is _DOWN:
                return False
            if found:
                return True
        try:
            data = b"".join(store.get(chunk) for chunk in group)
        except MissingObjectError:
            # A worker without the driver's file system uploaded it from its own cache.
            if self._call(self.backend.exists, f"cas/{pack}") is True:
                return True
            raise
        written = self._call(self.backend.put, f"cas/{pack}", data, create_only=not rewrite)
        if written is _DOWN:
            return False
        if written:
            with self._lock:
                self.stats.bytes_up += len(data)
                self.stats.objects_up += 1
                self._damaged.discard(pack)
        return True

    def fetch_blob(self, store: ObjectStore, blob: Blob) -> bool:
        """Bring the chunks of `blob` that `store` lacks from the remote, each verified."""
        wanted = []
        for index, (pack, group) in enumerate(pack_groups(blob.chunks)):
            if not all(store.contains(chunk) for chunk in group):
                wanted.append((index * PACK_CHUNKS, pack, group))
        if not wanted:
            return True
        futures = [self._pool().submit(self._fetch, store, blob, *w) for w in wanted]
        return all(f.result() for f in futures)

    def _fetch(
        self,
        store: ObjectStore,
        blob: Blob,
        first: int,
        pack: ContentId,
        group: tuple[ContentId, ...],
    ) -> bool:
        size = store.chunk_size
        for _attempt in range(2):  # a corrupt read is read once more
            data = self._call(self.backend.get, f"cas/{pack}")
            if data is _DOWN or data is None:
                if data is None:
                    log.warning("object cas/%s is missing from %s", pack, self.url)
                return False
            with self._lock:
                self.stats.bytes_down += len(data)
            view, offset, sound = memoryview(data), 0, True
            for i, chunk in enumerate(group):
                length = min(size, blob.size - (first + i) * size)
                piece = view[offset : offset + length]
                offset += length
                if len(piece) != length or digest_bytes(piece) != chunk:
                    sound = False
                    break
            if sound and offset == len(view):
                offset = 0
                for i, chunk in enumerate(group):
                    length = min(size, blob.size - (first + i) * size)
                    store.adopt(chunk, view[offset : offset + length], verified=True)
                    offset += length
                return True
            with self._lock:
                self._damaged.add(pack)
            self._problem(
                f"object cas/{pack} on remote cache {self.url} is corrupt (its bytes do not "
                "match their hash); not used, the step is recomputed",
                error=True,
            )
        return False

    def fetch_artifacts(self, store: ObjectStore, artifacts: Iterable[ArtifactRecord]) -> bool:
        ok = True
        for record in artifacts:
            for entry in record.files.values():
                if entry.chunks:
                    ok = self.fetch_blob(store, Blob(entry.size, entry.chunks)) and ok
        return ok

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._io is None:
                self._io = ThreadPoolExecutor(_IO_THREADS, thread_name_prefix="zc-remote")
            return self._io

    def close(self) -> None:
        self.wait()
        for pool in (self._publisher, self._io):
            if pool is not None:
                pool.shutdown(wait=True)
        self._publisher = self._io = None
