"""Why a step would be a cache hit or not, without executing or loading anything.

Owns `cache status` and `explain` as data: a walk of the planned DAG in topological
order that computes each key from the index alone, and the diff of a step's key
against the last one recorded for it. Imports plan, keys, dag, records, index and
cache; never an executor or the CLI, and it prints nothing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.keys import RUNTIME_MATERIALIZER, cache_key
from ..core.plan import PlannedStep, plan
from ..errors import UsageError
from ..storage.cache import Cache
from ..storage.index import Index
from ..storage.records import StepRecord

if TYPE_CHECKING:
    from ..core.pipeline import PipelineInstance

CACHED, STALE, NEW = "cached", "stale", "new"
EARLY_CUTOFF = "early cutoff may still spare this step if it produces identical data"
_VALUE_REPR_LIMIT = 60


@dataclass(frozen=True, slots=True)
class Change:
    """One ingredient of the key that differs from the last recorded one."""

    kind: str  # identity | code | parameter | output | input | cache
    name: str  # the part, parameter, output or input name; "" when not applicable
    before: str | None  # None: absent before, or unknown
    after: str | None  # None: absent now, or not computable yet (upstream reruns)
    message: str
    upstream: str = ""  # for inputs: the step that produces it

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "before": self.before,
            "after": self.after,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class StepStatus:
    step: str
    status: str  # cached | stale | new
    reasons: tuple[str, ...]
    key: str | None  # None while an upstream's outputs are unknown (it will run)
    previous_key: str | None
    changes: tuple[Change, ...] = ()
    source: str = ""  # a cached step's entry: "local" (this cache) or "remote"

    def to_json(self) -> dict[str, Any]:
        """The documented shape of `cache status --json`: step, status, reasons, and
        `"source": "remote"` for a step cached on the remote only."""
        data: dict[str, Any] = {
            "step": self.step,
            "status": self.status,
            "reasons": list(self.reasons),
        }
        if self.source == "remote":
            data["source"] = "remote"
        return data


@dataclass(frozen=True, slots=True)
class Explanation:
    """Everything that makes one step's key, and how it differs from the last one."""

    pipeline: str
    step: str
    identity: str
    status: StepStatus
    code: dict[str, Any]  # digest, version (pinned) or fingerprint, parts
    params: dict[str, dict[str, str]]  # name -> {hash, repr}
    ignored: tuple[str, ...]
    outputs: tuple[dict[str, str], ...]  # name, materializer
    inputs: dict[str, dict[str, str | None]]  # name -> {from, content_id}
    static: str
    previous: dict[str, Any] | None  # key, run_id, created of the last recorded entry
    changes: tuple[Change, ...]  # against `previous`, whatever the status
    untracked: tuple[str, ...]
    upstream: tuple[str, ...] = field(default=())

    @property
    def key(self) -> str | None:
        return self.status.key

    def to_json(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "step": self.step,
            "identity": self.identity,
            "status": self.status.status,
            "reasons": list(self.status.reasons),
            "key": self.status.key,
            "static": self.static,
            "code": self.code,
            "params": self.params,
            "ignored": list(self.ignored),
            "outputs": list(self.outputs),
            "inputs": self.inputs,
            "upstream": list(self.upstream),
            "previous": self.previous,
            "changes": [c.to_json() for c in self.changes],
            "untracked": list(self.untracked),
        }


def pipeline_status(instance: PipelineInstance, cache: Cache) -> list[StepStatus]:
    """The status of every step, in topological order."""
    return _Walk(instance, cache).run()


def explain(instance: PipelineInstance, cache: Cache, step: str) -> Explanation:
    """The key breakdown of one step (by invocation name) and its diff to the last key."""
    walk = _Walk(instance, cache)
    if step not in walk.planned:
        raise UsageError(
            f"pipeline {instance.name!r} has no step {step!r}; its steps are "
            f"{', '.join(walk.planned)}"
        )
    statuses = {s.step: s for s in walk.run()}
    ps = walk.planned[step]
    status = statuses[step]
    inputs: dict[str, dict[str, str | None]] = {}
    for name in ps.input_names:
        handle = ps.invocation.inputs[name]
        produced = walk.ids.get(handle.invocation)
        inputs[name] = {
            "from": f"{handle.invocation}.{handle.output}",
            "content_id": None if produced is None else produced[handle.output],
        }
    fp = ps.fingerprint
    code: dict[str, Any] = {
        "digest": ps.parts.code,
        "version": ps.step.options.version,
        "fingerprint": fp.digest if fp else None,
        "parts": dict(fp.parts) if fp else {},
    }
    previous = None
    changes = status.changes
    record = walk.previous.get(step)
    if record is None and status.previous_key is not None and walk.index is not None:
        record = walk.index.get_step(status.previous_key)
        # A cached step whose last run used another key (a parameter set back to an
        # earlier value): the diff to that last key still says what differs.
        if record is not None and record.key != status.key:
            changes = tuple(walk.diff(ps, record))
    if record is not None:
        previous = {"key": record.key, "run_id": record.run_id, "created": record.created}
    elif status.previous_key is not None:
        previous = {"key": status.previous_key, "run_id": None, "created": None}
    return Explanation(
        pipeline=walk.pipeline,
        step=step,
        identity=ps.step.identity,
        status=status,
        code=code,
        params={
            name: {"hash": digest, "repr": ps.param_reprs[name]} for name, digest in ps.parts.params
        },
        ignored=tuple(sorted(set(ps.invocation.params) & ps.step.options.ignore)),
        outputs=tuple({"name": n, "materializer": m} for n, m in ps.parts.outputs),
        inputs=inputs,
        static=ps.parts.static,
        previous=previous,
        changes=changes,
        untracked=fp.untracked if fp else (),
        upstream=tuple(ps.invocation.upstream),
    )


