"""The content-addressed object store under `.zencache/objects/`.

Owns bytes on disk and nothing else: an object's name is the xxh3_128 of its
bytes, so identical content is stored once. Imports only hashing and errors.
Writes are atomic (temporary file in the same folder, fsync, rename), every read
verifies the digest, and large blobs are split into fixed-size chunks so that a
new version differing in 1% of its bytes stores about 1% new bytes.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import mmap
import os
import re
import shutil
import stat
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..errors import CorruptObjectError, MissingObjectError, StoreError
from ..hashing import ContentId, digest_bytes
from .space import FULL_ERRNOS, full_error

log = logging.getLogger(__name__)


class Fetcher(Protocol):
    """Fills this store with objects it lacks (the remote cache's read-through).
    Defined here, not in protocols.py, because the store is the layer that calls it."""

    def fetch_blob(self, store: ObjectStore, blob: Blob) -> bool:
        """Write every chunk of `blob` into `store`, verified; False when it cannot."""
        ...


# Fixed chunks keep reads simple (a chunk's offset is index * size) and dedupe
# in-place edits of arrays well: 128 KiB stores ~1.1x for 10 versions of a 64 MiB
# array with 1% of rows changed (benchmarks/README.md), at 512 files a version.
CHUNK_SIZE = 128 << 10

# Much shorter than gc's grace period (10 minutes by default); see _freshen.
FRESHEN_AFTER = 60.0

_PARALLEL_CHUNKS = 8  # below this, a thread pool costs more than it saves
# Chunks (32 MiB); below this a second verifying thread costs more than it saves
# (measured: 8 MiB 1.6 -> 1.7 ms, 32 MiB 5.3 -> 4.5 ms, 256 MiB 36 -> 27 ms).
_PARALLEL_VERIFY = 256
_WRITER_THREADS = 8
_OBJECT_NAME = re.compile(r"^[0-9a-f]{30}$")
_TMP_PREFIX = ".tmp-"
# An object that is not there: its file is missing, or a file stands where its
# shard folder should be (then writing it says so: _write_atomically).
_ABSENT = (FileNotFoundError, NotADirectoryError)
# Reads never follow a link in an object's place and never block on a FIFO.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True, slots=True)
class Blob:
    """A stored byte string: its total size and the ids of its chunks, in order."""

    size: int
    chunks: tuple[ContentId, ...]


class ObjectStore:
    """Immutable objects in `root/ab/cdef...`; temporary files start with `.tmp-`."""

    def __init__(self, root: str | os.PathLike[str], *, chunk_size: int = CHUNK_SIZE) -> None:
        self.root = Path(root)
        self.chunk_size = chunk_size
        # Ids found damaged by a read in this process: a later put rewrites them
        # even though a file of that name exists.
        self._damaged: set[ContentId] = set()
        self._seen_damage = False
        # Asked for the chunks of a blob this store lacks (or holds damaged): the
        # remote cache's read-through (Fetcher, above). None: a miss is a miss.
        self.fetcher: Fetcher | None = None
        self._shards: set[Path] = set()  # shard folders seen to be real folders

    def distrust_existing(self) -> None:
        """From now on, re-hash an existing object before deduplicating against it (and
        rewrite it when damaged), not only once damage has been seen: a forced rerun
        (`--no-cache`) repairs what it writes, damaged chunks of the right size too."""
        self._seen_damage = True

    # --- single objects ---------------------------------------------------------

    def path(self, object_id: ContentId) -> Path:
        return self.root / object_id[:2] / object_id[2:]

    def contains(self, object_id: ContentId) -> bool:
        return object_id not in self._damaged and self.path(object_id).exists()

    def put(self, data: Any) -> ContentId:
        """Store bytes-like `data`; return its id. Durable when this returns."""
        view = memoryview(data).cast("B")
        return self._put(view, digest_bytes(view))

    def adopt(self, object_id: ContentId, data: Any, *, verified: bool = False) -> None:
        """Store bytes fetched from elsewhere under their id, replacing a damaged copy;
        CorruptObjectError when they are not that object. Not fsynced: a copy torn by a
        power cut fails its hash on the next read and is fetched again, and syncing
        each 128 KiB chunk made a pull 5x slower than the network."""
        view = memoryview(data).cast("B")
        if not verified and digest_bytes(view) != object_id:
            raise CorruptObjectError(
                f"bytes offered for object {object_id} do not match its hash; not stored",
                object_id=object_id,
            )
        self._write_atomically(self.path(object_id), view, sync=False)
        self._damaged.discard(object_id)

    def _put(self, view: memoryview, object_id: ContentId) -> ContentId:
        target = self.path(object_id)
        if object_id not in self._damaged and self._is_intact(target, object_id, len(view)):
            self._freshen(target)
            return object_id
        self._write_atomically(target, view)
        self._damaged.discard(object_id)
        return object_id

    @staticmethod
    def _freshen(target: Path) -> None:
        """Touch an old object that is about to be referenced again (as git does).

        gc spares objects younger than its grace period (maintenance.py), so a
        run that dedupes against an unreferenced object must make it young
        before committing a reference to it. Objects touched within a minute are
        left alone, to spare the hot path a metadata write per chunk.
        """
        with contextlib.suppress(OSError):
            if target.stat().st_mtime < time.time() - FRESHEN_AFTER:
                os.utime(target)

    def _is_intact(self, target: Path, object_id: ContentId, size: int) -> bool:
        """Whether an existing file can stand for new bytes of this id.

        Its size is enough while no damage has been seen. Once a read in this
        process found a damaged object, its neighbours are suspect too (a rerun
        that repairs one chunk must repair them all), so they are re-hashed.
        """
        try:
            info = target.lstat()
        except _ABSENT:
            return False
        if not stat.S_ISREG(info.st_mode) or info.st_size != size:
            return False  # a link, a FIFO, a folder: replaced by a real object
        if not self._seen_damage:
            return True
        try:
            with self._open(object_id) as fh:
                return digest_bytes(fh.read(size + 1)) == object_id
        except (CorruptObjectError, MissingObjectError):
            return False

    def get(self, object_id: ContentId) -> bytes:
        """The object's bytes, verified against its id."""
        data = self._read_file(object_id)
        self._check(object_id, data)
        return data

    def _get_into(self, object_id: ContentId, buffer: memoryview) -> None:
        """Read the object into `buffer` (exactly its size) and verify it there."""
        with self._open(object_id) as fh:
            got = fh.readinto(buffer)
            extra = fh.read(1)
        if got != len(buffer) or extra:
            raise self._corrupt(object_id, "has the wrong size")
        self._check(object_id, buffer)

    def verify(self, object_id: ContentId) -> None:
        """Raise MissingObjectError or CorruptObjectError unless the object is sound."""
        self.get(object_id)

    def delete(self, object_id: ContentId) -> bool:
        """Remove the object's name from its shard; never anything outside the store
        (a shard that is a link elsewhere is left alone). A folder where the object
        should be is removed too: it is in the store's way."""
        path = self.path(object_id)
        if not self._real_shard(path.parent):
            return False
        try:
            if stat.S_ISDIR(path.lstat().st_mode):
                shutil.rmtree(path)  # does not follow links inside it
            else:
                path.unlink()
        except _ABSENT:
            return False
        return True

    def modified(self, object_id: ContentId) -> float | None:
        """The object file's mtime (written or freshened); None when absent."""
        try:
            return os.stat(self.path(object_id)).st_mtime
        except _ABSENT:
            return None

    def iter_objects(self) -> Iterator[tuple[ContentId, int]]:
        """Every stored object with its size on disk; temporary files are skipped."""
        if not self.root.is_dir():
            return
        with os.scandir(self.root) as it:
            # A shard that is a link may lead out of the store, or back into it: skipped.
            shards = sorted(
                (e.name, e.path) for e in it if len(e.name) == 2 and e.is_dir(follow_symlinks=False)
            )
        for name, path in shards:
            with os.scandir(path) as entries:
                # Whatever stands under an object's name is listed (a link, a FIFO, a
                # folder: reads refuse them, verify names them), sized without following.
                found = [
                    (e.name, e.stat(follow_symlinks=False).st_size)
                    for e in entries
                    if _OBJECT_NAME.match(e.name)
                ]
            for entry_name, size in found:
                yield name + entry_name, size

    def iter_temporary(self) -> Iterator[Path]:
        """Leftovers of interrupted writes (safe to delete when no writer is running)."""
        if not self.root.is_dir():
            return
        with os.scandir(self.root) as it:
            shards = [e.path for e in it if e.is_dir(follow_symlinks=False)]
        for path in shards:
            with os.scandir(path) as entries:
                found = [e.path for e in entries if e.name.startswith(_TMP_PREFIX)]
            yield from (Path(p) for p in found)

    # --- chunked blobs --------------------------------------------------------------

    def put_blob(self, data: Any) -> Blob:
        view = memoryview(data).cast("B")
        size = self.chunk_size
        pieces = [view[i : i + size] for i in range(0, len(view), size)]
        # Every chunk hashed in one pass first: interleaved with the writes, the
        # hashing of a 1 GiB array ran at 6 GB/s instead of memory speed (~15).
        ids = [digest_bytes(piece) for piece in pieces]
        if len(pieces) < _PARALLEL_CHUNKS:
            chunks = tuple(self._put(piece, i) for piece, i in zip(pieces, ids, strict=True))
        else:
            # Each chunk is still written, fsynced and renamed on its own, in order;
            # threads only overlap the waits: the journal commits concurrent fsyncs
            # together, so a 1 GiB blob is written ~4x faster than one chunk at a time.
            with ThreadPoolExecutor(_WRITER_THREADS, thread_name_prefix="zencache-put") as pool:
                chunks = tuple(pool.map(self._put, pieces, ids))
        return Blob(len(view), chunks or (self.put(b""),))

    def read_blob(self, blob: Blob) -> bytearray:
        buffer = bytearray(blob.size)
        try:
            self._read_blob_into(blob, memoryview(buffer))
        except (MissingObjectError, CorruptObjectError):
            if not self._fetch(blob):
                raise
            self._read_blob_into(blob, memoryview(buffer))
        return buffer

    def _fetch(self, blob: Blob) -> bool:
        """Ask the fetcher for a blob found missing or damaged; True when it is whole now."""
        if self.fetcher is None:
            return False
        if not self.fetcher.fetch_blob(self, blob):
            return False
        self._seen_damage = bool(self._damaged)
        return True

    def _read_blob_into(self, blob: Blob, buffer: memoryview) -> None:
        """Fill `buffer` with the blob's bytes, verifying each chunk as it lands."""
        if len(buffer) != blob.size:
            raise ValueError(f"buffer of {len(buffer)} bytes for a blob of {blob.size}")
        size = self.chunk_size
        for i, chunk in enumerate(blob.chunks):
            piece = buffer[i * size : min((i + 1) * size, blob.size)]
            self._get_into(chunk, piece)

    def map_blob(self, blob: Blob) -> memoryview:
        """The blob's bytes as one contiguous copy-on-write view of its chunk files.

        Each chunk file is mapped at its offset inside one reserved region, so a
        256 MiB array is read from the page cache in place, never copied; each
        chunk is verified once it is mapped. Writes to the view stay private to
        this process (MAP_PRIVATE), the files are never touched. Where chunks
        cannot be mapped (not Linux, a chunk size that is not a multiple of the
        page size, the process out of mappings), the bytes are read into memory
        as read_blob does.
        """
        try:
            return self._map_blob(blob)
        except (MissingObjectError, CorruptObjectError):
            if not self._fetch(blob):
                raise
            return self._map_blob(blob)

    def _map_blob(self, blob: Blob) -> memoryview:
        size = self.chunk_size
        if blob.size == 0 or not _MAP_FIXED_WORKS or size % mmap.ALLOCATIONGRANULARITY:
            return memoryview(self.read_blob(blob))
        pages = -(-blob.size // mmap.PAGESIZE) * mmap.PAGESIZE
        region = mmap.mmap(-1, pages, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        base = _address_of(region)
        try:
            mapped = self._map_chunks(blob, base)
        except BaseException:
            region.close()  # a chunk missing or damaged: the fetcher may bring it
            raise
        if not mapped:
            region.close()
            log.warning(
                "read a blob of %d bytes into memory instead of mapping it: the process "
                "has as many memory mappings as it may (sysctl vm.max_map_count); each "
                "%d-byte chunk of a mapped blob takes one",
                blob.size,
                size,
            )
            return memoryview(self.read_blob(blob))
        view = memoryview(region)[: blob.size]
        self._verify_mapped(blob, view, base, pages)
        return view

    # --- internals ------------------------------------------------------------------

    def _map_chunks(self, blob: Blob, base: int) -> bool:
        """Map each chunk file of `blob` at its offset from `base`, copy-on-write.

        False when the process is out of mappings: each chunk is a mapping of its
        own and Linux allows ~65,000 by default, so an 8 GiB blob (or a few smaller
        ones held at once) does not fit.
        """
        map_fixed = _libc().mmap
        prot, flags = mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | _MAP_FIXED
        root, size, last = os.fspath(self.root), self.chunk_size, len(blob.chunks) - 1
        address = base
        for i, chunk in enumerate(blob.chunks):
            length = size if i < last else blob.size - last * size
            try:
                fd = os.open(f"{root}/{chunk[:2]}/{chunk[2:]}", _READ_FLAGS)
            except _ABSENT as exc:
                raise self._missing(chunk) from exc
            except OSError as exc:  # a link (ELOOP): objects are regular files
                raise self._corrupt(chunk, f"cannot be read ({exc.strerror})") from exc
            try:
                # Beyond a file's end a map would SIGBUS. lseek, not fstat: the size
                # without building a stat_result, 0.4 ms instead of 1.5 for 2,048 chunks.
                # A FIFO cannot seek, a folder or device has no such size: all refused.
                try:
                    end = os.lseek(fd, 0, os.SEEK_END)
                except OSError:
                    end = -1
                if end != length or not self._real_shard(Path(root, chunk[:2])):
                    raise self._corrupt(chunk, "has the wrong size or is not a regular file")
                if map_fixed(address, length, prot, flags, fd, 0) != address:
                    code = _last_errno()
                    if code == errno.ENOMEM:
                        return False
                    raise StoreError(f"cannot map object {chunk} into memory: {os.strerror(code)}")
            finally:
                os.close(fd)
            address += size
        return True

    def _verify_mapped(self, blob: Blob, view: memoryview, base: int, length: int) -> None:
        """Check every chunk of a blob just mapped at `base`; raise for the first damaged one.

        Page tables are filled with one madvise(MADV_POPULATE_READ), which keeps
        copy-on-write (the page-by-page faults of the verifying read cost as much
        as the read). For a large blob a second thread fills them while this one
        starts verifying, then joins in: both take chunks from one shared iterator
        (each index is taken once). xxhash releases the GIL for inputs above 64 KiB
        and one core reads memory at about half the speed two do. Mapping stays on
        this thread alone: page faults and mmap calls contend for the same lock.
        """
        size, chunks = self.chunk_size, blob.chunks
        pending = iter(range(len(chunks)))
        damaged: list[int] = []

        def verify() -> None:
            for i in pending:
                if digest_bytes(view[i * size : (i + 1) * size]) != chunks[i]:
                    damaged.append(i)

        def populate() -> None:
            # Errors are harmless (EINVAL before Linux 5.14): the read faults pages in.
            _libc().madvise(base, length, _MADV_POPULATE_READ)

        if len(chunks) < _PARALLEL_VERIFY:
            populate()
            verify()
        else:
            failures: list[BaseException] = []

            def helper() -> None:
                try:
                    populate()
                    verify()
                except BaseException as exc:  # re-raised on the calling thread
                    failures.append(exc)

            worker = threading.Thread(target=helper, name="zencache-verify")
            worker.start()
            try:
                verify()
            finally:
                worker.join()
            if failures:
                raise failures[0]
        if damaged:
            damaged.sort()
            for i in damaged[1:]:
                self._mark_damaged(chunks[i])
            raise self._corrupt(chunks[damaged[0]])

    def _read_file(self, object_id: ContentId) -> bytes:
        with self._open(object_id) as fh:
            size = os.fstat(fh.fileno()).st_size
            return fh.read(size + 1)  # bounded: a file that grows is caught by its hash

    def _open(self, object_id: ContentId) -> io.FileIO:
        """The object's file, for reading, only if it is a regular file reached without
        following a link: a FIFO would block, a link to /dev/zero never ends, a link
        may lead out of the store. Anything else is a damaged object."""
        path = self.path(object_id)
        if not self._real_shard(path.parent):
            raise self._corrupt(object_id, f"is under {path.parent}, a link out of the store")
        try:
            fd = os.open(path, _READ_FLAGS)
        except _ABSENT as exc:
            raise self._missing(object_id) from exc
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise self._corrupt(object_id, "is a symbolic link, not a file") from exc
            raise self._corrupt(object_id, f"cannot be read ({exc.strerror})") from exc
        kind = stat.S_IFMT(os.fstat(fd).st_mode)
        if kind != stat.S_IFREG:
            os.close(fd)
            what = {stat.S_IFDIR: "a folder", stat.S_IFIFO: "a FIFO"}.get(kind, "not a file")
            raise self._corrupt(object_id, f"is {what}, not a regular file")
        return io.FileIO(fd, "rb", closefd=True)

    def _real_shard(self, shard: Path) -> bool:
        """Whether a shard is not a link (which may lead out of the store); remembered.
        A missing shard, or a file in its place, reads as missing objects."""
        if shard in self._shards:
            return True
        try:
            mode = shard.lstat().st_mode
        except OSError:
            return True
        if stat.S_ISDIR(mode):
            self._shards.add(shard)
        return not stat.S_ISLNK(mode)

    def _check(self, object_id: ContentId, data: Any) -> None:
        if digest_bytes(data) != object_id:
            raise self._corrupt(object_id)

    def _corrupt(
        self, object_id: ContentId, why: str = "does not match its hash (corrupted on disk)"
    ) -> CorruptObjectError:
        self._mark_damaged(object_id)
        return CorruptObjectError(
            f"object {object_id} in {self.root} {why}; run 'zencache cache verify --repair', "
            "then rerun the pipeline to rewrite it",
            object_id=object_id,
        )

    def _mark_damaged(self, object_id: ContentId) -> None:
        self._damaged.add(object_id)
        self._seen_damage = True

    def _missing(self, object_id: ContentId) -> MissingObjectError:
        self._mark_damaged(object_id)
        return MissingObjectError(
            f"object {object_id} is missing from {self.root}; run 'zencache cache verify "
            "--repair', then rerun the pipeline to recreate it",
            object_id=object_id,
        )

    def _write_atomically(self, target: Path, view: memoryview, *, sync: bool = True) -> None:
        shard = target.parent
        # os.urandom, not secrets: that module costs 4 ms of import (hashlib, hmac)
        tmp = shard / f"{_TMP_PREFIX}{os.getpid()}-{os.urandom(6).hex()}"
        if not self._real_shard(shard):
            raise StoreError(
                f"{shard} is a link where the object store keeps a folder of objects; "
                "objects are never written through a link out of the store: replace it "
                "with a folder (nothing cached is lost) and rerun"
            )
        try:
            if not shard.is_dir():
                try:
                    shard.mkdir(parents=True, exist_ok=True)
                except FileExistsError:  # not a folder (a folder another thread made is fine)
                    raise StoreError(
                        f"{shard} is a file where the object store keeps a folder of objects; "
                        "move it away (nothing cached is lost) and rerun"
                    ) from None
                if sync:
                    _fsync_dir(shard.parent)  # a new shard's own entry must survive a power cut
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
            try:
                written = 0
                while written < len(view):
                    written += os.write(fd, view[written:])
                if sync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.replace(tmp, target)
            except IsADirectoryError:  # a folder under the object's name: in the way
                shutil.rmtree(target)
                os.replace(tmp, target)
            if sync:
                _fsync_dir(shard)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            if isinstance(exc, StoreError):
                raise
            if exc.errno in FULL_ERRNOS:
                raise full_error(self.root.parent, len(view), f"object {target.name}") from exc
            raise StoreError(f"cannot write object {target.name} under {self.root}: {exc}") from exc


# Mapping chunk files into one region (map_blob) needs mmap with MAP_FIXED, which
# the mmap module does not expose: libc's, through ctypes, on Linux only.
_MAP_FIXED_WORKS = sys.platform.startswith("linux")
_MAP_FIXED = 0x10  # Linux, every architecture
_MADV_POPULATE_READ = 22  # Linux 5.14
_libc_handle: Any = None


def _libc() -> Any:
    """libc through ctypes, with the prototypes map_blob needs; imported on first use
    (ctypes is 1.4 ms of import that `import zencache` should not pay)."""
    global _libc_handle
    if _libc_handle is None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = (
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_long,
        )
        libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        _libc_handle = libc
    return _libc_handle


def _last_errno() -> int:
    import ctypes

    return ctypes.get_errno()


def _address_of(region: mmap.mmap) -> int:
    import ctypes

    anchor = ctypes.c_char.from_buffer(region)
    try:
        return ctypes.addressof(anchor)
    finally:
        del anchor  # releases the export, so the region can be closed later


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
