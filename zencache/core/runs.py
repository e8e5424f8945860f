"""What `pipeline(...).run()` returns: per-step status, keys, durations, lazy outputs.

A Run is a view of one run record plus the cache it lives in; loading an output
goes through its materializer only when asked. Imports records, cache and
materializers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ZencacheError
from ..materializers.artifacts import load_artifact
from ..storage.cache import Cache
from ..storage.records import RunRecord, StepRun
from .context import StepLog


@dataclass(frozen=True, slots=True)
class StepEvent:
    """Progress of a run, for a CLI or a notebook: one per finished step."""

    name: str
    status: str
    done: int
    total: int
    duration: float


@dataclass(slots=True)
class StepResult:
    name: str
    status: str  # executed | cached | failed | skipped
    key: str
    duration: float
    outputs: dict[str, str]  # output name -> content id
    error: str
    cache: Cache = field(repr=False)
    _memory: dict[str, Any] = field(default_factory=dict, repr=False)
    # What the step logged: from the run record for a step this run executed, else
    # read from its cache entry on first use (a cached step's are its producer's).
    _log: StepLog | None = field(default=None, repr=False)

    # Where a cached step's entry came from: "local" (this cache) or "remote"
    # (another machine's run, through the remote cache); "" when it was not cached.
    source: str = ""

    @property
    def metrics(self) -> dict[str, float]:
        """The metrics the step logged (`zencache.log_metric`), final values by name;
        for a cached step, those of the execution that made its cache entry."""
        return dict(self._logged().metrics)

    @property
    def metric_history(self) -> dict[str, list[tuple[float, int | None]]]:
        """Every value of the metrics logged more than once or with a step number."""
        return self._logged().series()

    @property
    def metadata(self) -> dict[str, Any]:
        """The metadata the step logged (`zencache.log_metadata`)."""
        return dict(self._logged().metadata)

    def _logged(self) -> StepLog:
        if self._log is None:
            entry = None
            if self.key and self.status in ("cached", "executed"):
                entry = self.cache.index.get_step(self.key)
            self._log = (
                StepLog.from_json(
                    {
                        "metrics": entry.metrics,
                        "history": entry.metric_history,
                        "metadata": entry.metadata,
                    }
                )
                if entry is not None
                else StepLog()
            )
        return self._log

    def output(self, name: str | None = None) -> Any:
        """Load one output (the only one when `name` is None) through its materializer."""
        if name is None:
            if len(self.outputs) != 1:
                raise ZencacheError(
                    f"step {self.name!r} has outputs {list(self.outputs)}; pass output(name=...)"
                )
            name = next(iter(self.outputs))
        if name in self._memory:
            return self._memory[name]
        if name not in self.outputs:
            raise ZencacheError(
                f"step {self.name!r} has no output {name!r} in this run (it has "
                f"{list(self.outputs)}; status {self.status})"
            )
        record = self.cache.index.get_artifact(self.outputs[name])
        if record is None:
            raise ZencacheError(
                f"output {name!r} of step {self.name!r} is no longer in the cache at "
                f"{self.cache.path}; rerun the pipeline to recreate it"
            )
        value = load_artifact(self.cache.store, record)
        self.cache.index.record_use([self.key])  # for size-limit eviction's LRU
        return value


class Run:
    """One run of a pipeline: `run.steps["trainer"].status`, `run.output()`."""

    def __init__(
        self, record: RunRecord, cache: Cache, memory: Mapping[tuple[str, str], Any] | None = None
    ) -> None:
        self.record = record
        self.cache = cache
        by_step: dict[str, dict[str, Any]] = {}
        for (name, output), value in (memory or {}).items():
            by_step.setdefault(name, {})[output] = value
        self._memory = by_step
        self._steps: dict[str, StepResult] | None = None

    @property
    def steps(self) -> dict[str, StepResult]:
        """Each step's result, by invocation name; made on first use (a cached rerun
        of 10,000 steps need not build 10,000 results that no one reads)."""
        if self._steps is None:
            memory = self._memory
            logs = self.record.step_logs
            self._steps = {
                s.name: _result(s, self.cache, memory.get(s.name, {}), logs.get(s.name))
                for s in self.record.steps
            }
        return self._steps

    @property
    def run_id(self) -> str:
        return self.record.run_id

    @property
    def status(self) -> str:
        return self.record.status

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for s in self.steps.values():
            counts[s.status] = counts.get(s.status, 0) + 1
        summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        return f"<Run {self.run_id} of {self.record.pipeline}: {self.status}; {summary}>"

    def output(self) -> Any:
        """The pipeline's return value: None, one value, or a tuple, loaded lazily."""
        refs = self.record.output
        values = []
        for ref in refs:
            step_name, _, output = ref.partition(".")  # an output name may hold a dot
            values.append(self.steps[step_name].output(output))
        if not refs:
            return None
        if len(refs) == 1 and not self.record.output_is_tuple:
            return values[0]
        return tuple(values)


def _result(
    s: StepRun, cache: Cache, memory: dict[str, Any], logged: dict[str, Any] | None
) -> StepResult:
    log = StepLog.from_json(logged) if logged is not None else None
    if log is None and s.status in ("executed", "failed", "skipped", "interrupted"):
        log = StepLog()  # nothing logged in this run (the record keeps only non-empty logs)
    source = s.source or ("local" if s.status == "cached" else "")
    return StepResult(
        s.name,
        s.status,
        s.key,
        s.duration,
        dict(s.outputs),
        s.error,
        cache,
        memory,
        log,
        source=source,
    )
