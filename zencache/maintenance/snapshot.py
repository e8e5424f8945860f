"""Reading a cache for maintenance: one consistent snapshot, records decoded with
a message that says what to do when one is damaged, and the small helpers the
other maintenance modules share. Imports cache, index, records, store, errors.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import CacheError, CorruptIndexError
from ..hashing import ContentId
from ..storage.cache import Cache
from ..storage.index import Index
from ..storage.records import ArtifactRecord, RunRecord, StepRecord, decode_output_ids
from ..storage.store import ObjectStore


@dataclass(frozen=True, slots=True)
class StepRef:
    """Enough to name a step entry in a report."""

    key: str
    name: str
    pipeline: str
    step: str

    @classmethod
    def of(cls, record: StepRecord) -> StepRef:
        return cls(record.key, record.name, record.pipeline, record.step)


def open_index(cache: Cache) -> Index:
    """The cache's index, refusing to create a cache that does not exist; read through
    in a child process first (Cache.checked_index), since maintenance reads it all."""
    if not cache.exists():
        raise CacheError(f"no cache at {cache.path}; run a pipeline first or pass --cache-dir")
    return cache.checked_index()


def decode_step(key: bytes, value: bytes) -> StepRecord:
    try:
        return StepRecord.decode(value)
    except (ValueError, TypeError, KeyError, struct.error) as exc:
        raise CorruptIndexError(
            f"step entry {key.decode(errors='replace')} in the index cannot be read ({exc}); "
            "run 'zencache cache verify --repair' to drop it"
        ) from exc


def output_ids(key: bytes, value: bytes) -> tuple[ContentId, ...]:
    """A step entry's output ids without parsing the rest of it (a slice, no JSON)."""
    try:
        return decode_output_ids(value)
    except (ValueError, struct.error):
        return decode_step(key, value).output_ids  # raises the error that says what to do


def decode_artifact(key: bytes, value: bytes) -> ArtifactRecord:
    try:
        return ArtifactRecord.decode(value)
    except (ValueError, TypeError, KeyError, struct.error) as exc:
        raise CorruptIndexError(
            f"artifact record {key.decode(errors='replace')} in the index cannot be read "
            f"({exc}); run 'zencache cache verify --repair' to drop it"
        ) from exc


def decode_run(key: bytes, value: bytes) -> RunRecord:
    try:
        return RunRecord.decode(value)
    except (ValueError, TypeError, KeyError, struct.error) as exc:
        raise CorruptIndexError(
            f"run record {key.decode(errors='replace')} in the index cannot be read ({exc}); "
            "run 'zencache cache verify --repair' to drop it (cached results stay)"
        ) from exc


def decode_steps(pairs: Iterable[tuple[bytes, bytes]]) -> dict[str, StepRecord]:
    return {k.decode(): decode_step(k, v) for k, v in pairs}


def decode_artifacts(pairs: Iterable[tuple[bytes, bytes]]) -> dict[str, ArtifactRecord]:
    return {k.decode(): decode_artifact(k, v) for k, v in pairs}


def matches(record: StepRecord, step: str) -> bool:
    """A step is named by invocation name, identity (module:qualname) or bare qualname."""
    return step in (record.name, record.step, record.step.rpartition(":")[2])


def unlink(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def ref_order(ref: StepRef) -> tuple[str, str, str]:
    return (ref.pipeline, ref.name, ref.key)


def temporary_files(store: ObjectStore) -> list[tuple[Path, os.stat_result]]:
    """Temporary files with their stat; a writer may rename one away at any moment."""
    found = []
    for path in store.iter_temporary():
        try:
            found.append((path, os.stat(path)))
        except FileNotFoundError:
            continue
    return found
