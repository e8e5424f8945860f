"""The run's caching core every executor shares: decide, settle, store, queue, write.

An executor decides *where and when* a step runs; the Runner decides whether it
must, and keeps what happened. One name per act:

    decide          skip, hit or miss: a key and one index lookup, no data loaded
    settle_*        a step's outcome (cached, executed, failed, skipped, interrupted)
                    goes into `results` and, as a CacheEvent, to the run's listeners
    load_inputs     a miss's inputs: from memory when produced in this run, else from
                    the store; a damaged input re-executes its producer
    call            the step's function (execute.py, the core workers share)
    store_outputs   writes the outputs' objects (durable), queues the entry, keeps
                    the values later steps of this run read
    queue_entry     queues a step's artifact and step records for the background
                    committer (committer.py: group commit while the next steps run)
    wait_for_commits   every queued record committed (or its failure raised)
    write_run       the run record, once, at the end, after every queued record
                    (run_record.py); `raise_failures` then reports failed steps

`decide`, `queue_entry` and the `settle_*` verbs stay in the driver (the only
writer of the index); loading, calling and materializing also run in the workers
of the parallel executors (worker.py), through the same core (execute.py).

What happens is told to the run's listeners as one stream of records (events.py):
the hooks (hooks.HookDispatch), the CLI's progress and run table, `run(progress=)`.
With no listener (a plain run) no event is built.
"""

from __future__ import annotations

import functools
import logging
import secrets
import time
import traceback
import weakref
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from time import perf_counter
from typing import Any

from ..core.context import StepContext, StepLog
from ..core.dag import ArtifactHandle, Dag
from ..core.plan import PlannedStep
from ..core.runs import Run, StepEvent
from ..errors import CorruptObjectError, MissingObjectError, StepFailedError, ZencacheError
from ..fingerprint.environment import current_environment, module_file
from ..hashing import module_label
from ..inputs.trees import encode_entries
from ..materializers.artifacts import load_artifact
from ..materializers.params import encode_params
from ..materializers.paths import PathMaterializer
from ..storage.cache import Cache
from ..storage.index import Op
from ..storage.records import ArtifactRecord, StepRecord, StepRun
from . import run_record
from .committer import Committer
from .events import CacheEvent, EventKind, Listener, RunEnded, RunStarted, StepProgress
from .execute import DamagedInputs, call_step, materialize
from .execute import load_inputs as load_stored_inputs
from .hooks import HookDispatch, Hooks
from .leases import HELD, Leases
from .miss_reasons import miss_reasons
from .remote_tier import RemoteTier
from .unstable_params import UnstableParameterWarning, warn_unstable_params
from .untracked import report_untracked

log = logging.getLogger(__name__)
_PATH_MATERIALIZER = PathMaterializer.identity()
_new_tuple = tuple.__new__

Progress = Callable[[StepEvent], None]

