"""A size limit that holds by itself: least-recently-used eviction, pins, usage.

Owns the eviction policy (ccache's and bazel-remote's model): when the cache is
over its limit, drop the least recently used step entries, and the artifact
records and objects only they reach, until it is under a low-water mark. The
index owns no policy; this module decides inside one index write transaction
and deletes objects only after that transaction committed, so a crash at any
moment leaves an index whose every entry still has its objects (what was not yet
deleted is an unreferenced object that gc or the next eviction removes).

Last use of a step entry, without a write on the hit path: the newest of its
creation, the finish of every recorded run that names it (a run record is
already the batched log of every hit it served), and the `used` table, which
records loads made outside a run (`run.output()`, `zencache show`).

Never evicted: entries of pinned runs; entries whose keys are leased (being
executed now); entries of the run that just finished. The latest run of each
pipeline is evicted only when the limit cannot be met otherwise, and the report
says so. Objects that no entry names yet are spared for the grace period (a
concurrent run may be about to commit them); objects named only by evicted
entries are deleted whatever their age, so a quick series of runs can be evicted.

Imports the maintenance snapshot, cache, index and records; prints nothing.
"""

from __future__ import annotations

import json
import struct
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import UsageError
from ..hashing import ContentId
from ..storage.cache import Cache
from ..storage.index import Index, Update, View
from ..storage.lease_slots import slot
from ..storage.records import ArtifactRecord, RunRecord, StepRecord
from .gc import DEFAULT_GRACE
from .snapshot import decode_artifact, decode_run, decode_step, open_index

LOW_WATER = 0.9  # after evicting, the cache is at most this fraction of its limit
_USAGE_KEY = b"usage"  # meta: {"measured": bytes, "at": time, "pending": bytes}
_EVICTION_KEY = b"last-eviction"  # meta: the last EvictionReport that evicted something
_STAMP = struct.Struct("<d")  # the index's `used` values
_DELETERS = 16  # threads unlinking evicted objects
_BLOCK = 4096  # what a file occupies is rounded up to the file system's block


