"""Results as data: the public `Cache`, with its runs and artifacts as read-only views.

`Cache().runs(pipeline=..., status=...)` lists runs newest first without loading
any artifact; `Cache().run("latest" | "NAME@latest" | id | prefix)` gets one;
`Cache().artifact(id)` an artifact by content id (or prefix, or RUN:STEP.OUTPUT),
with its lineage. Sits beside maintenance (whose lookups it uses) and above core
(whose Run and StepResult it returns); prints nothing. `import zencache` imports
this module for `Cache`, so what only its methods need is imported in them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CorruptObjectError, UsageError
from ..storage import cache as storage_cache
from ..storage.records import ArtifactRecord, StepRecord
from ..storage.store import Blob

if TYPE_CHECKING:
    from ..core.runs import Run
    from ..maintenance.provenance import Lineage

RUN_STATUSES = ("completed", "failed", "interrupted")


class Cache(storage_cache.Cache):
    """A cache directory, and what it recorded: `Cache().run("latest").steps["trainer"]`.

    `Cache()` finds the project's cache as the command line does ($ZENCACHE_DIR,
    [tool.zencache] cache_dir, the nearest .zencache up the tree); `Cache(path)`
    names one. Reading never creates a cache: a missing one is a CacheError.
    """

    def runs(
        self,
        pipeline: str | None = None,
        status: str | None = None,
        limit: int | None = None,
    ) -> list[Run]:
        """Recorded runs, newest first: all, or those of one pipeline (its name, or
        the name its target gave it) and with one status (completed, failed,
        interrupted). Cheap: each Run reads its steps' entries and loads its
        outputs only when asked."""
        if status is not None and status not in RUN_STATUSES:
            raise UsageError(
                f"unknown run status {status!r}; use one of: {', '.join(RUN_STATUSES)}"
            )
        from ..core.runs import Run
        from ..maintenance import provenance

        records = provenance.list_runs(self, limit, pipeline=pipeline, status=status)
        return [Run(record, self) for record in records]

    def run(self, ref: str = "latest") -> Run:
        """One run: `latest`, `NAME@latest` (pipeline NAME's newest), either with
        `~N` (N runs before it), a run id, a unique prefix, or its random suffix."""
        from ..core.runs import Run
        from ..maintenance import provenance

        return Run(provenance.resolve_run(self, ref), self)

    def pipelines(self) -> list[str]:
        """The names of the pipelines that have recorded runs, sorted."""
        from ..maintenance import provenance

        return sorted({r.pipeline for r in provenance.list_runs(self)})

    def artifact(self, ref: str) -> Artifact:
        """An artifact by content id, a unique prefix of at least 8 hex digits, or
        `RUN:STEP[.OUTPUT]` (an output of a step of a run)."""
        content_id = resolve_artifact_id(self, ref)
        record = self.index.get_artifact(content_id)
        if record is None:
            raise UsageError(
                f"artifact {content_id} is not in the cache at {self.path} (removed by gc, "
                "clear or verify --repair); rerun the pipeline that made it"
            )
        return Artifact(record, self)


@dataclass(frozen=True, repr=False)
class Artifact:
    """A stored value: its content id, type, size, how to load it, and where it came from."""

    record: ArtifactRecord
    cache: storage_cache.Cache = field(repr=False, compare=False)

    def __repr__(self) -> str:
        return f"<Artifact {self.id}: {self.type_name}, {self.size} bytes>"

    @property
    def id(self) -> str:
        return self.record.content_id

    @property
    def type_name(self) -> str:
        return self.record.type_name

    @property
    def materializer(self) -> str:
        return self.record.materializer

    @property
    def size(self) -> int:
        return self.record.size

    @property
    def created(self) -> float:
        return self.record.created

    @property
    def files(self) -> dict[str, int]:
        """The files its materializer wrote, name -> size."""
        return {name: entry.size for name, entry in self.record.files.items()}

    def load(self) -> Any:
        """The value, through its materializer (every byte verified first)."""
        from ..materializers.artifacts import load_artifact

        return load_artifact(self.cache.store, self.record)

    read = load  # ZenML's spelling

    def lineage(self) -> Lineage:
        """Which steps, code, parameters and inputs made it, back to the sources."""
        from ..maintenance import provenance

        return provenance.lineage(self.cache, self.id)

    def producers(self) -> list[StepRecord]:
        """The step entries that output it (one, unless several steps made the same bytes)."""
        return [s for s in self.cache.index.iter_steps() if self.id in s.output_ids]


def resolve_artifact_id(cache: storage_cache.Cache, ref: str) -> str:
    """The content id named by `ref`: an id, a unique prefix, or RUN:STEP[.OUTPUT]."""
    from ..core.runs import Run
    from ..maintenance import provenance
    from ..maintenance.snapshot import open_index

    ref = ref.strip()
    if ":" in ref:
        run_ref, _, step_ref = ref.rpartition(":")
        step_name, _, output = step_ref.partition(".")
        run = Run(provenance.resolve_run(cache, run_ref), cache)
        step = find_step(run, step_name)
        if not step.outputs:
            raise UsageError(
                f"step {step.name!r} of run {run.id} has no outputs (status {step.status}); "
                f"'zencache runs show {run.id}' says why"
            )
        if not output:
            if len(step.outputs) != 1:
                raise UsageError(
                    f"step {step.name!r} has outputs {', '.join(step.outputs)}; name one, "
                    f"e.g. {run_ref}:{step.name}.{next(iter(step.outputs))}"
                )
            output = next(iter(step.outputs))
        if output not in step.outputs:
            raise UsageError(
                f"step {step.name!r} of run {run.id} has no output {output!r}; its outputs "
                f"are: {', '.join(step.outputs)}"
            )
        return step.outputs[output]
    wanted = ref.lower()
    if len(wanted) < provenance.MIN_PREFIX or not all(c in "0123456789abcdef" for c in wanted):
        raise UsageError(
            f"{ref!r} is not an artifact reference; pass RUN:STEP[.OUTPUT] (e.g. "
            f"latest:trainer) or a content id (at least {provenance.MIN_PREFIX} hex digits)"
        )
    index = open_index(cache)
    if index.get("artifacts", wanted.encode()) is not None:
        return wanted
    matches = sorted(k.decode() for k in index.keys("artifacts") if k.decode().startswith(wanted))
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UsageError(
            f"no artifact {wanted!r} in the cache at {cache.path}; 'zencache cache ls' lists "
            "the outputs of cached steps"
        )
    raise UsageError(
        f"artifact prefix {wanted!r} is ambiguous: it matches {', '.join(matches[:5])}; "
        "give more digits"
    )


def find_step(run: Run, name: str) -> Any:
    """A run's step by invocation name, or by function name when that is unique."""
    steps = run.steps
    if name in steps:
        return steps[name]
    by_function = [s for s in steps.values() if s.step.rpartition(":")[2] == name]
    if len(by_function) == 1:
        return by_function[0]
    names = ", ".join(steps) or "none"
    raise UsageError(f"run {run.id} has no step {name!r}; its steps are: {names}")


def export_files(cache: storage_cache.Cache, record: ArtifactRecord, dest: Path) -> list[Path]:
    """Write the artifact's files, as its materializer wrote them, every byte verified:
    a one-file artifact to `dest` itself, several into the folder `dest`."""
    from ..materializers.artifacts import artifact_id
    from ..materializers.base import safe_join

    if artifact_id(record.materializer, record.files) != record.content_id:
        raise CorruptObjectError(
            f"artifact {record.content_id}: its index record does not match its id; run "
            "'zencache cache verify --repair'",
            object_id=record.content_id,
        )
    written = []
    single = len(record.files) == 1
    if not single:
        dest.mkdir(parents=True, exist_ok=True)
    for name, entry in sorted(record.files.items()):
        target = dest if single else safe_join(dest, name)
        data = (
            entry.inline
            if entry.inline is not None
            else cache.store.read_blob(Blob(entry.size, entry.chunks))
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        written.append(target)
    return written
