"""The LMDB index, `.zencache/index.lmdb`: records in, records out; no policy.

Imports records, hashing and errors only. One environment, named databases:

    meta       format version
    steps      cache key -> StepRecord
    hits       cache key -> the record's head (output ids): what a hit reads, small
               enough that a million entries stay a shallow tree; every write or
               delete of a step entry updates it in the same transaction
    artifacts  content id -> ArtifactRecord
    runs       run id (time-ordered) -> RunRecord
    envs       environment id -> EnvRecord
    latest     "pipeline/step" -> last cache key, for status and explain
    pins       run id -> when it was pinned: runs that size-limit eviction keeps
    used       cache key -> last load outside a run (float64); a run's own uses
               are its run record
    stats      a file's (device, inode) -> (size, mtime_ns, ctime_ns, its bytes digest):
               the stat memo of file inputs (inputs/trees.py owns its policy)
    trees      a folder input's tree digest -> its entries (name, kind, size, digest),
               so that `cache status` can say which files in it changed

(Leases live apart, as kernel locks: lease_slots.py.)

LMDB gives many readers and one writer across processes. The map is opened
once, at MAP_SIZE, and never resized: on a 64-bit system a map is only address
space (the file grows as pages are written), which is LMDB's own advice. So a
run's background committer can write while its driver thread reads, and several
processes can write, with no resize to coordinate (measured against growing by
doubling: benchmarks/bench_machinery.py map). Commits flush data but not the meta
page (metasync=False): an OS crash may undo the last commit, never corrupt the
index; a killed process loses nothing it committed.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import logging
import os
import struct
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar, cast

import lmdb

from ..errors import (
    CacheVersionError,
    CorruptIndexError,
    CorruptObjectError,
    ReadOnlyCacheError,
    StorageFullError,
)
from .index_check import record_sound, vouch
from .records import (
    ONE_OUTPUT_HEAD,
    RAW_ID_BYTES,
    ArtifactRecord,
    EnvRecord,
    RunRecord,
    StepRecord,
    decode_output_ids,
    hit_entry,
)
from .space import FULL_ERRNOS, full_error, human, is_nearly_full, reserve_lock_file

FORMAT = b"zencache-index/5"
# Upgraded in place when opened (see _upgrade): format 1 had no hit table,
# formats 1 and 2 kept the leases in the index, format 3 had no pins and used
# tables, and format 4 no stat memo or folder listings (opening the databases
# creates the missing tables empty).
_UPGRADABLE = tuple(f"zencache-index/{n}".encode() for n in (1, 2, 3, 4))
DATABASES = (
    "meta",
    "steps",
    "hits",
    "artifacts",
    "runs",
    "envs",
    "latest",
    "pins",
    "used",
    "stats",
    "trees",
)
_RETIRED = ("leases",)
# The most the index may ever hold: address space, not disk (the file grows as
# written). A process that cannot reserve it (an address-space limit, `ulimit -v`)
# opens a smaller map, down to _MIN_MAP_SIZE; filling that is a one-line error.
MAP_SIZE = 1 << 40 if sys.maxsize > 1 << 32 else 1 << 30
_MIN_MAP_SIZE = 64 << 20
# Last uses (the `used` table): float64 seconds, written at most once a minute per key.
_STAMP = struct.Struct("<d")
_USE_GRANULARITY = 60.0

# The head of a hit entry of one output, and where that output's raw id ends.
_ONE_OUTPUT, _HEAD = ONE_OUTPUT_HEAD, len(ONE_OUTPUT_HEAD)
_ONE_END = _HEAD + RAW_ID_BYTES

# What a damaged data.mdb raises while it is read (a flipped page, a truncated file).
DAMAGE = (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.InvalidError, lmdb.BadTxnError)

log = logging.getLogger(__name__)

T = TypeVar("T")
Op = tuple[str, bytes, bytes | None]  # database, key, value (None deletes)


def _is_full(exc: lmdb.Error, path: Path) -> bool:
    """LMDB failed for want of space: it says so (ENOSPC), or a commit's write failed
    with EIO (what LMDB reports for a short write) on a disk that is nearly full."""
    text = str(exc)
    if getattr(exc, "errno", None) in FULL_ERRNOS or os.strerror(errno.ENOSPC) in text:
        return True
    return os.strerror(errno.EIO) in text and is_nearly_full(path, 1 << 20)


def _cannot_write(exc: lmdb.Error) -> bool:
    """LMDB's open failed because this process may not write the folder or its files."""
    text = str(exc)
    return isinstance(exc, lmdb.ReadonlyError) or any(
        os.strerror(code) in text for code in (errno.EROFS, errno.EACCES, errno.EPERM)
    )


