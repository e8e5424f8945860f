"""Why a step would be a cache hit or not, without executing or loading anything.

Owns `cache status` and `explain` as data: a walk of the planned DAG in topological
order that computes each key from the index alone, and the diff of a step's key
against the last one recorded for it. Imports plan, keys, dag, records, index and
cache; never an executor or the CLI, and it prints nothing.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.keys import RUNTIME_MATERIALIZER, cache_key
from ..core.plan import PlannedStep, plan
from ..errors import UsageError
from ..inputs.external import ENV_PREFIX, External
from ..inputs.trees import DIR, FILE, LINK, MISSING, Entry, StatMemo, decode_entries
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

    kind: str  # identity | code | parameter | output | input | path | env | cache
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

    def to_json(self) -> dict[str, Any]:
        """The documented shape of `cache status --json`: step, status, reasons."""
        return {"step": self.step, "status": self.status, "reasons": list(self.reasons)}


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
    # What it reads from outside now: "path:<param>" / "env:<NAME>" -> what its entry records.
    external: dict[str, dict[str, Any]] = field(default_factory=dict)

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
            "external": self.external,
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
        external={e.name: e.record for e in ps.externals},
    )


class _Walk:
    """One pass over the plan; `ids` holds the outputs known without running anything."""

    def __init__(self, instance: PipelineInstance, cache: Cache) -> None:
        dag = instance.trace()
        self.pipeline = dag.pipeline
        # A status check must not create a cache where there was none.
        self.index: Index | None = cache.index if cache.exists() else None
        memo = StatMemo(self.index)
        self.planned = {ps.name: ps for ps in plan(dag, memo)}
        memo.flush()  # the next status (or run) hashes only what changed since
        self.ids: dict[str, dict[str, str]] = {}
        self.previous: dict[str, StepRecord] = {}

    def run(self) -> list[StepStatus]:
        return [self._status(ps) for ps in self.planned.values()]

    def _status(self, ps: PlannedStep) -> StepStatus:
        index = self.index
        input_ids = self._input_ids(ps)
        key = None
        if len(input_ids) == len(ps.input_names):
            key = cache_key(ps.parts.static, tuple((n, input_ids[n]) for n in ps.input_names))
        if index is None:
            return StepStatus(ps.name, NEW, (), key, None)
        if key is not None and ps.step.options.cache:
            hit = index.step_output_ids(key)
            if hit is not None:
                self.ids[ps.name] = dict(zip(ps.materializers, hit, strict=False))
                return StepStatus(
                    ps.name, CACHED, (), key, index.latest_key(self.pipeline, ps.name)
                )

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
            *_external_changes(ps, record, self._listing),
            *self._input_changes(ps, record.inputs, input_ids, recorded=True),
        ]

    def _listing(self, digest: str) -> tuple[Entry, ...] | None:
        """A folder's recorded entries, if the index kept them."""
        if self.index is None:
            return None
        data = self.index.get("trees", digest.encode())
        if data is None:
            return None
        try:
            return decode_entries(data)
        except (ValueError, TypeError, KeyError):
            return None

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


def _external_changes(ps: PlannedStep, record: StepRecord, listing: Any) -> list[Change]:
    """Paths whose content and environment variables whose value differ from the entry's."""
    before = record.external
    now: dict[str, External] = {e.name: e for e in ps.externals}
    changes = []
    for name in sorted(set(before) | set(now)):
        old = before.get(name)
        new = now[name].record if name in now else None
        if old == new:
            continue
        if name.startswith(ENV_PREFIX):
            changes.append(_env_change(name, old, new))
        elif new is None:
            message = f"path {old['path']}: no longer an input"  # type: ignore[index]
            changes.append(Change("path", name, old["digest"], None, message))  # type: ignore[index]
        elif old is None:
            message = f"{_describe_path(new)}: now tracked by content"
            changes.append(Change("path", name, None, new["digest"], message))
        elif old.get("path") != new.get("path"):
            continue  # the parameter's own change says which path it names now
        elif old.get("kind") == new.get("kind") and old.get("digest") == new.get("digest"):
            continue
        else:
            changes.extend(_path_changes(name, old, new, now[name].entries, listing))
    return changes


