"""What a worker process does for one step: inputs from the store, call, outputs to the store.

The parallel executors (processes.py, dask.py) send a `StepTask` and get back a
`TaskResult`: the outputs' ArtifactRecords (small: ids, sizes, chunk lists), never
the values. Workers read and write the content-addressed object store directly,
so large arrays do not travel through pipes; the index is the driver's alone.
Executes through the shared core (execute.py), as the runner does; no joblib, no dask.
"""

from __future__ import annotations

import os
import pickle
import socket
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.context import StepContext, StepLog
from ..errors import StepFailedError, StoreError, ZencacheError
from ..hashing import hash_value, module_label
from ..materializers.base import BaseMaterializer
from ..storage.records import ArtifactRecord
from ..storage.remote import Remote
from ..storage.store import ObjectStore
from . import skipping
from .execute import DamagedInputs, execute_step, load_inputs


@dataclass(frozen=True, slots=True)
class StepRef:
    """A step defined at module level in an importable module: sent by name, imported
    by the worker (as pickle sends functions), so its code is not pickled per task."""

    module: str
    qualname: str

    def resolve(self) -> Any:
        try:
            # A pipeline the module runs at import time must not run in the worker:
            # the driver may hold the very leases that run would wait for.
            obj: Any = skipping.import_module(self.module)
        except ImportError as exc:
            raise StepFailedError(
                f"worker on {socket.gethostname()} cannot import module {self.module!r} of step "
                f"{self.qualname!r} ({exc}); workers need the pipeline's code importable: "
                "the same packages, and the project folder on their PYTHONPATH"
            ) from exc
        for part in self.qualname.split("."):
            obj = getattr(obj, part)
        return obj


def step_reference(step: Any) -> Any:
    """What to send for `step`: a StepRef when the worker can import it by name, else the
    Step itself, which cloudpickle sends by value (steps in `__main__`, in a function,
    or in a module loaded under another name)."""
    fn = step.fn
    module = sys.modules.get(fn.__module__)
    spec = getattr(module, "__spec__", None)
    if module is None or fn.__module__ == "__main__" or spec is None:
        return step
    if spec.name != fn.__module__ or "<locals>" in fn.__qualname__:
        return step
    obj: Any = module
    for part in fn.__qualname__.split("."):
        obj = getattr(obj, part, None)
    return StepRef(fn.__module__, fn.__qualname__) if obj is step else step


@dataclass(frozen=True, slots=True)
class StepTask:
    name: str  # the invocation name, for messages
    step: Any  # a StepRef, or the Step itself
    params: dict[str, Any]
    inputs: dict[str, ArtifactRecord]
    # Unpickling a class imports (or defines) its module, which registers it, so
    # the worker can load inputs written by a materializer its step never imports.
    input_materializers: tuple[type[BaseMaterializer], ...]
    materializers: dict[str, type[BaseMaterializer] | None]
    store: str  # the object store's root; the same path must be valid on the worker
    chunk_size: int
    # The driver's code fingerprint of a step sent by name, for workers that outlive a
    # run (Dask): one that imported the module before it was edited, or that has
    # other package versions, must not store its result under the driver's key.
    code: str = ""
    # The classes fingerprinted with the step (those its parameters and upstream
    # code carry in: core/plan.py), sent by reference so the worker hashes its own.
    carried: tuple[type, ...] = ()
    # For a step sent by value: the driver's fingerprint parts of the code outside the
    # main script (which travels with the step); the worker imports that code itself.
    code_parts: dict[str, str] | None = None
    # What zencache.get_step_context() returns in the worker; what the step logs
    # comes back in TaskResult.log.
    context: StepContext | None = None
    # Set when the run has a writable remote cache and workers may not share the
    # driver's file system: such a worker reads inputs from the remote and writes its
    # outputs there, through a read-through cache of its own (WORKER_CACHE_SETTING).
    remote: RemoteSpec | None = None


@dataclass(frozen=True, slots=True)
class RemoteSpec:
    """What a worker needs to open the run's remote (no secret: workers move objects,
    which their hashes verify; only the driver reads and writes entries)."""

    url: str
    timeout: float = 10.0


WORKER_CACHE_SETTING = "ZENCACHE_WORKER_CACHE"


@dataclass(frozen=True, slots=True)
class TaskResult:
    artifacts: dict[str, ArtifactRecord] = field(default_factory=dict)
    duration: float = 0.0
    error: BaseException | None = None
    traceback_text: str = ""
    damaged_input: str = ""  # an input whose objects are missing or corrupt: the driver repairs
    warnings: tuple[tuple[type[Warning], str], ...] = ()
    log: StepLog | None = None  # the step's metrics and metadata


_stores: dict[tuple[str, int], ObjectStore] = {}


def run_task(task: StepTask) -> TaskResult:
    """The body of every worker task. Never raises for the step's own errors: they come
    back in the result, so that whatever a user's exception holds need not pickle."""
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _run(task, started)
    if not caught:
        return result
    seen = tuple(dict.fromkeys((w.category, str(w.message)) for w in caught))
    return TaskResult(
        result.artifacts,
        result.duration,
        result.error,
        result.traceback_text,
        result.damaged_input,
        seen,
        result.log,
    )