__all__ = ["Progress", "Runner", "UnstableParameterWarning", "name_step", "new_run_id"]


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
        hooks: Hooks | None = None,
        executor: str = "",
        remote: RemoteTier | None = None,
        listeners: Sequence[Listener] = (),
    ) -> None:
        self.cache = cache
        self.remote = remote
        self.index = cache.index
        self.store = cache.store
        if force:
            self.store.distrust_existing()
        self.dag = dag
        self.planned = {p.name: p for p in planned}
        self.params = params
        self.force = force
        self.target = target
        self.run_id = new_run_id()
        self.started = time.time()
        self.ids: dict[str, dict[str, str]] = {}
        self.values: dict[tuple[str, str], Any] = {}
        self.results: dict[str, StepRun] = {}
        self._remaining_consumers = dict(dag.consumer_counts)
        self._keep = {(h.invocation, h.output) for h in dag.output_handles()}
        # How many steps have still to read each step's outputs: all but the last get
        # their own copy (see load_inputs), so that a step that changes an input in
        # place cannot change what its siblings receive.
        self._readers = dict(self._remaining_consumers)
        self._have_read: set[str] = set()  # steps already counted off _readers
        self._failures: list[tuple[str, BaseException]] = []
        self.leases = Leases(cache, self.run_id)
        # Keys this run recorded, committed or still queued: a later invocation with
        # the same key is a hit without waiting for the commit.
        self._recorded: dict[str, tuple[str, ...]] = {}
        # Artifact records queued and not yet committed, for the steps that read them.
        self._queued_artifacts: dict[str, ArtifactRecord] = {}
        # Told what it needs, not the runner: no reference cycle through the runner, so
        # that a run's objects (thousands per 1,000 steps) are freed when it returns,
        # not by the cyclic collector, whose passes over them cost ~2 µs a cached step.
        self.committer = Committer(
            self.index, functools.partial(_release_committed, self._queued_artifacts, self.leases)
        )
        self._stored_envs: set[str] = set()  # environments known to be in the index
        self._stored_trees: set[str] = set()  # folder listings known to be in the index
        # What executed steps logged (zencache.log_metric, log_metadata): by step name
        # for the run record and hooks, by key for a later hit on the same key.
        self.logs: dict[str, StepLog] = {}
        self.logs_by_key: dict[str, StepLog] = {}
        self.hooks = hooks or None
        self.executor_name = executor
        # Who hears the run's events (events.py): the hooks first, then the caller's
        # listeners, then `progress`; None when nobody listens, so that a plain run
        # builds no event at all.
        listening: list[Listener] = (
            [] if self.hooks is None else [HookDispatch(self.hooks, weakref.proxy(self))]
        )
        listening.extend(listeners)
        if progress is not None:
            listening.append(StepProgress(progress))
        self.listeners: tuple[Listener, ...] | None = tuple(listening) or None
        self._executing: set[str] = set()  # steps whose MISS was emitted
        warn_unstable_params(planned)
        report_untracked(planned)

    # --- the decision ---------------------------------------------------------------------

    def key(self, ps: PlannedStep) -> str:
        ids, inputs = self.ids, ps.invocation.inputs
        if len(inputs) == 1:  # most steps: no comprehension to run
            (handle,) = inputs.values()
            return ps.key_template.key_one(ids[handle.invocation][handle.output])
        return ps.key_template.key(
            [ids[inputs[n].invocation][inputs[n].output] for n in ps.input_names]
        )

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

    # --- settling outcomes: results and progress, no index write ---------------------------------

    def settle_hit(
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
        # Every field given, past the NamedTuple's __new__ (a Python function): the
        # tuple's own, 0.1 µs less per hit.
        step_run = _new_tuple(
            StepRun,
            (name, ps.step.identity, key, "cached", perf_counter() - started, outputs, "", source),
        )
        if self.listeners is None:  # the hit path of a plain run
            self.results[name] = step_run
        else:
            self._settle(step_run, EventKind.REMOTE_HIT if source else EventKind.HIT)

    def settle_skip(self, ps: PlannedStep, upstream: str) -> None:
        error = f"not run: upstream step {upstream!r} did not complete"
        self._settle(
            StepRun(ps.name, ps.step.identity, "", "skipped", 0.0, {}, error),
            EventKind.SKIPPED,
            upstream,
        )

    def settle_failure(
        self, ps: PlannedStep, key: str, exc: BaseException, started: float, text: str = ""
    ) -> None:
        """`text`: the traceback when `exc` was raised elsewhere (in a worker process)."""
        name_step(exc, ps.name)
        text = text or "".join(traceback.format_exception(exc))
        self._failures.append((ps.name, exc))
        self._settle(
            StepRun(
                ps.name, ps.step.identity, key, "failed", time.perf_counter() - started, {}, text
            ),
            EventKind.FAILED,
        )

    def settle_executed(self, ps: PlannedStep, key: str, duration: float) -> None:
        self._settle(
            StepRun(ps.name, ps.step.identity, key, "executed", duration, self.ids[ps.name]),
            EventKind.STORED,
        )

    def settle_interrupted(self, ps: PlannedStep, key: str, started: float, why: str) -> None:
        """Ctrl-C (or SystemExit) while the step ran: the run record names the step it
        stopped, not only those that finished. Hooks and progress ignore it: the run is ending."""
        self._settle(
            StepRun(
                ps.name,
                ps.step.identity,
                key,
                "interrupted",
                time.perf_counter() - started,
                {},
                why,
            ),
            EventKind.INTERRUPTED,
        )

    def _settle(self, step_run: StepRun, kind: EventKind, upstream: str = "") -> None:
        self.results[step_run.name] = step_run
        if self.listeners is not None:
            failed = kind is EventKind.FAILED or kind is EventKind.INTERRUPTED
            self.emit(
                CacheEvent(
                    kind,
                    step_run.name,
                    step_run.key,
                    step_run.duration,
                    step_run.outputs,
                    upstream=upstream,
                    error=step_run.error if failed else "",
                )
            )

    # --- events (events.py): emitted in this process, whichever executor runs the steps -----------

    def emit(self, event: RunStarted | CacheEvent | RunEnded) -> None:
        """Tell every listener, in order; a listener that raises stops the run (hooks
        catch their own failures, save strict on_run_start's)."""
        for listener in self.listeners or ():
            listener(event)

    def run_started(self) -> None:
        """RunStarted (on_run_start); with strict hooks, a failure stops the run here."""
        if self.listeners is None:
            return
        self.emit(
            RunStarted(
                run_id=self.run_id,
                pipeline=self.dag.pipeline,
                steps=tuple(self.planned),
                params=dict(self.params),
                executor=self.executor_name,
                cache_dir=str(self.cache.path),
                target=self.target,
                started=self.started,
            )
        )

    def executing(self, ps: PlannedStep, key: str) -> None:
        """The step's MISS, with its reasons, as it starts executing: once per step, also
        for a step sent to a worker again after its worker died."""
        if self.listeners is None or ps.name in self._executing:
            return
        self._executing.add(ps.name)
        input_ids = {n: self.ids[h.invocation][h.output] for n, h in ps.invocation.inputs.items()}
        reasons, previous = miss_reasons(
            self.index, self.dag.pipeline, ps, key, input_ids, force=self.force
        )
        self.emit(CacheEvent(EventKind.MISS, ps.name, key, reasons=reasons, previous_key=previous))

    # --- executing in this process ---------------------------------------------------------------

    def decide(
        self,
        ps: PlannedStep,
        started: float,
        key: str = "",
        lease: bool = True,
        looked_up: bool = False,
    ) -> str | None:
        """Skip, hit or miss. A miss returns its key (with its lease held when it caches,
        waiting for another holder; `lease=False`: not taken, see `claim`); skips and
        hits are settled here and return None. No data is loaded.
        `key`: the step's key when the caller computed it already; `looked_up`: and
        found no entry for it in the lookup snapshot (settle_hits), so it is a miss there."""
        if self._failures:  # every skip goes back to a failure: the hit path skips this
            upstream = self.blocked_by(ps)
            if upstream is not None:
                self.settle_skip(ps, upstream)
                return None
        key = key or self.key(ps)
        caches = not self.force and ps.step.options.cache
        # Hits in a row share one read snapshot (Index.step_output_ids); a miss ends
        # it, so whatever comes next (leases, loads, commits) sees the present.
        hit = (
            self._recorded.get(key) or self.index.step_output_ids(key, snapshot=True)
            if caches and not looked_up
            else None
        )
        if hit is None:
            self.index.end_snapshot()
            if self.index.read_only:
                why = "a miss" if caches else "not cached"
                raise self.index.read_only_error(
                    f"record step {ps.name!r}, which must execute ({why})"
                )
            if caches and self.remote is not None and self._remote_hit(ps, key, started):
                return None
            if caches and lease:
                self.committer.check()  # a failed commit (a full disk) stops the run here
                hit = self.leases.acquire(key, while_waiting=self.committer.check)
        if hit is not None:
            self.settle_hit(ps, key, hit, started)
            return None
        if self.listeners is not None and lease:  # a parallel driver: when it sends the step
            self.executing(ps, key)
        return key

    def settle_hits(self, steps: list[PlannedStep], start: int) -> tuple[int, str]:
        """The hit path of an in-process run: settle `steps[start:]` in order while each
        is a plain hit, and return where that stopped (the step to `decide`, or
        len(steps)) with that step's key when it was looked up and missed (else "").
        What `decide` does for a hit, in one loop: a fully cached rerun is ~7 µs a
        step, and each call layer per step cost a tenth of a microsecond."""
        if self._failures or self.force:
            return start, ""
        lookup = self.index.hit_lookup()
        recorded, ids, results = self._recorded, self.ids, self.results
        plain = self.listeners is None
        for at in range(start, len(steps)):
            ps = steps[at]
            if not ps.step.options.cache:
                return at, ""
            started = perf_counter()
            inputs = ps.invocation.inputs
            if len(inputs) == 1:  # most steps (unpacked, not kept: one object less a step)
                (handle,) = inputs.values()
                key = ps.key_template.key_one(ids[handle.invocation][handle.output])
            else:
                key = self.key(ps)
            hit = recorded.get(key) or lookup(key)
            if hit is None:
                return at, key
            names = ps.output_names
            if plain and len(names) == 1 == len(hit):  # settle_hit's usual case, inlined
                name = ps.name
                outputs = ids[name] = {names[0]: hit[0]}
                results[name] = _new_tuple(
                    StepRun,
                    (
                        name,
                        ps.step.identity,
                        key,
                        "cached",
                        perf_counter() - started,
                        outputs,
                        "",
                        "",
                    ),
                )
            else:
                self.settle_hit(ps, key, hit, started)
        return len(steps), ""

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
        self.settle_hit(ps, key, entry.step.output_ids, started, "remote")
        return True

    def claim(self, ps: PlannedStep, key: str, started: float) -> bool | None:
        """Try to take a missed key's lease without waiting: True when taken (execute
        the step), False when it turned out a hit (settled), None while another
        process holds it (try again later, after collecting this run's own steps)."""
        self.committer.check()
        found = self.leases.attempt(key)
        if found is HELD:
            return None
        if found is None:
            return True
        self.settle_hit(ps, key, found, started)  # type: ignore[arg-type]
        return False

    def execute_here(self, ps: PlannedStep, key: str, started: float) -> None:
        """A miss, in this process: load inputs, call, store outputs, queue the entry."""
        try:
            inputs = self.load_inputs(ps)
            new_key = self.key(ps)  # a re-executed damaged input may have changed an id
            if new_key != key:
                self.leases.release(key)
                key = new_key
            outputs = self.call(ps, inputs)
            self.store_outputs(ps, key, outputs, time.perf_counter() - started)
        except BaseException as exc:
            self.leases.release(key)
            if not isinstance(exc, Exception):
                self.settle_interrupted(ps, key, started, f"interrupted by {type(exc).__name__}")
                raise
            self.settle_failure(ps, key, exc, started)
            return
        self._release_inputs(ps)
        self.settle_executed(ps, key, time.perf_counter() - started)

    def load_inputs(self, ps: PlannedStep) -> dict[str, Any]:
        """A step's inputs: from memory when produced in this run, else from the store;
        a missing or damaged one re-executes its producer (which repairs the store)."""
        inputs: dict[str, Any] = {}
        stored: dict[str, ArtifactRecord] = {}
        damaged: dict[str, Exception] = {}
        values, ids = self.values, self.ids
        for name, handle in ps.invocation.inputs.items():
            slot = (handle.invocation, handle.output)
            # The last reader takes the value itself: nobody else sees a change. Others
            # (or the run's result) still need it as the step returned it: they get their
            # own, loaded from the store (a large array is mapped copy-on-write, so a
            # reader that only reads copies nothing).
            if (
                slot in values
                and self._readers.get(handle.invocation, 0) <= 1
                and slot not in self._keep
            ):
                inputs[name] = values[slot]
                continue
            content_id = ids[handle.invocation][handle.output]
            try:
                record = self.artifact_record(content_id)
            except (CorruptObjectError, MissingObjectError) as exc:  # a damaged record
                damaged[name] = exc
                continue
            if record is None:
                damaged[name] = MissingObjectError(
                    f"artifact {content_id} has no index record", object_id=content_id
                )
            else:
                stored[name] = record
        if stored:
            try:
                inputs.update(load_stored_inputs(self.store, stored, ps.step.input_types))
            except DamagedInputs as exc:
                inputs.update(exc.loaded)
                damaged.update(exc.damaged)
        for name, damage in damaged.items():
            inputs[name] = self._recreate(ps.invocation.inputs[name], damage)
        if ps.name not in self._have_read:  # a producer re-executed for repairs reads again
            self._have_read.add(ps.name)
            for upstream in ps.invocation.upstream:
                self._readers[upstream] -= 1
        return inputs

    def _recreate(self, handle: ArtifactHandle, damage: Exception) -> Any:
        """An upstream output lost from the store: re-execute its producer, which
        rewrites the objects (the store replaces a damaged object it finds)."""
        log.warning("%s; re-executing step %r to recreate it", damage, handle.invocation)
        producer = self.planned[handle.invocation]
        started = time.perf_counter()
        outputs = self.call(producer, self.load_inputs(producer))
        self.store_outputs(producer, self.key(producer), outputs, 0.0)
        earlier = self.results.get(producer.name)
        if earlier is not None and earlier.status == "cached":
            # It ran after all: the run record says so (its hit was damaged).
            earlier = self.results[producer.name] = earlier._replace(
                status="executed",
                duration=earlier.duration + time.perf_counter() - started,
                outputs=self.ids[producer.name],
                source="",
            )
        if self.listeners is not None and earlier is not None:
            self.emit(
                CacheEvent(
                    EventKind.CORRUPT_RECOMPUTED,
                    producer.name,
                    earlier.key,
                    earlier.duration,
                    self.ids[producer.name],
                    damaged=getattr(damage, "object_id", ""),
                )
            )
        return self.values.get((handle.invocation, handle.output), outputs[handle.output])

    def artifact_record(self, content_id: str) -> ArtifactRecord | None:
        """An artifact's record, also while it waits in the committer's queue."""
        return self._queued_artifacts.get(content_id) or self.index.get_artifact(content_id)

    def call(self, ps: PlannedStep, inputs: dict[str, Any]) -> dict[str, Any]:
        """Run the step's function and check what it returned against its outputs."""
        context = self.step_context(ps, self.key(ps))  # inputs loaded: their ids are final
        outputs = call_step(ps.name, ps.step, inputs, ps.invocation.params, context=context)
        self.logs[ps.name] = context.log
        return outputs

    def step_context(self, ps: PlannedStep, key: str, status: str = "executing") -> StepContext:
        """What `zencache.get_step_context()` returns while the step (or a hook for it) runs."""
        return StepContext(
            run_id=self.run_id,
            pipeline=self.dag.pipeline,
            step=ps.name,
            key=key,
            status=status,
            output_names=ps.output_names,
            output_ids=dict(self.ids.get(ps.name, {})),
            params=dict(ps.invocation.params),
        )

    # --- storing: objects now, index entries through the committer --------------------------------

    def store_outputs(
        self, ps: PlannedStep, key: str, outputs: dict[str, Any], duration: float
    ) -> None:
        """Write the outputs' objects (durable on return), queue the step's entry, and
        keep the values that later steps of this run (or the run's output) read."""
        artifacts = materialize(self.store, ps.materializers, outputs)
        self.queue_entry(ps, key, artifacts, duration)
        for name, value in outputs.items():
            if self._remaining_consumers.get(ps.name) or (ps.name, name) in self._keep:
                if artifacts[name].materializer == _PATH_MATERIALIZER:
                    # Downstream gets the cache's read-only copy, never the path the
                    # step wrote (which it may move or edit afterwards).
                    value = load_artifact(self.store, artifacts[name], type(value))
                self.values[(ps.name, name)] = value

    def queue_entry(
        self,
        ps: PlannedStep,
        key: str,
        artifacts: dict[str, ArtifactRecord],
        duration: float,
        logged: StepLog | None = None,
    ) -> None:
        """Queue a step's artifact and step records (its objects already durable) for
        the committer, which commits them and then releases the step's lease. Local
        and worker-executed steps share it. For what a kill -9 may lose, see
        committer.py: never a committed entry; at most steps that had just finished.
        """
        ids = {name: a.content_id for name, a in artifacts.items()}
        if logged is None:  # executed here: Runner.call kept it
            logged = self.logs.get(ps.name) or StepLog()
        self.logs[ps.name] = self.logs_by_key[key] = logged
        env = current_environment()  # the driver's, for steps a worker executed too
        record = self._step_record(ps, key, ids, artifacts, duration, env.env_id, logged)
        ops: list[Op] = [
            ("artifacts", a.content_id.encode(), a.encode()) for a in artifacts.values()
        ]
        if env.env_id not in self._stored_envs:  # committed with the first entry naming it
            self._stored_envs.add(env.env_id)
            if self.index.get("envs", env.env_id.encode()) is None:
                ops.append(("envs", env.env_id.encode(), env.encode()))
        for external in ps.externals:
            if external.entries and external.record["digest"] not in self._stored_trees:
                # A folder's listing, once per content: what `cache status` diffs against.
                self._stored_trees.add(external.record["digest"])
                tree_key = external.record["digest"].encode()
                if self.index.get("trees", tree_key) is None:
                    ops.append(("trees", tree_key, encode_entries(external.entries)))
        ops.append(("steps", key.encode(), record.encode()))
        for a in artifacts.values():
            self._queued_artifacts[a.content_id] = a
        self.committer.submit(ops, (key, record.output_ids))
        self._recorded[key] = record.output_ids
        self.ids[ps.name] = ids
        if self.remote is not None:
            self.remote.publish(record, artifacts.values())

    def _step_record(
        self,
        ps: PlannedStep,
        key: str,
        ids: dict[str, str],
        artifacts: dict[str, ArtifactRecord],
        duration: float,
        env_id: str,
        logged: StepLog,
    ) -> StepRecord:
        """The index entry of one executed step: what made its key, and its outputs."""
        return StepRecord(
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
            env_id=env_id,
            external={e.name: e.record for e in ps.externals},
            metrics=dict(logged.metrics),
            metric_history={n: [list(p) for p in s] for n, s in logged.series().items()},
            metadata=dict(logged.metadata),
            carried=tuple(
                f"{module_label(c.__module__)}:{c.__qualname__}"
                for c in (ps.fingerprint.carried if ps.fingerprint else ())
            ),
        )

    def wait_for_commits(self) -> None:
        """Wait until every queued record is committed (and raise if one could not be).
        Then no lease of this run belongs to a record in flight: any still held (a
        Ctrl-C between taking one and the step's own cleanup) is released."""
        self.index.end_snapshot()
        try:
            self.committer.drain()
        finally:
            self.leases.close()

    def _release_inputs(self, ps: PlannedStep) -> None:
        for upstream in ps.invocation.upstream:
            self._remaining_consumers[upstream] -= 1
            if self._remaining_consumers[upstream] == 0:
                for slot in [s for s in self.values if s[0] == upstream and s not in self._keep]:
                    del self.values[slot]

    # --- the end ----------------------------------------------------------------------------------

    def write_run(self, status: str | None = None) -> Run:
        """Write the run record, environment and latest keys in one transaction, after
        every queued step record (and, with a remote, after its uploads). `status`:
        "interrupted", or None to derive it."""
        self.wait_for_commits()
        if self.remote is not None:
            self.remote.finish(self.run_id)
        if status is None:
            status = "failed" if self._failures else "completed"
        results = self.results
        if len(results) == len(self.planned):  # every step settled: one C loop, in plan order
            steps = tuple(map(results.__getitem__, self.planned))
        else:
            steps = tuple(results[name] for name in self.planned if name in results)
        step_logs = {name: sl.to_json() for name, sl in self.logs.items() if sl}
        record = run_record.build(
            self.run_id, self.dag, self.params, status, self.started, steps, self.target, step_logs
        )
        if self.index.read_only:
            log.warning(
                "the cache at %s is read-only here (%s): every step was served from it, and "
                "this run is not recorded",
                self.cache.path,
                self.index.read_only,
            )
        else:
            run_record.write(self.index, record)
        run = Run(record, self.cache, self.values)
        if self.listeners is not None:
            self.emit(
                RunEnded(
                    run_id=self.run_id,
                    pipeline=self.dag.pipeline,
                    status=status,
                    duration=time.time() - self.started,
                    steps={name: r.status for name, r in self.results.items()},
                    recorded=not self.index.read_only,
                    run=run,
                )
            )
        return run

    def raise_failures(self) -> None:
        """The first failed step's error, noting that what the other branches computed
        is cached; nothing when every step completed."""
        if not self._failures:
            return
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

    def raise_hook_errors(self) -> None:
        """With strict hooks, the first hook failure (HookError); also a failure report
        that the warnings filter turned into an error. After the run is written."""
        if self.hooks is not None:
            self.hooks.raise_errors()


def _release_committed(
    queued: dict[str, ArtifactRecord], leases: Leases, tokens: list[tuple[str, tuple[str, ...]]]
) -> None:
    """On the committer's thread, after a batch: forget its queued artifact records and
    release its leases (also when the commit failed: the run stops, and processes
    waiting on these keys must not wait for entries that will never come)."""
    for _, content_ids in tokens:
        for content_id in content_ids:
            queued.pop(content_id, None)
    leases.release(*(key for key, _ in tokens))


def name_step(exc: BaseException, step: str) -> None:
    """Put the step's name at the head of a zencache error that does not say it (a
    materializer that cannot store an output, a full disk), so that the one line the
    CLI shows names the step."""
    if isinstance(exc, ZencacheError) and exc.args and f"{step!r}" not in str(exc):
        exc.args = (f"step {step!r}: {exc.args[0]}", *exc.args[1:])
