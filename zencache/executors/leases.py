"""Cross-process leases: one process executes a given cache key at a time.

A process that misses takes the key's lease in the index before executing; a
second process missing on the same key waits for the step entry instead of
computing it again. A holder on this machine is waited for while its process
lives (however long the step runs); a holder elsewhere, or one that cannot be
checked, for ZENCACHE_LEASE_SECONDS (default 600) after it took the lease. A
dead holder's lease is taken over at once. Policy only: the index does the swap.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from ..index import Index, Op

LEASE_SETTING = "ZENCACHE_LEASE_SECONDS"
_HOST = socket.gethostname()
_POLL_SECONDS = (0.01, 0.05, 0.1, 0.2)


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
            if current is not None and current.get("host") == _HOST and not dead:
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
        return {"host": _HOST, "pid": os.getpid(), "run": self.run_id, "expires": now + seconds}

    @staticmethod
    def _is_dead(holder: dict[str, Any]) -> bool:
        if holder.get("host") != _HOST:
            return False  # cannot tell: its expiry decides
        try:
            os.kill(int(holder["pid"]), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
