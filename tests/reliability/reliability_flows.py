"""Pipelines, a cache checker and a driver that the reliability tests run in fresh
interpreters (`import reliability_flows; reliability_flows.main([MODE, ...])`, with
this folder on PYTHONPATH, so that the steps live in an imported module).

Steps are module-level so that every process computes the same keys. Each step
execution appends one line to $RELIABILITY_LOG (opened with O_APPEND, so lines
from concurrent processes never interleave): the ground truth of what ran where.
Nothing here is a test; the tests in this folder drive it and judge its output.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from typing import Any

import numpy as np

from zencache import Cache, Output, pipeline, step
from zencache.hashing import ContentId

LOG_SETTING = "RELIABILITY_LOG"
SLEEP_SETTING = "RELIABILITY_SLEEP"  # seconds for `slow`; read at run time, not in the key
BIG = 1_000_000  # float64 elements: 8 MB, 62 chunks of 128 KiB, each fsynced


def log_execution(name: str, detail: object = "") -> None:
    path = os.environ.get(LOG_SETTING)
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{name} {detail} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def read_log(path: str | os.PathLike[str]) -> list[tuple[str, str, int]]:
    """(step, detail, pid) for every logged execution."""
    try:
        with open(path) as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        name, detail, pid = line.split(" ")
        out.append((name, detail, int(pid)))
    return out


# --- the crash pipeline: two large writes, quick steps, a pause ------------------------------


@step
def source(seed: int, n: int = BIG) -> np.ndarray:
    log_execution("source", seed)
    return np.random.default_rng(seed).random(n)


@step
def scaled(data: np.ndarray, factor: float = 3.0) -> np.ndarray:
    log_execution("scaled")
    return data * factor


@step
def stats(data: np.ndarray) -> Output(mean=float, std=float):
    log_execution("stats")
    return float(data.mean()), float(data.std())


@step
def head(data: np.ndarray, k: int = 5) -> list:
    log_execution("head")
    return [float(x) for x in data[:k]]


@step
def pause(mean: float, seconds: float = 0.2) -> float:
    log_execution("pause")
    time.sleep(seconds)
    return round(mean, 6)


@step
def report(mean: float, std: float, first: list, paused: float, big_mean: float) -> dict:
    log_execution("report")
    return {"mean": mean, "std": std, "first": first, "paused": paused, "big_mean": big_mean}


@pipeline
def crashflow(seed: int = 0):
    data = source(seed=seed)
    big = scaled(data=data)
    mean, std = stats(data=data)
    first = head(data=big)
    paused = pause(mean=mean)
    big_mean, _ = stats(data=big)
    return report(mean=mean, std=std, first=first, paused=paused, big_mean=big_mean)


def crashflow_expected(seed: int) -> dict[str, Any]:
    data = np.random.default_rng(seed).random(BIG)
    big = data * 3.0
    return {
        "mean": float(data.mean()),
        "std": float(data.std()),
        "first": [float(x) for x in big[:5]],
        "paused": round(float(data.mean()), 6),
        "big_mean": float(big.mean()),
    }


# --- the concurrency pipelines: one source, many independent steps ----------------------------


@step
def base(seed: int) -> np.ndarray:
    log_execution("base", seed)
    time.sleep(0.05)
    return np.random.default_rng(seed).random(50_000)


@step
def work(data: np.ndarray, k: int) -> np.ndarray:
    log_execution("work", k)
    time.sleep(0.1)
    return data * k


@step
def total(values: np.ndarray) -> float:
    log_execution("total", round(float(values[0]), 6))
    return float(values.sum())


@pipeline
def fanout(seed: int = 7, ks: tuple = (1, 2, 3)):
    data = base(seed=seed)
    results = []
    for k in ks:
        results.append(total(values=work(data=data, k=k)))
    return tuple(results)


def fanout_expected(seed: int, ks: tuple[int, ...]) -> tuple[float, ...]:
    data = np.random.default_rng(seed).random(50_000)
    return tuple(float((data * k).sum()) for k in ks)


# --- a pipeline with a step that waits: interrupts and dead lease holders ----------------------


@step
def first(n: int = 3) -> list:
    log_execution("first", n)
    return list(range(n))


# version= pins the code, so the environment variable it reads by name stays out of
# the key (unpinned, a literal os.environ read enters it: the holder and the waiter
# of the lease tests sleep differently and must still share one key).
@step(version="1")
def slow(values: list) -> int:
    log_execution("slow")
    deadline = time.monotonic() + float(os.environ.get(SLEEP_SETTING, "0"))
    while time.monotonic() < deadline:
        time.sleep(0.02)
    return sum(values)


@step
def last(x: int) -> int:
    log_execution("last", x)
    return x + 1


@pipeline
def waiting(n: int = 3):
    return last(x=slow(values=first(n=n)))


# --- drivers that reach shared keys in different orders: no deadlock ------------------------


@step
def gate(tag: str, wait: float) -> int:
    """A miss in every driver (its tag is the driver's own) that orders the shared steps:
    its output is the same everywhere, so what follows has the same key in every driver."""
    time.sleep(wait)
    return 0


@step
def shared(after: int, name: str, seconds: float = 2.0) -> str:
    log_execution("shared", name)
    time.sleep(seconds)
    return name * 3


@pipeline
def crossed(order: tuple = ("a", "b"), tag: str = "", spacing: float = 0.6):
    """Takes the lease of order[0] first, then (while it runs in the pool) needs order[1]."""
    return tuple(
        shared(after=gate(tag=tag, wait=i * spacing), name=name) for i, name in enumerate(order)
    )


# --- checking a cache from the outside ----------------------------------------------------------

_OBJECT_NAME = re.compile(r"^[0-9a-f]{32}$")


def check_cache(cache: Cache) -> dict[str, Any]:
    """Every fact the crash guarantees promise, as data: `problems` must be empty.

    - every step entry's outputs have artifact records whose id matches their manifest;
    - every chunk those records name exists and hashes to its name;
    - every object the store lists has an object's name and hashes to it (so no
      temporary file is ever listed, and no half-written file has an object's name);
    - maintenance.verify (the `cache verify` command) agrees, when it exists.
    """
    from zencache.errors import CorruptObjectError, MissingObjectError
    from zencache.materializers.artifacts import artifact_id

    index, store = cache.index, cache.store
    problems: list[str] = []
    committed = [k.decode() for k in index.keys("steps")]
    for record in index.iter_steps():
        for name, content_id in zip(record.output_names, record.output_ids, strict=True):
            artifact = index.get_artifact(content_id)
            if artifact is None:
                problems.append(f"step {record.name} output {name}: no artifact record")
                continue
            if artifact_id(artifact.materializer, artifact.files) != content_id:
                problems.append(f"artifact {content_id}: manifest does not match its id")
            for object_id in artifact.object_ids():
                try:
                    store.verify(object_id)
                except (CorruptObjectError, MissingObjectError) as exc:
                    problems.append(f"step {record.name} output {name}: {exc}")
    objects = 0
    for object_id, _size in store.iter_objects():
        objects += 1
        if not _OBJECT_NAME.match(object_id):
            problems.append(f"store lists {object_id!r}, which is not an object name")
            continue
        try:
            store.verify(object_id)
        except (CorruptObjectError, MissingObjectError) as exc:
            problems.append(f"listed object: {exc}")
    temporary = sum(1 for _ in store.iter_temporary())
    verify_damaged = None
    try:
        from zencache import maintenance
    except ImportError:
        maintenance = None  # type: ignore[assignment]
    if maintenance is not None and hasattr(maintenance, "verify"):
        report = maintenance.verify(cache)
        verify_damaged = report.damaged
        if report.damaged:
            problems.append(f"cache verify: {json.dumps(report.to_json())[:2000]}")
    return {
        "problems": problems,
        "committed": committed,
        "objects": objects,
        "temporary": temporary,
        # Leases held now (the kernel frees a dead holder's at once).
        "leases": len(cache.leases.held_slots()),
        "verify_damaged": verify_damaged,
    }


def output_ids(run: Any) -> dict[str, dict[str, ContentId]]:
    return {name: dict(s.outputs) for name, s in run.steps.items()}


# --- kill points inside a process -------------------------------------------------------------


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class _StoreOs:
    """Stands in for `os` inside zencache.storage.store only, counting the calls to kill at."""

    def __init__(self, real: Any, hook: str, n: int) -> None:
        self._real, self._hook, self._n, self._count = real, hook, n, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def _hit(self, hook: str) -> bool:
        if hook != self._hook:
            return False
        self._count += 1
        return self._count == self._n

    def write(self, fd: int, data: Any) -> int:
        if self._hit("write"):
            view = memoryview(data)
            self._real.write(fd, view[: len(view) // 2])  # half an object on disk, then die
            _die()
        return self._real.write(fd, data)

    def fsync(self, fd: int) -> None:
        if self._hit("fsync"):
            _die()
        self._real.fsync(fd)

    def replace(self, src: Any, dst: Any) -> None:
        if self._hit("replace"):
            _die()
        self._real.replace(src, dst)


def install_kill_point(spec: str) -> None:
    """`hook:n`: SIGKILL this process at the n-th such moment of the coming run.

    write/fsync/replace   inside the object store's atomic write (half-written
                          temporary file; written but not synced; synced, not renamed)
    txn                   inside the n-th index write transaction, its puts applied,
                          before it commits (the writer lock is held); on the
                          committer's thread for step records
    committed             right after the n-th index write transaction commits
    lease                 right after the n-th lease is taken (the kernel lock held),
                          before the step it is for runs
    call                  inside the n-th step function call, after it started
    finish:0              when every step is done, before the run record is written
    runrecord:inside      inside the transaction that writes the run record
    runrecord:after       right after that transaction commits

    The last three name moments by what happens, not by a count of transactions,
    so they stay where they are when the runner batches its commits differently.
    """
    hook, _, count = spec.partition(":")
    if hook == "finish":
        from zencache.executors.runner import Runner

        real_write_run = Runner.write_run

        def write_run(self: Runner, *args: Any, **kwargs: Any) -> Any:
            _die()
            return real_write_run(self, *args, **kwargs)

        Runner.write_run = write_run  # type: ignore[method-assign]
        return
    if hook == "runrecord":
        from zencache.storage.index import Index

        real_transact = Index._transact

        def transact_run(self: Index, fn: Any, **kwargs: Any) -> Any:
            wrote = [False]

            def watched(txn: Any) -> Any:
                runs = self._dbs["runs"]
                before = txn.stat(runs)["entries"]
                result = fn(txn)
                wrote[0] = txn.stat(runs)["entries"] > before
                if wrote[0] and count == "inside":
                    _die()
                return result

            result = real_transact(self, watched, **kwargs)
            if wrote[0]:
                _die()
            return result

        Index._transact = transact_run  # type: ignore[method-assign]
        return
    n = int(count)
    if hook in ("write", "fsync", "replace"):
        import zencache.storage.store

        zencache.storage.store.os = _StoreOs(os, hook, n)  # type: ignore[assignment]
    elif hook in ("txn", "committed"):
        from zencache.storage.index import Index

        real = Index._transact
        seen = [0]

        def transact(self: Index, fn: Any, **kwargs: Any) -> Any:
            seen[0] += 1
            if seen[0] != n:
                return real(self, fn, **kwargs)
            if hook == "txn":

                def inside(txn: Any) -> Any:
                    result = fn(txn)
                    _die()
                    return result

                return real(self, inside, **kwargs)
            result = real(self, fn, **kwargs)
            _die()
            return result

        Index._transact = transact  # type: ignore[method-assign]
    elif hook == "lease":
        from zencache.storage.lease_slots import LeaseSlots

        real_take = LeaseSlots.take
        takes = [0]

        def take(self: LeaseSlots, key: str) -> bool:
            taken = real_take(self, key)
            if taken:
                takes[0] += 1
                if takes[0] == n:
                    _die()
            return taken

        LeaseSlots.take = take  # type: ignore[method-assign]
    elif hook == "call":
        from zencache.executors.runner import Runner

        real_call = Runner.call
        calls = [0]

        def call(self: Runner, ps: Any, inputs: Any) -> Any:
            calls[0] += 1
            if calls[0] == n:
                log_execution(ps.name, "killed")
                _die()
            return real_call(self, ps, inputs)

        Runner.call = call  # type: ignore[method-assign]
    else:
        raise ValueError(f"unknown kill point {spec!r}")


# --- the driver ---------------------------------------------------------------------------------


def emit(kind: str, **data: Any) -> None:
    print(json.dumps({"kind": kind, **data}), flush=True)


def crash_lane(cache_dir: str, previous: int, following: int, kill: str) -> None:
    """Rerun `previous` (left killed by the last process) and judge the cache around it;
    then start `following` and die at `kill` (or be killed from outside after GO)."""
    cache = Cache(cache_dir)
    if previous >= 0:
        before = check_cache(cache)
        run = crashflow(seed=previous).run(cache=cache)
        after = check_cache(cache)
        emit(
            "rerun",
            seed=previous,
            before=before,
            after=after,
            status=run.status,
            steps={n: [s.status, s.key] for n, s in run.steps.items()},
            output_ok=run.output() == crashflow_expected(previous),
            logged=sum(1 for *_, pid in read_log(os.environ[LOG_SETTING]) if pid == os.getpid()),
        )
    if following < 0:
        return
    if kill != "external":
        install_kill_point(kill)
    emit("go", seed=following)
    run = crashflow(seed=following).run(cache=cache)
    emit("completed", seed=following, status=run.status)


def fanout_run(cache_dir: str, seed: int, ks: str) -> None:
    cache = Cache(cache_dir)
    numbers = tuple(int(k) for k in ks.split(","))
    run = fanout(seed=seed, ks=numbers).run(cache=cache)
    emit(
        "run",
        status=run.status,
        steps={n: [s.status, s.key, dict(s.outputs)] for n, s in run.steps.items()},
        output_ok=list(run.output()) == list(fanout_expected(seed, numbers)),
        pid=os.getpid(),
    )


def crossed_run(cache_dir: str, executor: str, order: str, tag: str) -> None:
    cache = Cache(cache_dir)
    names = tuple(order.split(","))
    run = crossed(order=names, tag=tag).run(cache=cache, executor=executor, max_workers=2)
    emit(
        "run",
        status=run.status,
        steps={n: [s.status, s.key] for n, s in run.steps.items()},
        output_ok=list(run.output()) == [name * 3 for name in names],
        pid=os.getpid(),
    )


def waiting_run(cache_dir: str) -> None:
    cache = Cache(cache_dir)
    try:
        run = waiting().run(cache=cache)
    except KeyboardInterrupt:
        emit("interrupted")
        sys.exit(130)
    emit(
        "run",
        status=run.status,
        run_id=run.run_id,
        steps={n: [s.status, s.key] for n, s in run.steps.items()},
        output=run.output(),
        pid=os.getpid(),
    )


def gc_loop(cache_dir: str, stop_file: str) -> None:
    """`cache gc` over and over (default grace) until `stop_file` appears."""
    from zencache import maintenance

    cache = Cache(cache_dir)
    passes = removed = 0
    while not os.path.exists(stop_file):
        report = maintenance.gc(cache)
        passes += 1
        removed += report.objects
    emit("gc", passes=passes, removed=removed)


def main(argv: list[str]) -> None:
    start_at = os.environ.get("RELIABILITY_START_AT")
    if start_at:  # several processes released at one moment, after their imports
        time.sleep(max(0.0, float(start_at) - time.time()))
    mode, *args = argv
    if mode == "crash":
        crash_lane(args[0], int(args[1]), int(args[2]), args[3])
    elif mode == "fanout":
        fanout_run(args[0], int(args[1]), args[2])
    elif mode == "waiting":
        waiting_run(args[0])
    elif mode == "crossed":
        crossed_run(*args)
    elif mode == "gc":
        gc_loop(args[0], args[1])
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