def disk_bytes(size: int) -> int:
    """What a file of `size` bytes occupies (whole blocks; an empty file takes none)."""
    return -(-size // _BLOCK) * _BLOCK


@dataclass(frozen=True, slots=True)
class Usage:
    objects: int  # object files
    object_bytes: int  # what they occupy on disk, each shared chunk once
    index_bytes: int

    @property
    def total(self) -> int:
        return self.object_bytes + self.index_bytes


def measure(cache: Cache) -> tuple[Usage, dict[ContentId, int]]:
    """The cache's size on disk, and every object's share of it."""
    sizes = {object_id: disk_bytes(size) for object_id, size in cache.store.iter_objects()}
    data_file = cache.path / "index.lmdb" / "data.mdb"
    try:
        index_bytes = data_file.stat().st_blocks * 512
    except OSError:
        index_bytes = 0
    return Usage(len(sizes), sum(sizes.values()), index_bytes), sizes


@dataclass(frozen=True, slots=True)
class EvictionReport:
    limit: int
    before: int  # bytes on disk when eviction started
    after: int  # bytes on disk after it (estimated from what was freed)
    evicted_steps: tuple[str, ...]  # step keys
    evicted_artifacts: int
    deleted_objects: int
    freed_bytes: int
    finished: float
    latest_evicted: tuple[str, ...] = ()  # pipelines whose latest run had to go
    over_limit: bool = False  # still over: pinned or in-use data exceeds the limit
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def evicted(self) -> bool:
        return bool(self.evicted_steps or self.deleted_objects)


@dataclass(slots=True)
class _Plan:
    steps: list[str] = field(default_factory=list)
    artifacts: list[ContentId] = field(default_factory=list)
    objects: list[ContentId] = field(default_factory=list)
    freed: int = 0
    latest_evicted: set[str] = field(default_factory=set)


# --- pins and last use ----------------------------------------------------------------


def pin(cache: Cache, run_id: str) -> None:
    """Keep every entry of a run whatever the size limit says (`zencache pin`)."""
    open_index(cache).write([("pins", run_id.encode(), _STAMP.pack(time.time()))])


def unpin(cache: Cache, run_id: str) -> bool:
    index = open_index(cache)
    if index.get("pins", run_id.encode()) is None:
        return False
    index.write([("pins", run_id.encode(), None)])
    return True


def pinned_runs(cache: Cache) -> list[str]:
    return [key.decode() for key in open_index(cache).keys("pins")]


def last_used(
    view: View,
    steps: dict[str, StepRecord] | None = None,
    runs: list[RunRecord] | None = None,
) -> dict[str, float]:
    """Every step entry's last use: creation, runs that name it, loads outside runs.
    Pass the step entries and runs when the caller decoded them already."""
    if steps is None:
        steps = {k.decode(): decode_step(k, v) for k, v in view.items("steps")}
    if runs is None:
        runs = [decode_run(k, v) for k, v in view.items("runs")]
    used = {key: record.created for key, record in steps.items()}
    for run in runs:
        for step in run.steps:
            if step.key in used and used[step.key] < run.finished:
                used[step.key] = run.finished
    for key, value in view.items("used"):
        name = key.decode()
        if name in used:
            used[name] = max(used[name], _STAMP.unpack(value)[0])
    return used


# --- enforcement ----------------------------------------------------------------------


def read_usage(cache: Cache) -> dict[str, float]:
    found = open_index(cache).get("meta", _USAGE_KEY)
    return json.loads(found) if found else {}


def last_eviction(cache: Cache) -> EvictionReport | None:
    found = open_index(cache).get("meta", _EVICTION_KEY)
    if not found:
        return None
    data = json.loads(found)
    for name in ("evicted_steps", "latest_evicted"):
        data[name] = tuple(data.get(name, ()))
    return EvictionReport(**data)


def after_run(cache: Cache, run: RunRecord, limit: int | None) -> EvictionReport | None:
    """Called once a run is recorded: enforce the limit, measuring only when needed.

    A fully cached run costs one meta read. The size on disk is measured (a walk
    of the object folders) only when the last measurement plus what runs wrote
    since may exceed the limit, so enforcement runs rarely.
    """
    if limit is None:
        return None
    index = open_index(cache)
    usage = json.loads(index.get("meta", _USAGE_KEY) or b"{}")
    written = _written_by(index, run)
    pending = usage.get("pending", 0) + written
    if "measured" in usage and usage["measured"] + pending <= limit:
        if written:
            usage["pending"] = pending
            index.write([("meta", _USAGE_KEY, json.dumps(usage).encode())])
        return None
    return enforce(cache, limit, protect_runs=(run.run_id,))


def _written_by(index: Index, run: RunRecord) -> int:
    """An upper bound of the bytes a run added: its executed steps' outputs, block-rounded."""
    total = 0
    for step in run.steps:
        if step.status != "executed":
            continue
        for content_id in step.outputs.values():
            record = index.get_artifact(content_id)
            if record is not None:
                total += sum(disk_bytes(f.size) for f in record.files.values() if f.inline is None)
    return total


def enforce(
    cache: Cache,
    limit: int,
    *,
    low_water: float = LOW_WATER,
    protect_runs: Iterable[str] = (),
    grace: float = DEFAULT_GRACE,
    dry_run: bool = False,
) -> EvictionReport:
    """Evict least-recently-used entries until the cache is under `low_water * limit`."""
    if limit <= 0:
        raise UsageError(f"the size limit must be positive, got {limit} bytes")
    started = time.time()
    index = open_index(cache)
    usage, sizes = measure(cache)
    if usage.total <= limit:
        report = EvictionReport(limit, usage.total, usage.total, (), 0, 0, 0, started)
        _remember(index, usage.total, None)
        return report
    target = int(limit * low_water)
    held = set(cache.leases.held_slots()) if cache.exists() else set()
    protected_runs = set(protect_runs)

    def orphan_is_old(object_id: ContentId) -> bool:
        modified = cache.store.modified(object_id)
        return modified is not None and modified < started - grace

    def decide(view: View) -> _Plan:
        leased = (
            {k for k in (key.decode() for key in view.keys("steps")) if slot(k) in held}
            if held
            else set()
        )
        return _plan(view, sizes, usage.total - target, protected_runs, leased, orphan_is_old)

    def decide_and_evict(update: Update) -> _Plan:
        plan = decide(update)
        for key in plan.steps:
            update.delete("steps", key.encode())  # and its hit row
            update.delete("used", key.encode())
        for content_id in plan.artifacts:
            update.delete("artifacts", content_id.encode())
        return plan

    # Decided in the transaction that deletes: no commit slips between the two.
    plan = index.view(decide) if dry_run else index.update(decide_and_evict)
    if dry_run:
        gone = plan.objects
    else:
        # An unlink of a file already on disk waits on the file system's journal
        # (~2.5 ms each here under load): many at once overlap those waits.
        with ThreadPoolExecutor(_DELETERS) as pool:
            done = pool.map(cache.store.delete, plan.objects)
            gone = [o for o, deleted in zip(plan.objects, done, strict=True) if deleted]
    deleted, freed = len(gone), sum(sizes.get(o, 0) for o in gone)
    after = usage.total - freed
    report = EvictionReport(
        limit=limit,
        before=usage.total,
        after=after,
        evicted_steps=tuple(plan.steps),
        evicted_artifacts=len(plan.artifacts),
        deleted_objects=deleted,
        freed_bytes=freed,
        finished=time.time(),
        latest_evicted=tuple(sorted(plan.latest_evicted)),
        over_limit=after > limit,
        dry_run=dry_run,
    )
    if not dry_run:
        _remember(index, after, report if report.evicted else None)
    return report


def _remember(index: Index, measured: int, report: EvictionReport | None) -> None:
    usage = {"measured": measured, "at": time.time(), "pending": 0}
    ops: list[tuple[str, bytes, bytes | None]] = [("meta", _USAGE_KEY, json.dumps(usage).encode())]
    if report is not None:
        ops.append(("meta", _EVICTION_KEY, json.dumps(report.to_json()).encode()))
    index.write(ops)


def _plan(
    view: View,
    sizes: dict[ContentId, int],
    to_free: int,
    protected_runs: set[str],
    leased: set[str],
    orphan_is_old: Callable[[ContentId], bool],
) -> _Plan:
    runs = [decode_run(k, v) for k, v in view.items("runs")]
    pins = {k.decode() for k in view.keys("pins")}
    never = set(leased)
    for run in runs:
        if run.run_id in pins or run.run_id in protected_runs:
            never.update(s.key for s in run.steps if s.key)
    latest: dict[str, str] = {}  # step key -> pipeline whose latest run names it
    for run in _latest_runs(runs):
        latest.update((s.key, run.pipeline) for s in run.steps if s.key)

    steps = {k.decode(): decode_step(k, v) for k, v in view.items("steps")}
    used = last_used(view, steps, runs)
    entries = {}
    artifact_refs: dict[ContentId, int] = defaultdict(int)
    for key, record in steps.items():
        named = set(record.output_ids) | set(record.inputs.values())
        entries[key] = named
        for content_id in named:
            artifact_refs[content_id] += 1
    artifacts: dict[ContentId, ArtifactRecord] = {}
    object_refs: dict[ContentId, int] = defaultdict(int)
    for raw_key, value in view.items("artifacts"):
        artifact = decode_artifact(raw_key, value)
        artifacts[artifact.content_id] = artifact
        for object_id in set(artifact.object_ids()):
            object_refs[object_id] += 1

    plan = _Plan()
    for object_id, size in sizes.items():  # objects no record references go first
        if object_refs.get(object_id, 0) == 0 and orphan_is_old(object_id):
            plan.objects.append(object_id)
            plan.freed += size
    candidates = sorted((k for k in entries if k not in never), key=lambda k: (used[k], k))
    ordinary = [k for k in candidates if k not in latest]
    last_resort = [k for k in candidates if k in latest]
    for key in [*ordinary, *last_resort]:
        if plan.freed >= to_free:
            break
        if key in latest:
            plan.latest_evicted.add(latest[key])
        plan.steps.append(key)
        for content_id in entries[key]:
            artifact_refs[content_id] -= 1
            found = artifacts.get(content_id)
            if artifact_refs[content_id] or found is None:
                continue
            plan.artifacts.append(content_id)
            for object_id in set(found.object_ids()):
                object_refs[object_id] -= 1
                if object_refs[object_id] == 0 and object_id in sizes:
                    plan.objects.append(object_id)
                    plan.freed += sizes[object_id]
    return plan


def _latest_runs(runs: list[RunRecord]) -> list[RunRecord]:
    """Each pipeline's newest completed run (its newest run, when none completed)."""
    newest: dict[str, RunRecord] = {}
    for run in sorted(runs, key=lambda r: r.run_id):  # ids sort by start time
        current = newest.get(run.pipeline)
        if current is None or run.status == "completed" or current.status != "completed":
            newest[run.pipeline] = run
    return list(newest.values())
