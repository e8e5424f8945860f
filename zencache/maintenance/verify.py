"""`verify`: re-hash every object, check every artifact's chunks and every step's
outputs, and with `repair` drop what depends on damage so that the next run
re-executes exactly the steps that lost their outputs. One snapshot read, one
pass over the files, one write transaction. Imports the maintenance snapshot,
cache, index, records, errors and materializers.artifacts (artifact ids).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

from ..errors import CorruptIndexError, CorruptObjectError, MissingObjectError
from ..hashing import ContentId
from ..materializers.artifacts import artifact_id
from ..storage.cache import Cache
from ..storage.index import DATABASES, Index, Update, View
from ..storage.index_check import salvage
from ..storage.records import ArtifactRecord, EnvRecord, RunRecord, StepRecord
from .snapshot import StepRef, decode_artifact, decode_step, open_index, ref_order

log = logging.getLogger(__name__)
_MAX_KEY = 511  # LMDB's default key size limit

# --- verify and repair ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DamagedObject:
    object_id: ContentId
    problem: str  # missing | corrupt
    artifacts: tuple[ContentId, ...]  # artifact records that reference it
    steps: tuple[StepRef, ...]  # step entries whose outputs depend on it

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class DamagedArtifact:
    content_id: ContentId
    reasons: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class DamagedStep:
    entry: StepRef
    reasons: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Repair:
    """What `verify(repair=True)` dropped, so the next run re-executes those steps."""

    artifacts: tuple[ContentId, ...]
    steps: tuple[StepRef, ...]
    objects: tuple[ContentId, ...]  # damaged files deleted, so a rerun rewrites them
    runs: tuple[str, ...] = ()  # run records that could not be decoded

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Salvage:
    """`verify(repair=True)` on an index LMDB cannot read through: what was readable
    went into a new index; the damaged one was moved aside."""

    reason: str
    moved_to: str
    entries: dict[str, int]  # database -> entries copied
    damaged_pages: int = 0  # pages skipped, with what lay under them
    dropped: int = 0  # entries read but left out: their records do not decode
    # Of `entries`, those found on leaf pages a damaged branch had cut off from
    # their table, placed by what they hold (step entries, artifact records).
    from_loose_pages: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class VerifyReport:
    objects_checked: int
    bytes_checked: int
    artifacts_checked: int
    steps_checked: int
    unreferenced_objects: int
    objects: tuple[DamagedObject, ...]
    artifacts: tuple[DamagedArtifact, ...]
    steps: tuple[DamagedStep, ...]
    repair: Repair | None = None
    seconds: float = 0.0
    salvage: Salvage | None = None
    # Objects absent here that the remote cache holds (remote hits not loaded yet):
    # fetched when something loads them, so not damage.
    remote_objects: int = 0
    # Run records that cannot be decoded (bytes damaged on a page that still looks
    # sound): `runs ls` and friends name them; repair drops them (history only).
    runs: tuple[str, ...] = ()

    @property
    def damaged(self) -> bool:
        return bool(self.objects or self.artifacts or self.steps or self.runs)

    @property
    def ok(self) -> bool:
        """Nothing damaged, or everything damaged was repaired."""
        return not self.damaged or self.repair is not None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["damaged"] = self.damaged
        out["ok"] = self.ok
        return out


def verify(cache: Cache, repair: bool = False) -> VerifyReport:
    """Re-hash every object; check that every artifact's chunks and every step's
    outputs exist. With `repair`, drop what depends on damage (one write
    transaction) and delete the damaged files, so the next run re-executes
    exactly the steps whose outputs were lost."""
    started = time.perf_counter()
    if not repair:
        return _verify(cache, False, started)
    try:
        return _verify(cache, True, started)
    except CorruptIndexError as exc:
        # LMDB cannot read through the index, or cannot delete from it (a damaged page
        # under an entry to drop): copy what it can read into a new one, then repair that.
        if not cache.exists():
            raise
        salvaged = salvage_index(cache, str(exc))
    return replace(_verify(cache, True, started), salvage=salvaged)


def _verify(cache: Cache, repair: bool, started: float) -> VerifyReport:
    index = open_index(cache)
    store = cache.store

    def snapshot(view: View) -> tuple[list[tuple[bytes, bytes]], ...]:
        return view.items("steps"), view.items("artifacts"), view.items("runs")

    step_pairs, artifact_pairs, run_pairs = index.view(snapshot)
    bad_runs = tuple(
        key.decode(errors="replace") for key, value in run_pairs if not _decodes("runs", value)
    )

    artifact_reasons: dict[ContentId, list[str]] = defaultdict(list)
    artifacts: dict[ContentId, ArtifactRecord] = {}
    for key, value in artifact_pairs:
        content_id = key.decode()
        try:
            artifact = decode_artifact(key, value)
        except CorruptIndexError:
            artifact_reasons[content_id].append("its index record cannot be decoded")
            continue
        artifacts[content_id] = artifact
        if artifact.content_id != content_id or (
            artifact_id(artifact.materializer, artifact.files) != content_id
        ):
            artifact_reasons[content_id].append(
                "its index record does not match its id (inline bytes or manifest damaged)"
            )

    users: dict[ContentId, list[ContentId]] = defaultdict(list)  # object -> artifacts
    for content_id, artifact in artifacts.items():
        for object_id in artifact.object_ids():
            users[object_id].append(content_id)

    # Objects: one pass over the files, re-hashing each; then the referenced ids
    # no file answered for are missing.
    problems: dict[ContentId, str] = {}
    checked = checked_bytes = 0
    listed: set[ContentId] = set()
    for object_id, size in store.iter_objects():
        listed.add(object_id)
        try:
            store.verify(object_id)
        except CorruptObjectError:
            problems[object_id] = "corrupt"
        except MissingObjectError:
            listed.discard(object_id)  # deleted since listing (a concurrent gc): judged below
            continue
        checked += 1
        checked_bytes += size
    for object_id in users.keys() - listed:
        if store.modified(object_id) is None:  # not written since we listed
            problems[object_id] = "missing"
    on_remote = _held_by_remote(
        cache, artifacts, {o for o, p in problems.items() if p == "missing"}
    )
    for object_id in on_remote:
        del problems[object_id]
    for object_id, problem in problems.items():
        for content_id in users.get(object_id, ()):
            artifact_reasons[content_id].append(f"{problem} object {object_id}")

    step_reasons: dict[str, list[str]] = defaultdict(list)
    step_refs: dict[str, StepRef] = {}
    records: dict[str, StepRecord] = {}
    for key, value in step_pairs:
        step_key = key.decode()
        try:
            record = decode_step(key, value)
        except CorruptIndexError:
            step_refs[step_key] = StepRef(step_key, "?", "?", "?")
            step_reasons[step_key].append("its index entry cannot be decoded")
            continue
        step_refs[step_key] = StepRef.of(record)
        records[step_key] = record
        for name, content_id in zip(record.output_names, record.output_ids, strict=False):
            if content_id in artifact_reasons:
                step_reasons[step_key].append(f"output {name!r} ({content_id}) is damaged")
            elif content_id not in artifacts:
                step_reasons[step_key].append(
                    f"output {name!r} ({content_id}) has no artifact record"
                )

    depends: dict[ContentId, list[StepRef]] = defaultdict(list)  # artifact -> its steps
    for record in records.values():
        for content_id in record.output_ids:
            if content_id in artifact_reasons:
                depends[content_id].append(StepRef.of(record))

    def steps_of(artifact_ids: Iterable[ContentId]) -> tuple[StepRef, ...]:
        found = {ref for c in artifact_ids for ref in depends.get(c, ())}
        return tuple(sorted(found, key=ref_order))

    damaged_objects = tuple(
        DamagedObject(
            object_id,
            problem,
            tuple(sorted(users.get(object_id, ()))),
            steps_of(users.get(object_id, ())),
        )
        for object_id, problem in sorted(problems.items())
    )
    report = VerifyReport(
        objects_checked=checked,
        bytes_checked=checked_bytes,
        artifacts_checked=len(artifact_pairs),
        steps_checked=len(step_pairs),
        unreferenced_objects=len(listed - users.keys()),
        remote_objects=len(on_remote),
        objects=damaged_objects,
        artifacts=tuple(DamagedArtifact(c, tuple(r)) for c, r in sorted(artifact_reasons.items())),
        steps=tuple(
            DamagedStep(step_refs[k], tuple(r))
            for k, r in sorted(step_reasons.items(), key=lambda kv: ref_order(step_refs[kv[0]]))
        ),
        runs=bad_runs,
    )
    repaired = _repair(cache, index, report) if repair and report.damaged else None
    return replace(report, repair=repaired, seconds=round(time.perf_counter() - started, 3))


def _held_by_remote(
    cache: Cache, artifacts: dict[ContentId, ArtifactRecord], missing: set[ContentId]
) -> set[ContentId]:
    """The missing objects the cache's remote holds (asked only when some are missing
    and a remote is configured; a remote that does not answer holds nothing)."""
    if not missing or not cache.remote_settings()[0]:
        return set()
    from ..storage.remote import artifact_packs
    from ..storage.remote.backends import RemoteUnavailable

    remote = cache.remote
    if remote is None:
        return set()
    held: set[ContentId] = set()
    try:
        for record in artifacts.values():
            for pack, group in artifact_packs(record):
                wanted = missing.intersection(group)
                if wanted and remote.backend.exists(f"cas/{pack}"):
                    held.update(wanted)
    except RemoteUnavailable:
        return set()
    return held


# What a salvaged value must decode as to be copied: a damaged page that still
# looks like a page can hold garbage where records were. The stat memo is not
# copied at all: it only saves re-hashing input files, and a wrong digest there
# would be a wrong cache key.
_DECODERS = {
    "steps": StepRecord.decode,
    "artifacts": ArtifactRecord.decode,
    "runs": RunRecord.decode,
    "envs": EnvRecord.decode,
}
_NOT_SALVAGED = ("meta", "hits", "stats")  # the first two are rebuilt


def salvage_index(cache: Cache, reason: str) -> Salvage:
    """Copy every entry still readable into a new index (each tree of the last two
    commits walked page by page, past damaged pages: index_check.salvage), move the
    damaged one aside, and put the new one in its place. Objects are untouched;
    entries that were lost just rerun. Run it when no pipeline is using the cache."""
    cache.close()
    folder = cache.path / "index.lmdb"
    fresh = cache.path / "index.lmdb.salvaging"
    shutil.rmtree(fresh, ignore_errors=True)
    databases = tuple(d for d in DATABASES if d not in _NOT_SALVAGED)
    read = salvage(folder, databases)
    tables = {db: dict(pairs) for db, pairs in read.tables.items()}
    loose = 0
    for page in read.loose:
        table = _place(page)
        if table is not None:
            for key, value in page:
                if key not in tables[table]:
                    tables[table][key] = value
                    loose += 1
    entries: dict[str, int] = {}
    dropped = 0
    new = Index(fresh)
    try:
        for db, found in tables.items():
            # A key LMDB could never have stored came from a damaged page: left out.
            pairs = [(k, v) for k, v in found.items() if 0 < len(k) <= _MAX_KEY and _decodes(db, v)]
            dropped += len(found) - len(pairs)
            for at in range(0, len(pairs), 1000):
                new.write([(db, k, v) for k, v in pairs[at : at + 1000]])
            entries[db] = len(pairs)
    finally:
        new.close()
    moved = cache.path / f"index.lmdb.damaged-{time.strftime('%Y%m%dT%H%M%S')}"
    os.replace(folder, moved)
    os.replace(fresh, folder)
    log.warning("moved the damaged index to %s; salvaged %s", moved, entries)
    return Salvage(reason, str(moved), entries, read.damaged_pages, dropped, loose)


def _place(page: list[tuple[bytes, bytes]]) -> str | None:
    """The table a loose leaf page belongs to, when every entry on it is a record
    stored under its own key: step entries (under their cache key) or artifact
    records (under their content id). Such a page may also be a stale copy (freed
    or of an older commit): its records were true when written, and the checks that
    follow the salvage drop those whose artifacts or objects are gone."""
    for table, decode, own_key in (
        ("steps", StepRecord.decode, lambda r: r.key),
        ("artifacts", ArtifactRecord.decode, lambda r: r.content_id),
    ):
        try:
            if all(own_key(decode(value)).encode() == key for key, value in page):
                return table
        except Exception:  # whatever garbage makes a decoder raise: not this table's
            continue
    return None


def _decodes(db: str, value: bytes) -> bool:
    decode = _DECODERS.get(db)
    if decode is None:
        return True
    try:
        decode(value)
    except Exception:  # whatever garbage makes a decoder raise: not a record
        return False
    return True


def _repair(cache: Cache, index: Index, report: VerifyReport) -> Repair:
    artifact_ids = [a.content_id for a in report.artifacts]
    step_keys = [s.entry.key for s in report.steps]

    def drop(update: Update) -> tuple[list[ContentId], list[StepRef], list[str]]:
        dropped_artifacts = [c for c in artifact_ids if update.delete("artifacts", c.encode())]
        refs = {s.entry.key: s.entry for s in report.steps}
        dropped_steps = [refs[k] for k in step_keys if update.delete("steps", k.encode())]
        dropped_runs = [r for r in report.runs if update.delete("runs", r.encode())]
        return dropped_artifacts, dropped_steps, dropped_runs

    dropped_artifacts, dropped_steps, dropped_runs = index.update(drop)
    # Files last: the index no longer points at them. A damaged file is re-checked
    # first, since a concurrent run may have rewritten it meanwhile.
    deleted: list[ContentId] = []
    store = cache.store
    for damaged in report.objects:
        if damaged.problem != "corrupt":
            continue
        try:
            store.verify(damaged.object_id)
        except CorruptObjectError:
            if store.delete(damaged.object_id):
                deleted.append(damaged.object_id)
        except MissingObjectError:
            pass
    return Repair(
        tuple(dropped_artifacts), tuple(dropped_steps), tuple(deleted), tuple(dropped_runs)
    )
