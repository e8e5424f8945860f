"""The live progress line of `zencache run`.

On a terminal: one line on stderr, redrawn by a ticker thread with the steps done,
the time elapsed and the step running now; the user's prints take it down first.
Elsewhere: one plain line per finished step. Imports click and durations.
"""

from __future__ import annotations

import logging
import shutil
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import click

from .durations import human_duration

if TYPE_CHECKING:
    from ..core.dag import Dag
    from ..core.runs import StepEvent


class Progress:
    """The run's progress callback: a live line on a TTY, else one plain line per step.

    The live line shows the steps done, the time elapsed and the step running now,
    redrawn by a ticker thread. While it is up, sys.stdout and sys.stderr (when they
    are the terminal) are wrapped so that a step's prints clear the line first and
    start on a fresh one, instead of sticking to it.
    """

    _TICK = 0.1  # seconds between redraws of the elapsed time

    def __init__(self, dag: Dag, tty: bool, *, parallel: bool = False) -> None:
        self.order = list(dag.invocations)
        self.upstream = {name: inv.upstream for name, inv in dag.invocations.items()}
        self.parallel = parallel
        self.tty = tty
        self.events: list[StepEvent] = []
        self.finished: set[str] = set()
        self.started = time.perf_counter()
        self._lock = threading.RLock()
        self._drawn = False
        self._line_open = False  # the user's output left a line unfinished
        self._last = ""
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._terminal = sys.stderr
        self._guards: list[tuple[str, Any, _ClearingStream]] = []
        self._handlers: list[tuple[logging.StreamHandler[Any], Any]] = []
        if tty:
            for name in ("stdout", "stderr"):
                stream = getattr(sys, name)
                if _isatty(stream):
                    guard = _ClearingStream(stream, self)
                    setattr(sys, name, guard)
                    self._guards.append((name, stream, guard))
            # Log records (--debug, the user's own logging) go through the guard too.
            guards = {id(stream): guard for _, stream, guard in self._guards}
            for handler in logging.getLogger().handlers:
                if isinstance(handler, logging.StreamHandler) and id(handler.stream) in guards:
                    self._handlers.append((handler, handler.setStream(guards[id(handler.stream)])))
            self._redraw()
            self._ticker = threading.Thread(
                target=self._tick, name="zencache-progress", daemon=True
            )
            self._ticker.start()

    def __call__(self, event: StepEvent) -> None:
        with self._lock:
            self.events.append(event)
            self.finished.add(event.name)
            took = human_duration(event.duration, precise=True)
            if not self.tty:
                click.echo(
                    f"[{event.done}/{event.total}] {event.name} {event.status} ({took})", err=True
                )
                return
            self._last = f"{event.name} {event.status} ({took})"
            self._redraw()

    def running(self) -> list[str]:
        """The steps running now: the local executor runs the first unfinished step (in
        topological order); a parallel one, those whose upstream steps all finished."""
        ready = [
            name
            for name in self.order
            if name not in self.finished and all(u in self.finished for u in self.upstream[name])
        ]
        return ready if self.parallel else ready[:1]

    def line(self) -> str:
        done = len(self.finished)
        parts = [f"[{done}/{len(self.order)}] {_elapsed(time.perf_counter() - self.started)}"]
        now = self.running()
        if now:
            shown = ", ".join(now[:3]) + (f" (+{len(now) - 3})" if len(now) > 3 else "")
            parts.append(f"running {shown}")
        if self._last:
            parts.append(f"last: {self._last}")
        return "  ".join(parts)

    def _tick(self) -> None:
        while not self._stop.wait(self._TICK):
            with self._lock:
                self._redraw()

    def _redraw(self) -> None:
        if self._line_open or self._stop.is_set():
            return  # never draw onto a line the step is still writing
        width = max(20, shutil.get_terminal_size().columns - 1)
        self._terminal.write("\r\x1b[K" + self.line()[:width])
        self._terminal.flush()
        self._drawn = True

    def clear(self) -> None:
        """Take the live line down (before anything else is written to the terminal)."""
        if self._drawn:
            self._terminal.write("\r\x1b[K")
            self._terminal.flush()
            self._drawn = False

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        with self._lock:
            for handler, stream in self._handlers:
                handler.setStream(stream)
            self._handlers = []
            for name, stream, guard in self._guards:
                if getattr(sys, name) is guard:
                    setattr(sys, name, stream)
            self._guards = []
            if self._line_open:
                self._terminal.write("\n")
                self._line_open = False
            self.clear()


class _ClearingStream:
    """A terminal stream whose writes first take the progress line down."""

    def __init__(self, stream: Any, progress: Progress) -> None:
        self._stream = stream
        self._progress = progress

    def write(self, text: str) -> int:
        with self._progress._lock:
            self._progress.clear()
            written = self._stream.write(text)
            self._stream.flush()  # before the line is drawn again below it
            if text:
                self._progress._line_open = not text.endswith("\n")
            return written

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _elapsed(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
