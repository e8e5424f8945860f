"""The run's event stream: what happened to the run and to each step, as data.

The runner emits, in the driver and in order: one `RunStarted`; per step the
`CacheEvent`s of its fate (a `MISS` with its reasons when it starts executing, then
one outcome: `HIT`, `REMOTE_HIT`, `STORED`, `FAILED`, `SKIPPED` or `INTERRUPTED`;
`CORRUPT_RECOMPUTED` later when a cached output turned out missing or damaged);
then one `RunEnded`. Every consumer reads this one stream: the hooks
(hooks.HookDispatch), the CLI's progress line and run table, and the `StepEvent`
callback of `run(progress=...)` (StepProgress below). Records only, no English:
the CLI phrases them. Imports core.runs (StepEvent) only.

A run with no listener builds no event at all (the runner checks for listeners
first), so the cached-step path pays nothing for the stream.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from ..core.runs import StepEvent

if TYPE_CHECKING:
    from ..core.runs import Run

__all__ = [
    "CacheEvent",
    "Event",
    "EventKind",
    "Listener",
    "MissReason",
    "RunEnded",
    "RunStarted",
    "StepProgress",
]


class EventKind(StrEnum):
    """What happened to a step."""

    HIT = "hit"  # its entry in this cache serves it: not executed
    REMOTE_HIT = "remote hit"  # the remote cache's entry serves it (now recorded here too)
    MISS = "miss"  # it executes now; `reasons` say why
    STORED = "stored"  # it executed; its outputs are durable and its entry queued for commit
    # A step settled earlier in this run (a hit, or executed) whose stored output a
    # later step found missing or damaged: re-executed, its objects rewritten.
    CORRUPT_RECOMPUTED = "corrupt recomputed"
    FAILED = "failed"  # it raised (or its worker died, or its outputs could not be stored)
    SKIPPED = "skipped"  # an upstream step failed or was skipped
    INTERRUPTED = "interrupted"  # Ctrl-C (or SystemExit) while it ran: the run is ending


# The status (as StepRun and the run record spell it) each outcome leaves the step in.
_STATUS = {
    EventKind.HIT: "cached",
    EventKind.REMOTE_HIT: "cached",
    EventKind.STORED: "executed",
    EventKind.CORRUPT_RECOMPUTED: "executed",
    EventKind.FAILED: "failed",
    EventKind.SKIPPED: "skipped",
    EventKind.INTERRUPTED: "interrupted",
}


class MissReason(StrEnum):
    """Why a step executes: its key against the last entry recorded for it."""

    NEW = "new"  # no entry was ever recorded for this step in this pipeline
    CODE = "code"  # its function, code fingerprint or version= pin differs
    PARAMETERS = "parameters"  # a parameter's value (or the set of parameters) differs
    INPUTS = "inputs"  # an input's content differs, or the set of inputs
    EXTERNAL = "external"  # a file, folder or environment variable it reads differs
    OUTPUTS = "outputs"  # its outputs' names or materializers differ
    FORMAT = "format"  # every recorded ingredient matches: the key's own format changed
    ENTRY_GONE = "entry gone"  # its last entry was removed (gc, clear, eviction, repair)
    FORCED = "forced"  # the run ignores hits: force=True, `zencache run --no-cache`
    NOT_CACHED = "not cached"  # the step is never cached: @step(enable_cache=False)


@dataclass(frozen=True, slots=True)
class CacheEvent:
    """One thing that happened to one step (by invocation name)."""

    kind: EventKind
    step: str
    key: str = ""  # "" for a step skipped before its key was known
    # For outcomes: the step's time in this run, as its run record keeps it.
    duration: float = 0.0
    outputs: Mapping[str, str] = field(default_factory=dict)  # output name -> content id
    reasons: tuple[MissReason, ...] = ()  # MISS
    previous_key: str = ""  # MISS: the key of the last entry recorded for the step
    upstream: str = ""  # SKIPPED: the step that failed or was skipped before it
    error: str = ""  # FAILED: the traceback; INTERRUPTED: what stopped it
    damaged: str = ""  # CORRUPT_RECOMPUTED: the content id found missing or damaged

    @property
    def status(self) -> str | None:
        """The step's status after this event ("cached", "executed", ...), None for a MISS."""
        return _STATUS.get(self.kind)

    @property
    def source(self) -> str:
        """Where a hit's entry came from: "local" or "remote"; "" when not a hit."""
        if self.kind is EventKind.HIT:
            return "local"
        return "remote" if self.kind is EventKind.REMOTE_HIT else ""


@dataclass(frozen=True, slots=True)
class RunStarted:
    run_id: str
    pipeline: str
    steps: tuple[str, ...]  # invocation names, in the order the run record lists them
    params: Mapping[str, str]  # pipeline parameter -> short repr
    executor: str
    cache_dir: str
    target: str  # what the CLI was given (module:pipeline), else ""
    started: float  # time.time()


@dataclass(frozen=True, slots=True)
class RunEnded:
    run_id: str
    pipeline: str
    status: str  # completed | failed | interrupted
    duration: float
    steps: Mapping[str, str]  # invocation name -> status, for every settled step
    recorded: bool  # False when the cache is read-only here: no run record was written
    run: Run | None = field(default=None, compare=False)  # the run's view, when recorded


Event = RunStarted | CacheEvent | RunEnded
Listener = Callable[[Event], Any]


class StepProgress:
    """`run(progress=fn)`: `fn` gets a `StepEvent` per settled step (not a step
    recomputed later, nor one interrupted: the run is ending)."""

    __slots__ = ("_done", "_fn", "_total")

    def __init__(self, fn: Callable[[StepEvent], Any]) -> None:
        self._fn = fn
        self._done: set[str] = set()
        self._total = 0

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._total = len(event.steps)
            return
        if (
            not isinstance(event, CacheEvent)
            or event.status is None
            or event.kind in (EventKind.CORRUPT_RECOMPUTED, EventKind.INTERRUPTED)
        ):
            return
        self._done.add(event.step)
        self._fn(StepEvent(event.step, event.status, len(self._done), self._total, event.duration))
