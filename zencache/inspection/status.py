"""Why a step would be a cache hit or not, without executing or loading anything.

Owns `cache status` and `explain` as data: a walk of the planned DAG in topological
order that computes each key from the index alone, and the diff of a step's key
against the last one recorded for it, as enums and structured changes. The words
are the CLI's (cli/phrasing.py). Imports plan, keys, dag, records, index, cache
and inputs (what steps read from outside); never an executor or the CLI, and it
prints nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from ..core.keys import RUNTIME_MATERIALIZER, cache_key
from ..core.plan import PlannedStep, plan
from ..errors import UsageError
from ..inputs.external import ENV_PREFIX, External
from ..inputs.trees import DIR, Entry, StatMemo, decode_entries
from ..storage.cache import Cache
from ..storage.index import Index
from ..storage.records import StepRecord

if TYPE_CHECKING:
    from ..core.pipeline import PipelineInstance


class Status(StrEnum):
    """What a run would do with a step now."""

    CACHED = "cached"  # a hit: its outputs are in the cache under its key
    STALE = "stale"  # run before with another key (or cache=False): it will execute
    NEW = "new"  # never recorded in this pipeline


CACHED, STALE, NEW = Status.CACHED, Status.STALE, Status.NEW


class ChangeKind(StrEnum):
    """Which ingredient of the key changed."""

    IDENTITY = "identity"  # the invocation runs another step function
    CODE = "code"  # a fingerprint part, or the version= pin
    PARAMETER = "parameter"
    OUTPUT = "output"  # the outputs' names, or one output's materializer
    INPUT = "input"
    PATH = "path"  # the content a path parameter names (name: "path:<param>[...]")
    ENV = "env"  # an environment variable (name: the variable)
    CACHE = "cache"  # not an ingredient: the cache itself (cache=False, entry gone, format)


class ChangeType(StrEnum):
    """What happened to the ingredient."""

    ADDED = "added"  # before is None
    REMOVED = "removed"  # after is None
    CHANGED = "changed"
    IGNORED = "ignored"  # a parameter now in ignore=
    PINNED = "pinned"  # code: version= now pins it (before: the fingerprint)
    UNPINNED = "unpinned"  # code: fingerprinted again (before: the pin)
    UPSTREAM_RERUNS = "upstream reruns"  # input: unknown until its producer runs
    FORMAT_CHANGED = "format changed"  # the fingerprint or key format, not the inputs
    ALWAYS_EXECUTES = "always executes"  # cache=False
    ENTRY_GONE = "entry gone"  # the last entry was removed (gc, clear, verify --repair)
    RENAMED = "renamed"  # path: files of a folder that moved within it (`files`: "a -> b")


@dataclass(frozen=True, slots=True)
class Change:
    """One ingredient of the key that differs from the last recorded one.

    `name` is the fingerprint part (`code:<module>:<qualname>`, `const:...`,
    `dist:<name>`, `python`, or "version" for the pin), parameter, output or input
    name; "" when not applicable (an output change with name "" is the list of outputs).
    """

    kind: ChangeKind
    type: ChangeType
    step: str  # the invocation whose key it is
    name: str = ""
    before: str | None = None  # None: absent before, or unknown
    after: str | None = None  # None: absent now, or not computable yet (upstream reruns)
    upstream: str = ""  # for inputs: the step that produces it
    source: str = ""  # for inputs: "<step>.<output>" it is read from
    own_code: bool = False  # for code parts: the step function's own source
    # For paths: the files of a folder that changed, were added, removed or renamed
    # (with type CHANGED, ADDED, REMOVED, RENAMED); empty for the path as a whole.
    files: tuple[str, ...] = ()
    # For paths and variables: what the entry recorded and what is there now, as
    # sorted (field, value) pairs of the records inputs/external.py makes (path,
    # kind, size, count; name, value, redacted).
    was: tuple[tuple[str, Any], ...] = ()
    now: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class Reason:
    """One reason a step is stale: one change, or the inputs from one upstream step
    that changed alike (all will rerun, or all changed content)."""

    changes: tuple[Change, ...]

    @property
    def change(self) -> Change:
        return self.changes[0]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.changes)


@dataclass(frozen=True, slots=True)
class StepStatus:
    step: str
    status: Status
    reasons: tuple[Reason, ...]
    key: str | None  # None while an upstream's outputs are unknown (it will run)
    previous_key: str | None
    changes: tuple[Change, ...] = ()
    # What the step reads that its fingerprint cannot track: a hit is only as good
    # as these are unchanged (run warns about them; strict mode refuses them).
    untracked: tuple[str, ...] = ()
    source: str = ""  # a cached step's entry: "local" (this cache) or "remote"


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
        self.cache = cache
        self._remote: Any = None
        self._remote_opened = False

    def run(self) -> list[StepStatus]:
        statuses = []
        for ps in self.planned.values():
            status = self._status(ps)
            if ps.fingerprint is not None and ps.fingerprint.untracked:
                status = dataclasses.replace(status, untracked=ps.fingerprint.untracked)
            statuses.append(status)
        return statuses

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
        from ..materializers.remote_entries import refusal

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
            change = Change(ChangeKind.CACHE, ChangeType.ALWAYS_EXECUTES, ps.name)
            return StepStatus(ps.name, STALE, (Reason((change,)),), key, previous_key, (change,))

        record = index.get_step(previous_key)
        changes: list[Change] = []
        if record is None:
            changes.append(
                Change(ChangeKind.CACHE, ChangeType.ENTRY_GONE, ps.name, "", previous_key, key)
            )
            changes.extend(self._input_changes(ps, {}, input_ids, recorded=False))
        else:
            self.previous[ps.name] = record
            changes.extend(self.diff(ps, record))
        if not changes:
            # Every recorded ingredient matches, yet the key differs: the key's
            # own format (or an ingredient the record does not keep) changed.
            changes.append(
                Change(ChangeKind.CACHE, ChangeType.FORMAT_CHANGED, ps.name, "", previous_key, key)
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
                    Change(ChangeKind.INPUT, ChangeType.REMOVED, ps.name, name, before[name], None)
                )
                continue
            if handle.invocation not in self.ids:
                changes.append(
                    Change(
                        ChangeKind.INPUT,
                        ChangeType.UPSTREAM_RERUNS,
                        ps.name,
                        name,
                        before.get(name),
                        None,
                        upstream=handle.invocation,
                        source=f"{handle.invocation}.{handle.output}",
                    )
                )
            elif not recorded:
                continue
            elif name not in before:
                changes.append(
                    Change(
                        ChangeKind.INPUT,
                        ChangeType.ADDED,
                        ps.name,
                        name,
                        None,
                        now[name],
                        upstream=handle.invocation,
                        source=f"{handle.invocation}.{handle.output}",
                    )
                )
            elif before[name] != now[name]:
                changes.append(
                    Change(
                        ChangeKind.INPUT,
                        ChangeType.CHANGED,
                        ps.name,
                        name,
                        before[name],
                        now[name],
                        upstream=handle.invocation,
                        source=f"{handle.invocation}.{handle.output}",
                    )
                )
        return changes


# --- the diff of recorded and current key parts ---------------------------------------------


def _identity_and_code_changes(ps: PlannedStep, record: StepRecord) -> list[Change]:
    step = ps.step
    name = ps.name
    if record.step != step.identity:
        return [
            Change(ChangeKind.IDENTITY, ChangeType.CHANGED, name, "", record.step, step.identity)
        ]
    before, after = record.fingerprint, ps.parts.code
    if before == after:
        return []
    old_pin = before.startswith("version:")
    new_pin = after.startswith("version:")
    if old_pin or new_pin:
        how = (
            ChangeType.CHANGED
            if old_pin and new_pin
            else ChangeType.PINNED
            if new_pin
            else ChangeType.UNPINNED
        )
        return [Change(ChangeKind.CODE, how, name, "version", before, after)]

    now = dict(ps.fingerprint.parts) if ps.fingerprint else {}
    changes = []
    own = {f"code:{step.fn.__module__}:{step.fn.__qualname__}", f"code:{step.identity}"}
    for part in sorted(set(record.code_parts) | set(now)):
        old, new = record.code_parts.get(part), now.get(part)
        if old != new:
            how = (
                ChangeType.ADDED
                if old is None
                else ChangeType.REMOVED
                if new is None
                else ChangeType.CHANGED
            )
            changes.append(Change(ChangeKind.CODE, how, name, part, old, new, own_code=part in own))
    if not changes:
        changes.append(Change(ChangeKind.CODE, ChangeType.FORMAT_CHANGED, name, "", before, after))
    return changes


def _param_changes(ps: PlannedStep, record: StepRecord) -> list[Change]:
    now = dict(ps.parts.params)
    changes = []
    for name in sorted(set(record.params) | set(now)):
        old = record.params.get(name)
        if old is None:
            changes.append(
                Change(
                    ChangeKind.PARAMETER,
                    ChangeType.ADDED,
                    ps.name,
                    name,
                    None,
                    ps.param_reprs[name],
                )
            )
        elif name not in now:
            how = ChangeType.IGNORED if name in ps.step.options.ignore else ChangeType.REMOVED
            changes.append(Change(ChangeKind.PARAMETER, how, ps.name, name, old["repr"], None))
        elif old["hash"] != now[name]:
            # before and after are reprs: equal ones mean a value whose repr hides it
            changes.append(
                Change(
                    ChangeKind.PARAMETER,
                    ChangeType.CHANGED,
                    ps.name,
                    name,
                    old["repr"],
                    ps.param_reprs[name],
                )
            )
    return changes


def _output_changes(ps: PlannedStep, record: StepRecord) -> list[Change]:
    names = tuple(name for name, _ in ps.parts.outputs)
    if names != tuple(record.output_names):
        return [
            Change(
                ChangeKind.OUTPUT,
                ChangeType.CHANGED,
                ps.name,
                "",
                ", ".join(record.output_names),
                ", ".join(names),
            )
        ]
    changes = []
    for name, identity in ps.parts.outputs:
        old = record.materializers.get(name)
        # An output whose materializer is chosen from the returned value keys as
        # "runtime" both times: the record's choice is not part of the key.
        if identity == RUNTIME_MATERIALIZER or old is None or old == identity:
            continue
        changes.append(Change(ChangeKind.OUTPUT, ChangeType.CHANGED, ps.name, name, old, identity))
    return changes


def _external_changes(ps: PlannedStep, record: StepRecord, listing: Any) -> list[Change]:
    """Paths whose content and variables whose value differ from the entry's."""
    before = record.external
    now: dict[str, External] = {e.name: e for e in ps.externals}
    changes: list[Change] = []
    for name in sorted(set(before) | set(now)):
        old = before.get(name)
        new = now[name].record if name in now else None
        if old == new:
            continue
        was = tuple(sorted(old.items())) if old else ()
        current = tuple(sorted(new.items())) if new else ()
        if name.startswith(ENV_PREFIX):
            variable = name[len(ENV_PREFIX) :]
            how = (
                ChangeType.ADDED
                if old is None
                else ChangeType.REMOVED
                if new is None
                else ChangeType.CHANGED
            )
            changes.append(
                Change(
                    ChangeKind.ENV,
                    how,
                    ps.name,
                    variable,
                    _env_value(old),
                    _env_value(new),
                    was=was,
                    now=current,
                )
            )
            continue
        if old is not None and new is not None and old.get("path") != new.get("path"):
            continue  # the parameter's own change says which path it names now
        if old is None or new is None:
            how = ChangeType.ADDED if old is None else ChangeType.REMOVED
            digests = (None, new["digest"]) if old is None else (old["digest"], None)  # type: ignore[index]
            changes.append(
                Change(
                    ChangeKind.PATH,
                    how,
                    ps.name,
                    name,
                    digests[0],
                    digests[1],
                    was=was,
                    now=current,
                )
            )
            continue
        whole = Change(
            ChangeKind.PATH,
            ChangeType.CHANGED,
            ps.name,
            name,
            old.get("digest"),
            new.get("digest"),
            was=was,
            now=current,
        )
        if old.get("kind") == new.get("kind") == DIR:
            entries = listing(old.get("digest", ""))
            if entries is not None:
                files = _folder_changes(whole, entries, now[name].entries)
                if files:
                    changes.extend(files)
                    continue
        changes.append(whole)
    return changes


