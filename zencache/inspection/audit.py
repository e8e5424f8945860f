"""Reproducibility audits: re-execute a recorded run's steps and compare content ids.

For every step of a run, a fresh interpreter (zencache.inspection.audit_worker) imports the
step, checks its code fingerprint, materializers and parameters against the step's
cache entry, loads the recorded inputs, calls it ignoring the cache, and computes
the content id of every output without storing anything. This module schedules
those workers, classifies each step and compares environments:

    reproducible       every output has its recorded content id
    not reproducible   an output differs (which one, and how much), or the step
                       now raises
    not checkable      the recorded run did not complete it, its entry or inputs
                       are gone from the cache, its code changed since (which
                       parts), or a parameter cannot be restored
    nondeterministic   differs, but the step declares @step(deterministic=False):
                       expected, not a failure

With `twice`, each step runs in two fresh interpreters, which tells
nondeterminism (the two disagree) from drift (they agree with each other, not
with the record). Reads the cache, never writes it. Audit layer: imports the
layers below and maintenance; never the CLI; prints nothing.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..fingerprint.environment import current_environment
from ..hashing import ContentId
from ..inputs.external import moved_since
from ..inputs.trees import StatMemo
from ..maintenance import resolve_run
from ..storage.cache import Cache
from ..storage.records import EnvRecord, RunRecord, StepRecord, StepRun

log = logging.getLogger(__name__)

REPRODUCIBLE = "reproducible"
NOT_REPRODUCIBLE = "not reproducible"
NOT_CHECKABLE = "not checkable"
NONDETERMINISTIC = "nondeterministic"
STATUSES = (REPRODUCIBLE, NOT_REPRODUCIBLE, NOT_CHECKABLE, NONDETERMINISTIC)

WORKER_MODULE = "zencache.inspection.audit_worker"
# Shown when a worker dies without writing its result (a crash, a kill, a timeout).
_STDERR_TAIL = 5


@dataclass(frozen=True, slots=True)
class OutputCheck:
    name: str
    recorded: ContentId
    now: tuple[ContentId, ...]  # one id per execution
    difference: str = ""  # how the first differing execution differs, when it does
    max_abs_diff: float | None = None  # numeric outputs (numpy arrays, numbers)

    @property
    def matches(self) -> bool:
        return all(i == self.recorded for i in self.now)

    @property
    def stable(self) -> bool:
        return len(set(self.now)) <= 1


@dataclass(frozen=True, slots=True)
class Drift:
    """One difference between a recorded environment and the current one."""

    what: str  # "python", "platform", "numpy_blas", "distribution numpy", ...
    recorded: str | None  # None: absent then
    now: str | None  # None: absent now

    def __str__(self) -> str:
        return f"{self.what}: {self.recorded or '(absent)'} -> {self.now or '(absent)'}"


@dataclass(frozen=True, slots=True)
class StepAudit:
    name: str  # invocation name in the run
    step: str  # module:qualname
    key: str
    status: str  # one of STATUSES
    reason: str  # one line; empty when reproducible
    deterministic: bool = True
    outputs: tuple[OutputCheck, ...] = ()
    code_changes: tuple[str, ...] = ()
    missing_inputs: tuple[str, ...] = ()
    executions: int = 0
    duration: float = 0.0  # seconds in the step function, longest execution
    env_id: str = ""  # the environment that executed the entry, when known
    drift: tuple[Drift, ...] = ()  # when env_id is not the run's: that env against now
    error: str = ""  # the traceback, when the step raised or the worker failed

    @property
    def failed(self) -> bool:
        return self.status == NOT_REPRODUCIBLE


@dataclass(frozen=True, slots=True)
class AuditReport:
    run_id: str
    pipeline: str
    env_id: str  # the run's environment
    current_env_id: str
    recorded_env_found: bool
    drift: tuple[Drift, ...]
    steps: tuple[StepAudit, ...]
    twice: bool = False
    duration: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Every checked step reproduced (or is declared nondeterministic)."""
        return not any(s.failed for s in self.steps)

    @property
    def checked(self) -> int:
        return sum(1 for s in self.steps if s.status != NOT_CHECKABLE)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        for step, audit in zip(out["steps"], self.steps, strict=True):
            for output, check in zip(step["outputs"], audit.outputs, strict=True):
                output["matches"] = check.matches
        return out


