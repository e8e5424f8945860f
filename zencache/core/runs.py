"""What `pipeline(...).run()` and `Cache().run(...)` return: read-only views of a
run and its steps (status, key, duration, parameters, code fingerprint parts,
environment) with lazy outputs.

A Run is a view of one run record plus the cache it lives in; a step's entry and
environment are read from the index when first asked for, and loading an output
goes through its materializer only when asked. Imports records, cache and
materializers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ZencacheError
from ..materializers.artifacts import load_artifact
from ..materializers.params import ParameterRestoreError, decode_param
from ..storage.cache import Cache
from ..storage.records import EnvRecord, RunRecord, StepRecord, StepRun
from .context import StepLog

# A step's entry not read yet (None means read and absent). False, not a fresh
# object(), so that a pickled StepResult keeps meaning "not read".
_UNREAD: Any = False


@dataclass(frozen=True, slots=True)
class StepEvent:
    """Progress of a run, for a CLI or a notebook: one per finished step."""

    name: str
    status: str
    done: int
    total: int
    duration: float


@dataclass(frozen=True, slots=True)
class StepResult:
    """One step of one run: what the run record says, and, read when first asked,
    its cache entry (how its key was made) and the environment it was computed in."""

    name: str
    status: str  # executed | cached | failed | skipped | interrupted
    key: str
    duration: float
    outputs: dict[str, str]  # output name -> content id
    error: str
    cache: Cache = field(repr=False, compare=False)
    _memory: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    step: str = ""  # identity: module:qualname
    # Where a cached step's entry came from: "local" (this cache) or "remote"
    # (another machine's run, through the remote cache); "" when it was not cached.
    source: str = ""
    _entry: Any = field(default=_UNREAD, repr=False, compare=False)
    # What the step logged: from the run record for a step this run executed, else
    # read from its cache entry on first use (a cached step's are its producer's).
    _log: StepLog | None = field(default=None, repr=False, compare=False)

    @property
    def entry(self) -> StepRecord | None:
        """The step's cache entry: None for a failed or skipped step, or once gc,
        clear or repair removed it."""
        if self._entry is _UNREAD:
            entry = self.cache.index.get_step(self.key) if self.key else None
            object.__setattr__(self, "_entry", entry)
        return self._entry

    @property
    def cached(self) -> bool:
        return self.status == "cached"

    @property
    def fingerprint(self) -> str | None:
        """The step's code fingerprint (`version:...` when pinned by hand)."""
        return self.entry.fingerprint if self.entry else None

    @property
    def code_parts(self) -> dict[str, str]:
        """What the fingerprint is made of: `code:module:qualname`, `const:...`,
        `dist:name`, `python` -> their digests or versions."""
        return dict(self.entry.code_parts) if self.entry else {}

    @property
    def parameters(self) -> dict[str, Any]:
        """Each parameter's value as recorded (ignored ones too); a value that could
        not be recorded, or cannot be restored here, is given by its repr."""
        entry = self.entry
        if entry is None:
            return {}
        values: dict[str, Any] = {n: p.get("repr", "") for n, p in entry.params.items()}
        for name, encoded in entry.param_values.items():
            try:
                values[name] = decode_param(encoded)
            except ParameterRestoreError:
                values.setdefault(name, "<not recorded>")
        return values

    @property
    def parameter_reprs(self) -> dict[str, str]:
        """The parameters that enter the key, as their reprs (cheap: nothing is restored)."""
        return {n: p.get("repr", "") for n, p in self.entry.params.items()} if self.entry else {}

    @property
    def inputs(self) -> dict[str, str]:
        """Input name -> the content id of the artifact it was given."""
        return dict(self.entry.inputs) if self.entry else {}

    @property
    def environment(self) -> EnvRecord | None:
        """The environment the step's entry was computed in (for a cached step, the
        run that executed it, which may differ from this run's)."""
        entry = self.entry
        return self.cache.index.get_env(entry.env_id) if entry and entry.env_id else None

    @property
    def run_id(self) -> str:
        """The run that executed this step's entry (a cached step names an earlier run)."""
        return self.entry.run_id if self.entry else ""

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
            entry = self.entry if self.status in ("cached", "executed") else None
            log = (
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
            object.__setattr__(self, "_log", log)
        return self._log  # type: ignore[return-value]

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


class Steps(Mapping[str, StepResult]):
    """A run's steps by invocation name, in run order; read-only. A missing name is a
    KeyError that lists the names there are."""

    __slots__ = ("_run_id", "_steps")

    def __init__(self, run_id: str, steps: dict[str, StepResult]) -> None:
        self._run_id = run_id
        self._steps = steps

    def __getitem__(self, name: str) -> StepResult:
        try:
            return self._steps[name]
        except KeyError:
            names = ", ".join(self._steps) or "none"
            raise KeyError(
                f"run {self._run_id} has no step {name!r}; its steps are: {names}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._steps)

    def __len__(self) -> int:
        return len(self._steps)

    def __contains__(self, name: object) -> bool:
        return name in self._steps

    def __repr__(self) -> str:
        return f"Steps({list(self._steps)})"


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
    def steps(self) -> Steps:
        """Each step's result, by invocation name, in run order (read-only); made on
        first use (a cached rerun of 10,000 steps need not build 10,000 results that
        no one reads)."""
        if self._steps is None:
            memory = self._memory
            logs = self.record.step_logs
            self._steps = {
                s.name: _result(s, self.cache, memory.get(s.name, {}), logs.get(s.name))
                for s in self.record.steps
            }
        return Steps(self.record.run_id, self._steps)

    @property
    def id(self) -> str:
        return self.record.run_id

    @property
    def run_id(self) -> str:
        return self.record.run_id

    @property
    def status(self) -> str:
        """completed | failed | interrupted"""
        return self.record.status

    @property
    def pipeline(self) -> str:
        return self.record.pipeline

    @property
    def target(self) -> str:
        """How the pipeline was named when run (`module:name`), if known."""
        return self.record.target

    @property
    def parameters(self) -> dict[str, str]:
        """The pipeline's parameters, as their reprs."""
        return dict(self.record.params)

    @property
    def started(self) -> float:
        return self.record.started

    @property
    def finished(self) -> float:
        return self.record.finished

    @property
    def duration(self) -> float:
        return self.record.finished - self.record.started

    @property
    def environment(self) -> EnvRecord | None:
        """Python, platform and installed distributions of the process that ran it."""
        return self.cache.index.get_env(self.record.env_id) if self.record.env_id else None

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
        s.step,
        source=source,
        _log=log,
    )
