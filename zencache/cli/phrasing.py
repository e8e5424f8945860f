"""The words of `cache status` and `explain`: the one place their data becomes English.

inspection/status.py returns enums and structured changes; this module phrases
them for the terminal and for the documented `--json` shapes (whose reasons and
change messages are these same sentences). Reads sys.modules and the current
directory to name things as the user sees them (a helper, a class, a file path
relative to here). Imports the status model; nothing else of ours.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from ..inspection.status import (
    Change,
    ChangeKind,
    ChangeType,
    Explanation,
    Reason,
    StepStatus,
)
from .external import (
    count_files,
    describe_path,
    env_text,
    folder_facts,
    folder_name,
    size_text,
    some,
)

EARLY_CUTOFF = "early cutoff may still spare this step if it produces identical data"
_VALUE_REPR_LIMIT = 60


# --- the documented JSON shapes ---------------------------------------------------------------


def status_json(status: StepStatus) -> dict[str, Any]:
    """The documented shape of `cache status --json`: step, status, reasons, and
    `untracked` when the fingerprint cannot see something the step reads, and
    `"source": "remote"` for a step cached on the remote only."""
    shape: dict[str, Any] = {
        "step": status.step,
        "status": str(status.status),
        "reasons": reason_lines(status.reasons),
    }
    if status.untracked:
        shape["untracked"] = list(status.untracked)
    if status.source == "remote":
        shape["source"] = "remote"
    return shape


def change_json(change: Change) -> dict[str, Any]:
    return {
        "kind": str(change.kind),
        "name": change.name,
        "before": change.before,
        "after": change.after,
        "message": change_text(change),
    }


def explanation_json(e: Explanation) -> dict[str, Any]:
    """The shape of `explain --json`."""
    return {
        "pipeline": e.pipeline,
        "step": e.step,
        "identity": e.identity,
        "status": str(e.status.status),
        "reasons": reason_lines(e.status.reasons),
        "key": e.status.key,
        "static": e.static,
        "code": e.code,
        "params": e.params,
        "ignored": list(e.ignored),
        "outputs": list(e.outputs),
        "inputs": e.inputs,
        "upstream": list(e.upstream),
        "previous": e.previous,
        "changes": [change_json(c) for c in e.changes],
        "untracked": list(e.untracked),
        "external": e.external,
    }


# --- sentences --------------------------------------------------------------------------------


def reason_lines(reasons: tuple[Reason, ...]) -> list[str]:
    return [reason_text(r) for r in reasons]


def reason_text(reason: Reason) -> str:
    """One line of `cache status`: inputs of one upstream that changed alike share it."""
    change = reason.change
    grouped = change.kind == ChangeKind.INPUT and change.upstream
    if grouped and change.type in (ChangeType.UPSTREAM_RERUNS, ChangeType.CHANGED):
        names = reason.names
        label = f"input {names[0]}" if len(names) == 1 else f"inputs {', '.join(names)}"
        if change.type == ChangeType.UPSTREAM_RERUNS:
            return f"{label}: upstream {change.upstream} will rerun ({EARLY_CUTOFF})"
        return f"{label}: content changed (from {change.upstream})"
    return change_text(change)


def change_text(change: Change) -> str:
    """One change, as `explain` lists it."""
    phrase = _PHRASES[change.kind]
    return phrase(change)


def _identity(c: Change) -> str:
    return f"code changed: {c.step} now runs {c.after} (was {c.before})"


def _code(c: Change) -> str:
    if c.name == "version":
        old = (c.before or "").removeprefix("version:")
        new = (c.after or "").removeprefix("version:")
        if c.type == ChangeType.PINNED:
            return f"code pinned: version {new} (was fingerprinted from its source)"
        if c.type == ChangeType.UNPINNED:
            return f"code no longer pinned (was version {old}): fingerprinted from source"
        return f"code pinned: version {old} -> {new}"
    if c.type == ChangeType.FORMAT_CHANGED:
        before, after = c.before or "", c.after or ""
        return (
            f"code changed: {c.step} (fingerprint {before[:12]} -> {after[:12]}; "
            "the fingerprint format changed)"
        )
    return f"code changed: {c.step} ({describe_part(c.name, c.before, c.after, c.own_code)})"


def _parameter(c: Change) -> str:
    if c.type == ChangeType.ADDED:
        return f"parameter {c.name}: new, = {c.after}"
    if c.type == ChangeType.IGNORED:
        return f"parameter {c.name}: now ignored (was {c.before})"
    if c.type == ChangeType.REMOVED:
        return f"parameter {c.name}: removed (was {c.before})"
    if c.after == c.before:
        return f"parameter {c.name}: value changed (its repr, {c.after}, did not)"
    return f"parameter {c.name}: {c.before} -> {c.after}"


def _output(c: Change) -> str:
    if not c.name:
        return f"outputs changed: ({c.before}) -> ({c.after})"
    old_cls, _, old_version = (c.before or "").rpartition("@")
    new_cls, _, new_version = (c.after or "").rpartition("@")
    if old_cls == new_cls:
        detail = f"{_short_class(new_cls)} version {old_version} -> {new_version}"
    elif _short_class(old_cls) != _short_class(new_cls):
        detail = f"{_short_class(old_cls)}@{old_version} -> {_short_class(new_cls)}@{new_version}"
    else:  # same class name, another module: the short forms would read alike
        detail = f"{c.before} -> {c.after}"
    return f"materializer changed: output {c.name} ({detail})"


def _input(c: Change) -> str:
    if c.type == ChangeType.REMOVED:
        return f"input {c.name}: no longer an input"
    if c.type == ChangeType.UPSTREAM_RERUNS:
        return f"input {c.name}: upstream {c.upstream} will rerun ({EARLY_CUTOFF})"
    if c.type == ChangeType.ADDED:
        return f"input {c.name}: new (from {c.source})"
    return f"input {c.name}: content changed"


def _path(c: Change) -> str:
    """`file data/train.csv changed (12.1 MB -> 12.3 MB)`, `3 files changed in data/images/
    (a.png, b.png, c.png)`, `file data/train.csv (12.1 MB) is missing now`, ..."""
    was, now = dict(c.was), dict(c.now)
    if c.files:
        folder = folder_name(now.get("path") or was.get("path", ""))
        verb = {
            ChangeType.CHANGED: "changed in",
            ChangeType.ADDED: "added to",
            ChangeType.REMOVED: "removed from",
            ChangeType.RENAMED: "renamed in",
        }[c.type]
        return f"{count_files(len(c.files))} {verb} {folder} ({some(c.files)})"
    if c.type == ChangeType.ADDED:
        return f"{describe_path(now)}: now tracked by content"
    if c.type == ChangeType.REMOVED:
        return f"path {was.get('path', c.name)}: no longer an input"
    path, before, after = now.get("path", ""), was.get("kind"), now.get("kind")
    if before == after == "file":
        if was.get("size") == now.get("size"):
            return f"file {path} changed ({size_text(now.get('size', 0))}, same size)"
        return f"file {path} changed ({size_text(was.get('size', 0))} -> {size_text(now.get('size', 0))})"
    if after == "missing":
        return f"{describe_path(was)} is missing now"
    if before == "missing":
        return f"{describe_path(now)} exists now (it was missing)"
    if before == after == "dir":
        facts = f"{folder_facts(was)} -> {folder_facts(now)}"
        if folder_facts(was) == folder_facts(now):
            facts = "its sub-folders"
        return f"folder {folder_name(path)} changed ({facts})"
    return f"{path}: was {describe_path(was)}, now {describe_path(now)}"


def _env(c: Change) -> str:
    """`env MODE: "fast" -> "full"`, with `unset` for a variable that is not set."""
    was, now = dict(c.was), dict(c.now)
    if c.type == ChangeType.REMOVED:
        return f"env {c.name}: no longer read"
    if c.type == ChangeType.ADDED:
        return f"env {c.name}: now in the key (= {env_text(now)})"
    if was.get("redacted") or now.get("redacted"):
        return f"env {c.name}: changed (its value is not recorded: it looks like a secret)"
    return f"env {c.name}: {env_text(was)} -> {env_text(now)}"


def _cache(c: Change) -> str:
    if c.type == ChangeType.ALWAYS_EXECUTES:
        return "cache=False: always executes"
    if c.type == ChangeType.ENTRY_GONE:
        return (
            f"its last result (key {(c.before or '')[:12]}) is no longer in the cache "
            "(removed by cache gc, clear or verify --repair)"
        )
    return "the cache key format changed since its last run; it will be recomputed"


_PHRASES = {
    ChangeKind.IDENTITY: _identity,
    ChangeKind.CODE: _code,
    ChangeKind.PARAMETER: _parameter,
    ChangeKind.OUTPUT: _output,
    ChangeKind.INPUT: _input,
    ChangeKind.PATH: _path,
    ChangeKind.ENV: _env,
    ChangeKind.CACHE: _cache,
}


# --- readable names for fingerprint parts ----------------------------------------------------


def describe_part(part: str, old: str | None, new: str | None, own: bool = False) -> str:
    """`code:<module>:<qualname>` -> "helper `fit_model` in models.py", and so on.
    `own`: the part is the step function's own code."""
    kind, _, rest = part.partition(":")
    if kind == "python":
        return f"Python {old} -> {new}" if old and new else f"Python {new or old}"
    if kind == "dist":
        if old and new:
            if _version(old) == _version(new):  # the same version under another name
                return f"package {rest} {old} -> {new}"
            return f"package {rest} {_version(old)} -> {_version(new)}"
        return f"now uses package {new}" if new else f"no longer uses package {old}"
    module, _, qualname = rest.partition(":")
    if kind == "code":
        if own:
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
