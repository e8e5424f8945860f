"""What a cache holds: `stats` (counts, bytes as materialized vs stored, dedupe)
and `ls` (the step entries). Read-only; imports the maintenance snapshot, cache,
records and hashing, and prints nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..config import load_settings
from ..errors import UsageError
from ..hashing import ContentId
from ..storage.cache import Cache
from ..storage.index import View
from ..storage.remote.client import load_stats
from .eviction import EvictionReport, disk_bytes, last_eviction, last_used
from .snapshot import (
    decode_artifacts,
    decode_steps,
    matches,
    open_index,
    output_ids,
    temporary_files,
)

# --- stats ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Sizes of a cache. Identities that hold by construction:

    objects = referenced_objects + unreferenced_objects (same for *_bytes);
    stored_bytes = referenced_object_bytes + inline_bytes;
    dedupe_ratio = logical_bytes / stored_bytes.
    """

    path: str
    step_entries: int
    artifacts: int
    runs: int
    environments: int
    objects: int  # object files on disk
    object_bytes: int
    referenced_objects: int  # ... that some artifact record references
    referenced_object_bytes: int
    unreferenced_objects: int  # ... that none does: what gc may delete
    unreferenced_object_bytes: int
    missing_objects: int  # referenced but absent ('cache verify' says more)
    inline_files: int  # small files kept inside artifact records in the index
    inline_bytes: int
    logical_bytes: int  # every artifact once, as its materializer wrote it
    output_bytes: int  # every step entry's outputs, an artifact once per entry naming it
    stored_bytes: int  # what holding the artifacts costs: referenced objects + inline
    dedupe_ratio: float | None  # logical / stored; None for an empty cache
    temporary_files: int
    temporary_bytes: int
    index_bytes: int  # index.lmdb's data file (LMDB never shrinks it; it reuses freed pages)
    disk_bytes: int  # what the size limit counts: objects in whole blocks, plus the index
    max_size: int | None  # the size limit in force here, if any
    max_size_source: str  # where it was set
    last_eviction: EvictionReport | None
    # What this cache moved through remotes: hits, misses, bytes_up, bytes_down, errors, ...
    remote: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def stats(cache: Cache) -> CacheStats:
    settings = load_settings()
    index = open_index(cache)
    store = cache.store

    def snapshot(view: View) -> tuple[list[tuple[bytes, bytes]], ...]:
        return view.items("steps"), view.items("artifacts")

    step_pairs, artifact_pairs = index.view(snapshot)
    counts = {db: index.count(db) for db in ("runs", "envs")}
    artifacts = decode_artifacts(artifact_pairs)
    referenced: set[ContentId] = set()
    inline_files = inline_bytes = logical = 0
    for record in artifacts.values():
        logical += record.size
        for entry in record.files.values():
            if entry.inline is not None:
                inline_files += 1
                inline_bytes += entry.size
            else:
                referenced.update(entry.chunks)
    output_bytes = 0
    for key, value in step_pairs:
        for content_id in output_ids(key, value):
            found = artifacts.get(content_id)
            output_bytes += found.size if found is not None else 0
    objects = object_bytes = ref_objects = ref_bytes = disk = 0
    for object_id, size in store.iter_objects():
        objects += 1
        object_bytes += size
        disk += disk_bytes(size)
        if object_id in referenced:
            ref_objects += 1
            ref_bytes += size
    temporary = temporary_files(store)
    stored = ref_bytes + inline_bytes
    data_file = cache.path / "index.lmdb" / "data.mdb"
    index_disk = data_file.stat().st_blocks * 512 if data_file.exists() else 0
    return CacheStats(
        path=str(cache.path),
        step_entries=len(step_pairs),
        artifacts=len(artifacts),
        runs=counts["runs"],
        environments=counts["envs"],
        objects=objects,
        object_bytes=object_bytes,
        referenced_objects=ref_objects,
        referenced_object_bytes=ref_bytes,
        unreferenced_objects=objects - ref_objects,
        unreferenced_object_bytes=object_bytes - ref_bytes,
        missing_objects=len(referenced) - ref_objects,
        inline_files=inline_files,
        inline_bytes=inline_bytes,
        logical_bytes=logical,
        output_bytes=output_bytes,
        stored_bytes=stored,
        dedupe_ratio=round(logical / stored, 4) if stored else None,
        temporary_files=len(temporary),
        temporary_bytes=sum(info.st_size for _, info in temporary),
        index_bytes=data_file.stat().st_size if data_file.exists() else 0,
        disk_bytes=disk + index_disk,
        max_size=settings.max_size,
        max_size_source=settings.source("max_size"),
        last_eviction=last_eviction(cache),
        remote=load_stats(index).to_json(),
    )


# --- ls ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutputInfo:
    name: str
    content_id: ContentId
    size: int | None  # None when its artifact record is gone
    materializer: str
    type_name: str


@dataclass(frozen=True, slots=True)
class StepEntry:
    key: str
    name: str
    pipeline: str
    step: str
    fingerprint: str
    outputs: tuple[OutputInfo, ...]
    size: int
    created: float
    duration: float
    run_id: str
    last_used: float  # what size-limit eviction orders by (see maintenance.eviction)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_ORDERS: dict[str, Callable[[StepEntry], Any]] = {
    "step": lambda e: (e.pipeline, e.name, -e.created, e.key),
    "last-used": lambda e: (e.last_used, e.key),
    "created": lambda e: (e.created, e.key),
    "size": lambda e: (-e.size, e.key),
}


def ls(cache: Cache, step: str | None = None, *, sort: str = "step") -> list[StepEntry]:
    """The step entries (of one step, when named), by pipeline and step, newest first;
    `sort="last-used"` puts first what size-limit eviction would take first."""
    if sort not in _ORDERS:
        raise UsageError(f"cannot sort by {sort!r}; use one of {', '.join(_ORDERS)}")
    index = open_index(cache)

    def snapshot(
        view: View,
    ) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]], dict[str, float]]:
        return view.items("steps"), view.items("artifacts"), last_used(view)

    step_pairs, artifact_pairs, used = index.view(snapshot)
    artifacts = decode_artifacts(artifact_pairs)
    entries = []
    for record in decode_steps(step_pairs).values():
        if step is not None and not matches(record, step):
            continue
        outputs = []
        for name, content_id in zip(record.output_names, record.output_ids, strict=False):
            found = artifacts.get(content_id)
            outputs.append(
                OutputInfo(
                    name,
                    content_id,
                    found.size if found else None,
                    found.materializer if found else record.materializers.get(name, ""),
                    found.type_name if found else "",
                )
            )
        entries.append(
            StepEntry(
                key=record.key,
                name=record.name,
                pipeline=record.pipeline,
                step=record.step,
                fingerprint=record.fingerprint,
                outputs=tuple(outputs),
                size=sum(o.size or 0 for o in outputs),
                created=record.created,
                duration=record.duration,
                run_id=record.run_id,
                last_used=used.get(record.key, record.created),
            )
        )
    entries.sort(key=_ORDERS[sort])
    return entries
