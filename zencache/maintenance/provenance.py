"""Provenance: finding runs (`latest`, an id, a unique prefix) and their details,
and `lineage`, the tree of steps, code, parameters and inputs that made an
artifact, back to the sources. Read-only; imports the maintenance snapshot,
cache, records, hashing and errors, and prints nothing.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import UsageError
from ..hashing import ContentId
from ..storage.cache import Cache
from ..storage.index import Index
from ..storage.records import EnvRecord, RunRecord, StepRecord
from .snapshot import db_items, decode_run, decode_steps, open_index, read

# Shorter prefixes of 128-bit ids collide too easily to be worth resolving.
MIN_PREFIX = 8

_HEX = re.compile(r"^[0-9a-f]+$")


# --- runs ----------------------------------------------------------------------------------------


def resolve_run(cache: Cache, ref: str) -> RunRecord:
    """A run by `latest`, its id, a unique prefix of it, or its random suffix."""
    index = open_index(cache)
    ref = ref.strip()
    if ref == "latest":
        last = index.last("runs")
        if last is None:
            raise UsageError(f"no runs recorded in the cache at {cache.path}; run a pipeline first")
        return decode_run(*last)
    if not ref:
        raise UsageError("empty run id; pass a run id, a unique prefix of one, or 'latest'")
    exact = index.get("runs", ref.encode())
    if exact is not None:
        return decode_run(ref.encode(), exact)
    ids = [k.decode() for k in index.keys("runs")]
    matches = [i for i in ids if i.startswith(ref) or i.rpartition("-")[2] == ref]
    if len(matches) == 1:
        found = matches[0]
        value = index.get("runs", found.encode())
        if value is not None:
            return decode_run(found.encode(), value)
    if not matches:
        hint = "'zencache runs ls' lists them" if ids else "no runs are recorded yet"
        raise UsageError(f"no run matches {ref!r} in the cache at {cache.path}; {hint}")
    shown = ", ".join(matches[:5]) + (f" and {len(matches) - 5} more" if len(matches) > 5 else "")
    raise UsageError(f"run {ref!r} is ambiguous: it matches {shown}; give more characters")


def list_runs(cache: Cache, limit: int | None = None) -> list[RunRecord]:
    """Recorded runs, newest first."""
    index = open_index(cache)
    pairs = read(index, lambda txn: db_items(txn, index, "runs"))
    pairs.reverse()
    if limit:
        pairs = pairs[:limit]
    return [decode_run(k, v) for k, v in pairs]


def count_runs(cache: Cache) -> int:
    return open_index(cache).count("runs")


@dataclass(frozen=True, slots=True)
class RunDetails:
    """A run record with what it names: its environment and each step's entry."""

    record: RunRecord
    environment: EnvRecord | None
    entries: dict[str, StepRecord]  # step name -> its entry, while the cache holds it

    def to_json(self) -> dict[str, Any]:
        """The provenance record: the run, its environment, and per step how its
        key was made (code fingerprint and parts, parameters, inputs, outputs,
        materializers); `entry` is null once gc, clear or repair removed it."""
        out = asdict(self.record)
        # asdict keeps a NamedTuple (StepRun) a tuple: each step as an object.
        out["steps"] = [{**s._asdict(), "outputs": dict(s.outputs)} for s in self.record.steps]
        out["environment"] = asdict(self.environment) if self.environment else None
        for step in out["steps"]:
            entry = self.entries.get(step["name"])
            step["entry"] = _provenance(entry) if entry is not None else None
            step.update(self.logged(step["name"]))
        return out

    def logged(self, name: str) -> dict[str, Any]:
        """What step `name` logged: `metrics`, `metric_history` and `metadata`. A
        step this run executed: from the run record; a cached one: from its entry
        (what the execution that made it logged)."""
        found = self.record.step_logs.get(name)
        if found is None:
            step = next((s for s in self.record.steps if s.name == name), None)
            entry = self.entries.get(name)
            if step is not None and step.status == "cached" and entry is not None:
                found = {
                    "metrics": entry.metrics,
                    "history": entry.metric_history,
                    "metadata": entry.metadata,
                }
        found = found or {}
        return {
            "metrics": dict(found.get("metrics", {})),
            "metric_history": dict(found.get("history", {})),
            "metadata": dict(found.get("metadata", {})),
        }