class _Walk:
    """One pass over the plan; `ids` holds the outputs known without running anything."""

    def __init__(self, instance: PipelineInstance, cache: Cache) -> None:
        dag = instance.trace()
        self.pipeline = dag.pipeline
        self.planned = {ps.name: ps for ps in plan(dag)}
        # A status check must not create a cache where there was none.
        self.index: Index | None = cache.index if cache.exists() else None
        self.ids: dict[str, dict[str, str]] = {}
        self.previous: dict[str, StepRecord] = {}
        self.cache = cache
        self._remote: Any = None
        self._remote_opened = False

    def run(self) -> list[StepStatus]:
        return [self._status(ps) for ps in self.planned.values()]

    def _remote_hit(self, ps: PlannedStep, key: str) -> StepStatus | None:
        """A step the remote's action cache holds a usable entry for (nothing is recorded
        or fetched: status only looks)."""
        if not self._remote_opened:
            self._remote_opened = True
            if self.cache.remote_settings()[0]:
                self._remote = self.cache.remote
                if self._remote is not None:
                    self._remote.begin_run()
                    self._remote.prefetch(self.pipeline)
        remote = self._remote
        if remote is None or remote.down:
            return None
        from ..executors.remote_tier import refusal

        entry = remote.lookup(key)
        remote.check()
        if entry is None or refusal(entry, trusted=remote.trusted):
            return None
        self.ids[ps.name] = dict(zip(ps.materializers, entry.step.output_ids, strict=False))
        previous = self.index.latest_key(self.pipeline, ps.name) if self.index else None
        return StepStatus(ps.name, CACHED, (), key, previous, source="remote")

    def _status(self, ps: PlannedStep) -> StepStatus:
        index = self.index
        input_ids = self._input_ids(ps)
        key = None
        if len(input_ids) == len(ps.input_names):
            key = cache_key(ps.parts.static, tuple((n, input_ids[n]) for n in ps.input_names))
        if key is not None and ps.step.options.cache:
            hit = index.step_output_ids(key) if index is not None else None
            if hit is not None and index is not None:
                self.ids[ps.name] = dict(zip(ps.materializers, hit, strict=False))
                return StepStatus(
                    ps.name, CACHED, (), key, index.latest_key(self.pipeline, ps.name)
                )
            remote_hit = self._remote_hit(ps, key)
            if remote_hit is not None:
                return remote_hit
        if index is None:
            return StepStatus(ps.name, NEW, (), key, None)

        previous_key = index.latest_key(self.pipeline, ps.name)
        if previous_key is None:
            return StepStatus(ps.name, NEW, (), key, None)
        if not ps.step.options.cache:
            message = "cache=False: always executes"
            change = Change("cache", "", None, None, message)
            return StepStatus(ps.name, STALE, (message,), key, previous_key, (change,))

        record = index.get_step(previous_key)
        changes: list[Change] = []
        if record is None:
            message = (
                f"its last result (key {previous_key[:12]}) is no longer in the cache "
                "(removed by cache gc, clear or verify --repair)"
            )
            changes.append(Change("cache", "", previous_key, key, message))
            changes.extend(self._input_changes(ps, {}, input_ids, recorded=False))
        else:
            self.previous[ps.name] = record
            changes.extend(self.diff(ps, record))
        if not changes:
            # Every recorded ingredient matches, yet the key differs: the key's
            # own format (or an ingredient the record does not keep) changed.
            changes.append(
                Change(
                    "cache",
                    "",
                    previous_key,
                    key,
                    "the cache key format changed since its last run; it will be recomputed",
                )
            )
        return StepStatus(ps.name, STALE, _reasons(changes), key, previous_key, tuple(changes))

    def _input_ids(self, ps: PlannedStep) -> dict[str, str]:
        """Content ids of the inputs whose producers are cached (all of them, or not)."""
        return {
            name: self.ids[h.invocation][h.output]
            for name, h in ps.invocation.inputs.items()
            if h.invocation in self.ids
        }

    def diff(self, ps: PlannedStep, record: StepRecord) -> list[Change]:
        """How the step's key now differs from the recorded one, ingredient by ingredient."""
        input_ids = self._input_ids(ps)
        return [
            *_identity_and_code_changes(ps, record),
            *_param_changes(ps, record),
            *_output_changes(ps, record),
            *self._input_changes(ps, record.inputs, input_ids, recorded=True),
        ]

    def _input_changes(
        self, ps: PlannedStep, before: Mapping[str, str], now: Mapping[str, str], recorded: bool
    ) -> list[Change]:
        """Input differences; without a record only the upstreams that will rerun are known."""
        changes = []
        current = ps.invocation.inputs
        for name in sorted(set(before) | set(current)):
            handle = current.get(name)
            if handle is None:
                changes.append(
                    Change("input", name, before[name], None, f"input {name}: no longer an input")
                )
                continue
            source = f"{handle.invocation}.{handle.output}"
            if handle.invocation not in self.ids:
                changes.append(
                    Change(
                        "input",
                        name,
                        before.get(name),
                        None,
                        f"input {name}: upstream {handle.invocation} will rerun ({EARLY_CUTOFF})",
                        upstream=handle.invocation,
                    )
                )
            elif not recorded:
                continue
            elif name not in before:
                changes.append(
                    Change("input", name, None, now[name], f"input {name}: new (from {source})")
                )
            elif before[name] != now[name]:
                changes.append(
                    Change(
                        "input",
                        name,
                        before[name],
                        now[name],
                        f"input {name}: content changed",
                        upstream=handle.invocation,
                    )
                )
        return changes


