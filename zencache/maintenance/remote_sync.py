"""`push`, `pull` and `gc --remote`: moving a run between the local cache and its remote.

push: every step entry of a run (executed or cached, local or remote) with its
objects, objects first; then the run's manifest. What is on the remote already is
not sent again (create-only puts, a look-up first for large objects). It is also
how uploads deferred by `remote_upload = "defer"` reach the remote.
pull: the data of a run's outputs (or one step's), fetched and verified into the
local store, so it can be loaded offline; a run recorded only on the remote (by
its id) is recorded here first. gc --remote: remote objects no entry names,
older than a grace period (a concurrent upload writes objects before its entry).
Imports the cache, records, the remote and the executors' remote checks.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from ..errors import CacheError, UsageError
from ..materializers.remote_entries import refusal
from ..storage.cache import Cache
from ..storage.index import Op
from ..storage.records import ArtifactRecord, RunRecord, StepRecord
from ..storage.remote import Remote, RemoteEntry, artifact_packs
from ..storage.remote.client import save_stats
from ..storage.remote.entries import EntryRefused
from .provenance import resolve_run
from .snapshot import open_index


@dataclass(frozen=True, slots=True)
class SyncReport:
    run_id: str
    steps: int  # entries pushed, or steps whose data was pulled
    objects: int  # objects uploaded or downloaded
    bytes: int
    skipped: tuple[str, ...] = ()  # steps left out, with why

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["skipped"] = list(self.skipped)
        return data


def require_remote(cache: Cache, *, write: bool = False) -> Remote:
    remote = cache.remote
    if remote is None:
        raise UsageError(
            "no remote cache is configured; pass --remote URL, set ZENCACHE_REMOTE, or add "
            'remote = "s3://bucket/prefix" under [tool.zencache] in pyproject.toml'
        )
    if write and not remote.writable:
        raise UsageError(
            f"the remote {remote.url} is {remote.mode} here; pushing needs "
            "ZENCACHE_REMOTE_MODE=read-write (or --remote-mode read-write)"
        )
    remote.begin_run()
    return remote


def _finish(cache: Cache, remote: Remote) -> None:
    save_stats(cache.index, remote.take_stats())
    remote.check()


def push(cache: Cache, run_ref: str = "latest") -> SyncReport:
    """Upload a run's step entries and their objects (objects first), then its manifest."""
    remote = require_remote(cache, write=True)
    run = resolve_run(cache, run_ref)
    index = open_index(cache)
    entries: dict[str, bytes] = {}
    skipped: list[str] = []
    for step in run.steps:
        if step.status not in ("executed", "cached") or not step.key:
            continue
        record = index.get_step(step.key)
        if record is None:
            skipped.append(f"{step.name}: its entry is no longer in the cache")
            continue
        artifacts = [index.get_artifact(i) for i in record.output_ids]
        if any(a is None for a in artifacts):
            skipped.append(f"{step.name}: an output's record is missing")
            continue
        env = index.get_env(record.env_id) if record.env_id else None
        entry = RemoteEntry(record, tuple(a for a in artifacts if a is not None), env)
        entries[step.key] = remote.publish(entry, cache.store)
    try:
        if not remote.wait():
            raise_unpushed(remote)
        remote.publish_run(run.pipeline, run.run_id, entries)
    finally:
        stats = remote.stats
        objects, sent = stats.objects_up, stats.bytes_up
        _finish(cache, remote)
    return SyncReport(run.run_id, len(entries), objects, sent, tuple(skipped))


def raise_unpushed(remote: Remote) -> None:
    from ..errors import RemoteError

    remote.check()  # the cause, as a warning (or the strict error)
    raise RemoteError(
        f"could not push everything to {remote.url}; see the warning above, then run "
        "'zencache push' again (what was uploaded stays)"
    )


