"""The driver loop of the parallel executors: decide in the driver, execute in a pool.

A step becomes ready when all its upstream steps are settled (cached, executed,
failed or skipped). The driver decides every ready step at once, as the local
executor does (key, index lookup, lease), so hits never reach a worker; a miss
is queued and sent to the pool as soon as a slot is free, not in waves. Workers
load inputs from the object store and write outputs to it; the driver commits
what they return (`Runner.queue_entry`) and is the only writer of the index. The
pool is opened on the first miss, so a fully cached run starts no worker.

When a worker process dies (killed, out of memory, a crash in native code), a
process pool loses every task it was running. A task that was alone in the pool
is the culprit and fails; several lost at once are retried, each alone, until
the culprit is found; the others finish. What does not depend on a failed step
goes on; what does is skipped. Imports the runner and the worker's messages.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..core.plan import PlannedStep
from ..errors import StepFailedError
from ..materializers import registry
from .runner import Runner
from .worker import (
    WORKER_CACHE_SETTING,
    RemoteSpec,
    StepRef,
    StepTask,
    TaskResult,
    outside_main,
    step_reference,
)

log = logging.getLogger(__name__)

_POLL_SECONDS = (0.01, 0.05, 0.1, 0.2)  # between tries of another process's lease


class Pool(Protocol):
    """Somewhere to run StepTasks: a loky process pool, a Dask client."""

    capacity: int  # tasks in flight at most
    broken: tuple[type[BaseException], ...]  # outcomes that mean the pool lost every task
    check_code: bool  # workers verify that they hold the code the driver fingerprinted
    remote_workers: bool  # workers may not share the driver's files: use the remote

    def submit(self, task: StepTask) -> Any: ...

    def wait(
        self, handles: list[Any], every: bool = False, timeout: float | None = None
    ) -> list[tuple[Any, TaskResult | BaseException]]:
        """Some (at least one) or `every` finished handle with its outcome; after
        `timeout` seconds (when given), those finished by then, maybe none."""
        ...

    def describe(self, exc: BaseException) -> str:
        """Why a task failed outside the step's own code, for the step's error."""
        ...

    def close(self, kill: bool) -> None: ...


@dataclass(slots=True)
class _Flight:
    ps: PlannedStep
    key: str
    started: float


@dataclass(slots=True)
class Stats:
    """What a parallel run cost outside the steps: for tests and benchmarks."""

    pools_opened: int = 0
    tasks_sent: int = 0
    crashes: int = 0


def run_parallel(runner: Runner, open_pool: Callable[[], Pool], stats: Stats) -> None:
    scheduler = _Scheduler(runner, open_pool, stats)
    try:
        scheduler.run()
    finally:
        scheduler.close()


class _Scheduler:
    def __init__(self, runner: Runner, open_pool: Callable[[], Pool], stats: Stats) -> None:
        self.runner = runner
        self.open_pool = open_pool
        self.stats = stats
        self.pool: Pool | None = None
        self.undecided = list(runner.planned.values())  # topological order
        self.upstream = {ps.name: ps.invocation.upstream for ps in self.undecided}
        self.queue: deque[_Flight] = deque()
        self.running: dict[Any, _Flight] = {}
        # Keys this run is executing: a second invocation with the same key waits
        # for the first and then hits, instead of waiting on its own lease.
        self.busy: set[str] = set()
        self.parked: dict[str, list[PlannedStep]] = {}
        # Misses whose lease another process holds: tried again between collecting
        # this run's own steps, never waited on (their holder may be waiting for us).
        self.foreign: list[_Flight] = []
        self.polls = 0
        self.suspects: set[str] = set()
        self.references: dict[int, Any] = {}

    def run(self) -> None:
        while True:
            before = (len(self.undecided), len(self.queue), len(self.runner.results))
            self._decide_ready()
            self._claim_foreign()
            self._send()
            if not self.running:
                # A step settled here (a failed send, a repair) may have made others ready.
                if (len(self.undecided), len(self.queue), len(self.runner.results)) == before:
                    if not self.foreign:
                        break
                    self._pause()
                continue
            pool = self._pool()
            timeout = _POLL_SECONDS[min(self.polls, len(_POLL_SECONDS) - 1)]
            outcomes = pool.wait(list(self.running), timeout=timeout if self.foreign else None)
            self.runner.committer.check()  # a failed commit stops the run
            if not outcomes:
                self.polls += 1
                continue
            if any(isinstance(o, pool.broken) for _, o in outcomes):
                outcomes = pool.wait(list(self.running), every=True)
                self._settle_crash(outcomes, pool)
                continue
            for handle, outcome in outcomes:
                self._settle(self.running.pop(handle), outcome)
        if self.undecided or self.queue or self.foreign:
            left = [*self.undecided, *(f.ps for f in (*self.queue, *self.foreign))]
            stuck = ", ".join(ps.name for ps in left)
            raise AssertionError(f"scheduler stopped with steps left undecided: {stuck}")

    # --- the driver's half --------------------------------------------------------------------

    def _decide_ready(self) -> None:
        """One pass in topological order settles every hit whose upstreams are settled,
        including those made ready by hits earlier in the same pass."""
        runner = self.runner
        results = runner.results
        waiting: list[PlannedStep] = []
        for ps in self.undecided:
            if not all(u in results for u in self.upstream[ps.name]):
                waiting.append(ps)
                continue
            key = ""
            caches = runner.uses_cache(ps) and runner.blocked_by(ps) is None
            if caches:
                key = runner.key(ps)
                if key in self.busy:
                    self.parked.setdefault(key, []).append(ps)
                    continue
            started = time.perf_counter()
            missed = runner.decide(ps, started, key, lease=False)
            if missed is None:
                continue
            flight = _Flight(ps, missed, started)
            if caches:
                self.busy.add(missed)
                claimed = runner.claim(ps, missed, started)
                if claimed is None:
                    self.foreign.append(flight)
                    continue
                if not claimed:  # committed by another process since the lookup
                    self._done(missed)
                    continue
            self.queue.append(flight)
        self.undecided = waiting

    def _claim_foreign(self) -> None:
        """Try again the leases other processes held: hits, or ours to execute now."""
        if not self.foreign:
            return
        still = []
        for flight in self.foreign:
            claimed = self.runner.claim(flight.ps, flight.key, flight.started)
            if claimed is None:
                still.append(flight)
            elif claimed:
                self.queue.append(flight)
            else:
                self._done(flight.key)
        if len(still) < len(self.foreign):
            self.polls = 0
        self.foreign = still

    def _pause(self) -> None:
        """Nothing of ours in flight: wait a little for other processes' leases."""
        self.runner.committer.check()
        time.sleep(_POLL_SECONDS[min(self.polls, len(_POLL_SECONDS) - 1)])
        self.polls += 1

    def _send(self) -> None:
        while self.queue:
            flight = self._next_sendable()
            if flight is None:
                return
            self._submit(flight)

    def _next_sendable(self) -> _Flight | None:
        if any(f.ps.name in self.suspects for f in self.running.values()):
            return None  # a suspect runs alone
        suspect = next((f for f in self.queue if f.ps.name in self.suspects), None)
        if suspect is not None:
            if self.running:
                return None
            self.queue.remove(suspect)
            return suspect
        if len(self.running) >= self._pool().capacity:
            return None
        return self.queue.popleft()

    def _submit(self, flight: _Flight) -> None:
        runner, ps = self.runner, flight.ps
        runner.executing(ps, flight.key)
        try:
            task = self._task(flight)
        except Exception as exc:
            self._fail(flight, exc)
            return
        if task is None:  # an input lost its index record: repair it in this process
            runner.execute_here(ps, flight.key, flight.started)
            self._done(flight.key)
            return
        try:
            handle = self._pool().submit(task)
        except Exception as exc:
            self._fail(
                flight,
                StepFailedError(
                    f"cannot send step {ps.name!r} to a worker: {type(exc).__name__}: {exc}; "
                    "its function, parameters and materializers must pickle (define the step "
                    "at module level), or run it with executor='local'",
                    step=ps.name,
                ),
            )
            return
        self.stats.tasks_sent += 1
        self.running[handle] = flight

    def _task(self, flight: _Flight) -> StepTask | None:
        runner, ps = self.runner, flight.ps
        records = {}
        for name, handle in ps.invocation.inputs.items():
            record = runner.artifact_record(runner.ids[handle.invocation][handle.output])
            if record is None:
                return None
            records[name] = record
        identities = sorted({r.materializer for r in records.values()})
        step = ps.step
        reference = self.references.get(id(step))
        if reference is None:
            reference = self.references[id(step)] = step_reference(step)
        code, parts = "", None
        carried: tuple[type, ...] = ()
        if self._pool().check_code and ps.fingerprint:
            if isinstance(reference, StepRef):
                code, carried = ps.fingerprint.digest, ps.fingerprint.carried
            else:  # sent by value: the modules it reaches are imported by the worker
                parts = outside_main(ps.fingerprint.parts)
        return StepTask(
            name=ps.name,
            step=reference,
            params=dict(ps.invocation.params),
            inputs=records,
            input_materializers=tuple(registry.by_identity(i) for i in identities),
            materializers=dict(ps.materializers),
            store=str(runner.store.root),
            chunk_size=runner.store.chunk_size,
            code=code,
            code_parts=parts,
            carried=carried,
            context=runner.step_context(ps, flight.key),
            remote=self._remote_spec(records),
        )

    def _remote_spec(self, inputs: dict[str, Any]) -> RemoteSpec | None:
        """For pools whose workers may not share the driver's file system (Dask, or
        ZENCACHE_WORKER_CACHE set): the run's writable remote, with the task's inputs
        uploaded first (create-only: what is there already is not sent again)."""
        tier = self.runner.remote
        if tier is None or not (
            self._pool().remote_workers or os.environ.get(WORKER_CACHE_SETTING)
        ):
            return None
        remote = tier.remote
        if remote is None or not remote.writable or remote.down:
            return None
        if not remote.upload_artifacts(self.runner.store, inputs.values()):
            return None  # the remote failed: the worker uses the shared folder if it can
        return RemoteSpec(remote.url, remote.timeout)

    # --- outcomes -------------------------------------------------------------------------------

    def _settle(self, flight: _Flight, outcome: TaskResult | BaseException) -> None:
        runner, ps, key = self.runner, flight.ps, flight.key
        if isinstance(outcome, BaseException):
            why = self._pool().describe(outcome)
            self._fail(
                flight, StepFailedError(f"step {ps.name!r} did not finish: {why}", step=ps.name)
            )
            return
        if outcome.damaged_input:
            # The driver re-reads the input, finds the damage itself, re-executes its
            # producer and rewrites the objects (Runner.load_inputs), then runs this step here.
            runner.execute_here(ps, key, flight.started)
        elif outcome.error is not None:
            self._fail(flight, outcome.error, outcome.traceback_text)
            return
        else:
            try:
                for category, message in outcome.warnings:
                    warnings.warn(message, category, stacklevel=2)
                runner.queue_entry(ps, key, outcome.artifacts, outcome.duration, outcome.log)
            except Exception as exc:
                self._fail(flight, exc)
                return
            runner.settle_executed(ps, key, outcome.duration)
        self._done(key)

    def _settle_crash(
        self, outcomes: list[tuple[Any, TaskResult | BaseException]], pool: Pool
    ) -> None:
        self.stats.crashes += 1
        lost: list[_Flight] = []
        for handle, outcome in outcomes:
            flight = self.running.pop(handle)
            if isinstance(outcome, pool.broken):
                lost.append(flight)
            else:
                self._settle(flight, outcome)
        self._close_pool(kill=True)
        if len(lost) == 1:
            flight = lost[0]
            why = _first_broken(outcomes, pool)
            self._fail(
                flight,
                StepFailedError(
                    f"step {flight.ps.name!r} did not finish: {why}; rerun the pipeline to "
                    "retry it (what finished is cached)",
                    step=flight.ps.name,
                ),
            )
            return
        names = ", ".join(f.ps.name for f in lost)
        log.warning("a worker process died while running %s; retrying each alone", names)
        self.suspects.update(f.ps.name for f in lost)
        self.queue.extendleft(reversed(lost))

    def _fail(self, flight: _Flight, exc: BaseException, text: str = "") -> None:
        self.runner.leases.release(flight.key)
        self.runner.settle_failure(flight.ps, flight.key, exc, flight.started, text)
        self._done(flight.key)

    def _done(self, key: str) -> None:
        """The key is settled: invocations waiting on it are decided again (and hit)."""
        self.busy.discard(key)
        self.undecided[:0] = self.parked.pop(key, [])

    # --- the pool -------------------------------------------------------------------------------

    def _pool(self) -> Pool:
        if self.pool is None:
            self.pool = self.open_pool()
            self.stats.pools_opened += 1
        return self.pool

    def _close_pool(self, kill: bool) -> None:
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.close(kill)

    def close(self) -> None:
        """Release what this run still holds; kill workers when leaving early."""
        leaving_early = bool(self.running or self.queue)
        try:
            for flight in self.running.values():
                # Left early (Ctrl-C): the run record names the steps it stopped, as local does.
                self.runner.settle_interrupted(
                    flight.ps, flight.key, flight.started, "interrupted while running in a worker"
                )
            self.runner.wait_for_commits()
            for flight in [*self.running.values(), *self.queue]:
                self.runner.leases.release(flight.key)
        finally:
            self.running.clear()
            self.queue.clear()
            self._close_pool(kill=leaving_early)


def _first_broken(outcomes: list[tuple[Any, TaskResult | BaseException]], pool: Pool) -> str:
    for _, outcome in outcomes:
        if isinstance(outcome, pool.broken):
            return pool.describe(outcome)
    return ""
