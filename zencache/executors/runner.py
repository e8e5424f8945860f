"""The caching core every executor shares: keys, lookups, execution, commits.

An executor decides *where and when* a step runs; this module decides whether
it must, and records what happened. A hit computes a key and does one index
lookup: no data is loaded. A miss loads its inputs (from memory when produced
in this run, else from the store; a damaged input re-executes its producer),
runs the step, writes its objects durably, then queues its artifact and step
records for the background committer (committer.py: group commit while the next
steps run). The run record is written once, at the end, after every queued record.
The miss path comes in halves that other processes can share: `decide` and
`record` stay in the driver (the only writer of the index), while `call_step`
and `materialize` also run in the workers of the parallel executors (worker.py).
"""

from __future__ import annotations

import logging
import re
import secrets
import time
import traceback
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ..core.dag import ArtifactHandle, Dag
from ..core.plan import PlannedStep
from ..core.runs import Run, StepEvent
from ..errors import (
    CorruptObjectError,
    MissingObjectError,
    StepFailedError,
    StepOutputError,
    ZencacheError,
)
from ..fingerprint.environment import (
    current_environment,
    module_file,
    user_sys_path,
    working_directory,
)
from ..hashing import canonical_encoding
from ..materializers import registry
from ..materializers.artifacts import load_artifact, save_artifact
from ..materializers.base import BaseMaterializer
from ..materializers.params import encode_params
from ..storage.cache import Cache
from ..storage.index import Op
from ..storage.records import ArtifactRecord, RunRecord, StepRecord, StepRun
from ..storage.store import ObjectStore
from .committer import Committer
from .leases import Leases
from .remote_tier import RemoteTier

log = logging.getLogger(__name__)

Progress = Callable[[StepEvent], None]