# --- the diff of recorded and current key parts ---------------------------------------------


def _identity_and_code_changes(ps: PlannedStep, record: StepRecord) -> list[Change]:
    step = ps.step
    name = ps.name
    if record.step != step.identity:
        return [
            Change(
                "identity",
                "",
                record.step,
                step.identity,
                f"code changed: {name} now runs {step.identity} (was {record.step})",
            )
        ]
    before, after = record.fingerprint, ps.parts.code
    if before == after:
        return []
    old_pin = before.removeprefix("version:") if before.startswith("version:") else None
    new_pin = after.removeprefix("version:") if after.startswith("version:") else None
    if old_pin is not None or new_pin is not None:
        if old_pin is not None and new_pin is not None:
            message = f"code pinned: version {old_pin} -> {new_pin}"
        elif new_pin is not None:
            message = f"code pinned: version {new_pin} (was fingerprinted from its source)"
        else:
            message = f"code no longer pinned (was version {old_pin}): fingerprinted from source"
        return [Change("code", "version", before, after, message)]

    now = dict(ps.fingerprint.parts) if ps.fingerprint else {}
    changes = []
    own = {f"code:{step.fn.__module__}:{step.fn.__qualname__}", f"code:{step.identity}"}
    for part in sorted(set(record.code_parts) | set(now)):
        old, new = record.code_parts.get(part), now.get(part)
        if old != new:
            what = _describe_part(part, old, new, own)
            changes.append(Change("code", part, old, new, f"code changed: {name} ({what})"))
    if not changes:
        changes.append(
            Change(
                "code",
                "",
                before,
                after,
                f"code changed: {name} (fingerprint {before[:12]} -> {after[:12]}; "
                "the fingerprint format changed)",
            )
        )
    return changes


def _param_changes(ps: PlannedStep, record: StepRecord) -> list[Change]:
    now = dict(ps.parts.params)
    changes = []
    for name in sorted(set(record.params) | set(now)):
        old = record.params.get(name)
        if old is None:
            text = ps.param_reprs[name]
            message = f"parameter {name}: new, = {text}"
            changes.append(Change("parameter", name, None, text, message))
        elif name not in now:
            message = f"parameter {name}: removed (was {old['repr']})"
            if name in ps.step.options.ignore:
                message = f"parameter {name}: now ignored (was {old['repr']})"
            changes.append(Change("parameter", name, old["repr"], None, message))
        elif old["hash"] != now[name]:
            text = ps.param_reprs[name]
            message = f"parameter {name}: {old['repr']} -> {text}"
            if text == old["repr"]:
                message = f"parameter {name}: value changed (its repr, {text}, did not)"
            changes.append(Change("parameter", name, old["repr"], text, message))
    return changes