def _provenance(record: StepRecord) -> dict[str, Any]:
    out = asdict(record)
    out.pop("output_ids")
    out.pop("output_names")
    out["outputs"] = dict(zip(record.output_names, record.output_ids, strict=False))
    out["untracked"] = list(record.untracked)
    return out


def run_details(cache: Cache, ref: str) -> RunDetails:
    record = resolve_run(cache, ref)
    index = cache.index
    entries = {}
    for step in record.steps:
        entry = index.get_step(step.key) if step.key else None
        if entry is not None:
            entries[step.name] = entry
    return RunDetails(record, index.get_env(record.env_id), entries)


# --- lineage -------------------------------------------------------------------------------------


@dataclass(slots=True)
class LineageInput:
    name: str
    content_id: ContentId
    producer: LineageNode | None  # None: a source, or its producer is no longer cached
    output: str | None = None  # which output of the producer it is

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "content_id": self.content_id,
            "output": self.output,
            "producer": self.producer.to_json() if self.producer else None,
        }


@dataclass(slots=True)
class LineageNode:
    key: str
    name: str
    step: str
    pipeline: str
    fingerprint: str
    code_parts: dict[str, str]
    params: dict[str, str]  # name -> repr
    materializers: dict[str, str]
    outputs: dict[str, ContentId]
    run_id: str
    created: float
    untracked: tuple[str, ...] = ()
    inputs: list[LineageInput] = field(default_factory=list)
    other_producers: tuple[str, ...] = ()  # other step keys with the same output
    repeated: bool = False  # already expanded higher in this tree (a shared ancestor)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "key": self.key,
            "name": self.name,
            "step": self.step,
            "pipeline": self.pipeline,
            "run_id": self.run_id,
            "repeated": self.repeated,
        }
        if self.repeated:
            return out
        out.update(
            fingerprint=self.fingerprint,
            code_parts=self.code_parts,
            params=self.params,
            materializers=self.materializers,
            outputs=self.outputs,
            created=self.created,
            untracked=list(self.untracked),
            other_producers=list(self.other_producers),
            inputs=[i.to_json() for i in self.inputs],
        )
        return out


@dataclass(slots=True)
class Lineage:
    ref: str
    content_id: ContentId | None  # the artifact asked about; None for a RUN:STEP ref
    output: str | None
    run_id: str | None  # the run named in the ref
    root: LineageNode

    def to_json(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "content_id": self.content_id,
            "output": self.output,
            "run_id": self.run_id,
            "root": self.root.to_json(),
        }