def pull(cache: Cache, ref: str) -> SyncReport:
    """Fetch the data of a run's outputs (`RUN`) or one step's (`RUN:STEP`), verified."""
    remote = require_remote(cache)
    run_ref, _, step_name = ref.partition(":")
    run = _local_or_remote_run(cache, remote, run_ref or "latest")
    steps = [s for s in run.steps if s.status in ("executed", "cached") and s.outputs]
    if step_name:
        steps = [s for s in steps if s.name == step_name]
        if not steps:
            names = ", ".join(s.name for s in run.steps)
            raise UsageError(
                f"run {run.run_id} has no step {step_name!r} with outputs; its steps: {names}"
            )
    index = cache.index
    artifacts: dict[str, ArtifactRecord] = {}
    for step in steps:
        for content_id in step.outputs.values():
            record = index.get_artifact(content_id)
            if record is not None:
                artifacts[content_id] = record
    store = cache.store
    wanted = {p for record in artifacts.values() for p, group in artifact_packs(record)}
    try:
        if not remote.fetch_artifacts(store, artifacts.values()):
            from ..errors import RemoteError

            remote.check()
            raise RemoteError(
                f"could not pull every object of run {run.run_id} from {remote.url}; see the "
                "warning above (missing objects: rerun the pipeline where it ran, then push)"
            )
    finally:
        received = remote.stats.bytes_down
        _finish(cache, remote)
    return SyncReport(run.run_id, len(steps), len(wanted), received)


def _local_or_remote_run(cache: Cache, remote: Remote, ref: str) -> RunRecord:
    """The local run `ref` names, else the run of that id on the remote, recorded here."""
    try:
        return resolve_run(cache, ref)
    except (UsageError, CacheError):  # not here (or no cache here yet): ask the remote
        manifest = remote.run_manifest(ref)
        if manifest is None:
            raise
    entries: list[RemoteEntry] = []
    for key, text in manifest.items():
        try:
            entry = RemoteEntry.decode(text.encode(), key, remote.secret)
        except EntryRefused as exc:
            remote.refuse(key, str(exc))
            continue
        reason = refusal(entry, trusted=remote.trusted)
        if reason:
            remote.refuse(key, reason)
            continue
        entries.append(entry)
    if not entries:
        raise UsageError(f"run {ref} on {remote.url} has no entry this cache can use")
    ops: list[Op] = []
    for entry in entries:
        ops.extend(("artifacts", a.content_id.encode(), a.encode()) for a in entry.artifacts)
        if entry.env is not None:
            ops.append(("envs", entry.env.env_id.encode(), entry.env.encode()))
        ops.append(("steps", entry.key.encode(), entry.step.encode()))
    cache.index.write(ops)
    return _run_of(ref, [e.step for e in entries])


def _run_of(run_id: str, records: list[StepRecord]) -> RunRecord:
    from ..storage.records import StepRun

    steps = tuple(
        StepRun(
            r.name,
            r.step,
            r.key,
            "cached",
            r.duration,
            dict(zip(r.output_names, r.output_ids, strict=True)),
            "",
            "remote",
        )
        for r in records
    )
    now = time.time()
    pipeline = records[0].pipeline if records else ""
    return RunRecord(run_id, pipeline, {}, "completed", now, now, "", steps)


# --- gc --remote --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RemoteGcReport:
    entries: int  # ac/ entries read
    objects: int  # cas/ objects found
    removed: int
    removed_bytes: int
    kept_young: int  # unreferenced but younger than the grace period
    dry_run: bool

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def gc_remote(cache: Cache, *, grace: float, dry_run: bool = False) -> RemoteGcReport:
    """Delete remote objects that no remote entry names and that are older than `grace`."""
    remote = require_remote(cache, write=True)
    backend = remote.backend
    try:
        named: set[str] = set()
        listed_entries = list(backend.list("ac/"))
        for item in listed_entries:
            key = item.path.removeprefix("ac/")
            data = backend.get(item.path)
            if data is None:
                continue
            try:
                # Unsigned entries name objects too: gc must not break a teammate's
                # entries because this machine holds a key and they did not sign.
                entry = RemoteEntry.decode(data, key, None)
            except EntryRefused:
                continue
            for record in entry.artifacts:
                named.update(pack for pack, _ in artifact_packs(record))
        now = time.time()
        removed = removed_bytes = young = total = 0
        for item in list(backend.list("cas/")):
            total += 1
            if item.path.removeprefix("cas/") in named:
                continue
            if now - item.modified < grace:
                young += 1
                continue
            removed += 1
            removed_bytes += item.size
            if not dry_run:
                backend.delete(item.path)
    except Exception as exc:
        from ..errors import RemoteError
        from ..storage.remote.backends import RemoteUnavailable

        if isinstance(exc, RemoteUnavailable):
            raise RemoteError(
                f"gc of the remote stopped: {exc}; nothing named was removed"
            ) from exc
        raise
    return RemoteGcReport(len(listed_entries), total, removed, removed_bytes, young, dry_run)
