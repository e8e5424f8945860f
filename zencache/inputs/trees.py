"""Content digests of files and folders named by step parameters, and the stat memo.

A file's digest is over its bytes; a folder's is a Merkle tree over its sorted
entries (name, kind, and the file's digest, the link's target text or the
sub-folder's digest). Symbolic links inside a folder count by their target text
and are never followed, so nothing outside the tree enters its digest; the path
a parameter names is followed (it names what it points to). Imports hashing,
errors and the storage index only.

Hashing a 10 GB folder on every run is not acceptable, so the digest of each
file is memoized in the index: (device, inode) -> (size, mtime_ns, ctime_ns,
digest), trusted only while all five fields match (one row per file, so the
table grows with the files seen, not with their versions).
A memo is written only for a file whose timestamps are older than RACY_NS (the
"racy git" problem: a write in the same timestamp tick as the hash would leave
every stat field unchanged), so a memo is never trusted for a file that could
have changed unseen. ctime cannot be set by a user (os.utime moves only atime
and mtime), so an edit followed by restoring the old mtime is still seen.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import xxhash

from ..errors import UsageError

if TYPE_CHECKING:
    from ..storage.index import Index

log = logging.getLogger(__name__)

# Timestamps closer than this to the moment of hashing may be shared with a later
# write: 2 s covers the coarsest file systems in use (FAT: 2 s, HFS+: 1 s; ext4,
# XFS, APFS and btrfs stamp from a clock that ticks every few milliseconds).
RACY_NS = 2_000_000_000
# A folder with more entries than this is refused rather than walked for minutes.
MAX_ENTRIES = 1_000_000
MAX_ENTRIES_SETTING = "ZENCACHE_MAX_TREE_ENTRIES"
# Large files are hashed in segments by two threads (one thread reads the page
# cache at ~8 GB/s on the machines we measured, two at ~12): the file's digest is
# over its size and the segments' digests, so it does not depend on the threads.
SEGMENT = 8 << 20
READ_BYTES = 1 << 20  # what one read brings in: small enough to stay in the CPU's cache
_THREADS = 2
_MEMO_KEY = struct.Struct("<BQQQqq")  # format, device, inode, size, mtime_ns, ctime_ns
_FILE_ID = struct.calcsize("<BQQ")  # the index row's key: format, device, inode
_STAT = _MEMO_KEY.size - _FILE_ID  # then the row: size, mtime_ns, ctime_ns, digest
_ROW = _STAT + 16
_MEMO_FORMAT = 1

FILE, DIR, LINK, MISSING = "file", "dir", "link", "missing"
# Marks cache folders (https://bford.info/cachedir/); a zencache cache has one.
CACHEDIR_TAG = "CACHEDIR.TAG"


class InputPathError(UsageError):
    """A path a step takes as input cannot be read, or is not something to hash."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One entry of a folder, below it: its relative POSIX path, kind, size and digest
    (a file's bytes digest, a link's target text, "" for a folder)."""

    path: str
    kind: str
    size: int
    digest: str

    def to_json(self) -> list[Any]:
        return [self.path, self.kind, self.size, self.digest]

    @classmethod
    def from_json(cls, data: list[Any]) -> Entry:
        path, kind, size, digest = data
        return cls(path, kind, size, digest)


@dataclass(frozen=True, slots=True)
class PathContent:
    """What a path names, now: its kind, content digest and size (a folder's: the
    total of its files, with `count` files and its `entries`)."""

    kind: str  # file | dir | link (a dangling link) | missing
    digest: str  # a file's bytes digest, a folder's tree digest, a link's target text, ""
    size: int = 0
    count: int = 0
    entries: tuple[Entry, ...] = ()


def encode_entries(entries: tuple[Entry, ...]) -> bytes:
    """A folder's listing as kept in the index's `trees` table (version byte, JSON)."""
    return bytes([1]) + json.dumps([e.to_json() for e in entries], separators=(",", ":")).encode(
        "utf-8", "surrogatepass"
    )


def decode_entries(data: bytes) -> tuple[Entry, ...]:
    if not data or data[0] != 1:
        raise ValueError("a folder listing of an unknown version")
    return tuple(
        Entry.from_json(e) for e in json.loads(bytes(data[1:]).decode("utf-8", "surrogatepass"))
    )


class StatMemo:
    """File digests memoized by stat fields, read from and written to the index.

    Without an index (a status check before any run) it only hashes. New entries
    are kept until `flush`, which writes them in one transaction.
    """

    def __init__(self, index: Index | None) -> None:
        self.index = index
        self._found: dict[bytes, str] = {}
        self._new: dict[bytes, str] = {}
        self.hashed_bytes = 0  # for tests and benchmarks: what the memo did not spare

    def lookup(self, keys: list[bytes]) -> list[str | None]:
        """The memoized digest of each file (by memo_key), or None."""
        if self.index is None or not keys:
            return [self._new.get(k) for k in keys]
        missing = [k for k in keys if k not in self._found and k not in self._new]
        if missing:
            rows = self.index.get_many("stats", [k[:_FILE_ID] for k in missing])
            for key, value in zip(missing, rows, strict=True):
                # The row of this file (device, inode) vouches only for the same size
                # and timestamps: any write since moved ctime at least.
                if value is not None and len(value) == _ROW and value[:_STAT] == key[_FILE_ID:]:
                    self._found[key] = value[_STAT:].hex()
        return [self._found.get(k) or self._new.get(k) for k in keys]

    def remember(self, key: bytes, digest: str) -> None:
        self._new[key] = digest

    def flush(self) -> None:
        """Write the new memo entries. A cache that cannot be written (read-only, full)
        only loses the speed-up, so the failure is logged, not raised."""
        if self.index is None or not self._new:
            self._new.clear()
            return
        # One row per file (device, inode): a new version of a file replaces its row,
        # so the table grows with the files seen, not with their versions.
        ops = [
            ("stats", key[:_FILE_ID], key[_FILE_ID:] + bytes.fromhex(digest))
            for key, digest in self._new.items()
        ]
        try:
            self.index.write(ops)
        except Exception as exc:  # a read-only or full cache: logged, not raised
            log.warning("could not record %d file digests in the index: %s", len(ops), exc)
        else:
            self._found.update(self._new)
        self._new.clear()


def memo_key(st: os.stat_result) -> bytes:
    return _MEMO_KEY.pack(
        _MEMO_FORMAT, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns
    )


def _settled(st: os.stat_result, now_ns: int) -> bool:
    """True when no write can share this file's timestamps with one still to come."""
    return max(st.st_mtime_ns, st.st_ctime_ns) < now_ns - RACY_NS