def lineage(cache: Cache, ref: str) -> Lineage:
    """Which steps, code, parameters and inputs made an artifact, back to the sources.

    `ref` is a content id (or a unique prefix of at least 8 characters) or
    `RUN:STEP[.output]`, RUN being a run id, a unique prefix, or `latest`.
    """
    index = open_index(cache)
    steps = read(index, lambda txn: decode_steps(db_items(txn, index, "steps")))
    producers: dict[ContentId, list[StepRecord]] = defaultdict(list)
    for record in steps.values():
        for content_id in record.output_ids:
            producers[content_id].append(record)

    content_id: ContentId | None = None
    output: str | None = None
    run_id: str | None = None
    if ":" in ref:
        run_ref, _, step_ref = ref.partition(":")
        step_name, _, output_name = step_ref.partition(".")
        run = resolve_run(cache, run_ref)
        run_id = run.run_id
        step_run = next((s for s in run.steps if s.name == step_name), None)
        if step_run is None:
            names = ", ".join(s.name for s in run.steps)
            raise UsageError(f"run {run.run_id} has no step {step_name!r}; its steps are: {names}")
        if output_name:
            if output_name not in step_run.outputs:
                raise UsageError(
                    f"step {step_name!r} of run {run.run_id} has no output {output_name!r}; "
                    f"its outputs are: {', '.join(step_run.outputs) or 'none (it did not complete)'}"
                )
            output, content_id = output_name, step_run.outputs[output_name]
        root_record = steps.get(step_run.key)
        if root_record is None and step_run.status not in ("executed", "cached"):
            raise UsageError(
                f"step {step_name!r} of run {run.run_id} did not complete (status "
                f"{step_run.status}), so it has no outputs; 'zencache runs show "
                f"{run.run_id}' says why"
            )
        if root_record is None:
            raise UsageError(
                f"step {step_name!r} of run {run.run_id} (key {step_run.key}) is no longer in "
                "the cache (removed by gc, clear or verify --repair); rerun the pipeline to "
                "record it again"
            )
    else:
        content_id = _resolve_content_id(cache, index, ref, producers)
        found = producers.get(content_id)
        if not found:
            raise UsageError(
                f"artifact {content_id} has no producing step entry in the cache (its step was "
                "removed by gc, clear or verify --repair); rerun its pipeline to record it"
            )
        root_record = _pick(found, None)
        output = root_record.output_names[root_record.output_ids.index(content_id)]

    seen: set[str] = set()

    def node(record: StepRecord) -> LineageNode:
        others = tuple(
            sorted(
                {
                    p.key
                    for c in record.output_ids
                    for p in producers.get(c, ())
                    if p.key != record.key
                }
            )
        )
        built = LineageNode(
            key=record.key,
            name=record.name,
            step=record.step,
            pipeline=record.pipeline,
            fingerprint=record.fingerprint,
            code_parts=dict(record.code_parts),
            params={n: p.get("repr", "") for n, p in record.params.items()},
            materializers=dict(record.materializers),
            outputs=dict(zip(record.output_names, record.output_ids, strict=False)),
            run_id=record.run_id,
            created=record.created,
            untracked=record.untracked,
            other_producers=others,
            repeated=record.key in seen,
        )
        if built.repeated:
            return built
        seen.add(record.key)
        for name, input_id in sorted(record.inputs.items()):
            candidates = producers.get(input_id)
            if not candidates:
                built.inputs.append(LineageInput(name, input_id, None))
                continue
            producer = _pick(candidates, record.pipeline)
            out_name = producer.output_names[producer.output_ids.index(input_id)]
            built.inputs.append(LineageInput(name, input_id, node(producer), out_name))
        return built

    return Lineage(ref, content_id, output, run_id, node(root_record))


def _pick(candidates: list[StepRecord], pipeline: str | None) -> StepRecord:
    """The producer to follow: same pipeline as its consumer first, then the newest."""
    return max(candidates, key=lambda r: (r.pipeline == pipeline, r.created, r.key))


def _resolve_content_id(
    cache: Cache, index: Index, ref: str, producers: dict[ContentId, list[StepRecord]]
) -> ContentId:
    wanted = ref.strip().lower()
    if not _HEX.match(wanted) or len(wanted) < MIN_PREFIX:
        raise UsageError(
            f"{ref!r} is not an artifact reference; pass a content id (at least {MIN_PREFIX} "
            "hex digits, see 'zencache cache ls') or RUN:STEP[.output], e.g. latest:trainer"
        )
    known = set(producers)
    known.update(k.decode() for k in index.keys("artifacts"))
    if wanted in known:
        return wanted
    matches = sorted(c for c in known if c.startswith(wanted))
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UsageError(
            f"no artifact {wanted!r} in the cache at {cache.path}; 'zencache cache ls' "
            "lists the outputs of cached steps"
        )
    shown = ", ".join(matches[:5])
    raise UsageError(
        f"artifact prefix {wanted!r} is ambiguous: it matches {shown}; give more digits"
    )