def _env_value(record: dict[str, Any] | None) -> str | None:
    """A variable's value as recorded (None: unset, or not recorded: see `was`/`now`)."""
    return None if record is None else record.get("value")


def _folder_changes(whole: Change, old: tuple[Entry, ...], new: tuple[Entry, ...]) -> list[Change]:
    """The files of a folder that changed, were added, removed or renamed (a removed
    and an added file with the same content), as one change each kind."""
    before = {e.path: e for e in old if e.kind != DIR}
    after = {e.path: e for e in new if e.kind != DIR}
    changed = sorted(p for p in before.keys() & after.keys() if before[p] != after[p])
    removed = sorted(before.keys() - after.keys())
    added = sorted(after.keys() - before.keys())
    renamed = []
    by_content: dict[tuple[str, str], list[str]] = {}
    for path in removed:
        by_content.setdefault((before[path].kind, before[path].digest), []).append(path)
    for path in list(added):
        sources = by_content.get((after[path].kind, after[path].digest))
        if sources:
            source = sources.pop(0)
            renamed.append(f"{source} -> {path}")
            removed.remove(source)
            added.remove(path)
    out = []
    for files, how in (
        (changed, ChangeType.CHANGED),
        (added, ChangeType.ADDED),
        (removed, ChangeType.REMOVED),
        (renamed, ChangeType.RENAMED),
    ):
        if files:
            out.append(
                Change(
                    whole.kind,
                    how,
                    whole.step,
                    whole.name,
                    whole.before,
                    whole.after,
                    files=tuple(files),
                    was=whole.was,
                    now=whole.now,
                )
            )
    return out


def _reasons(changes: Iterable[Change]) -> tuple[Reason, ...]:
    """One reason per change, except inputs of one upstream that all changed alike
    (all will rerun, or all changed content): those make one reason."""
    groups: dict[tuple[str, ChangeType], list[Change]] = {}
    order: list[list[Change]] = []
    for change in changes:
        alike = change.type in (ChangeType.UPSTREAM_RERUNS, ChangeType.CHANGED)
        if change.kind == ChangeKind.INPUT and change.upstream and alike:
            group = groups.get((change.upstream, change.type))
            if group is None:
                group = groups[(change.upstream, change.type)] = []
                order.append(group)
            group.append(change)
        else:
            order.append([change])
    return tuple(Reason(tuple(group)) for group in order)