def max_entries() -> int:
    text = os.environ.get(MAX_ENTRIES_SETTING)
    if not text:
        return MAX_ENTRIES
    try:
        return max(1, int(text))
    except ValueError:
        raise InputPathError(
            f"{MAX_ENTRIES_SETTING}={text!r} is not a whole number; set it to the largest "
            "number of entries a folder input may hold"
        ) from None


def content_of(path: str, memo: StatMemo) -> PathContent:
    """The content of what `path` names (an absolute path or one relative to the
    current directory). Raises InputPathError for what cannot be read or hashed."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        try:
            return PathContent(LINK, os.readlink(path))  # a link to nothing
        except OSError:
            return PathContent(MISSING, "")
    except NotADirectoryError:
        return PathContent(MISSING, "")
    except OSError as exc:
        raise InputPathError(_os_reason(exc, path)) from exc
    if stat.S_ISREG(st.st_mode):
        digest, size = _file_digests([(path, st)], memo)[0], st.st_size
        return PathContent(FILE, digest, size, 1)
    if stat.S_ISDIR(st.st_mode):
        return _tree(path, memo)
    raise InputPathError(f"{path} is {_special_kind(st.st_mode)}, not a file or folder")


def _tree(root: str, memo: StatMemo) -> PathContent:
    folders = _scan(root, max_entries())
    paths: list[tuple[str, os.stat_result]] = []
    for relative, items in folders:
        prefix = f"{root}/{relative}/" if relative else f"{root}/"
        paths.extend((prefix + name, value) for name, kind, value in items if kind == FILE)
    digests = iter(_file_digests(paths, memo))
    entries: list[Entry] = []
    listing: dict[str, list[tuple[str, str, str]]] = {}  # folder -> (name, kind, digest)
    for relative, items in folders:
        prefix = f"{relative}/" if relative else ""
        direct = listing[relative] = []
        for name, kind, value in items:
            if kind == FILE:
                digest = next(digests)
                entries.append(Entry(prefix + name, FILE, value.st_size, digest))
            else:
                digest = value
                entries.append(Entry(prefix + name, kind, 0, value))
            direct.append((name, kind, digest))
    total = sum(st.st_size for _, st in paths)
    return PathContent(DIR, _tree_digest(listing), total, len(paths), tuple(entries))


def _scan(root: str, limit: int) -> list[tuple[str, list[tuple[str, str, Any]]]]:
    """Every folder below root (relative path, "" for root itself) with its entries
    (name, kind, and the stat of a file, the target of a link, "" for a folder), names
    sorted, parents before their sub-folders."""
    count = 0
    stack = [""]
    out: list[tuple[str, list[tuple[str, str, Any]]]] = []
    while stack:
        relative = stack.pop()
        folder = f"{root}/{relative}" if relative else root
        try:
            with os.scandir(folder) as it:
                found = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            raise InputPathError(_os_reason(exc, folder)) from exc
        count += len(found)
        if count > limit:
            raise InputPathError(
                f"folder {root} holds more than {limit:,} entries; pass a smaller folder, "
                f"or raise the limit with {MAX_ENTRIES_SETTING}"
            )
        items: list[tuple[str, str, Any]] = []
        subfolders = []
        for entry in found:
            try:
                if entry.is_symlink():
                    items.append((entry.name, LINK, os.readlink(entry.path)))
                elif entry.is_dir(follow_symlinks=False):
                    if os.path.isfile(f"{entry.path}/{CACHEDIR_TAG}"):
                        continue  # a cache folder (ours, or another tool's) is no input
                    items.append((entry.name, DIR, ""))
                    subfolders.append(f"{relative}/{entry.name}" if relative else entry.name)
                else:
                    items.append((entry.name, FILE, entry.path))  # its stat follows
            except OSError as exc:
                raise InputPathError(_os_reason(exc, entry.path)) from exc
        out.append((relative, items))
        stack.extend(reversed(subfolders))
    _stat_files(out)
    return out


def _stat_files(folders: list[tuple[str, list[tuple[str, str, Any]]]]) -> None:
    """Replace each file's path by its lstat, refusing what is not a regular file.
    Stat calls release the GIL: two threads take ~2/3 of the time for many files."""
    paths = [value for _, items in folders for _, kind, value in items if kind == FILE]
    if len(paths) >= _PARALLEL_STATS:
        half = len(paths) // 2
        with ThreadPoolExecutor(_THREADS, thread_name_prefix="zencache-stat") as pool:
            first, second = pool.map(_lstat_all, (paths[:half], paths[half:]))
        stats = first + second
    else:
        stats = _lstat_all(paths)
    found = iter(stats)
    for _, items in folders:
        for i, (name, kind, value) in enumerate(items):
            if kind == FILE:
                st = next(found)
                if not stat.S_ISREG(st.st_mode):
                    raise InputPathError(
                        f"{value} is {_special_kind(st.st_mode)}, which has no content to "
                        "hash; move it out of the folder"
                    )
                items[i] = (name, FILE, st)


def _lstat_all(paths: list[str]) -> list[os.stat_result]:
    out = []
    for path in paths:
        try:
            out.append(os.lstat(path))
        except OSError as exc:
            raise InputPathError(_os_reason(exc, path)) from exc
    return out


_PARALLEL_STATS = 2000


def _tree_digest(listing: dict[str, list[tuple[str, str, str]]]) -> str:
    """The Merkle digest of a folder: over its direct entries' (name, kind, digest),
    a sub-folder's digest computed first. A POSIX name, a link target and a digest
    never hold a NUL, so NUL-separated fields with a count are unambiguous, and one
    encode per folder costs less than a length prefix per field."""
    digests: dict[str, str] = {}
    for folder in reversed(listing):  # parents were listed before their sub-folders
        prefix = f"{folder}/" if folder else ""
        fields = [_TREE_DOMAIN, str(len(listing[folder]))]
        for name, kind, digest in listing[folder]:
            fields += (name, kind, digests[prefix + name] if kind == DIR else digest)
        digests[folder] = xxhash.xxh3_128_hexdigest(
            "\0".join(fields).encode("utf-8", "surrogatepass")
        )
    return digests[""]


_TREE_DOMAIN = "zencache/tree/v1"


def _file_digests(files: list[tuple[str, os.stat_result]], memo: StatMemo) -> list[str]:
    """Each file's bytes digest: from the memo when its stat fields match a settled
    entry, else hashed (in threads for many or large files) and memoized if settled."""
    if not files:
        return []
    keys = [memo_key(st) for _, st in files]
    digests = memo.lookup(keys)
    todo = [i for i, d in enumerate(digests) if d is None]
    if not todo:
        return digests  # type: ignore[return-value]
    now_ns = time.time_ns()
    if len(todo) > 1 and sum(files[i][1].st_size for i in todo) > SEGMENT:
        with ThreadPoolExecutor(_THREADS, thread_name_prefix="zencache-hash") as pool:
            hashed = list(pool.map(lambda i: file_digest(files[i][0], parallel=False), todo))
    else:
        hashed = [file_digest(files[i][0]) for i in todo]
    for i, (digest, st_after) in zip(todo, hashed, strict=True):
        digests[i] = digest
        memo.hashed_bytes += st_after.st_size
        # Memoized under the stat taken after reading, and only if the file did not
        # change while it was read (same fields before and after) and has settled.
        if memo_key(st_after) == keys[i] and _settled(st_after, now_ns):
            memo.remember(keys[i], digest)
    return digests  # type: ignore[return-value]


def file_digest(path: str, *, parallel: bool = True) -> tuple[str, os.stat_result]:
    """The digest of a file's bytes (over its size and its SEGMENT-sized pieces), and
    its stat after reading. O_NONBLOCK: a FIFO swapped in after the check must not hang."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise InputPathError(_os_reason(exc, path)) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputPathError(f"{path} is {_special_kind(st.st_mode)}, not a file")
        size = st.st_size
        offsets = list(range(0, size, SEGMENT))
        if parallel and len(offsets) > 1:
            # Each thread hashes a contiguous half with one reused buffer (a fresh
            # 8 MiB bytes object per segment cost its page faults every time).
            half = (len(offsets) + 1) // 2
            with ThreadPoolExecutor(_THREADS, thread_name_prefix="zencache-hash") as pool:
                parts = pool.map(
                    lambda chunk: _hash_segments(fd, chunk, size, path),
                    (offsets[:half], offsets[half:]),
                )
                pieces = [piece for part in parts for piece in part]
        else:
            pieces = _hash_segments(fd, offsets, size, path)
        after = os.fstat(fd)
    finally:
        os.close(fd)
    h = xxhash.xxh3_128()
    h.update(b"zencache/file/v1")
    h.update(struct.pack("<Q", size))
    for piece in pieces:
        h.update(piece)
    return h.hexdigest(), after