def _run(task: StepTask, started: float) -> TaskResult:
    try:
        step = task.step.resolve() if isinstance(task.step, StepRef) else task.step
        if task.code or task.code_parts is not None:
            _check_code(task, step)
        store, remote = _store_for(task)
        try:
            inputs = load_inputs(store, task.inputs, step.input_types)
        except DamagedInputs as exc:
            return TaskResult(damaged_input=next(iter(exc.damaged)))
        executed = execute_step(
            task.name, step, inputs, task.params, store, task.materializers, task.context
        )
        if remote is not None and not remote.upload_artifacts(store, executed.artifacts.values()):
            raise StoreError(
                f"worker on {socket.gethostname()} could not upload the outputs of step "
                f"{task.name!r} to the remote cache {remote.url}, and does not share the "
                "driver's cache folder; check the remote, or mount the cache folder on workers"
            )
    except Exception as exc:
        text = "".join(traceback.format_exception(exc))  # what the local runner records
        return TaskResult(error=_portable(task.name, exc), traceback_text=text)
    log = task.context.log if task.context is not None else None
    return TaskResult(executed.artifacts, time.perf_counter() - started, log=log)


def _check_code(task: StepTask, step: Any) -> None:
    from ..fingerprint import fingerprint, new_epoch  # memoized per process and epoch

    new_epoch()  # a Dask worker outlives runs: its memos are checked again
    if task.code_parts is None:
        found = fingerprint(step.fn, task.carried)
        if found.digest == task.code:
            return
        ours, theirs, changed = found.digest[:12], task.code[:12], ""
    else:
        # A step sent by value brings its script's code; the functions and classes it
        # reaches in other modules are imported here, and must be the driver's.
        here = _imported_parts(task.code_parts)
        names = sorted(n for n, v in here.items() if task.code_parts.get(n) != v)
        if not names:
            return
        ours, theirs = _digest(here)[:12], _digest(task.code_parts)[:12]
        changed = f" ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''} differ)"
    raise StepFailedError(
        f"step {task.name!r} was not run: the worker on {socket.gethostname()} holds other "
        f"code for it than the driver fingerprinted (code {ours} there, {theirs} here)"
        f"{changed}; a module it uses was edited after the driver imported it (run again "
        "to run the code as it is now), or the worker has other versions of the packages "
        "it uses (install the driver's versions; restart long-lived Dask workers with "
        "distributed.Client.restart())",
        step=task.name,
    )


_remotes: dict[str, Remote] = {}


def _store_for(task: StepTask) -> tuple[ObjectStore, Remote | None]:
    """The driver's object store when this worker sees it; else, with a remote, this
    worker's own read-through cache (ZENCACHE_WORKER_CACHE, default a folder in the
    temporary directory) and the remote its outputs go to."""
    own = os.environ.get(WORKER_CACHE_SETTING)
    if task.remote is None or (not own and Path(task.store).is_dir()):
        return _store(task.store, task.chunk_size), None
    root = Path(own or Path(tempfile.gettempdir()) / "zencache-worker") / "objects"
    remote = _remotes.get(task.remote.url)
    if remote is None:
        remote = _remotes[task.remote.url] = Remote(task.remote.url, timeout=task.remote.timeout)
    store = _stores.get((str(root), task.chunk_size))
    if store is None:
        store = _stores[(str(root), task.chunk_size)] = ObjectStore(
            root, chunk_size=task.chunk_size
        )
        store.fetcher = remote
    return store, remote


def _imported_parts(driver: dict[str, str]) -> dict[str, str]:
    """The fingerprint parts, in this process, of the functions and classes outside
    the main script that the driver's fingerprint names."""
    from ..fingerprint import fingerprint

    roots: list[Any] = []
    missing: dict[str, str] = {}
    for name in driver:
        kind, _, rest = name.partition(":")
        module, _, qualname = rest.partition(":")
        if kind != "code" or "<" in qualname:
            continue
        obj: Any = sys.modules.get(module)
        try:
            obj = obj if obj is not None else skipping.import_module(module)
            for attr in qualname.split("."):
                obj = getattr(obj, attr)
        except Exception as exc:
            missing[name] = f"cannot be imported: {type(exc).__name__}"
            continue
        roots.append(obj)
    if not roots:
        return missing
    found = fingerprint(roots[0], tuple(roots[1:]))
    return {**{n: v for n, v in found.parts.items() if n != "python"}, **missing}


def _digest(parts: dict[str, str]) -> str:
    return hash_value(parts)


def outside_main(parts: Any) -> dict[str, str]:
    """Fingerprint parts that do not name the main script: a step sent by value
    carries its script's code with it."""
    main = {"__main__", module_label("__main__")}
    return {n: v for n, v in parts.items() if n.partition(":")[2].partition(":")[0] not in main}


def _store(root: str, chunk_size: int) -> ObjectStore:
    store = _stores.get((root, chunk_size))
    if store is None:
        if not Path(root).is_dir():
            raise StoreError(
                f"the object store {root} does not exist on worker host {socket.gethostname()}; "
                "workers need the cache directory on storage they share with the driver, "
                "mounted at the same path (see docs/executors.md)"
            )
        store = _stores[(root, chunk_size)] = ObjectStore(root, chunk_size=chunk_size)
    return store


def _portable(name: str, exc: Exception) -> BaseException:
    """`exc` if it survives pickling (zencache's own errors do), else a StepFailedError
    that says what it was: a user's exception class may not exist or pickle in the driver."""
    if isinstance(exc, ZencacheError):
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:
            pass
        else:
            return exc
    return StepFailedError(
        f"step {name!r} raised {type(exc).__name__}: {exc}",
        step=name,
        traceback_text="".join(traceback.format_exception(exc)),
    )