def audit_run(
    cache: Cache,
    run: str | RunRecord = "latest",
    *,
    steps: Sequence[str] = (),
    twice: bool = False,
    jobs: int = 1,
    timeout: float | None = None,
    python: str = sys.executable,
) -> AuditReport:
    """Re-execute the run's steps (all, or those named) in fresh interpreters and compare."""
    started = time.perf_counter()
    record = run if isinstance(run, RunRecord) else resolve_run(cache, run)
    selected = _select(record, steps)
    index = cache.index
    executions = 2 if twice else 1

    workdir = record.workdir if record.workdir and os.path.isdir(record.workdir) else os.getcwd()
    memo = StatMemo(index)  # read, never flushed: an audit does not write the cache
    audits: dict[str, StepAudit] = {}
    tasks: list[tuple[StepRun, StepRecord, int]] = []
    entries: dict[str, StepRecord] = {}
    for step_run in selected:
        entry = index.get_step(step_run.key) if step_run.key else None
        if step_run.status not in ("executed", "cached") or not step_run.key:
            audits[step_run.name] = _unchecked(
                step_run, f"it did not complete in the recorded run ({step_run.status})"
            )
        elif entry is None:
            audits[step_run.name] = _unchecked(
                step_run,
                f"its cache entry {step_run.key[:8]} is gone (gc, clear or repair removed it); "
                "rerun the pipeline to record it again",
            )
        elif entry.external and (moved := moved_since(entry.external, memo, workdir)):
            # Re-executing on other data would only report a difference the data made.
            audits[step_run.name] = _unchecked(
                step_run,
                "what it read from outside the pipeline is not what the run read: "
                + "; ".join(moved),
            )
        else:
            entries[step_run.name] = entry
            tasks.extend((step_run, entry, n) for n in range(executions))

    sys_path = [*record.sys_path, workdir] if record.sys_path else [workdir]
    request = {"cache_dir": str(cache.path), "sys_path": sys_path}
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in entries}
    with tempfile.TemporaryDirectory(prefix="zencache-audit-") as tmp:

        def spawn(task: tuple[StepRun, StepRecord, int]) -> tuple[str, dict[str, Any]]:
            step_run, entry, n = task
            base = Path(tmp) / f"{step_run.name}-{n}"
            body = {**request, "key": entry.key, "name": step_run.name}
            return step_run.name, run_worker(python, body, base, workdir, timeout)

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for name, result in pool.map(spawn, tasks):
                results[name].append(result)

    environments = [r["environment"] for rs in results.values() for r in rs if "environment" in r]
    current = _richest(environments) or current_environment()
    recorded_env = index.get_env(record.env_id)
    drift = tuple(environment_drift(recorded_env, current)) if recorded_env else ()

    for step_run in selected:
        if step_run.name in audits:
            continue
        entry = entries[step_run.name]
        env_id = _producing_env(cache, record, step_run, entry)
        step_drift: tuple[Drift, ...] = ()
        if env_id and env_id != record.env_id:
            other = index.get_env(env_id)
            step_drift = tuple(environment_drift(other, current)) if other else ()
        audits[step_run.name] = classify(
            step_run, entry, results[step_run.name], env_id=env_id, drift=step_drift
        )

    ordered = tuple(audits[s.name] for s in selected)
    counts = {status: sum(1 for s in ordered if s.status == status) for status in STATUSES}
    return AuditReport(
        run_id=record.run_id,
        pipeline=record.pipeline,
        env_id=record.env_id,
        current_env_id=current.env_id,
        recorded_env_found=recorded_env is not None,
        drift=drift,
        steps=ordered,
        twice=twice,
        duration=time.perf_counter() - started,
        counts={k: v for k, v in counts.items() if v},
    )


def _select(record: RunRecord, names: Sequence[str]) -> list[StepRun]:
    if not names:
        return list(record.steps)
    known = {s.name for s in record.steps}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(
            f"run {record.run_id} has no step {unknown[0]!r}; its steps are: "
            f"{', '.join(s.name for s in record.steps)}"
        )
    wanted = set(names)
    return [s for s in record.steps if s.name in wanted]


def _unchecked(step_run: StepRun, reason: str) -> StepAudit:
    return StepAudit(step_run.name, step_run.step, step_run.key, NOT_CHECKABLE, reason)


# --- the fresh interpreter --------------------------------------------------------------------


def run_worker(
    python: str, request: dict[str, Any], base: Path, cwd: str, timeout: float | None
) -> dict[str, Any]:
    """Run one step in a fresh interpreter; its result, or why there is none."""
    request_path = base.parent / f"{base.name}.request.json"
    result_path = base.parent / f"{base.name}.result.json"
    request_path.write_text(json.dumps(request))
    command = [python, "-m", WORKER_MODULE, str(request_path), str(result_path)]
    # A pipeline the user's module runs when imported (no __main__ guard) lands in a
    # scratch cache, never in the audited one.
    env = {**os.environ, "ZENCACHE_DIR": str(base.parent / "scratch-cache")}
    try:
        done = subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return {
            "status": NOT_CHECKABLE,
            "reason": f"the re-execution took longer than {timeout:g}s (--timeout)",
        }
    if done.stdout or done.stderr:
        log.debug("audit worker for %s said:\n%s%s", request["name"], done.stdout, done.stderr)
    if result_path.exists():
        return json.loads(result_path.read_text())
    tail = [line for line in done.stderr.strip().splitlines() if line.strip()][-_STDERR_TAIL:]
    return {
        "status": NOT_CHECKABLE,
        "reason": f"the audit worker exited with status {done.returncode} without a result"
        + (f": {tail[-1].strip()}" if tail else ""),
        "error": "\n".join(tail),
    }


