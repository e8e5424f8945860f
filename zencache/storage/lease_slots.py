"""Leases as kernel locks: `.zencache/leases/slots`, one byte of it per key slot.

A lease is a write lock on byte `slot(key)` of one empty file that every process
opens. The kernel drops a lock when the open file holding it is closed, and a
process's files are closed however it ends (exit, kill -9, a crash in native
code, before it even becomes a zombie), so a dead holder's lease is free at once:
nothing records who holds it, so there is no pid, start time, boot id or expiry
to check, nothing to sweep and nothing to tear in a power cut (locks are kernel
state; the file stays empty). On Linux the locks are open-file-description
locks, owned by the open file rather than the process: two runs in one process
exclude each other, and closing one file does not drop another's locks. Where
those are missing, classic POSIX locks (owned by the process) are used, with one
file per process and this process's own holdings kept here.

Two keys may share a slot (one in a million): a process then waits for an
unrelated step, as if it were its own key, and finds no entry when it takes the
lease; it never takes one that is held. On a network file system, a lock holds
across hosts where the server's lock manager works (NFSv4, or v3 with lockd;
not a `nolock` or `local_lock` mount). Records only: the policy is
executors/leases.py.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import threading
from pathlib import Path

from .space import FULL_ERRNOS, full_error

SLOTS = 1 << 20
FILENAME = "slots"

_OFD = hasattr(fcntl, "F_OFD_SETLK")  # Linux 3.15+
# Linux's struct flock: l_type, l_whence, l_start, l_len, l_pid (0 for OFD locks).
_FLOCK = struct.Struct("hhqqi4x")
_BUSY = (errno.EAGAIN, errno.EACCES)

# POSIX locks belong to the process and are all dropped when any of its files on
# the path closes: one shared file per path, and the slots this process holds.
_posix_files: dict[Path, int] = {}
_posix_held: dict[Path, set[int]] = {}
_posix_lock = threading.Lock()


def slot(key: str) -> int:
    try:
        return int(key[:8], 16) % SLOTS
    except ValueError:  # not a digest (a test's key)
        return int.from_bytes(key.encode()[:8].ljust(8, b"\0"), "big") % SLOTS


class LeaseSlots:
    """One open file of the slots; the leases taken through it."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.path = self.folder / FILENAME
        self._mine: dict[int, str] = {}  # slot -> the key this handle holds it for
        self._lock = threading.Lock()  # the committer thread releases while the driver takes
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if _OFD:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            else:
                with _posix_lock:
                    fd = _posix_files.get(self.path)
                    if fd is None:
                        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
                        _posix_files[self.path] = fd
                        _posix_held[self.path] = set()
                self._fd = fd
        except OSError as exc:
            if exc.errno in FULL_ERRNOS:
                raise full_error(self.folder.parent, 4096, "the lease slots file") from exc
            raise

    def take(self, key: str) -> bool:
        """Take the key's lease without waiting: False while anyone else holds its slot."""
        n = slot(key)
        with self._lock:
            if n in self._mine:
                return False  # held through this handle for another key that shares it
            if not self._set(n, fcntl.F_WRLCK):
                return False
            self._mine[n] = key
            return True

    def release(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                n = slot(key)
                if self._mine.get(n) == key:
                    del self._mine[n]
                    self._set(n, fcntl.F_UNLCK)

    def held(self, key: str) -> bool:
        """Whether another handle (any process, or another run of this one) holds the
        key's slot."""
        return self._first_held(slot(key), 1) is not None

    def held_slots(self) -> list[int]:
        """The slots other handles hold now, in order (Linux: a few GETLK calls per
        held slot; elsewhere a probe of every slot, for tests and tools only)."""
        found: list[int] = []
        ranges = [(0, SLOTS)]
        while ranges:
            start, length = ranges.pop()
            first = self._first_held(start, length)
            if first is None:
                continue
            at, span = first
            found.extend(range(at, at + span))
            ranges.append((start, at - start))
            end = at + span
            ranges.append((end, start + length - end))
        return sorted(n for n in found)

    def close(self) -> None:
        """Drop every lease taken through this handle (the kernel would at exit)."""
        with self._lock:
            if _OFD:
                if self._fd >= 0:
                    os.close(self._fd)
                    self._fd = -1
            else:
                for n in list(self._mine):
                    self._set(n, fcntl.F_UNLCK)
            self._mine.clear()

    # --- the locks ------------------------------------------------------------------------

    def _set(self, n: int, kind: int) -> bool:
        if _OFD:
            request = _FLOCK.pack(kind, os.SEEK_SET, n, 1, 0)
            try:
                fcntl.fcntl(self._fd, fcntl.F_OFD_SETLK, request)
            except OSError as exc:
                if exc.errno in _BUSY:
                    return False
                raise
            return True
        with _posix_lock:
            held = _posix_held[self.path]
            if kind == fcntl.F_UNLCK:
                fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, n)
                held.discard(n)
                return True
            if n in held:
                return False  # another run of this process holds it
            try:
                fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, n)
            except OSError as exc:
                if exc.errno in _BUSY:
                    return False
                raise
            held.add(n)
            return True

    def _first_held(self, start: int, length: int) -> tuple[int, int] | None:
        """One lock another handle holds within [start, start + length), if any."""
        if length <= 0:
            return None
        if not _OFD:  # probe each slot: take it and give it back at once
            for n in range(start, start + length):
                if n in self._mine or not self._set(n, fcntl.F_WRLCK):
                    return n, 1
                self._set(n, fcntl.F_UNLCK)
            return None
        request = _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, start, length, 0)
        found = fcntl.fcntl(self._fd, fcntl.F_OFD_GETLK, request)
        kind, _, at, span, _ = _FLOCK.unpack(found)
        if kind == fcntl.F_UNLCK:
            return None
        return at, span
