"""Group commit on a background thread: executed steps' records reach the index
while the next steps run.

Every commit of the index is fdatasynced (0.3 ms on a quiet disk, far more on a
busy one), which costs more than a quick step. So the driver hands a finished
step's records here and goes on; this thread commits whatever has queued up in
one transaction, then tells the runner (which releases those steps' leases:
entry first, lease after, so a waiting process finds the entry). While one
commit syncs, the next batch gathers: one fsync per batch, not per step.

The crash guarantee: records are committed in the order their steps finished,
each batch atomically, within one commit's time of being queued (longer only
while the driver holds the GIL in pure-Python code). The index's map never
resizes (index.py), so this thread commits beside the driver's reads with no
handshake. A kill -9 loses at most the queued records (those steps run again,
finding their objects already stored) and never damages or loses a committed
entry. `drain` waits for everything queued; a run returns only after it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ..storage.index import Index, Op

# An idle committer thread ends after this long; the next record starts another.
_IDLE_SECONDS = 1.0


class Committer:
    def __init__(self, index: Index, committed: Callable[[list[Any]], None]) -> None:
        """`committed` is called on this thread with the tokens of each batch once it
        is committed, or once it has failed (the run stops then)."""
        self.index = index
        self._committed = committed
        self._cond = threading.Condition()
        self._queue: list[tuple[list[Op], Any]] = []  # (ops, the submitter's token)
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._idle = False  # the thread waits for work: only then is a wake-up needed

    def submit(self, ops: list[Op], token: Any) -> None:
        with self._cond:
            self._queue.append((ops, token))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="zencache-committer", daemon=True
                )
                self._thread.start()
            elif self._idle:
                self._cond.notify_all()

    def check(self) -> None:
        """Between steps, in the driver: raise a commit's failure (a full disk, a
        damaged index) so the run stops."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def drain(self) -> None:
        """Wait until everything submitted is committed or has failed (a failed batch's
        leases are released too, so nothing waits on this run after it); then raise
        a commit's failure."""
        with self._cond:
            while self._queue:
                self._cond.wait()
        self.check()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._idle = True
                    woken = self._cond.wait(_IDLE_SECONDS)
                    self._idle = False
                    if not woken and not self._queue:
                        self._thread = None
                        return
                batch = list(self._queue)
            ops = [op for item_ops, _ in batch for op in item_ops]
            try:
                self.index.write(ops)
            except BaseException as exc:  # reported to the driver by check/drain
                self._finish(batch, exc)
                continue
            self._finish(batch, None)

    def _finish(self, batch: list[tuple[list[Op], Any]], error: BaseException | None) -> None:
        try:
            self._committed([token for _, token in batch])
        except BaseException as exc:
            error = error or exc
        with self._cond:
            del self._queue[: len(batch)]
            if error is not None and self._error is None:
                self._error = error
            self._cond.notify_all()
