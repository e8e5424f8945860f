"""The lease table, `.zencache/leases/<boot id>.mdb`: who is executing which key now.

Leases are kept out of the index because they need no durability: a lease only
matters while its holder lives, and the holder's process cannot outlive a reboot.
So this LMDB file is never fsynced (a lease costs ~2 µs, not an fdatasync), and
it is named after the kernel's boot id: a power cut may leave the file of that
boot torn, but no later boot opens it (stale files are deleted when they predate
the boot). A killed process loses nothing here either: its writes sit in the page
cache, and the kernel writes them out. Where no boot id is known (not Linux), the
table is synced like the index. Records only: the policy is executors/leases.py.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import lmdb

from ..errors import CorruptIndexError, StorageFullError
from .index_check import check_length
from .space import full_error, reserve_lock_file

# Leases are deleted when released; a few hundred bytes each, so this is room for
# millions of abandoned ones. The map is address space: the file grows as used.
_MAP_SIZE = 1 << 30
_BOOT_ID = "/proc/sys/kernel/random/boot_id"


def boot_id() -> str | None:
    """This boot's id, or None where the kernel does not expose one."""
    try:
        with open(_BOOT_ID) as fh:
            found = fh.read().strip()
    except OSError:
        return None
    return found if found.replace("-", "").isalnum() else None


class LeaseTable:
    """Compare-and-swap on cache-key leases; one per cache folder and process."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if "No space" in str(exc):
                raise full_error(self.folder.parent, 4096, "the leases folder") from exc
            raise
        boot = boot_id()
        self.path = self.folder / f"{boot or 'synced'}.mdb"
        if boot is not None:
            self._remove_stale()
        check_length(self.path, subdir=False)  # a truncated file would be a SIGBUS
        reserve_lock_file(Path(f"{self.path}-lock"), self.folder.parent)  # full disk: SIGBUS
        try:
            self.env = lmdb.open(
                str(self.path),
                subdir=False,
                map_size=_MAP_SIZE,
                sync=boot is None,
                metasync=boot is None,
                readahead=False,
                max_dbs=0,
                max_readers=254,
            )
        except lmdb.Error as exc:
            if "No space" in str(exc):
                raise full_error(self.folder.parent, 64 << 10, "creating the lease table") from exc
            raise CorruptIndexError(
                f"cannot open the lease table {self.path} ({exc}); no run can be holding "
                "it if none is running: delete it"
            ) from exc

    def close(self) -> None:
        self.env.close()

    def try_lease(
        self, key: str, holder: dict[str, Any], now: float, replace: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """Take the lease when it is free, expired, or held by exactly `replace` (a holder
        the caller judged dead): returns None. Else returns the current holder."""
        name = key.encode()

        def swap(txn: lmdb.Transaction) -> dict[str, Any] | None:
            current = _decode(txn.get(name))  # unreadable: as good as free
            if current is None or current["expires"] <= now or current == replace:
                txn.put(name, json.dumps(holder).encode())
                return None
            return current

        return self._write(swap)

    def put(self, key: str, holder: dict[str, Any]) -> None:
        """Set a lease unconditionally (tests and tools that forge a holder)."""
        self._write(lambda txn: txn.put(key.encode(), json.dumps(holder).encode()))

    def release(self, keys: list[str]) -> None:
        if keys:
            self._write(lambda txn: [txn.delete(k.encode()) for k in keys])

    def holder(self, key: str) -> dict[str, Any] | None:
        with self.env.begin() as txn:
            return _decode(txn.get(key.encode()))

    def keys(self) -> list[str]:
        with self.env.begin() as txn:
            return [k.decode() for k in txn.cursor().iternext(values=False)]

    def items(self) -> list[tuple[str, dict[str, Any]]]:
        """Every readable lease (an unreadable one counts as free: see remove_unreadable)."""
        with self.env.begin() as txn:
            pairs = [(k.decode(errors="replace"), _decode(v)) for k, v in txn.cursor().iternext()]
        return [(k, h) for k, h in pairs if h is not None]

    def remove_unreadable(self) -> None:
        """Delete records that are no lease (damaged, or written by something else)."""

        def remove(txn: lmdb.Transaction) -> None:
            cursor = txn.cursor()
            bad = [k for k, v in cursor.iternext() if _decode(v) is None]
            for key in bad:
                txn.delete(key)

        self._write(remove)

    def remove_if(self, leases: list[tuple[str, dict[str, Any]]]) -> None:
        """Delete each lease that still has exactly the holder given."""

        def remove(txn: lmdb.Transaction) -> None:
            for key, holder in leases:
                if _decode(txn.get(key.encode())) == holder:
                    txn.delete(key.encode())

        if leases:
            self._write(remove)

    def _write(self, fn: Any) -> Any:
        try:
            with self.env.begin(write=True) as txn:
                return fn(txn)
        except lmdb.MapFullError as exc:
            raise StorageFullError(
                f"the lease table {self.path} is full of abandoned leases; delete it when "
                "no run is going"
            ) from exc
        except lmdb.Error as exc:
            if "No space" in str(exc):
                raise full_error(self.folder.parent, 64 << 10, "a lease") from exc
            raise

    def _remove_stale(self) -> None:
        """Delete the tables of earlier boots: no process that used them survives."""
        booted = time.time() - _uptime()
        for path in self.folder.iterdir():
            if path.name.startswith(self.path.name):
                continue
            try:
                if path.stat().st_mtime < booted:
                    path.unlink()
            except OSError:
                pass  # another process removed it first


def _decode(raw: bytes | None) -> dict[str, Any] | None:
    """A lease record, or None when there is none or it is not one (damaged bytes, a
    record without the fields every holder writes): such a lease is free."""
    if raw is None:
        return None
    try:
        holder = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if (
        not isinstance(holder, dict)
        or not isinstance(holder.get("expires"), int | float)
        or not isinstance(holder.get("pid"), int)
        or not isinstance(holder.get("host"), str)
    ):
        return None
    return holder


def _uptime() -> float:
    try:
        with open("/proc/uptime") as fh:
            return float(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return float("inf")  # unknown: no file counts as older than this boot
