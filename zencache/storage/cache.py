"""Where a cache lives and the two stores in it: `Cache(path)`.

Sits on store and index and owns no policy. Layout of a cache directory:

    .zencache/
      CACHEDIR.TAG     tells backup tools to skip the folder
      .gitignore       keeps it out of version control
      index.lmdb/      the index (index.py)
      leases/slots     who is executing which key now: kernel locks (lease_slots.py)
      objects/         content-addressed objects (store.py)

The location is resolved when a Cache is made: the explicit path, else the
project settings (zencache.config: $ZENCACHE_DIR, `cache_dir` under
[tool.zencache], the nearest .zencache up the tree, else .zencache beside the
project marker or in the working directory), like .git or .dvc.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from ..config import CACHE_DIRNAME, Settings, load_settings
from ..errors import CacheError
from .index import Index
from .index_check import vouch
from .lease_slots import LeaseSlots
from .space import FULL_ERRNOS, full_error
from .store import Blob, ObjectStore

if TYPE_CHECKING:
    from .remote import Remote

DEFAULT_DIRNAME = CACHE_DIRNAME
ENV_VAR = "ZENCACHE_DIR"

_CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file marks a zencache cache directory; backup tools may skip it.\n"
)

# LMDB forbids opening one environment twice in a process (its locks would be
# silently broken), so every Cache on the same folder shares one Index, and one
# handle on the lease slots for looking at them (each run takes leases through
# its own: executors/leases.py).
_indexes: dict[Path, Index] = {}
_lease_slots: dict[Path, LeaseSlots] = {}
_handles_lock = threading.Lock()
H = TypeVar("H", Index, LeaseSlots)


def resolve_cache_dir(path: str | os.PathLike[str] | None = None) -> Path:
    if path is None:
        return load_settings().cache_dir
    return Path(path).expanduser().absolute()


class Cache:
    """A cache directory: its object store and its index, created on first use."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        remote: str | None = None,
        remote_mode: str | None = None,
    ) -> None:
        self.path = resolve_cache_dir(path)
        self._store: ObjectStore | None = None
        # The remote cache behind this one: named here, else by the settings
        # (ZENCACHE_REMOTE, `remote` in pyproject.toml); opened on first use.
        self._remote_given = (remote, remote_mode)
        self._resolved: Path | None = None
        self._remote_options = (remote, remote_mode)  # of the remote selected now
        self._remote: Remote | None = None
        self._remote_resolved = False

    def __repr__(self) -> str:
        return f"Cache({str(self.path)!r})"

    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            self._prepare()
            self._store = ObjectStore(self.path / "objects")
            self._store.fetcher = _ReadThrough(self)
        return self._store

    @property
    def remote(self) -> Remote | None:
        """The remote cache behind this one, or None (none named, or its mode is off)."""
        if not self._remote_resolved:
            from .remote import open_remote

            self._remote = open_remote(*self._remote_options)
            self._remote_resolved = True
        return self._remote

    def select_remote(
        self, url: str | None = None, mode: str | None = None, settings: Settings | None = None
    ) -> bool:
        """Put this cache in front of the remote that `url`/`mode` (a run's options) or
        the settings name, opened on first use; False when there is none. `settings`:
        the project's, when the caller read them already."""
        found, found_mode = self.remote_settings(url, mode, settings)
        current = self._remote
        if not (current is not None and (current.url, current.mode) == (found, found_mode)):
            self._remote_options = (found or None, found_mode)
            self._remote, self._remote_resolved = None, not found
        return bool(found)

    def remote_settings(
        self, url: str | None = None, mode: str | None = None, settings: Settings | None = None
    ) -> tuple[str, str]:
        """(URL, mode) of the remote that `url`/`mode`, this cache's options or the
        settings name, without opening it; ("", "off") when there is none."""
        url, mode = url or self._remote_given[0], mode or self._remote_given[1]
        if settings is None or url is not None or mode is not None:
            settings = load_settings(remote=url, remote_mode=mode)
        if not settings.remote or settings.remote_mode == "off":
            return "", "off"
        return settings.remote, settings.remote_mode

    @property
    def index(self) -> Index:
        return self._shared(_indexes, lambda: Index(self.path / "index.lmdb"))

    def checked_index(self) -> Index:
        """The index, read through once in a child process first when this process has
        not opened it yet: damage that makes LMDB abort or fault is then a
        CorruptIndexError here instead of the end of this process (index_check.py).
        For commands that read the whole index anyway (maintenance)."""
        with _handles_lock:
            opened = self._key() in _indexes
        if not opened:
            vouch(self.path / "index.lmdb", force=True)
        return self.index

    @property
    def leases(self) -> LeaseSlots:
        """This process's handle for looking at the leases (which are held, by others)."""
        return self._shared(_lease_slots, lambda: LeaseSlots(self.path / "leases"))

    def _key(self) -> Path:
        """The folder's real path, which the shared handles are filed under: resolved
        once (a realpath is ~20 µs, and a run asks for the index often)."""
        if self._resolved is None:
            self._resolved = self.path.resolve()
        return self._resolved

    def _shared(self, handles: dict[Path, H], open_handle: Callable[[], H]) -> H:
        """This process's one handle on an index or the lease slots of this folder."""
        key = self._key()
        with _handles_lock:
            handle = handles.get(key)
            if handle is None:
                self._prepare()
                handle = handles[key] = open_handle()
        return handle

    def exists(self) -> bool:
        return (self.path / "index.lmdb").is_dir()

    def close(self) -> None:
        """Release the index and lease slots of this folder (tests that delete caches need this)."""
        with _handles_lock:
            index = _indexes.pop(self._key(), None)
            slots = _lease_slots.pop(self._key(), None)
        for handle in (index, slots):
            if handle is not None:
                handle.close()

    def _prepare(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise CacheError(
                f"{self.path} is a file, not a cache directory; pass another --cache-dir"
            )
        if self.path.is_dir() and any(self.path.iterdir()) and not self._looks_like_cache():
            raise CacheError(
                f"{self.path} exists and is not a zencache cache; pass an empty or new "
                "folder as --cache-dir / ZENCACHE_DIR"
            )
        objects = self.path / "objects"
        try:
            objects.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise CacheError(
                f"{objects} is a file where the cache keeps its folder of objects; move it "
                "away (the index is kept; steps whose objects are gone rerun)"
            ) from None
        except OSError as exc:
            if exc.errno in FULL_ERRNOS:
                raise full_error(self.path, 4096, "creating the cache's folders") from exc
            raise
        tag = self.path / "CACHEDIR.TAG"
        if not tag.exists():
            try:
                (self.path / ".gitignore").write_text("*\n")
                tag.write_text(_CACHEDIR_TAG)  # last: its presence says both are complete
            except OSError as exc:
                tag.unlink(missing_ok=True)
                if exc.errno in FULL_ERRNOS:
                    raise full_error(self.path, 4096, "creating the cache's marker files") from exc
                raise

    def _looks_like_cache(self) -> bool:
        return any(
            (self.path / name).exists() for name in ("index.lmdb", "objects", "CACHEDIR.TAG")
        )


class _ReadThrough:
    """The local store's fetcher: objects it lacks come from the cache's remote (opened
    on the first one), verified chunk by chunk; what moved is added to `cache stats`."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    def fetch_blob(self, store: ObjectStore, blob: Blob) -> bool:
        remote = self.cache.remote
        if remote is None:
            return False
        from .remote.client import save_stats

        try:
            fetched = remote.fetch_blob(store, blob)
        finally:
            save_stats(self.cache.index, remote.take_stats())
        remote.check()
        return fetched
