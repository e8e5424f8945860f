"""`gc` and `clear`: removing what nothing kept references, and emptying on demand.

Owns the retention policy (see gc's docstring). Imports the maintenance
snapshot, cache, index, records and errors; prints nothing.

Why gc never deletes an object a pipeline still needs, even while one runs:

1. A run writes an artifact's objects durably *before* it commits the artifact
   record that references them; a write that finds its object already stored
   freshens the file's mtime when it is older than a minute (store.put, as git
   freshens loose objects). So every object a commit references was written or
   touched no earlier than a minute before that object's put.
2. gc notes its start time T, reads the index in one transaction (pruning
   decides and deletes inside that same write transaction), and only then lists
   the objects. It deletes an object only when no artifact record of that
   snapshot references it *and* its mtime is older than T - grace.
3. Let a record committed after the snapshot (so after T) reference an object
   O that its step wrote or freshened at time p. Then mtime(O) >= p - 1 minute,
   so gc deletes O only if p < T - grace + 1 minute: only if that step committed
   more than grace - 1 minute after saving O. Steps whose outputs take longer
   than that to save need a larger --grace.
4. What slips through anyway (a clock jump, a grace too short, a put landing
   between gc's stat and its unlink) costs a re-execution, never a wrong
   result: every read verifies its bytes; a missing object turns a hit into a miss.

Index entries follow the same rule: a step entry or artifact record younger than
the grace period is never pruned, so a run in progress (whose run record is
written last) keeps what it committed.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import lmdb

from ..errors import UsageError
from ..hashing import ContentId
from ..storage.cache import Cache
from ..storage.index import Index
from ..storage.records import RunRecord
from .snapshot import (
    StepRef,
    db_items,
    decode_artifact,
    decode_artifacts,
    decode_run,
    decode_step,
    decode_steps,
    matches,
    mtime,
    open_index,
    read,
    ref_order,
    temporary_files,
    unlink,
)

# An object or index entry younger than this may belong to a run in progress
# that has not committed (or not finished) yet; see the module docstring.
DEFAULT_GRACE = 600.0
# Temporary files live for one object write; an hour-old one is a crashed writer's.
TEMP_GRACE = 3600.0

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> float:
    """Seconds in `7d`, `12h`, `30m`, `45s`, `2w` or combinations like `1d12h`."""
    cleaned = text.strip().lower()
    if cleaned == "0":
        return 0.0  # zero needs no unit
    if not _DURATION.fullmatch(cleaned):
        raise UsageError(
            f"invalid duration {text!r}; use a number and a unit s, m, h, d or w, "
            "e.g. 7d, 12h, 30m or 1d12h"
        )
    return sum(float(n) * _UNITS[u] for n, u in _DURATION_PART.findall(cleaned))


# --- gc -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GcReport:
    dry_run: bool
    grace: float
    runs: tuple[str, ...]  # run records removed (or that would be)
    steps: tuple[StepRef, ...]
    artifacts: tuple[ContentId, ...]
    environments: tuple[str, ...]
    objects: int  # object files deleted
    object_bytes: int
    spared_objects: int  # unreferenced, but younger than the grace period
    spared_bytes: int
    temporary_files: int
    temporary_bytes: int
    kept_runs: int
    kept_steps: int
    kept_artifacts: int
    kept_objects: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class _Prune:
    runs: list[str] = field(default_factory=list)
    steps: list[StepRef] = field(default_factory=list)
    artifacts: list[ContentId] = field(default_factory=list)
    envs: list[str] = field(default_factory=list)
    kept_runs: int = 0
    kept_steps: int = 0
    kept_artifacts: int = 0
    reachable: set[ContentId] = field(default_factory=set)


def gc(
    cache: Cache,
    keep_last: int | None = None,
    older_than: float | str | None = None,
    dry_run: bool = False,
    *,
    grace: float | str = DEFAULT_GRACE,
    temp_grace: float = TEMP_GRACE,
) -> GcReport:
    """Remove what no kept entry needs. The policy:

    - Without options, every index entry is kept; only object files that no
      artifact record references are deleted, and temporary files older than
      `temp_grace`.
    - `keep_last=N` removes each pipeline's run records beyond its newest N;
      `older_than` removes run records finished longer ago than that (seconds
      or a duration like "7d"). Given both, a run is removed only when both say
      so: the newest N of every pipeline always stay.
    - With either option, a step entry goes when no kept run names it, it is not
      the latest of any pipeline step, and it is older than the grace period
      (and than `older_than`, when given). An artifact record goes when no kept
      step entry names it as output or input, under the same age rules. An
      environment record goes when no kept run and no kept step entry names it.
    - Then objects that no kept artifact record references, and that are older
      than the grace period, are deleted. Nothing referenced is ever deleted.
    """
    if keep_last is not None and keep_last < 0:
        raise UsageError(f"--keep-last must be 0 or more, got {keep_last}")
    max_age = parse_duration(older_than) if isinstance(older_than, str) else older_than
    grace_s = parse_duration(grace) if isinstance(grace, str) else float(grace)
    start = time.time()
    index = open_index(cache)
    store = cache.store
    pruning = keep_last is not None or max_age is not None

    def plan(txn: lmdb.Transaction) -> _Prune:
        result = _plan_prune(txn, index, keep_last, max_age, grace_s, start, pruning)
        if pruning and not dry_run:
            for run_id in result.runs:
                txn.delete(run_id.encode(), db=index.db("runs"))
            for ref in result.steps:
                index.delete_step(txn, ref.key.encode())
            for content_id in result.artifacts:
                txn.delete(content_id.encode(), db=index.db("artifacts"))
            for env_id in result.envs:
                txn.delete(env_id.encode(), db=index.db("envs"))
        return result

    # The deciding snapshot is the transaction that deletes (so no commit can slip
    # between decision and deletion), and it is taken before objects are listed.
    prune = index.transact(plan) if pruning and not dry_run else read(index, plan)

    deadline = start - grace_s
    removed = removed_bytes = spared = spared_bytes = kept = 0
    for object_id, size in store.iter_objects():
        if object_id in prune.reachable:
            kept += 1
            continue
        modified = mtime(store.path(object_id))
        if modified is None:
            continue
        if modified > deadline:
            spared += 1
            spared_bytes += size
            continue
        if dry_run or store.delete(object_id):
            removed += 1
            removed_bytes += size
    temp_files = temp_bytes = 0
    for path, info in temporary_files(store):
        if info.st_mtime < start - temp_grace and (dry_run or unlink(path)):
            temp_files += 1
            temp_bytes += info.st_size
    return GcReport(
        dry_run=dry_run,
        grace=grace_s,
        runs=tuple(prune.runs),
        steps=tuple(sorted(prune.steps, key=ref_order)),
        artifacts=tuple(sorted(prune.artifacts)),
        environments=tuple(sorted(prune.envs)),
        objects=removed,
        object_bytes=removed_bytes,
        spared_objects=spared,
        spared_bytes=spared_bytes,
        temporary_files=temp_files,
        temporary_bytes=temp_bytes,
        kept_runs=prune.kept_runs,
        kept_steps=prune.kept_steps,
        kept_artifacts=prune.kept_artifacts,
        kept_objects=kept,
    )


def _plan_prune(
    txn: lmdb.Transaction,
    index: Index,
    keep_last: int | None,
    max_age: float | None,
    grace: float,
    now: float,
    pruning: bool,
) -> _Prune:
    result = _Prune()
    artifact_pairs = db_items(txn, index, "artifacts")
    if not pruning:
        artifacts = decode_artifacts(artifact_pairs)
        result.kept_runs = txn.stat(index.db("runs"))["entries"]
        result.kept_steps = txn.stat(index.db("steps"))["entries"]
        result.kept_artifacts = len(artifacts)
        result.reachable = {o for a in artifacts.values() for o in a.object_ids()}
        return result

    runs = [decode_run(k, v) for k, v in db_items(txn, index, "runs")]
    by_pipeline: dict[str, list[RunRecord]] = defaultdict(list)
    for run in runs:
        by_pipeline[run.pipeline].append(run)
    kept_runs: list[RunRecord] = []
    for pipeline_runs in by_pipeline.values():
        pipeline_runs.sort(key=lambda r: r.run_id, reverse=True)  # ids sort by start time
        # Only completed runs count: a failed run after a good one must not push the
        # good one (and the outputs only it names) out.
        completed = 0
        for run in pipeline_runs:
            beyond = keep_last is None or completed >= keep_last
            completed += run.status == "completed"
            old = max_age is None or run.finished < now - max_age
            if beyond and old:
                result.runs.append(run.run_id)
            else:
                kept_runs.append(run)
    result.runs.sort()
    result.kept_runs = len(kept_runs)

    # Entries younger than this stay whatever references them: see the docstring.
    young = now - max(grace, max_age or 0.0)
    named = {s.key for run in kept_runs for s in run.steps if s.key}
    named.update(v.decode() for _, v in db_items(txn, index, "latest"))
    referenced: set[ContentId] = set()
    used_envs = {run.env_id for run in kept_runs}
    for key, value in db_items(txn, index, "steps"):
        record = decode_step(key, value)
        if record.key in named or record.created > young:
            result.kept_steps += 1
            used_envs.add(record.env_id)
            referenced.update(record.output_ids)
            referenced.update(record.inputs.values())
        else:
            result.steps.append(StepRef.of(record))

    for key, value in artifact_pairs:
        content_id = key.decode()
        record = decode_artifact(key, value)
        if content_id in referenced or record.created > young:
            result.kept_artifacts += 1
            result.reachable.update(record.object_ids())
        else:
            result.artifacts.append(content_id)

    result.envs = [
        k.decode()
        for k in txn.cursor(db=index.db("envs")).iternext(values=False)
        if k.decode() not in used_envs
    ]
    return result


# --- clear ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClearReport:
    step: str | None
    steps: tuple[StepRef, ...]
    latest: tuple[str, ...]  # "pipeline/step" pointers removed
    artifacts: int
    runs: int
    environments: int
    objects: int  # object files deleted (clearing everything only; else gc does it)
    object_bytes: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def clear(cache: Cache, step: str | None = None) -> ClearReport:
    """Drop every entry (and every object), or the step entries of one step.

    For one step (by invocation name, module:qualname or qualname): its step
    entries, the latest pointers to them, and the artifact records that only
    they produced; run records stay (as history) and the objects are left to
    'cache gc'. The next run re-executes that step.
    """
    index = open_index(cache)
    if step is None:
        return _clear_all(cache, index)

    def drop(txn: lmdb.Transaction) -> ClearReport:
        steps = decode_steps(db_items(txn, index, "steps"))
        removed = [r for r in steps.values() if matches(r, step)]
        if not removed:
            known = sorted({r.name for r in steps.values()})
            listing = ", ".join(known[:10]) + (" ..." if len(known) > 10 else "")
            raise UsageError(
                f"no step entries match {step!r} in the cache at {cache.path}; "
                + (f"the cached steps are: {listing}" if known else "the cache holds no steps")
            )
        removed_keys = {r.key for r in removed}
        still_named: set[ContentId] = set()
        for record in steps.values():
            if record.key not in removed_keys:
                still_named.update(record.output_ids)
                still_named.update(record.inputs.values())
        orphans = {c for r in removed for c in r.output_ids} - still_named
        latest = [
            k.decode()
            for k, v in db_items(txn, index, "latest")
            if v.decode() in removed_keys or k.decode().rpartition("/")[2] == step
        ]
        for key in removed_keys:
            index.delete_step(txn, key.encode())
        for name in latest:
            txn.delete(name.encode(), db=index.db("latest"))
        dropped = sum(1 for c in orphans if txn.delete(c.encode(), db=index.db("artifacts")))
        refs = tuple(sorted((StepRef.of(r) for r in removed), key=ref_order))
        return ClearReport(step, refs, tuple(sorted(latest)), dropped, 0, 0, 0, 0)

    return index.transact(drop)


def _clear_all(cache: Cache, index: Index) -> ClearReport:
    def drop(txn: lmdb.Transaction) -> ClearReport:
        steps = decode_steps(db_items(txn, index, "steps"))
        latest = [k.decode() for k in txn.cursor(db=index.db("latest")).iternext(values=False)]
        counts = {db: txn.stat(index.db(db))["entries"] for db in ("artifacts", "runs", "envs")}
        # Leases stay: they belong to processes executing right now.
        for db in ("steps", "hits", "artifacts", "runs", "envs", "latest"):
            txn.drop(index.db(db), delete=False)
        refs = tuple(sorted((StepRef.of(r) for r in steps.values()), key=ref_order))
        return ClearReport(
            None,
            refs,
            tuple(sorted(latest)),
            counts["artifacts"],
            counts["runs"],
            counts["envs"],
            0,
            0,
        )

    report = index.transact(drop)
    store = cache.store
    removed = removed_bytes = 0
    for object_id, size in store.iter_objects():
        if store.delete(object_id):
            removed += 1
            removed_bytes += size
    start = time.time()
    for path, info in temporary_files(store):
        if info.st_mtime < start - TEMP_GRACE:
            unlink(path)
    return ClearReport(
        None,
        report.steps,
        report.latest,
        report.artifacts,
        report.runs,
        report.environments,
        removed,
        removed_bytes,
    )