# --- judging ----------------------------------------------------------------------------------


def classify(
    step_run: StepRun,
    entry: StepRecord,
    results: list[dict[str, Any]],
    *,
    env_id: str = "",
    drift: tuple[Drift, ...] = (),
) -> StepAudit:
    """One step's status from the results of its executions (one, or two with --twice)."""
    base: dict[str, Any] = {
        "name": step_run.name,
        "step": step_run.step,
        "key": step_run.key,
        "env_id": env_id,
        "drift": drift,
        "executions": len(results),
    }
    unchecked = next((r for r in results if r["status"] == "not checkable"), None)
    if unchecked is not None:
        return StepAudit(
            **base,
            status=NOT_CHECKABLE,
            reason=unchecked["reason"],
            code_changes=tuple(unchecked.get("code_changes", ())),
            missing_inputs=tuple(unchecked.get("missing_inputs", ())),
            error=unchecked.get("error", ""),
        )
    deterministic = all(r.get("deterministic", True) for r in results)
    base["deterministic"] = deterministic
    base["duration"] = max((r.get("duration", 0.0) for r in results), default=0.0)
    failed_status = NOT_REPRODUCIBLE if deterministic else NONDETERMINISTIC
    raised = [r for r in results if r["status"] == "failed"]
    if raised:
        reason = raised[0]["reason"]
        if len(raised) < len(results):
            reason = f"nondeterministic: one of {len(results)} executions failed: {reason}"
        return StepAudit(**base, status=failed_status, reason=reason, error=raised[0]["error"])

    outputs = []
    for name, recorded in zip(entry.output_names, entry.output_ids, strict=True):
        found = [r["outputs"][name] for r in results]
        first_diff = next((f for f in found if f["id"] != recorded), {})
        outputs.append(
            OutputCheck(
                name=name,
                recorded=recorded,
                now=tuple(f["id"] for f in found),
                difference=first_diff.get("difference", ""),
                max_abs_diff=first_diff.get("max_abs_diff"),
            )
        )
    base["outputs"] = tuple(outputs)
    differing = [o for o in outputs if not o.matches]
    if not differing:
        return StepAudit(**base, status=REPRODUCIBLE, reason="")
    first = differing[0]
    unstable = [o for o in outputs if not o.stable]
    detail = f"; {first.difference}" if first.difference else ""
    if unstable:
        reason = (
            f"nondeterministic: {len(results)} executions now disagree on output "
            f"{unstable[0].name!r}{detail}"
        )
    else:
        reason = (
            f"output {first.name!r} differs: recorded {first.recorded[:8]}, now "
            f"{first.now[0][:8]}{detail}"
        )
        if len(results) > 1:
            reason += (
                f"; the {len(results)} executions now agree with each other, so the record "
                "was made under other conditions (environment drift, or an input the step "
                "reads that zencache does not track)"
            )
    if len(differing) > 1:
        reason += f" (and {len(differing) - 1} more output(s))"
    if not deterministic:
        reason = f"expected: declared @step(deterministic=False); {reason}"
    return StepAudit(**base, status=failed_status, reason=reason)


def _producing_env(cache: Cache, run: RunRecord, step_run: StepRun, entry: StepRecord) -> str:
    """The environment that executed the entry: the run's own when it executed it,
    else the one the entry names (older entries name none: then their run's)."""
    if step_run.status == "executed" or entry.run_id == run.run_id:
        return run.env_id
    if entry.env_id:
        return entry.env_id
    producer = cache.index.get_run(entry.run_id) if entry.run_id else None
    return producer.env_id if producer is not None else ""


# --- environments -------------------------------------------------------------------------------


def environment_drift(recorded: EnvRecord, now: EnvRecord) -> list[Drift]:
    """What differs between two environments: interpreter, platform, numpy's libraries
    (when both recorded them), and installed distributions."""
    if recorded.env_id == now.env_id:
        return []
    found = [
        Drift(name, getattr(recorded, name), getattr(now, name))
        for name in ("python", "implementation", "platform", "machine")
        if getattr(recorded, name) != getattr(now, name)
    ]
    for name in sorted(set(recorded.extra) & set(now.extra)):
        if recorded.extra[name] != now.extra[name]:
            found.append(Drift(name, str(recorded.extra[name]), str(now.extra[name])))
    before, after = recorded.distributions, now.distributions
    for name in sorted(set(before) | set(after)):
        if before.get(name) != after.get(name):
            found.append(Drift(f"distribution {name}", before.get(name), after.get(name)))
    return found


def _richest(environments: list[dict[str, Any]]) -> EnvRecord | None:
    """The workers' environment that knows most (numpy's configuration once loaded)."""
    if not environments:
        return None
    best = max(environments, key=lambda e: len(e.get("extra", {})))
    return EnvRecord(**best)
