"""The exception tree. A leaf module: imports nothing of ours.

    ZencacheError                      exit_code 1 unless noted
    ├── UsageError (ValueError)                     2  bad input from the user
    │   ├── UnhashableParameterError (TypeError)    2
    │   ├── PipelineDefinitionError                 2
    │   ├── UntrackedInputError                     2  strict mode: a step reads what is not tracked
    │   ├── TargetError                             2  CLI target cannot be loaded
    │   └── ConfigError                             2  a setting or pyproject.toml is wrong
    ├── StepFailedError (RuntimeError)                 a step raised; cause kept
    ├── StepContextError (RuntimeError)                get_step_context() outside a step
    ├── HookError                                      a hook raised, with strict hooks
    ├── StepOutputError (TypeError)                    a step returned the wrong shape or type
    ├── MaterializerError (TypeError)                  no materializer, or it failed
    │   └── PickleRefusedError                         ZENCACHE_ALLOW_PICKLE=0
    ├── StoreError (OSError)
    │   ├── CorruptObjectError                         bytes do not match their id
    │   ├── MissingObjectError                         object absent from the store
    │   ├── UnsafePathError                            a path escapes its root
    │   ├── StorageFullError                           disk or map full
    │   └── RemoteError                                the remote cache failed (strict mode)
    └── CacheError                                  2  the cache directory itself
        ├── CacheVersionError                       2  written by another format version
        ├── CorruptIndexError                       2  index.lmdb unreadable or foreign
        └── ReadOnlyCacheError                      2  the cache can be read, not written

    ZencacheWarning (UserWarning)
    └── UntrackedInputWarning                      a step reads what its fingerprint cannot see

    ZencacheWarning (UserWarning)
    └── HookFailedWarning                              a hook raised; the run went on

Each exception knows its exit code; only the CLI turns exceptions into output.
Messages say what failed, the subject and facts, then the fix.
"""

from __future__ import annotations


class ZencacheError(Exception):
    exit_code = 1


class UsageError(ZencacheError, ValueError):
    exit_code = 2


class UnhashableParameterError(UsageError, TypeError):
    pass


class ConfigError(UsageError):
    pass


class PipelineDefinitionError(UsageError):
    pass


class TargetError(UsageError):
    pass


class UntrackedInputError(UsageError):
    pass


class ZencacheWarning(UserWarning):
    """The base of zencache's warnings (something the user should know, nothing failed):
    `warnings.simplefilter("error", ZencacheWarning)`."""


class UntrackedInputWarning(ZencacheWarning):
    """A step reads something its code fingerprint cannot track (once per step and cause)."""


class StepFailedError(ZencacheError, RuntimeError):
    def __init__(self, message: str, *, step: str = "", traceback_text: str = "") -> None:
        super().__init__(message)
        self.step = step
        self.traceback_text = traceback_text


class StepContextError(ZencacheError, RuntimeError):
    pass


class HookError(ZencacheError):
    """A hook raised and the run asked for strict hooks; the cause is the hook's error."""

    def __init__(self, message: str, *, hook: str = "", method: str = "") -> None:
        super().__init__(message)
        self.hook = hook
        self.method = method


class StepOutputError(ZencacheError, TypeError):
    pass


class MaterializerError(ZencacheError, TypeError):
    pass


class PickleRefusedError(MaterializerError):
    pass


class StoreError(ZencacheError, OSError):
    pass


class CorruptObjectError(StoreError):
    def __init__(self, message: str, *, object_id: str = "") -> None:
        super().__init__(message)
        self.object_id = object_id


class MissingObjectError(StoreError):
    def __init__(self, message: str, *, object_id: str = "") -> None:
        super().__init__(message)
        self.object_id = object_id


class UnsafePathError(StoreError):
    pass


class StorageFullError(StoreError):
    pass


class RemoteError(StoreError):
    """The remote cache is unreachable, refuses us or returned bad data, and the
    remote is strict (a CI that must publish), or the remote URL itself is wrong."""


class CacheError(ZencacheError):
    exit_code = 2


class CacheVersionError(CacheError):
    pass


class CorruptIndexError(CacheError):
    pass


class ReadOnlyCacheError(CacheError):
    pass


class CacheSizeWarning(ZencacheWarning):
    """The size limit evicted the latest run of a pipeline, or cannot be met at all."""


class HookFailedWarning(ZencacheWarning):
    """A hook raised; reported once per hook and run, which went on without it."""
