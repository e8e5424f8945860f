"""Cross-process leases: one process executes a given cache key at a time.

A process that misses takes the key's lease (a kernel lock on the key's slot,
storage/lease_slots.py) before executing; a second process missing on the same
key waits for the step entry instead of computing it again. The holder commits
the step entry first and releases the lease after, so whoever takes a free lease
and then finds no entry must execute. A holder is waited for as long as it holds
the lock, which is as long as it lives: the kernel frees the lock of a dead
process (killed, crashed, a zombie), so there is nothing to check or expire.
Policy only: the slots do the locking.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..storage.cache import Cache
from ..storage.lease_slots import LeaseSlots

_POLL_SECONDS = (0.01, 0.05, 0.1, 0.2)


class _Held:
    def __repr__(self) -> str:
        return "HELD"


HELD = _Held()  # Leases.attempt: another process (or run) holds the lease


class Leases:
    """The leases of one run, taken through its own open file of the slots (so that
    two runs in one process exclude each other too)."""

    def __init__(self, cache: Cache, run_id: str) -> None:
        self.cache = cache
        self.index = cache.index
        self.run_id = run_id
        self.held: set[str] = set()
        self._slots: LeaseSlots | None = None

    @property
    def slots(self) -> LeaseSlots:
        """Opened on the first miss: a cached run never touches it."""
        if self._slots is None:
            # Its own open file: a lock taken through the cache's shared handle would
            # not exclude another run of this process.
            self._slots = LeaseSlots(self.cache.leases.folder)
        return self._slots

    def acquire(
        self, key: str, while_waiting: Callable[[], None] | None = None
    ) -> tuple[str, ...] | None:
        """Take the lease (returns None), or wait for the holder's result (returns its ids).

        Returns None too when the holder failed or died: then the caller executes.
        `while_waiting` is called at every poll: the runner raises a failed commit of
        its own there, so that it stops instead of waiting on. A driver with steps of
        its own in flight must not block here (it would stop collecting them while
        another process waits for their entries): it calls `attempt` between
        collecting them instead.
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
        when the lease is now ours (the caller executes), HELD while another holder
        has it. `looked_up`: the caller just missed the entry."""
        if not looked_up:
            ids = self.index.step_output_ids(key)
            if ids is not None:
                return ids
        if not self.slots.take(key):
            return HELD
        # Taken. The entry may have been committed between our miss and the take
        # (its holder commits, then releases): then it is a hit after all.
        ids = self.index.step_output_ids(key)
        if ids is not None:
            self.slots.release(key)
            return ids
        self.held.add(key)
        return None

    def release(self, *keys: str) -> None:
        """Release leases this run holds (after their step entries are committed)."""
        mine = [key for key in keys if key in self.held]
        if mine:
            self.held.difference_update(mine)
            self.slots.release(*mine)

    def close(self) -> None:
        """Release everything this run still holds (the kernel would, at exit)."""
        self.held.clear()
        if self._slots is not None:
            self._slots.close()
            self._slots = None