# Open indexes, so that a process's last commits are recorded sound when it exits.
_open: weakref.WeakSet[Index] = weakref.WeakSet()


@atexit.register
def _record_at_exit() -> None:
    for index in list(_open):
        with contextlib.suppress(Exception):
            index._record_sound()


def _hit_key(key: bytes) -> bytes:
    """The hit table is keyed by the raw 16 bytes of a key, not its 32 hex digits:
    half the key bytes, more rows per page, a shallower tree."""
    try:
        return bytes.fromhex(key.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return key  # not a digest (a test's or a damaged key): kept as it is


class View:
    """One transaction's consistent view across the databases: what maintenance
    decides from. It never outlives the `Index.view` or `Index.update` call that
    made it, and no LMDB type leaves this module through it."""

    __slots__ = ("_dbs", "_txn")

    def __init__(self, txn: lmdb.Transaction, dbs: dict[str, lmdb._Database]) -> None:
        self._txn = txn
        self._dbs = dbs

    def get(self, db: str, key: bytes) -> bytes | None:
        return _get(self._txn, key, self._dbs[db])

    def items(self, db: str, prefix: bytes = b"") -> list[tuple[bytes, bytes]]:
        """The database's entries (under `prefix`), in key order."""
        return _collect(self._txn, self._dbs[db], prefix)

    def keys(self, db: str) -> list[bytes]:
        return _keys(self._txn, self._dbs[db])

    def count(self, db: str) -> int:
        return int(self._txn.stat(self._dbs[db])["entries"])


class Update(View):
    """A View that also writes, in the one transaction it reads from: what
    maintenance decides and what it deletes cannot drift apart. A step entry's
    hit-table row follows the entry, as in `Index.write`."""

    __slots__ = ()

    def put(self, db: str, key: bytes, value: bytes) -> None:
        _apply(self._txn, self._dbs, ((db, key, value),))

    def delete(self, db: str, key: bytes) -> bool:
        """Delete an entry; whether it was there."""
        if db == "steps":
            self._txn.delete(_hit_key(key), db=self._dbs["hits"])
        return bool(self._txn.delete(key, db=self._dbs[db]))

    def clear(self, db: str) -> None:
        """Empty a database (and the hit table with the steps); the database stays."""
        self._txn.drop(self._dbs[db], delete=False)
        if db == "steps":
            self._txn.drop(self._dbs["hits"], delete=False)


def _collect(txn: lmdb.Transaction, db: lmdb._Database, prefix: bytes) -> list[tuple[bytes, bytes]]:
    cursor = txn.cursor(db=db)
    if prefix and not cursor.set_range(prefix):
        return []
    out = []
    for key, value in cast("Iterator[tuple[bytes, bytes]]", cursor.iternext()):
        if not key.startswith(prefix):
            break
        out.append((key, value))
    return out


# lmdb's stubs type keys and values `bytes | memoryview`: memoryviews come only from
# transactions begun with buffers=True, which this module never begins.
def _get(txn: lmdb.Transaction, key: bytes, db: lmdb._Database | None = None) -> bytes | None:
    return cast("bytes | None", txn.get(key, db=db))


def _keys(txn: lmdb.Transaction, db: lmdb._Database | None = None) -> list[bytes]:
    return cast("list[bytes]", list(txn.cursor(db=db).iternext(values=False)))


def _apply(txn: lmdb.Transaction, dbs: dict[str, lmdb._Database], ops: Iterable[Op]) -> None:
    """Puts and deletes; a step entry's hit-table row follows it in the same txn."""
    for db, key, value in ops:
        if value is None:
            txn.delete(key, db=dbs[db])
        else:
            txn.put(key, value, db=dbs[db])
        if db == "steps":
            hit = None if value is None else hit_entry(value)
            if hit is None:
                txn.delete(_hit_key(key), db=dbs["hits"])
            else:
                txn.put(_hit_key(key), hit, db=dbs["hits"])


class Index:
    """A handle on one index environment; cheap to keep open for a process's life."""

    def __init__(self, path: str | os.PathLike[str], *, map_size: int = MAP_SIZE) -> None:
        self.path = Path(path)
        self._local = threading.local()  # this thread's lookup snapshot: step_output_ids
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise CorruptIndexError(
                f"{self.path} is a file, not an index folder; move it away or delete it"
            ) from exc
        # Damage LMDB would abort or fault on (a truncated file, a damaged page) is a
        # CorruptIndexError here, found in a child process when the file changed since
        # it was last known sound (index_check.vouch).
        vouch(self.path)
        self._committed: int | None = None  # this process's last commit (its txn id)
        # Per pipeline, the latest pointers as this process's last write_run left them,
        # with that commit's id (see write_run).
        self._latest: dict[str, tuple[int, dict[str, str]]] = {}
        self._damaged_keys: set[str] = set()  # hit entries found damaged (warned about)
        reserve_lock_file(self.path / "lock.mdb", self.path.parent)  # a full disk: SIGBUS
        # Set when this process may read the index but not write it (a read-only mount,
        # a cache of another user): reads work, writes raise ReadOnlyCacheError.
        self.read_only = ""
        try:
            try:
                self.env = self._open_env(map_size)
            except lmdb.Error as exc:
                if not _cannot_write(exc):
                    raise
                self.read_only = str(exc).rpartition(": ")[2] or "read-only"
                self.env = self._open_env(map_size, read_only=True)
        except lmdb.InvalidError as exc:
            raise CorruptIndexError(
                f"{self.path} is not a zencache index (damaged or foreign LMDB file); "
                f"move it away or delete it to start an empty cache ({exc})"
            ) from exc
        except lmdb.Error as exc:
            if _is_full(exc, self.path):
                raise full_error(self.path.parent, 64 << 10, "creating the index") from exc
            raise CorruptIndexError(f"cannot open the index at {self.path}: {exc}") from exc
        try:
            # Free the reader slots of processes that died (kill -9) holding a snapshot,
            # so their pages can be reused instead of growing the file.
            if not self.read_only:
                self.env.reader_check()
            self._refuse_foreign()
            self._dbs = self._open_dbs()
            self._steps, self._hits = self._dbs["steps"], self._dbs["hits"]
            self._check_format()
        except BaseException:
            # A refused environment left open could never be opened again in this process.
            self.env.close()
            raise
        _open.add(self)

    def close(self) -> None:
        self.end_snapshot()
        self._record_sound()
        self.env.close()
        _open.discard(self)

    def _record_sound(self) -> None:
        """Note the file's state as sound when this process made its last commit, so
        that the next open need not read it through again (index_check.record_sound)."""
        if self._committed is not None and not self.read_only:
            record_sound(self.path, self._committed)
            self._committed = None

    # --- generic access -----------------------------------------------------------------

    def get(self, db: str, key: bytes) -> bytes | None:
        return self._read(lambda txn: _get(txn, key, self._dbs[db]))

    def items(self, db: str, prefix: bytes = b"") -> list[tuple[bytes, bytes]]:
        """A consistent snapshot of a database's entries, in key order."""
        return self._read(lambda txn: _collect(txn, self._dbs[db], prefix))

    def get_many(self, db: str, keys: list[bytes]) -> list[bytes | None]:
        """Several values of one database, read in one transaction."""
        handle = self._dbs[db]
        return self._read(lambda txn: [_get(txn, key, handle) for key in keys])

    def keys(self, db: str) -> list[bytes]:
        return self._read(lambda txn: _keys(txn, self._dbs[db]))

    def last(self, db: str) -> tuple[bytes, bytes] | None:
        def find(txn: lmdb.Transaction) -> tuple[bytes, bytes] | None:
            cursor = txn.cursor(db=self._dbs[db])
            found = (cursor.key(), cursor.value()) if cursor.last() else None
            return cast("tuple[bytes, bytes] | None", found)

        return self._read(find)

    def count(self, db: str) -> int:
        return self._read(lambda txn: txn.stat(self._dbs[db])["entries"])

    def write(self, ops: Iterable[Op]) -> None:
        """Apply puts and deletes in one transaction."""
        ops = list(ops)
        self._transact(lambda txn: _apply(txn, self._dbs, ops))

    def view(self, fn: Callable[[View], T]) -> T:
        """`fn` over one read transaction: a consistent snapshot across databases."""
        return self._read(lambda txn: fn(View(txn, self._dbs)))

    def update(self, fn: Callable[[Update], T]) -> T:
        """`fn` over one write transaction, committed when it returns (nothing of it
        when it raises)."""
        return self._transact(lambda txn: fn(Update(txn, self._dbs)))

    def write_run(self, run: RunRecord, env: EnvRecord | None, latest: dict[str, str]) -> None:
        """A run record, its environment (unless the index has it) and the pipeline's
        latest pointers (step name -> key), in one transaction."""
        prefix = f"{run.pipeline}/".encode()
        # What the pipeline's pointers were after this process's last write of them,
        # and that commit's id: gone if this one fails, and trusted only when no other
        # commit (of any process) came between.
        known = self._latest.pop(run.pipeline, None)
        pointers: dict[str, str] = {}

        def transaction(txn: lmdb.Transaction) -> int:
            txn.put(run.run_id.encode(), run.encode(), db=self._dbs["runs"])
            if env is not None and txn.get(env.env_id.encode(), db=self._dbs["envs"]) is None:
                txn.put(env.env_id.encode(), env.encode(), db=self._dbs["envs"])
            # A rerun mostly finds the keys it would write: rewriting them would
            # dirty (and fsync) every page of the table for nothing. One scan of the
            # pipeline's pointers, in key order, is cheaper than a get per step, and
            # a run that follows this process's last one needs neither.
            committing: int = txn.id()
            if known is not None and known[0] == committing - 1:
                pointers.update(known[1])
            else:
                start = len(prefix)
                pointers.update(
                    (name[start:].decode(errors="surrogateescape"), value.decode(errors="replace"))
                    for name, value in _collect(txn, self._dbs["latest"], prefix)
                )
            for step, key in latest.items():
                if pointers.get(step) != key:
                    txn.put(prefix + step.encode(), key.encode(), db=self._dbs["latest"])
                    pointers[step] = key
            return committing

        self._latest[run.pipeline] = (self._transact(transaction), pointers)
        self._record_sound()  # the end of a run: the next process need not check the file

    def _transact(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        """Run `fn` in a write transaction, committed when it returns."""
        if self.read_only:
            raise self.read_only_error("record anything")
        try:
            with self.env.begin(write=True) as txn:
                result = fn(txn)
                committing = txn.id()
            self._committed = committing
            return result
        except (lmdb.MapFullError, lmdb.MapResizedError) as exc:
            raise self._map_error(exc) from exc
        except lmdb.DiskError as exc:
            raise self._full_error(exc) from exc
        except DAMAGE as exc:
            raise self._damaged_error(exc) from exc
        except lmdb.Error as exc:
            if _is_full(exc, self.path):
                raise self._full_error(exc) from exc
            raise

    def read_only_error(self, action: str) -> ReadOnlyCacheError:
        return ReadOnlyCacheError(
            f"the cache at {self.path.parent} is read-only here ({self.read_only}), so "
            f"zencache cannot {action}; what it holds can be read, and runs serve its hits: "
            "point --cache-dir or ZENCACHE_DIR at a writable folder to record new results"
        )

    # --- typed records --------------------------------------------------------------------

    def step_output_ids(self, key: str, *, snapshot: bool = False) -> tuple[str, ...] | None:
        """The hit path: one read transaction, no JSON.

        `snapshot=True` reads from this thread's lookup snapshot, one read
        transaction kept open across lookups (its begin and end cost more than the
        get) until `end_snapshot`. A run uses it for a streak of hits and ends it
        before anything else: it sees nothing committed after it began.
        """
        if snapshot:
            return self.hit_lookup()(key)
        try:
            with self.env.begin(db=self._hits) as txn:
                return self._lookup(txn)(key)
        except lmdb.MapResizedError as exc:
            raise self._map_error(exc) from exc
        except DAMAGE as exc:
            raise self._damaged_error(exc) from exc

    def hit_lookup(self) -> Callable[[str], tuple[str, ...] | None]:
        """`step_output_ids(key, snapshot=True)` as one function, for a run's streak of
        hits: the snapshot is found once, not per step (at ~10 µs a cached step, each
        call layer of the old path was 1% of it). Valid until `end_snapshot`."""
        txn = getattr(self._local, "snapshot", None)
        if txn is None:
            try:
                txn = self._local.snapshot = self.env.begin(db=self._hits)
            except lmdb.MapResizedError as exc:
                raise self._map_error(exc) from exc
            except DAMAGE as exc:
                raise self._damaged_error(exc) from exc
        return self._lookup(txn)

    def _lookup(self, txn: lmdb.Transaction) -> Callable[[str], tuple[str, ...] | None]:
        get = cast("Callable[[bytes], bytes | None]", txn.get)  # no buffers=True: bytes

        def lookup(key: str) -> tuple[str, ...] | None:
            try:
                try:
                    raw = bytes.fromhex(key)
                except ValueError:
                    raw = key.encode()  # as _hit_key keeps a key that is not a digest
                value = get(raw)
                if value is None:
                    return None
                if value[:_HEAD] == _ONE_OUTPUT:  # most entries: decode_output_ids, inlined
                    return (value[_HEAD:_ONE_END].hex(),)
                return decode_output_ids(value)
            except lmdb.MapResizedError as exc:
                raise self._map_error(exc) from exc
            except DAMAGE as exc:
                self.end_snapshot()
                raise self._damaged_error(exc) from exc
            except (ValueError, struct.error):
                # A damaged entry is a miss: the step re-executes and its commit replaces it.
                if key not in self._damaged_keys:  # said once (a lease looks it up again)
                    self._damaged_keys.add(key)
                    log.warning("the index entry of step key %s is damaged; re-executing it", key)
                return None

        return lookup

    def record_use(self, keys: Iterable[str], now: float | None = None) -> None:
        """Note that step entries' outputs were loaded outside a run (size-limit LRU).

        A run's own hits need no call: its run record names them. Unsynced and
        coarse (a use less than a minute after the recorded one is not written):
        losing one to a crash only makes an entry look a little older. Not noted at
        all on a read-only index: reading what it holds must not fail for an advisory
        write.
        """
        if self.read_only:
            return  # a cache this process may only read: its LRU is its writer's business
        now = time.time() if now is None else now

        def stale(txn: lmdb.Transaction) -> list[bytes]:
            used = self._dbs["used"]
            return [
                key.encode()
                for key in keys
                if (found := txn.get(key.encode(), db=used)) is None
                or _STAMP.unpack(found)[0] < now - _USE_GRANULARITY
            ]

        changed = self._read(stale)
        if changed:
            stamp = _STAMP.pack(now)
            self.write([("used", key, stamp) for key in changed])

    def end_snapshot(self) -> None:
        """End the lookup snapshot, so that the pages it pins can be reused."""
        txn = getattr(self._local, "snapshot", None)
        if txn is not None:
            self._local.snapshot = None
            txn.abort()

    def get_step(self, key: str) -> StepRecord | None:
        value = self.get("steps", key.encode())
        return None if value is None else self._decode("step entry", key, StepRecord.decode, value)

    def get_artifact(self, content_id: str) -> ArtifactRecord | None:
        """The record stored under `content_id`; CorruptObjectError unless it is that
        artifact's (a damaged or swapped record must never load another value)."""
        value = self.get("artifacts", content_id.encode())
        if value is None:
            return None
        try:
            record = ArtifactRecord.decode(value)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise CorruptObjectError(
                f"the index record of artifact {content_id} in {self.path} cannot be decoded "
                f"({exc}); run 'zencache cache verify --repair', then rerun the pipeline",
                object_id=content_id,
            ) from exc
        if record.content_id != content_id:
            raise CorruptObjectError(
                f"the index record stored for artifact {content_id} in {self.path} describes "
                f"artifact {record.content_id}; run 'zencache cache verify --repair', then "
                "rerun the pipeline",
                object_id=content_id,
            )
        return record

    def get_run(self, run_id: str) -> RunRecord | None:
        value = self.get("runs", run_id.encode())
        return (
            None if value is None else self._decode("run record", run_id, RunRecord.decode, value)
        )

    def get_env(self, env_id: str) -> EnvRecord | None:
        value = self.get("envs", env_id.encode())
        return None if value is None else EnvRecord.decode(value)

    def latest_key(self, pipeline: str, step: str) -> str | None:
        value = self.get("latest", f"{pipeline}/{step}".encode())
        return None if value is None else value.decode()

    def iter_steps(self) -> Iterator[StepRecord]:
        for _, value in self.items("steps"):
            yield StepRecord.decode(value)

    # --- internals ------------------------------------------------------------------------

    def _read(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        try:
            with self.env.begin() as txn:
                return fn(txn)
        except lmdb.MapResizedError as exc:
            raise self._map_error(exc) from exc
        except DAMAGE as exc:
            raise self._damaged_error(exc) from exc

    def _damaged_error(self, exc: Exception) -> CorruptIndexError:
        return CorruptIndexError(
            f"the index at {self.path} is damaged ({exc}); run 'zencache cache verify "
            "--repair' to copy what is readable into a new index, or move it away or delete "
            "it: the next run starts a new index, re-executing steps once (their stored "
            "objects are reused)"
        )

    def _decode(self, kind: str, key: str, decode: Callable[[bytes], T], value: bytes) -> T:
        try:
            return decode(value)
        except (ValueError, TypeError, KeyError, AttributeError, struct.error) as exc:
            raise CorruptIndexError(
                f"the {kind} {key} in the index at {self.path} cannot be decoded ({exc}); "
                "run 'zencache cache verify --repair'"
            ) from exc

    def _map_error(self, exc: lmdb.Error) -> StorageFullError:
        """The index outgrew this process's map: it filled it, or another process wrote
        past it. Only a map smaller than MAP_SIZE can meet this in practice (an
        address-space limit, or a test's tiny map); the process's transaction was
        aborted and everything committed is intact."""
        size = self.env.info()["map_size"]
        why = (
            f"this process could map only {human(size)} of the {human(MAP_SIZE)} zencache "
            "asks for (an address-space limit, 'ulimit -v'?): raise the limit and rerun"
            if size < MAP_SIZE
            else "run 'zencache cache gc' to drop what no run needs"
        )
        code = str(exc).partition(": ")[2].partition(":")[0] or type(exc).__name__
        return StorageFullError(
            f"the index at {self.path} has outgrown the {human(size)} this process maps "
            f"({code}); {why}: nothing already cached was lost"
        )

    def _full_error(self, exc: Exception) -> StorageFullError:
        # A commit writes new copies of the pages it changes and of the path up to
        # the root: a few pages per entry, and the map's growth step at most.
        needed = min(max(1 << 20, 4 * (self.path / "data.mdb").stat().st_size // 100), 64 << 20)
        return full_error(self.path.parent, needed, f"a commit to the index {self.path} ({exc})")

    def _open_env(self, map_size: int, read_only: bool = False) -> lmdb.Environment:
        if read_only:
            # No lock file either (it cannot be written): this reader is not registered,
            # so a writer running at the same time (the owner's) may reuse pages under
            # it; such a read fails as damage, and a rerun reads the present.
            with contextlib.suppress(OSError):
                map_size = max(map_size, (self.path / "data.mdb").stat().st_size)
            return lmdb.open(
                str(self.path),
                map_size=map_size,
                max_dbs=len(DATABASES) + 1,
                readonly=True,
                lock=False,
                readahead=False,
                create=False,
            )
        while True:
            try:
                return lmdb.open(
                    str(self.path),
                    map_size=map_size,
                    max_dbs=len(DATABASES) + 1,
                    metasync=False,
                    readahead=False,
                    max_readers=254,
                )
            except (lmdb.MemoryError, lmdb.InvalidParameterError):
                # No address space for the map (`ulimit -v`, many caches open at once;
                # valgrind and some sandboxes say EINVAL): a smaller one works until
                # the index outgrows it (see _map_error). A file that is no index
                # fails at every size, and the smallest one's error is raised.
                if map_size <= _MIN_MAP_SIZE:
                    raise
                map_size = max(_MIN_MAP_SIZE, map_size // 8)

    def _open_dbs(self) -> dict[str, lmdb._Database]:
        if self.read_only:
            try:
                return {name: self.env.open_db(name.encode(), create=False) for name in DATABASES}
            except lmdb.Error as exc:
                raise self.read_only_error("bring its index up to date") from exc
        try:
            return {name: self.env.open_db(name.encode()) for name in DATABASES}
        except (lmdb.MapFullError, lmdb.MapResizedError) as exc:
            raise self._map_error(exc) from exc
        except lmdb.Error as exc:
            if _is_full(exc, self.path):
                raise self._full_error(exc) from exc
            raise CorruptIndexError(
                f"{self.path} is not a zencache index ({exc}); move it away or delete it"
            ) from exc

    def _refuse_foreign(self) -> None:
        """An LMDB file of another program holds keys we would never write."""
        names = self._read(lambda txn: {key.decode(errors="replace") for key in _keys(txn)})
        foreign = names - set(DATABASES) - set(_RETIRED)
        if foreign:
            raise CorruptIndexError(
                f"{self.path} is an LMDB file of another program (it holds "
                f"{sorted(foreign)[0]!r}); point --cache-dir or ZENCACHE_DIR at another folder"
            )

    def _upgrade(self, txn: lmdb.Transaction) -> None:
        """Bring formats 1 to 4 to the current one, in one transaction."""
        found = txn.get(b"format", db=self._dbs["meta"])
        if found not in _UPGRADABLE:
            return  # another process upgraded it meanwhile
        if found == b"zencache-index/1":  # build the hit table from the step entries
            for key, value in _collect(txn, self._steps, b""):
                hit = hit_entry(value)
                if hit is not None:
                    txn.put(_hit_key(key), hit, db=self._hits)
        for name in _RETIRED:
            if txn.get(name.encode()) is not None:
                txn.drop(self.env.open_db(name.encode(), txn=txn, create=False), delete=True)
        txn.put(b"format", FORMAT, db=self._dbs["meta"])

    def _check_format(self) -> None:
        meta = self._dbs["meta"]
        found = self._read(lambda txn: _get(txn, b"format", meta))
        if found == FORMAT:
            return
        if found in _UPGRADABLE:
            if self.read_only:
                raise self.read_only_error("upgrade its index to this version's format")
            self._transact(self._upgrade)
            return
        if found is None and self.read_only:
            return  # a new, empty index: nothing to read
        if found is not None:
            raise CacheVersionError(
                f"the cache at {self.path.parent} was written by another zencache format "
                f"({found.decode(errors='replace')}; this version reads {FORMAT.decode()}); "
                "use a zencache release that matches it, or point --cache-dir elsewhere"
            )

        def initialise(txn: lmdb.Transaction) -> None:
            if txn.get(b"format", db=meta) is None:
                txn.put(b"format", FORMAT, db=meta)

        self._transact(initialise)
