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

Imports config, errors and the distribution scan (entry points read as text,
memoized per process and sys.path, so a run pays a few stats for them).
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import HookError, HookFailedWarning, UsageError
from ..fingerprint.distributions import installed

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