def _output_changes(ps: PlannedStep, record: StepRecord) -> list[Change]:
    names = tuple(name for name, _ in ps.parts.outputs)
    if names != tuple(record.output_names):
        message = f"outputs changed: ({', '.join(record.output_names)}) -> ({', '.join(names)})"
        return [Change("output", "", ", ".join(record.output_names), ", ".join(names), message)]
    changes = []
    for name, identity in ps.parts.outputs:
        old = record.materializers.get(name)
        # An output whose materializer is chosen from the returned value keys as
        # "runtime" both times: the record's choice is not part of the key.
        if identity == RUNTIME_MATERIALIZER or old is None or old == identity:
            continue
        old_cls, _, old_version = old.rpartition("@")
        new_cls, _, new_version = identity.rpartition("@")
        if old_cls == new_cls:
            detail = f"{_short_class(new_cls)} version {old_version} -> {new_version}"
        else:
            detail = (
                f"{_short_class(old_cls)}@{old_version} -> {_short_class(new_cls)}@{new_version}"
            )
        message = f"materializer changed: output {name} ({detail})"
        changes.append(Change("output", name, old, identity, message))
    return changes


def _reasons(changes: Iterable[Change]) -> tuple[str, ...]:
    """One line per change, except inputs of one upstream that all changed alike."""
    reasons: list[str] = []
    grouped: dict[tuple[str, str], list[str]] = {}
    for change in changes:
        if change.kind == "input" and change.upstream:
            kind = "rerun" if change.after is None else "changed"
            names = grouped.setdefault((change.upstream, kind), [])
            if not names:
                reasons.append(f"\0{change.upstream}\0{kind}")  # placeholder, filled below
            names.append(change.name)
        else:
            reasons.append(change.message)
    out = []
    for reason in reasons:
        if reason.startswith("\0"):
            _, upstream, kind = reason.split("\0")
            names = grouped[(upstream, kind)]
            label = f"input {names[0]}" if len(names) == 1 else f"inputs {', '.join(names)}"
            if kind == "rerun":
                out.append(f"{label}: upstream {upstream} will rerun ({EARLY_CUTOFF})")
            else:
                out.append(f"{label}: content changed (from {upstream})")
        else:
            out.append(reason)
    return tuple(out)


# --- readable names for fingerprint parts ----------------------------------------------------


def _describe_part(part: str, old: str | None, new: str | None, own: set[str]) -> str:
    """`code:<module>:<qualname>` -> "helper `fit_model` in models.py", and so on."""
    kind, _, rest = part.partition(":")
    if kind == "python":
        return f"Python {old} -> {new}" if old and new else f"Python {new or old}"
    if kind == "dist":
        if old and new:
            return f"package {rest} {_version(old)} -> {_version(new)}"
        return f"now uses package {new}" if new else f"no longer uses package {old}"
    module, _, qualname = rest.partition(":")
    if kind == "code":
        if part in own:
            return f"step function `{qualname}` in {_where(module)}"
        subject = f"{_code_kind(module, qualname)} `{qualname}` in {_where(module)}"
    elif kind == "const" and not qualname:
        subject = f"module `{module}`"
    elif kind == "const":
        subject = _describe_const(module, qualname)
    else:
        subject = f"`{part}`"
    if old is None:
        return f"now uses {subject}"
    if new is None:
        return f"no longer uses {subject}"
    return subject


def _describe_const(module: str, name: str) -> str:
    where = _where(module)
    if name.endswith("=)") and "(" in name:
        owner, _, param = name[:-2].partition("(")
        return f"default of parameter `{param}` of `{owner}` in {where}"
    if name.isidentifier():
        value = _lookup(module, name)
        shown = ""
        if value is not _MISSING:
            text = repr(value)
            if len(text) <= _VALUE_REPR_LIMIT:
                shown = f", now {text}"
        return f"constant `{name}` in {where}{shown}"
    return f"value `{name}` in {where}"


_MISSING = object()


def _lookup(module: str, qualname: str) -> Any:
    obj: Any = sys.modules.get(module, _MISSING)
    for attr in qualname.split("."):
        if obj is _MISSING or attr == "<locals>":
            return _MISSING
        obj = getattr(obj, attr, _MISSING)
    return obj


def _code_kind(module: str, qualname: str) -> str:
    if "<locals>" in qualname:
        return "nested function"
    obj = _lookup(module, qualname)
    if isinstance(obj, type):
        return "class"
    return "method" if "." in qualname else "helper"


def _where(module: str) -> str:
    """The module's file, relative to the current directory when inside it."""
    filename = getattr(sys.modules.get(module), "__file__", None)
    if not filename:
        return f"module {module}"
    path = Path(filename)
    try:
        return str(path.resolve().relative_to(Path(os.getcwd()).resolve()))
    except ValueError:
        return str(path)


def _version(pin: str) -> str:
    return pin.partition("==")[2] or pin


def _short_class(identity: str) -> str:
    return identity.rpartition(":")[2] or identity
