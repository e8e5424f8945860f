"""Cross-process leases: one process executes a given cache key at a time.

A process that misses takes the key's lease in the index before executing; a
second process missing on the same key waits for the step entry instead of
computing it again. A holder on this machine is waited for while its process
lives (however long the step runs); a holder elsewhere, or one that cannot be
checked, for ZENCACHE_LEASE_SECONDS (default 600) after it took the lease. A
dead holder's lease is taken over at once; dead includes killed but not yet
reaped (a zombie) and a pid since reused by another process (its start time
differs). Policy only: the index does the swap.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from ..index import Index, Op

LEASE_SETTING = "ZENCACHE_LEASE_SECONDS"
_POLL_SECONDS = (0.01, 0.05, 0.1, 0.2)


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
    def __init__(self, index: Index, run_id: str) -> None:
        self.index = index
        self.run_id = run_id
        self.held: set[str] = set()

    def acquire(self, key: str, commit_first: list[Op] | None = None) -> tuple[str, ...] | None:
        """Take the lease (returns None), or wait for the holder's result (returns its ids).

        Returns None too when the holder failed or died: then the caller executes.
        `commit_first`: ops committed in the same transaction as the first attempt
        (the runner's deferred step records).
        """
        now = time.time()
        status, _ = self.index.try_lease(
            key, self._holder(now), now, commit_first=commit_first or ()
        )
        polls = 0
        while status == "held":
            time.sleep(_POLL_SECONDS[min(polls, len(_POLL_SECONDS) - 1)])
            polls += 1
            ids = self.index.step_output_ids(key)
            if ids is not None:
                return ids
            current = self.index.lease_holder(key)
            dead = current is not None and self._is_dead(current)
            if current is not None and self._is_local(current) and not dead:
                continue  # a live holder on this machine: wait as long as it runs
            now = time.time()
            replace = current if dead else None
            status, _ = self.index.try_lease(key, self._holder(now), now, replace=replace)
        if status == "committed":
            return self.index.step_output_ids(key)
        self.held.add(key)
        return None

    def release_ops(self, key: str) -> list[Op]:
        """Deleting the lease, to commit in the same transaction as the step entry."""
        if key in self.held:
            self.held.discard(key)
            return [("leases", key.encode(), None)]
        return []

    def release(self, key: str) -> None:
        ops = self.release_ops(key)
        if ops:
            self.index.write(ops)

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