def _env_change(name: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> Change:
    variable = name[len(ENV_PREFIX) :]
    if new is None:
        return Change("env", variable, _env_text(old), None, f"env {variable}: no longer read")
    if old is None:
        message = f"env {variable}: now in the key (= {_env_text(new)})"
        return Change("env", variable, None, _env_text(new), message)
    if old.get("redacted") or new.get("redacted"):
        message = f"env {variable}: changed (its value is not recorded: it looks like a secret)"
        return Change("env", variable, None, None, message)
    before, after = _env_text(old), _env_text(new)
    return Change("env", variable, before, after, f"env {variable}: {before} -> {after}")


def _env_text(entry: dict[str, Any] | None) -> str:
    if entry is None or entry.get("value") is None:
        return "set" if entry and entry.get("set") else "unset"
    return json.dumps(entry["value"], ensure_ascii=False)


def _describe_path(entry: dict[str, Any]) -> str:
    path, kind = entry["path"], entry["kind"]
    if kind == FILE:
        return f"file {path} ({_size(entry.get('size', 0))})"
    if kind == DIR:
        return f"folder {_folder(path)} ({_folder_facts(entry)})"
    if kind == LINK:
        return f"link {path} (to {entry.get('target', '?')}, which does not exist)"
    return f"{path} (missing)"


def _folder_facts(entry: dict[str, Any]) -> str:
    return f"{_count(entry.get('count', 0))}, {_size(entry.get('size', 0))}"


def _path_changes(
    name: str,
    old: dict[str, Any],
    new: dict[str, Any],
    current: tuple[Entry, ...],
    listing: Any,
) -> list[Change]:
    path, before, after = new["path"], old["kind"], new["kind"]
    digest_old, digest_new = old.get("digest"), new.get("digest")

    def change(message: str) -> Change:
        return Change("path", name, digest_old, digest_new, message)

    if before == FILE and after == FILE:
        sizes = f"{_size(old.get('size', 0))} -> {_size(new.get('size', 0))}"
        if old.get("size") == new.get("size"):
            sizes = f"{_size(new.get('size', 0))}, same size"
        return [change(f"file {path} changed ({sizes})")]
    if after == MISSING:
        return [change(f"{_describe_path(old)} is missing now")]
    if before == MISSING:
        return [change(f"{_describe_path(new)} exists now (it was missing)")]
    if before == DIR and after == DIR:
        old_entries = listing(digest_old)
        if old_entries is None:  # gc removed its listing, or an older zencache ran it
            counts = f"{_folder_facts(old)} -> {_folder_facts(new)}"
            return [change(f"folder {_folder(path)} changed ({counts})")]
        messages = _folder_changes(_folder(path), old_entries, current)
        if not messages:  # only empty folders came or went
            messages = [f"folder {_folder(path)} changed (its sub-folders)"]
        return [change(m) for m in messages]
    return [change(f"{path}: was {_describe_path(old)}, now {_describe_path(new)}")]


def _folder_changes(
    folder: str, old: tuple[Entry, ...], new: tuple[Entry, ...], shown: int = 3
) -> list[str]:
    """`3 files changed in data/images/ (a.png, b.png, c.png)`, added, removed, renamed."""
    before = {e.path: e for e in old if e.kind != DIR}
    after = {e.path: e for e in new if e.kind != DIR}
    changed = sorted(p for p in before.keys() & after.keys() if before[p] != after[p])
    removed = sorted(before.keys() - after.keys())
    added = sorted(after.keys() - before.keys())
    renamed = []
    by_content = {}
    for p in removed:
        by_content.setdefault((before[p].kind, before[p].digest), []).append(p)
    for p in list(added):
        sources = by_content.get((after[p].kind, after[p].digest))
        if sources:
            source = sources.pop(0)
            renamed.append(f"{source} -> {p}")
            removed.remove(source)
            added.remove(p)
    lines = []
    for names, verb in ((changed, "changed in"), (added, "added to"), (removed, "removed from")):
        if names:
            lines.append(f"{_count(len(names))} {verb} {folder} ({_some(names, shown)})")
    if renamed:
        lines.append(f"{_count(len(renamed))} renamed in {folder} ({_some(renamed, shown)})")
    return lines


def _some(names: list[str], shown: int) -> str:
    return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")


def _count(n: int) -> str:
    return f"{n:,} file" + ("" if n == 1 else "s")


def _folder(path: str) -> str:
    return path if path.endswith("/") else path + "/"


def _size(n: int) -> str:
    """Decimal units, one decimal: 12.1 MB."""
    if n < 1000:
        return f"{n} B"
    for unit in ("kB", "MB", "GB", "TB"):
        n /= 1000  # type: ignore[assignment]
        if n < 999.95 or unit == "TB":
            return f"{n:.1f} {unit}"
    return f"{n} B"  # not reached


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