def new_run_id() -> str:
    """Sortable by time across processes; the suffix keeps simultaneous runs apart."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%f") + "-" + secrets.token_hex(3)


class Runner:
    """State of one run: ids and in-memory values produced so far."""

    def __init__(
        self,
        cache: Cache,
        dag: Dag,
        planned: list[PlannedStep],
        params: dict[str, str],
        *,
        force: bool = False,
        progress: Progress | None = None,
        target: str = "",
        remote: RemoteTier | None = None,
    ) -> None:
        self.cache = cache
        self.remote = remote
        self.index = cache.index
        self.store = cache.store
        self.dag = dag
        self.planned = {p.name: p for p in planned}
        self.params = params
        self.force = force
        self.progress = progress
        self.target = target
        self.run_id = new_run_id()
        self.started = time.time()
        self.ids: dict[str, dict[str, str]] = {}
        self.values: dict[tuple[str, str], Any] = {}
        self.results: dict[str, StepRun] = {}
        self._remaining_consumers = {name: len(c) for name, c in dag.consumers.items()}
        self._keep = {(h.invocation, h.output) for h in dag.output_handles()}
        self._failures: list[tuple[str, BaseException]] = []
        self.leases = Leases(cache, self.run_id)
        self.committer = Committer(self.index, self._committed)
        # Keys this run recorded, committed or still queued: a later invocation with
        # the same key is a hit without waiting for the commit.
        self._recorded: dict[str, tuple[str, ...]] = {}
        # Artifact records queued and not yet committed, for the steps that read them.
        self._queued_artifacts: dict[str, ArtifactRecord] = {}
        self._stored_envs: set[str] = set()  # environments known to be in the index
        warn_unstable_params(planned)

    # --- the decision ---------------------------------------------------------------------

    def key(self, ps: PlannedStep) -> str:
        ids = self.ids
        slots = ps.input_slots
        if len(slots) == 1:  # most steps: no comprehension to run
            return ps.key_template.key([ids[slots[0][0]][slots[0][1]]])
        return ps.key_template.key([ids[invocation][out] for invocation, out in slots])

    def uses_cache(self, ps: PlannedStep) -> bool:
        return not self.force and ps.step.options.cache

    def blocked_by(self, ps: PlannedStep) -> str | None:
        """The upstream step that failed or was skipped, if any."""
        if not self._failures:
            return None  # every skip goes back to a failure
        for upstream in ps.invocation.upstream:
            result = self.results.get(upstream)
            if result is not None and result.status in ("failed", "skipped"):
                return upstream
        return None

    # --- recording outcomes -------------------------------------------------------------------

    def record_hit(
        self,
        ps: PlannedStep,
        key: str,
        output_ids: tuple[str, ...],
        started: float,
        source: str = "",
    ) -> None:
        name, names = ps.name, ps.output_names
        outputs = (
            {names[0]: output_ids[0]}  # one output: 0.07 µs against 0.35 for the zip
            if len(names) == 1 == len(output_ids)
            else dict(zip(names, output_ids, strict=True))
        )
        self.ids[name] = outputs
        step_run = StepRun(
            name,
            ps.step.identity,
            key,
            "cached",
            time.perf_counter() - started,
            outputs,
            "",
            source,
        )
        if self.progress is None:  # the hit path of a run without a progress display
            self.results[name] = step_run
        else:
            self._finish(step_run)

    def record_skip(self, ps: PlannedStep, upstream: str) -> None:
        error = f"not run: upstream step {upstream!r} did not complete"
        self._finish(StepRun(ps.name, ps.step.identity, "", "skipped", 0.0, {}, error))

    def record_failure(
        self, ps: PlannedStep, key: str, exc: BaseException, started: float, text: str = ""
    ) -> None:
        """`text`: the traceback when `exc` was raised elsewhere (in a worker process)."""
        name_step(exc, ps.name)
        text = text or "".join(traceback.format_exception(exc))
        self._failures.append((ps.name, exc))
        self._finish(
            StepRun(
                ps.name, ps.step.identity, key, "failed", time.perf_counter() - started, {}, text
            )
        )

    def _finish(self, step_run: StepRun) -> None:
        self.results[step_run.name] = step_run
        if self.progress is not None:
            self.progress(
                StepEvent(
                    step_run.name,
                    step_run.status,
                    len(self.results),
                    len(self.planned),
                    step_run.duration,
                )
            )

    # --- executing in this process ---------------------------------------------------------------

    def decide(self, ps: PlannedStep, started: float, key: str = "") -> str | None:
        """Skip, hit or miss. A miss returns its key (with its lease held when it caches);
        skips and hits are recorded here and return None. No data is loaded.
        `key`: the step's key when the caller computed it already."""
        if self._failures:  # every skip goes back to a failure: the hit path skips this
            upstream = self.blocked_by(ps)
            if upstream is not None:
                self.record_skip(ps, upstream)
                return None
        key = key or self.key(ps)
        caches = not self.force and ps.step.options.cache
        # Hits in a row share one read snapshot (Index.step_output_ids); a miss ends
        # it, so whatever comes next (leases, loads, commits) sees the present.
        hit = (
            self._recorded.get(key) or self.index.step_output_ids(key, snapshot=True)
            if caches
            else None
        )
        if hit is None:
            self.index.end_snapshot()
            if caches:
                self.committer.check()  # a failed commit (a full disk) stops the run here
                if self.remote is not None and self._remote_hit(ps, key, started):
                    return None
                hit = self.leases.acquire(key, while_waiting=self.committer.check)
        if hit is not None:
            self.record_hit(ps, key, hit, started)
            return None
        return key

    def _remote_hit(self, ps: PlannedStep, key: str, started: float) -> bool:
        """A local miss asks the remote; an entry found there is committed to the local
        index (its data stays remote until loaded) and the step is a hit."""
        assert self.remote is not None
        entry = self.remote.lookup(key)
        if entry is None:
            return False
        ops = self.remote.local_ops(entry, self._stored_envs)
        for a in entry.artifacts:
            self._queued_artifacts[a.content_id] = a
        self.committer.submit(ops, (key, tuple(a.content_id for a in entry.artifacts)))
        self._recorded[key] = entry.step.output_ids
        self.record_hit(ps, key, entry.step.output_ids, started, "remote")
        return True

    def execute_here(self, ps: PlannedStep, key: str, started: float) -> None:
        """A miss, in this process: load inputs, call, materialize, record."""
        try:
            inputs = self.load_inputs(ps)
            new_key = self.key(ps)  # a re-executed damaged input may have changed an id
            if new_key != key:
                self.leases.release(key)
                key = new_key
            outputs = self.call(ps, inputs)
            self.commit(ps, key, outputs, time.perf_counter() - started)
        except BaseException as exc:
            self.leases.release(key)
            if not isinstance(exc, Exception):
                # Ctrl-C (or SystemExit) inside the step: the run record names the step
                # it stopped, not only those that finished.
                self.results[ps.name] = StepRun(
                    ps.name,
                    ps.step.identity,
                    key,
                    "interrupted",
                    time.perf_counter() - started,
                    {},
                    f"interrupted by {type(exc).__name__}",
                )
                raise
            self.record_failure(ps, key, exc, started)
            return
        self._release_inputs(ps)
        self.record_executed(ps, key, time.perf_counter() - started)

    def record_executed(self, ps: PlannedStep, key: str, duration: float) -> None:
        self._finish(
            StepRun(ps.name, ps.step.identity, key, "executed", duration, self.ids[ps.name])
        )

    def load_inputs(self, ps: PlannedStep) -> dict[str, Any]:
        types = ps.step.input_types
        return {name: self.value(h, types.get(name)) for name, h in ps.invocation.inputs.items()}

    def value(self, handle: ArtifactHandle, data_type: Any = None) -> Any:
        """An upstream output: from memory, else from the store, else by re-executing."""
        slot = (handle.invocation, handle.output)
        if slot in self.values:
            return self.values[slot]
        content_id = self.ids[handle.invocation][handle.output]
        try:
            record = self.artifact_record(content_id)  # a damaged record raises too
            if record is None:
                raise MissingObjectError(
                    f"artifact {content_id} has no index record", object_id=content_id
                )
            return load_artifact(self.store, record, data_type)
        except (CorruptObjectError, MissingObjectError) as exc:
            log.warning("%s; re-executing step %r to recreate it", exc, handle.invocation)
            producer = self.planned[handle.invocation]
            outputs = self.call(producer, self.load_inputs(producer))
            self.commit(producer, self.key(producer), outputs, 0.0)
            return self.values.get(slot, outputs[handle.output])

    def artifact_record(self, content_id: str) -> ArtifactRecord | None:
        """An artifact's record, also while it waits in the committer's queue."""
        return self._queued_artifacts.get(content_id) or self.index.get_artifact(content_id)

    def call(self, ps: PlannedStep, inputs: dict[str, Any]) -> dict[str, Any]:
        """Run the step's function and check what it returned against its outputs."""
        return call_step(ps.name, ps.step, inputs, ps.invocation.params)

    def commit(self, ps: PlannedStep, key: str, outputs: dict[str, Any], duration: float) -> None:
        """Write the outputs' objects (durable on return), then queue their records."""
        self.record(ps, key, materialize(self.store, ps.materializers, outputs), duration)
        for name, value in outputs.items():
            if self._remaining_consumers.get(ps.name) or (ps.name, name) in self._keep:
                self.values[(ps.name, name)] = value

    def record(
        self,
        ps: PlannedStep,
        key: str,
        artifacts: dict[str, ArtifactRecord],
        duration: float,
    ) -> None:
        """Queue a step's artifact and step records (its objects already durable) for
        the committer, which commits them and then releases the step's lease. Local
        and worker-executed steps share it. For what a kill -9 may lose, see
        committer.py: never a committed entry; at most steps that had just finished.
        """
        ids = {name: a.content_id for name, a in artifacts.items()}
        env = current_environment()  # the driver's, for steps a worker executed too
        record = StepRecord(
            key=key,
            step=ps.step.identity,
            name=ps.name,
            pipeline=self.dag.pipeline,
            output_ids=tuple(ids.values()),
            output_names=tuple(ids),
            fingerprint=ps.parts.code,
            code_parts=dict(ps.fingerprint.parts) if ps.fingerprint else {},
            params={n: {"hash": h, "repr": ps.param_reprs[n]} for n, h in ps.parts.params},
            inputs={n: self.ids[h.invocation][h.output] for n, h in ps.invocation.inputs.items()},
            materializers={n: a.materializer for n, a in artifacts.items()},
            untracked=ps.fingerprint.untracked if ps.fingerprint else (),
            run_id=self.run_id,
            created=time.time(),
            duration=duration,
            param_values=encode_params(ps.invocation.params),
            module_file=module_file(ps.step.fn),
            env_id=env.env_id,
        )
        ops: list[Op] = [
            ("artifacts", a.content_id.encode(), a.encode()) for a in artifacts.values()
        ]
        if env.env_id not in self._stored_envs:  # committed with the first entry naming it
            self._stored_envs.add(env.env_id)
            if self.index.get("envs", env.env_id.encode()) is None:
                ops.append(("envs", env.env_id.encode(), env.encode()))
        ops.append(("steps", key.encode(), record.encode()))
        for a in artifacts.values():
            self._queued_artifacts[a.content_id] = a
        self.committer.submit(ops, (key, tuple(ids.values())))
        self._recorded[key] = record.output_ids
        self.ids[ps.name] = ids
        if self.remote is not None:
            self.remote.publish(record, artifacts.values())

    def _committed(self, tokens: list[tuple[str, tuple[str, ...]]]) -> None:
        """On the committer's thread, after a batch: release its leases (also when
        the commit failed: the run stops, and processes waiting on these keys must
        not wait for entries that will never come)."""
        for _, content_ids in tokens:
            for content_id in content_ids:
                self._queued_artifacts.pop(content_id, None)
        self.leases.release(*(key for key, _ in tokens))

    def flush(self) -> None:
        """Wait until every queued record is committed (and raise if one could not be)."""
        self.index.end_snapshot()
        self.committer.drain()

    def _release_inputs(self, ps: PlannedStep) -> None:
        for upstream in ps.invocation.upstream:
            self._remaining_consumers[upstream] -= 1
            if self._remaining_consumers[upstream] == 0:
                for slot in [s for s in self.values if s[0] == upstream and s not in self._keep]:
                    del self.values[slot]

    # --- the end ----------------------------------------------------------------------------------

    def finish(self, status: str | None = None) -> Run:
        """Write the run record, environment and latest keys in one transaction, after
        every queued step record."""
        self.flush()
        if self.remote is not None:
            self.remote.finish(self.run_id)
        if status is None:
            status = "failed" if self._failures else "completed"
        env = current_environment()
        steps = tuple(self.results[name] for name in self.planned if name in self.results)
        handles = self.dag.output_handles()
        record = RunRecord(
            run_id=self.run_id,
            pipeline=self.dag.pipeline,
            params=self.params,
            status=status,
            started=self.started,
            finished=time.time(),
            env_id=env.env_id,
            steps=steps,
            output=tuple(f"{h.invocation}.{h.output}" for h in handles),
            output_is_tuple=isinstance(self.dag.output, tuple),
            target=self.target,
            workdir=working_directory(),
            sys_path=user_sys_path(),
        )
        ops: list[Op] = [("runs", self.run_id.encode(), record.encode())]
        if self.index.get("envs", env.env_id.encode()) is None:
            ops.append(("envs", env.env_id.encode(), env.encode()))
        prefix = f"{self.dag.pipeline}/".encode()
        latest = {
            prefix + s.name.encode(): s.key.encode()
            for s in steps
            if s.key and s.status in ("executed", "cached")
        }
        latest_db = self.index.db("latest")

        def write(txn: Any) -> None:
            for db, key, value in ops:
                if value is None:
                    txn.delete(key, db=self.index.db(db))
                else:
                    txn.put(key, value, db=self.index.db(db))
            # A rerun mostly finds the keys it would write: rewriting them would
            # dirty (and fsync) every page of the table for nothing. One scan of the
            # pipeline's pointers, in key order, is cheaper than a get per step.
            cursor = txn.cursor(db=latest_db)
            found = {}
            if cursor.set_range(prefix):
                for key, value in cursor.iternext():
                    if not key.startswith(prefix):
                        break
                    found[key] = value
            for key, value in latest.items():
                if found.get(key) != value:
                    txn.put(key, value, db=latest_db)

        self.index.transact(write)
        run = Run(record, self.cache, self.values)
        if self._failures and status != "interrupted":
            name, exc = self._failures[0]
            where = (
                f"run {self.run_id}: {len(self._failures)} step(s) failed; what the other "
                "branches computed is cached"
            )
            if not isinstance(exc, StepFailedError):
                exc.add_note(where)
                raise exc
            raise StepFailedError(
                f"{exc} ({where})", step=name, traceback_text=exc.traceback_text
            ) from exc.__cause__
        return run


