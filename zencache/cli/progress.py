"""The live progress line of `zencache run`, and what its run table is made of.

A listener of the run's event stream (executors/events.py). On a terminal: one
line on stderr, redrawn by a ticker thread with the steps done, the time elapsed
and the steps executing now; the user's prints take it down first. Elsewhere: one
plain line per finished step. It keeps each step's last outcome, from which
pipeline_commands renders the table and `--json`. Imports click, durations and
the event records.
"""

from __future__ import annotations

import logging
import shutil
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import click

from ..executors.events import CacheEvent, Event, EventKind, RunEnded, RunStarted
from .durations import human_duration

if TYPE_CHECKING:
    from ..core.dag import Dag


class Progress:
    """The run's event listener: a live line on a TTY, else one plain line per step.

    The live line shows the steps done, the time elapsed and the steps executing now
    (those whose MISS came and whose outcome has not), redrawn by a ticker thread. While it is up, sys.stdout and sys.stderr (when they
    are the terminal) are wrapped so that a step's prints clear the line first and
    start on a fresh one, instead of sticking to it.
    """

    _TICK = 0.1  # seconds between redraws of the elapsed time

    def __init__(self, dag: Dag, tty: bool) -> None:
        self.order = list(dag.invocations)
        self.tty = tty
        self.run_started: RunStarted | None = None
        self.run_ended: RunEnded | None = None
        # Each settled step's last outcome (a recomputed hit's replaces its HIT), by step.
        self.outcomes: dict[str, CacheEvent] = {}
        self.executing: dict[str, None] = {}  # steps executing now, in the order they began
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

    def __call__(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, CacheEvent):
                self._step(event)
            elif isinstance(event, RunStarted):
                self.run_started = event
                self.order = list(event.steps)
            elif isinstance(event, RunEnded):
                self.run_ended = event

    def _step(self, event: CacheEvent) -> None:
        kind, name = event.kind, event.step
        if kind is EventKind.MISS:
            self.executing[name] = None
            if self.tty:
                self._redraw()
            return
        self.executing.pop(name, None)
        self.outcomes[name] = event
        if kind is EventKind.INTERRUPTED:
            return  # the run is ending: the CLI says so
        self.finished.add(name)
        took = human_duration(event.duration, precise=True)
        what = f"{name} {status_label(event)} ({took})"
        if kind is EventKind.CORRUPT_RECOMPUTED:
            damaged = f" {event.damaged[:12]}" if event.damaged else ""
            what = f"{name} recomputed ({took}): its stored output{damaged} was missing or damaged"
        if not self.tty:
            click.echo(f"[{len(self.finished)}/{len(self.order)}] {what}", err=True)
            return
        self._last = what
        self._redraw()

    def running(self) -> list[str]:
        """The steps executing now: those whose MISS came and whose outcome has not."""
        return list(self.executing)

    def steps(self) -> list[CacheEvent]:
        """Each settled step's last outcome, in the run's step order: the run table."""
        return [self.outcomes[name] for name in self.order if name in self.outcomes]

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


def status_label(event: CacheEvent) -> str:
    """`cached (remote)` for a hit another machine computed."""
    status = event.status or ""
    return f"{status} (remote)" if event.kind is EventKind.REMOTE_HIT else status


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
