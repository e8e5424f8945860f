"""Hooks: objects told about a run as it goes, in the driver, by every executor.

A hook is any object with some of `on_run_start`, `on_step_start`, `on_step_end`,
`on_run_end`. They are called with keyword arguments only, and only those a
method names (all of them when it takes **kwargs), so that new fields never break
an old hook. Where hooks come from, in the order they are called:

1. installed packages: the `zencache.hooks` entry-point group (every entry point
   is called in every run, in name order; `ZENCACHE_DISABLE_HOOK_PLUGINS=1`, or a
   comma-separated list of entry-point names, turns them off);
2. the project: `hooks = [...]` under `[tool.zencache]`, or `ZENCACHE_HOOKS`;
3. the run: `run(hooks=[...])`.
A name is "mlflow" or "wandb" (the built-in integrations), the name of an entry
point, or "module:attribute"; a class found by name is instantiated with no
arguments. A hook that raises is reported once (HookFailedWarning) and the run
goes on, its cache entries committed as always; with `strict_hooks=True` the run
raises HookError instead (at once when `on_run_start` fails, else at its end,
after every entry and the run record are written).

`HookDispatch` is how a run calls them: a listener of the run's event stream
(events.py), which it turns into hook calls, each inside the step's context.
Imports config, errors, the step context, the events and the distribution scan
(entry points read as text, memoized per process and sys.path, so a run pays a
few stats for them).
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..core.context import StepLog, activated
from ..errors import HookError, HookFailedWarning, UsageError
from ..fingerprint.distributions import installed
from .events import CacheEvent, Event, EventKind, RunEnded, RunStarted

if TYPE_CHECKING:
    from .runner import Runner

log = logging.getLogger(__name__)

METHODS = ("on_run_start", "on_step_start", "on_step_end", "on_run_end")
GROUP = "zencache.hooks"
BUILTIN = {
    "mlflow": "zencache.integrations.mlflow:MLflowHook",
    "wandb": "zencache.integrations.wandb:WandbHook",
}
DISABLE_PLUGINS = "ZENCACHE_DISABLE_HOOK_PLUGINS"


# --- entry points ----------------------------------------------------------------------------


class EntryPoint:
    __slots__ = ("distribution", "name", "value")

    def __init__(self, name: str, value: str, distribution: str) -> None:
        self.name = name
        self.value = value
        self.distribution = distribution

    def __repr__(self) -> str:
        return f"EntryPoint({self.name!r}, {self.value!r}, {self.distribution!r})"


_scanned: dict[tuple[tuple[str, int], ...], list[EntryPoint]] = {}


def entry_points() -> list[EntryPoint]:
    """The `zencache.hooks` entry points of the installed distributions, by name; the
    first distribution on sys.path wins a name, as importlib.metadata's does. The
    scan is redone when sys.path or a folder on it changes (a package installed)."""
    stamp = []
    for entry in sys.path:
        try:
            stamp.append((entry, os.stat(entry or ".").st_mtime_ns))
        except OSError:
            stamp.append((entry, -1))
    memo_key = tuple(stamp)
    found = _scanned.get(memo_key)
    if found is None:
        found = _scanned[memo_key] = _scan()
    return found


def _scan() -> list[EntryPoint]:
    by_name: dict[str, EntryPoint] = {}
    for dist in installed():
        text = dist.read_text("entry_points.txt")
        if not text or GROUP not in text:
            continue
        folder = os.path.basename(dist.folder)
        for name, value in _section(text, GROUP):
            by_name.setdefault(name, EntryPoint(name, value, folder))
    return [by_name[name] for name in sorted(by_name)]


def _section(text: str, group: str) -> Iterable[tuple[str, str]]:
    """`name = value` lines of one [group] of an entry_points.txt (an INI file)."""
    inside = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            inside = line[1:-1].strip() == group
            continue
        if inside:
            name, sep, value = line.partition("=")
            if sep:  # `module:attr [extra]`: the extras name optional dependencies
                yield name.strip(), value.partition("[")[0].strip()


def _plugins_disabled() -> set[str] | None:
    """None: all enabled; an empty set: all disabled; else the names disabled."""
    text = os.environ.get(DISABLE_PLUGINS, "").strip()
    if not text or text.lower() in ("0", "false", "no", "off"):
        return None
    if text.lower() in ("1", "true", "yes", "on", "all", "*"):
        return set()
    return {part.strip() for part in text.split(",") if part.strip()}


# --- resolving names -------------------------------------------------------------------------


def load_reference(reference: str, what: str) -> Any:
    """The object `module:attribute` (or `module.attribute`) names."""
    module_name, colon, attribute = reference.partition(":")
    if not colon:
        module_name, _, attribute = reference.rpartition(".")
    if not module_name or not attribute:
        raise UsageError(
            f"{what} {reference!r} is not 'module:attribute'; name a built-in hook "
            f"({', '.join(sorted(BUILTIN))}), an installed entry point, or 'package.module:Hook'"
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(
            f"{what} {reference!r}: cannot import {module_name!r} ({exc}); install it or fix "
            "the name"
        ) from exc
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError(
                f"{what} {reference!r}: module {module_name!r} has no attribute {attribute!r}"
            ) from None
    return obj


def _instance(obj: Any) -> Any:
    return obj() if inspect.isclass(obj) else obj


def resolve(spec: Any, plugins: list[EntryPoint] | None = None) -> tuple[str, Any]:
    """A (label, hook object) from a name or an object."""
    if not isinstance(spec, str):
        if inspect.isclass(spec):
            spec = spec()
        return _label(spec), spec
    name = spec.strip()
    if name in BUILTIN:
        return name, _instance(load_reference(BUILTIN[name], f"hook {name!r}"))
    for ep in plugins if plugins is not None else entry_points():
        if ep.name == name:
            return name, _instance(load_reference(ep.value, f"entry point {name!r}"))
    if ":" not in name and "." not in name:
        raise UsageError(
            f"unknown hook {name!r}; name a built-in hook ({', '.join(sorted(BUILTIN))}), an "
            f"entry point of group {GROUP!r}, or an object as 'package.module:Hook'"
        )
    return name, _instance(load_reference(name, "hook"))


def _label(hook: Any) -> str:
    cls = type(hook)
    return f"{cls.__module__}:{cls.__qualname__}"


# --- calling ----------------------------------------------------------------------------------


class _Method:
    __slots__ = ("fn", "label", "names")

    def __init__(self, label: str, fn: Callable[..., Any], names: frozenset[str] | None) -> None:
        self.label = label
        self.fn = fn
        self.names = names  # None: it takes **kwargs, so every field


def _accepted(label: str, method: str, fn: Callable[..., Any]) -> frozenset[str] | None:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None  # a builtin or C callable: pass everything
    names = set()
    for p in signature.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            return None
        if p.kind is p.POSITIONAL_ONLY and p.default is p.empty:
            raise UsageError(
                f"hook {label}: {method} has a positional-only parameter {p.name!r}; hooks "
                "are called with keyword arguments only, so accept `**kwargs` or name the "
                "fields you need"
            )
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            names.add(p.name)
    return frozenset(names)


class Hooks:
    """The hooks of one run, with what each method accepts worked out once."""

    def __init__(self, hooks: list[tuple[str, Any]], *, strict: bool = False) -> None:
        self.labels = [label for label, _ in hooks]
        self.objects = [hook for _, hook in hooks]
        self.strict = strict
        self.methods: dict[str, list[_Method]] = {m: [] for m in METHODS}
        for label, hook in hooks:
            found = False
            for method in METHODS:
                fn = getattr(hook, method, None)
                if fn is None:
                    continue
                if not callable(fn):
                    raise UsageError(f"hook {label}: {method} is not callable")
                found = True
                self.methods[method].append(_Method(label, fn, _accepted(label, method, fn)))
            if not found:
                raise UsageError(
                    f"hook {label} has none of {', '.join(METHODS)}; give it at least one "
                    "of these methods"
                )
        self._reported: set[str] = set()
        self.errors: list[tuple[str, str, BaseException]] = []  # strict mode's failures
        self._deferred: Warning | None = None  # a report the warnings filter made an error

    def __bool__(self) -> bool:
        return bool(self.objects)

    def wants(self, method: str) -> bool:
        return bool(self.methods[method])

    def call(self, method: str, **fields: Any) -> None:
        for m in self.methods[method]:
            names = m.names
            kwargs = fields if names is None else {k: fields[k] for k in names & fields.keys()}
            try:
                m.fn(**kwargs)
            except Exception as exc:
                self._failed(m.label, method, exc)

    def _failed(self, label: str, method: str, exc: Exception) -> None:
        log.debug("hook %s: %s raised", label, method, exc_info=exc)
        if self.strict:
            self.errors.append((label, method, exc))
            if method == "on_run_start":
                self.raise_errors()
            return
        if label in self._reported:
            return
        self._reported.add(label)
        message = (
            f"hook {label}: {method} raised {type(exc).__name__}: {exc}; the run goes on and "
            "its cache entries are kept (later failures of this hook in this run are not "
            "reported; run(strict_hooks=True) makes a hook failure fail the run)"
        )
        try:
            warnings.warn(message, HookFailedWarning, stacklevel=3)
        except Warning as raised:  # the warnings filter says "error": raise it at the end
            if self._deferred is None:
                self._deferred = raised

    def raise_errors(self) -> None:
        """After the run is recorded: strict mode's first failure, or a report that the
        warnings filter turned into an error."""
        if self.errors:
            label, method, exc = self.errors[0]
            more = f" ({len(self.errors) - 1} more hook failure(s))" if len(self.errors) > 1 else ""
            raise HookError(
                f"hook {label}: {method} raised {type(exc).__name__}: {exc}{more}; the run's "
                "cache entries are kept; fix the hook, or run without strict_hooks to go on "
                "despite it",
                hook=label,
                method=method,
            ) from exc
        if self._deferred is not None:
            deferred, self._deferred = self._deferred, None
            raise deferred


# --- dispatching the run's events ------------------------------------------------------------

_ENDS = (
    EventKind.HIT,
    EventKind.REMOTE_HIT,
    EventKind.STORED,
    EventKind.FAILED,
    EventKind.SKIPPED,
)


class HookDispatch:
    """The run's events as hook calls: RunStarted -> on_run_start; a MISS ->
    on_step_start (cached=False); a hit -> on_step_start (cached=True), then
    on_step_end; STORED, FAILED, SKIPPED -> on_step_end; RunEnded -> on_run_end.
    An interrupted step and a recomputed one call nothing (the four methods keep
    their meaning). What the events do not carry (a step's parameters, metrics,
    context) it reads from the runner."""

    def __init__(self, hooks: Hooks, runner: Runner) -> None:
        self.hooks = hooks
        self.runner = runner
        self._replayed: dict[str, tuple[StepLog, str]] = {}  # cached step -> its log, producer

    def __call__(self, event: Event) -> None:
        if isinstance(event, CacheEvent):
            kind = event.kind
            if kind is EventKind.MISS:
                self._step_started(event, cached=False)
            elif kind in _ENDS:
                if event.source:
                    self._step_started(event, cached=True)
                self._step_ended(event)
        elif isinstance(event, RunStarted):
            self._run_started(event)
        elif isinstance(event, RunEnded):
            self._run_ended(event)

    def _run_started(self, event: RunStarted) -> None:
        if self.hooks.wants("on_run_start"):
            self.hooks.call(
                "on_run_start",
                run_id=event.run_id,
                pipeline=event.pipeline,
                params=dict(event.params),
                steps=list(event.steps),
                executor=event.executor,
                cache_dir=event.cache_dir,
                target=event.target,
                started=event.started,
            )

    def _step_started(self, event: CacheEvent, *, cached: bool) -> None:
        if not self.hooks.wants("on_step_start"):
            return
        runner = self.runner
        ps = runner.planned[event.step]
        status = "replayed" if cached else "executing"
        with activated(runner.step_context(ps, event.key, status)):
            self.hooks.call(
                "on_step_start",
                run_id=runner.run_id,
                pipeline=runner.dag.pipeline,
                step=event.step,
                step_identity=ps.step.identity,
                key=event.key,
                params=dict(ps.invocation.params),
                cached=cached,
                source=event.source or None,
                upstream=list(ps.invocation.upstream),
            )

    def _step_ended(self, event: CacheEvent) -> None:
        if not self.hooks.wants("on_step_end"):
            return
        runner = self.runner
        ps = runner.planned[event.step]
        status = event.status
        cached = status == "cached"
        produced_by = runner.run_id if status == "executed" else ""
        logged = runner.logs.get(event.step) if status == "executed" else None
        if cached:
            logged, produced_by = self.replayed_log(event.key)
            self._replayed[event.step] = (logged, produced_by)
        logged = logged or StepLog()
        context = runner.step_context(ps, event.key, "replayed" if cached else "executing")
        context.log = logged
        with activated(context):
            self.hooks.call(
                "on_step_end",
                run_id=runner.run_id,
                pipeline=runner.dag.pipeline,
                step=event.step,
                step_identity=ps.step.identity,
                status=status,
                source=event.source or None,
                key=event.key,
                duration=event.duration,
                params=dict(ps.invocation.params),
                metrics=dict(logged.metrics),
                metric_history={n: list(p) for n, p in logged.series().items()},
                metadata=dict(logged.metadata),
                outputs=dict(event.outputs),
                error=event.error
                or (runner.results[event.step].error if status == "skipped" else ""),
                produced_by=produced_by,
            )

    def replayed_log(self, key: str) -> tuple[StepLog, str]:
        """What the execution behind a cache entry logged, and the run that executed it."""
        runner = self.runner
        known = runner.logs_by_key.get(key)
        if known is not None:
            return known, runner.run_id
        try:
            record = runner.index.get_step(key)
        except Exception as exc:  # a damaged entry: the hit stands, its metrics are lost
            log.warning("cannot read the entry of step key %s for its metrics: %s", key, exc)
            record = None
        if record is None:
            return StepLog(), ""
        found = StepLog.from_json(
            {
                "metrics": record.metrics,
                "history": record.metric_history,
                "metadata": record.metadata,
            }
        )
        return found, record.run_id

    def _run_ended(self, event: RunEnded) -> None:
        if not self.hooks.wants("on_run_end"):
            return
        metrics = {name: dict(sl.metrics) for name, sl in self.runner.logs.items() if sl.metrics}
        for name, (replayed, _) in self._replayed.items():
            if replayed.metrics:
                metrics[name] = dict(replayed.metrics)
        self.hooks.call(
            "on_run_end",
            run_id=event.run_id,
            pipeline=event.pipeline,
            status=event.status,
            duration=event.duration,
            steps=dict(event.steps),
            metrics=metrics,
            run=event.run,
        )


def collect(
    given: Iterable[Any] | None,
    *,
    strict: bool = False,
    project: Iterable[str] = (),
) -> Hooks | None:
    """The run's hooks (entry points, then the project's, then `given`), or None when
    there are none: the run then pays nothing for hooks."""
    plugins = entry_points()
    disabled = _plugins_disabled()
    chosen: list[tuple[str, Any]] = []
    seen: set[str] = set()
    if disabled is None or disabled:
        for ep in plugins:
            if disabled and ep.name in disabled:
                continue
            chosen.append(
                (ep.name, _instance(load_reference(ep.value, f"entry point {ep.name!r}")))
            )
            seen.add(ep.name)
    for spec in [*project, *(given or ())]:
        if isinstance(spec, str) and spec.strip() in seen:
            continue  # named, and already called as an installed plugin
        label, hook = resolve(spec, plugins)
        if isinstance(spec, str):
            seen.add(spec.strip())
        chosen.append((label, hook))
    if not chosen:
        return None
    return Hooks(chosen, strict=strict)
