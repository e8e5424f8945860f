"""The one message for a full disk, with the facts a user needs: which cache folder,
how much space the write needed and how much is free. Imports errors only."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ..errors import StorageFullError

# LMDB's lock file is a shared memory map of ~16 KiB (254 reader slots); a map
# whose pages the file system cannot back is a SIGBUS on first touch, so the
# file's blocks are reserved before LMDB maps it (`reserve_lock_file`).
LOCK_FILE_BYTES = 64 << 10
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def human(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def free_bytes(path: Path) -> int | None:
    for candidate in (path, *path.parents):
        try:
            info = os.statvfs(candidate)
        except OSError:
            continue
        return info.f_bavail * info.f_frsize
    return None


def is_nearly_full(path: Path, needed: int) -> bool:
    free = free_bytes(path)
    return free is not None and free < max(needed, 1 << 20)


def full_error(cache_dir: Path, needed: int, what: str) -> StorageFullError:
    free = free_bytes(cache_dir)
    facts = f"{what} needs about {human(needed)}" + (
        f", {human(free)} is free" if free is not None else ""
    )
    return StorageFullError(
        f"no space left on the disk of the cache at {cache_dir}: {facts}; free disk space "
        "(or run 'zencache cache gc') and rerun: nothing already cached was lost"
    )


def reserve_lock_file(path: Path, cache_dir: Path) -> None:
    """Allocate LMDB's lock file's blocks before LMDB maps it (see LOCK_FILE_BYTES)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno in FULL_ERRNOS:
            raise full_error(cache_dir, LOCK_FILE_BYTES, f"the lock file {path.name}") from exc
        return  # read-only, or not ours: LMDB says what is wrong
    try:
        if os.fstat(fd).st_size < LOCK_FILE_BYTES:
            os.posix_fallocate(fd, 0, LOCK_FILE_BYTES)
    except OSError as exc:
        if exc.errno in FULL_ERRNOS:
            raise full_error(cache_dir, LOCK_FILE_BYTES, f"the lock file {path.name}") from exc
        # EOPNOTSUPP and the like: a file system that cannot reserve; LMDB goes on.
    finally:
        os.close(fd)