def call_step(
    name: str, step: Any, inputs: dict[str, Any], params: dict[str, Any]
) -> dict[str, Any]:
    """Call a step's function on loaded inputs and check what it returned.

    Shared by this process's runner and the workers of the parallel executors.
    """
    try:
        returned = step.fn(**inputs, **params)
    except Exception as exc:
        raise StepFailedError(
            f"step {name!r} raised {type(exc).__name__}: {exc}",
            step=name,
            traceback_text="".join(traceback.format_exception(exc)),
        ) from exc
    return split_outputs(name, step.outputs, returned)


def materialize(
    store: ObjectStore,
    materializers: dict[str, type[BaseMaterializer] | None],
    outputs: dict[str, Any],
) -> dict[str, ArtifactRecord]:
    """Write each output's objects (durable on return); the records are committed later."""
    artifacts: dict[str, ArtifactRecord] = {}
    for name, value in outputs.items():
        materializer = materializers[name] or registry.for_value(value)
        artifacts[name] = save_artifact(store, value, materializer)
    return artifacts


def split_outputs(name: str, specs: tuple[Any, ...], returned: Any) -> dict[str, Any]:
    """Map a step's return value onto its declared outputs, checking count and types."""
    if not specs:
        if returned is not None:
            raise StepOutputError(
                f"step {name!r} is declared to return None but returned "
                f"{type(returned).__name__}; declare its return type"
            )
        return {}
    if len(specs) == 1:
        values = (returned,)
    else:
        if not isinstance(returned, tuple | list) or len(returned) != len(specs):
            got = (
                f"{len(returned)} values"
                if isinstance(returned, tuple | list)
                else type(returned).__name__
            )
            raise StepOutputError(
                f"step {name!r} must return {len(specs)} values "
                f"({', '.join(s.name for s in specs)}) but returned {got}; return a tuple in that order"
            )
        values = tuple(returned)
    outputs = {}
    for spec, value in zip(specs, values, strict=True):
        _check_type(name, spec.name, spec.declared, value)
        outputs[spec.name] = value
    return outputs


