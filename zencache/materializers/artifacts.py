"""Values in and out of the store through materializers: artifacts and their ids.

An artifact's content id is xxh3_128 over the materializer's identity and the
manifest of its files (name, size, chunk digests), so identical bytes written by
the same materializer have one id, whichever step produced them. Files up to
INLINE_LIMIT bytes live inside the artifact record in the index (no object file,
no fsync); larger ones are chunked into the object store.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import CorruptObjectError, MaterializerError, PickleRefusedError, ZencacheError
from ..hashing import ContentId, Hasher, digest_bytes
from ..storage.records import ArtifactRecord, FileEntry
from ..storage.store import Blob, ObjectStore
from . import registry
from .base import BaseMaterializer, safe_join

INLINE_LIMIT = 4096
# Files at least this large are mapped, not read, for materializers with
# MAPS_FILES (below it, reading costs less than the mmap calls: benchmarks/README.md).
MAP_THRESHOLD = 1 << 20
PICKLE_SETTING = "ZENCACHE_ALLOW_PICKLE"
# An inline file beside the materializer's own, naming the code of the user classes
# the value is made of: pickle stores a class by name, so without it a changed
# method leaves the bytes (and the id) as they were, and early cutoff would keep
# a step that calls that method cached. Never handed to the materializer.
CODE_FILE = ".zencache-code"


def save_artifact(
    store: ObjectStore, value: Any, materializer: type[BaseMaterializer], code: bytes = b""
) -> ArtifactRecord:
    """Write `value`'s objects (durably) and return the record to commit to the index.
    `code`: what names the code of the classes in the value (CODE_FILE), if any."""
    check_pickle_allowed(materializer, "save")
    try:
        files = materializer().dump(value)
    except ZencacheError:
        raise
    except Exception as exc:
        raise MaterializerError(
            f"materializer {materializer.__qualname__} could not save a value of type "
            f"{registry.type_name(type(value))}: {exc}; declare the output type or pass "
            "materializers= to @step"
        ) from exc
    entries: dict[str, FileEntry] = {}
    for name in sorted(files):
        _check_name(name)
        view = memoryview(files[name]).cast("B")
        if len(view) <= INLINE_LIMIT:
            entries[name] = FileEntry(size=len(view), inline=bytes(view))
        else:
            blob = store.put_blob(view)
            entries[name] = FileEntry(size=blob.size, chunks=blob.chunks)
    if code:
        entries[CODE_FILE] = FileEntry(size=len(code), inline=code)
    return ArtifactRecord(
        content_id=artifact_id(materializer.identity(), entries),
        materializer=materializer.identity(),
        type_name=f"{type(value).__module__}:{type(value).__qualname__}",
        files=entries,
        created=time.time(),
    )


def load_artifact(store: ObjectStore, record: ArtifactRecord, data_type: Any = None) -> Any:
    """The value of a stored artifact; every byte is verified before it is deserialized."""
    materializer = registry.by_identity(record.materializer)
    check_pickle_allowed(materializer, "load")
    if artifact_id(record.materializer, record.files) != record.content_id:
        raise CorruptObjectError(
            f"artifact {record.content_id}: its index record does not match its id; run "
            "'zencache cache verify --repair'",
            object_id=record.content_id,
        )
    files: dict[str, Any] = {}
    for name, entry in record.files.items():
        _check_name(name)
        if name == CODE_FILE:
            continue
        if entry.inline is not None:
            files[name] = entry.inline
        else:
            blob = Blob(entry.size, entry.chunks)
            if materializer.MAPS_FILES and entry.size >= MAP_THRESHOLD:
                files[name] = store.map_blob(blob)
            else:
                files[name] = store.read_blob(blob)
    if data_type is None or registry.is_too_general(data_type):
        data_type = resolve_type(record.type_name)
    try:
        return materializer().restore(files, data_type)
    except ZencacheError:
        raise
    except Exception as exc:
        # Verified bytes that still do not load: a materializer bug or a forged record.
        raise MaterializerError(
            f"materializer {materializer.__qualname__} could not load artifact "
            f"{record.content_id} (a {record.type_name}): {type(exc).__name__}: {exc}; "
            "run 'zencache cache verify', or rerun the step that wrote it"
        ) from exc


@functools.lru_cache(maxsize=1024)
def _check_name(name: str) -> None:
    """safe_join's check (UnsafePathError), once per name: materializers reuse a few
    names, and pathlib's parsing cost 15 µs per executed step. Refusals are not cached."""
    safe_join(Path("."), name)


def artifact_id(identity: str, files: dict[str, FileEntry]) -> ContentId:
    h = Hasher("zencache/artifact/v1").text(identity)
    for name in sorted(files):
        entry = files[name]
        h.text(name).text(str(entry.size))
        h.texts((digest_bytes(entry.inline),) if entry.inline is not None else entry.chunks)
    return h.hexdigest()


def pickle_allowed() -> bool:
    return os.environ.get(PICKLE_SETTING, "1") != "0"


def check_pickle_allowed(materializer: type[BaseMaterializer], action: str) -> None:
    if materializer.USES_PICKLE and not pickle_allowed():
        raise PickleRefusedError(
            f"materializer {materializer.__qualname__} uses pickle, refused to {action} because "
            f"{PICKLE_SETTING}=0; unset it if you trust whoever wrote this cache, or declare "
            "a type with a pickle-free materializer"
        )


def resolve_type(type_name: str) -> Any:
    """The class recorded as `module:qualname`, or object when it cannot be imported.

    The name comes from the cache, and importing a module runs its code: under
    ZENCACHE_ALLOW_PICKLE=0 (an untrusted cache) only modules already imported are used.
    """
    module_name, _, qualname = type_name.partition(":")
    if not pickle_allowed() and module_name not in sys.modules:
        return object
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return object
    return obj
