"""The remote cache as a run's second tier: asked on a local miss, fed by executed steps.

A local miss asks the remote's action cache. An entry found is believed only
when its artifact records match their content ids and, unless the remote is
trusted (ZENCACHE_REMOTE_TRUSTED=1), none of its outputs is a pickle (loading
one runs the writer's code); then its records are committed to the local index
like a local step's, and the step is a hit whose data stays on the remote until
something loads it (the store's read-through, storage/cache.py). An executed
step's objects and entry are uploaded in the background; `finish` waits for them
(unless uploads are deferred to `zencache push`) and publishes the run's
manifest. Imports the storage layer's remote and materializers (artifact ids).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from ..fingerprint.environment import current_environment
from ..materializers.remote_entries import refusal
from ..storage.cache import Cache
from ..storage.index import Op
from ..storage.records import ArtifactRecord, StepRecord
from ..storage.remote import Remote, RemoteEntry
from ..storage.remote.client import save_stats

log = logging.getLogger(__name__)


class RemoteTier:
    """One run's use of the remote (opened on the first local miss)."""

    def __init__(self, cache: Cache, pipeline: str, *, defer: bool = False) -> None:
        self.cache = cache
        self.pipeline = pipeline
        self.defer = defer
        self._remote: Remote | None = None
        self._opened = False
        self.entries: dict[str, bytes] = {}  # remote hits of this run
        self.published: dict[str, bytes] = {}  # entries this run uploads

    @property
    def remote(self) -> Remote | None:
        if not self._opened:
            self._opened = True
            self._remote = self.cache.remote
            if self._remote is not None:
                self._remote.begin_run()
                self._remote.prefetch(self.pipeline)
                self._remote.check()
        return self._remote

    @property
    def opened(self) -> bool:
        return self._remote is not None

    # --- lookups ----------------------------------------------------------------------------

    def lookup(self, key: str) -> RemoteEntry | None:
        remote = self.remote
        if remote is None or remote.down:
            if remote is not None:
                remote.check()
            return None
        entry = remote.lookup(key)
        if entry is not None:
            reason = refusal(entry, trusted=remote.trusted)
            if reason:
                remote.refuse(key, reason)
                entry = None
            else:
                remote.count_hit()
                self.entries[key] = entry.raw or entry.encode(remote.secret)
        remote.check()
        return entry

    def local_ops(self, entry: RemoteEntry, known_envs: set[str]) -> list[Op]:
        """The index writes that record a remote entry in the local cache."""
        step_bytes, artifact_bytes = entry.index_records()
        ops: list[Op] = [
            ("artifacts", a.content_id.encode(), data)
            for a, data in zip(entry.artifacts, artifact_bytes, strict=True)
        ]
        env = entry.env
        if env is not None and env.env_id not in known_envs:
            known_envs.add(env.env_id)
            if self.cache.index.get("envs", env.env_id.encode()) is None:
                ops.append(("envs", env.env_id.encode(), env.encode()))
        ops.append(("steps", entry.key.encode(), step_bytes))
        return ops

    # --- uploads ---------------------------------------------------------------------------

    def publish(self, record: StepRecord, artifacts: Iterable[ArtifactRecord]) -> None:
        remote = self.remote
        if remote is None or not remote.writable or self.defer:
            return
        entry = RemoteEntry(record, tuple(artifacts), current_environment())
        self.published[record.key] = remote.publish(entry, self.cache.store)

    def finish(self, run_id: str) -> None:
        """Wait for this run's uploads, publish its manifest, count what moved."""
        remote = self._remote
        if remote is None:
            return
        try:
            if self.published and remote.wait():
                remote.publish_run(self.pipeline, run_id, {**self.entries, **self.published})
        finally:
            save_stats(self.cache.index, remote.take_stats())
        remote.check()