def _check_type(step: str, output: str, declared: Any, value: Any) -> None:
    if declared is None or registry.is_too_general(declared):
        return
    cls = registry.concrete_type(declared)
    if cls is float and isinstance(value, int) and not isinstance(value, bool):
        return  # the numeric tower: an int is an acceptable float
    if not isinstance(value, cls):
        raise StepOutputError(
            f"output {output!r} of step {step!r} is declared {getattr(cls, '__qualname__', cls)} "
            f"but the step returned {type(value).__module__}.{type(value).__qualname__}; "
            "return the declared type or fix the annotation"
        )


class UnstableParameterWarning(UserWarning):
    """A parameter's canonical form holds a memory address: its key changes every run."""


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]{6,}")


def warn_unstable_params(planned: list[PlannedStep]) -> None:
    """Warn when a parameter hashes an object's address (a registered hasher that
    returns repr(value), a string made with str(obj)): such a step would miss the
    cache on every run, silently. Objects with no canonical form at all are refused
    earlier (UnhashableParameterError); only values whose repr shows an address are
    re-encoded here, so the usual run pays nothing."""
    for ps in planned:
        for name, text in ps.param_reprs.items():
            found = _ADDRESS.search(text)
            if found is None:
                continue
            value = ps.invocation.params[name]
            if found.group().encode() in canonical_encoding(value):
                warnings.warn(
                    f"parameter {name!r} of step {ps.name!r} hashes a memory address "
                    f"({text}), so its cache key changes every run and the step never hits; "
                    "register a hasher that encodes the value's content "
                    "(zencache.hashing.register_hasher), pass it as an artifact, or add it "
                    "to ignore=",
                    UnstableParameterWarning,
                    stacklevel=2,
                )


def name_step(exc: BaseException, step: str) -> None:
    """Put the step's name at the head of a zencache error that does not say it (a
    materializer that cannot store an output, a full disk), so that the one line the
    CLI shows names the step."""
    if isinstance(exc, ZencacheError) and exc.args and f"{step!r}" not in str(exc):
        exc.args = (f"step {step!r}: {exc.args[0]}", *exc.args[1:])