_PREADV = getattr(os, "preadv", None)


def _hash_segments(fd: int, offsets: list[int], size: int, path: str) -> list[bytes]:
    """The digest of each SEGMENT-sized piece at `offsets`. Each piece is read in
    READ_BYTES slices into one buffer and streamed to its hasher: a slice that fits
    the CPU's cache is hashed before it is evicted (8 MiB at once was read from
    memory twice, 1.4x slower), and no fresh bytes object is made per read."""
    if not offsets:
        return []
    buffer = bytearray(min(READ_BYTES, size))
    view = memoryview(buffer)
    out = []
    for offset in offsets:
        h = xxhash.xxh3_128()
        end = min(offset + SEGMENT, size)
        position = offset
        try:
            while position < end:
                want = min(len(buffer), end - position)
                if _PREADV is None:  # no preadv (older macOS)
                    data = os.pread(fd, want, position)
                    n = len(data)
                    h.update(data)
                else:
                    n = _PREADV(fd, [view[:want]], position)
                    h.update(view[:n])
                if n == 0:
                    break  # the file shrank while it was read: its stat after says so
                position += n
        except OSError as exc:
            raise InputPathError(_os_reason(exc, path)) from exc
        out.append(h.digest())
    return out


def _special_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


def _os_reason(exc: OSError, path: str) -> str:
    return f"cannot read {path}: {exc.strerror or exc}"
