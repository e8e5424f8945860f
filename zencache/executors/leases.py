"""Cross-process leases: one process executes a given cache key at a time.

A process that misses takes the key's lease (lease_table.py) before executing;
a second process missing on the same key waits for the step entry instead of
computing it again. The holder commits the step entry first and releases the
lease after, so whoever takes a free lease and then finds no entry must
execute. A holder on this machine is waited for while its process lives
(however long the step runs); a holder elsewhere, or one that cannot be
checked, for ZENCACHE_LEASE_SECONDS (default 600) after it took the lease. A
dead holder's lease is taken over at once; dead includes killed but not yet
reaped (a zombie) and a pid since reused by another process (its start time
differs). Policy only: the lease table does the swap.
"""

from __future__ import annotations

import functools
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from ..storage.cache import Cache
from ..storage.lease_table import LeaseTable

LEASE_SETTING = "ZENCACHE_LEASE_SECONDS"
_POLL_SECONDS = (0.01, 0.05, 0.1, 0.2)


class _Held:
    def __repr__(self) -> str:
        return "HELD"


HELD = _Held()  # Leases.attempt: another live process holds the lease


def _pid_namespace() -> int | None:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


# Two containers may share a hostname and a cache but not their pids: a holder is
# "on this machine" (its pid checkable) only when the pid namespace matches too.
_HOST = socket.gethostname()
_PID_NS = _pid_namespace()


def _process_start(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks) of a process, from /proc; None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            text = fh.read().decode(errors="replace")
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()  # the name in parentheses may hold spaces
    return (fields[0], fields[19]) if len(fields) > 19 else None


_STARTED = (_process_start(os.getpid()) or ("", ""))[1]


class Leases:
    def __init__(self, cache: Cache, run_id: str) -> None:
        self.cache = cache
        self.index = cache.index
        self.run_id = run_id
        self.held: set[str] = set()
        self._swept = False

    @functools.cached_property
    def table(self) -> LeaseTable:
        """Opened on the first miss (a cached run never touches it), once: Cache.leases
        resolves the folder's path, three lstat calls."""
        return self.cache.leases

    def acquire(
        self, key: str, while_waiting: Callable[[], None] | None = None
    ) -> tuple[str, ...] | None:
        """Take the lease (returns None), or wait for the holder's result (returns its ids).

        Returns None too when the holder failed or died: then the caller executes.
        `while_waiting` is called at every poll: the runner raises a failed commit of
        its own there, so that it stops instead of waiting on. A
        driver with steps of its own in flight must not block here (it would stop
        collecting them while another process waits for their entries): it calls
        `attempt` between collecting them instead.
        """
        found = self.attempt(key, looked_up=True)
        polls = 0
        while found is HELD:
            if while_waiting is not None:
                while_waiting()
            time.sleep(_POLL_SECONDS[min(polls, len(_POLL_SECONDS) - 1)])
            polls += 1
            found = self.attempt(key)
        return found  # type: ignore[return-value]

    def attempt(self, key: str, looked_up: bool = False) -> tuple[str, ...] | _Held | None:
        """One try, never waiting: the holder's ids when its entry is committed, None
        when the lease is now ours (the caller executes), HELD while another live
        holder has it. `looked_up`: the caller just missed the entry."""
        if not self._swept:
            self.sweep()
        if not looked_up:
            ids = self.index.step_output_ids(key)
            if ids is not None:
                return ids
        current = self.table.holder(key)
        if current is not None and self._is_local(current) and not self._is_dead(current):
            return HELD  # a live holder on this machine: waited for as long as it runs
        now = time.time()
        replace = current if current is not None and self._is_dead(current) else None
        if self.table.try_lease(key, self._holder(now), now, replace=replace) is not None:
            return HELD  # taken meanwhile, or a holder elsewhere whose lease has not expired
        # Taken. The entry may have been committed between our miss and the take
        # (its holder commits, then releases): then it is a hit after all.
        ids = self.index.step_output_ids(key)
        if ids is not None:
            self.table.release([key])
            return ids
        self.held.add(key)
        return None

    def sweep(self) -> None:
        """Delete the leases of dead holders on this machine. A holder killed after
        committing its entry but before releasing never gets to it, and no one
        waits on a committed key to take such a lease over; done once a run, on
        its first miss."""
        self._swept = True
        self.table.remove_if([(k, h) for k, h in self.table.items() if self._is_dead(h)])
        self.table.remove_unreadable()

    def release(self, *keys: str) -> None:
        """Release leases this run holds (after their step entries are committed)."""
        mine = [key for key in keys if key in self.held]
        if mine:
            self.held.difference_update(mine)
            self.table.release(mine)

    def _holder(self, now: float) -> dict[str, Any]:
        seconds = float(os.environ.get(LEASE_SETTING, "600"))
        return {
            "host": _HOST,
            "pidns": _PID_NS,
            "pid": os.getpid(),
            "started": _STARTED,
            "run": self.run_id,
            "expires": now + seconds,
        }

    @staticmethod
    def _is_local(holder: dict[str, Any]) -> bool:
        return holder.get("host") == _HOST and holder.get("pidns", _PID_NS) == _PID_NS

    @classmethod
    def _is_dead(cls, holder: dict[str, Any]) -> bool:
        if not cls._is_local(holder):
            return False  # cannot tell: its expiry decides
        pid = int(holder["pid"])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # another user's process: alive unless /proc says otherwise
        # kill(0) succeeds for a killed process its parent has not reaped yet (a
        # zombie), and for a newer process that was given the dead holder's pid.
        found = _process_start(pid)
        if found is None:
            return False
        state, started = found
        return state == "Z" or started != holder.get("started", started)
