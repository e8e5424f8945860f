"""What a step invocation reads from outside the pipeline, as key ingredients.

Paths: every `pathlib.PurePath`, `File` or `Dir` in a parameter's value (also in
lists, tuples and dict values), and every `str` given to a parameter annotated
`Path`, `File` or `Dir` (or a list or tuple of them), unless the step lists the
parameter in `by_name=`. Each enters the key as an `External` named
`path:<param>` (`path:<param>[i]` inside a container) whose digest is over what
the path names now (trees.py). Its text was already in the parameter's digest.
Environment variables: `env:<NAME>`, the value or "unset". Imports hashing,
errors and this package only.
"""

from __future__ import annotations

import collections.abc
import json
import os
import pathlib
import re
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..hashing import Hasher
from .trees import DIR, FILE, LINK, MISSING, Entry, InputPathError, StatMemo, content_of
from .types import Dir, File

PATH_PREFIX, ENV_PREFIX = "path:", "env:"
# Values of variables named like this are not written into the index (a token in
# the clear in every step entry); their digest still enters the key.
_SECRET = re.compile(r"TOKEN|SECRET|PASSW|CREDENTIAL|API_?KEY|PRIVATE", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class External:
    """One thing a step reads from outside: its key ingredient and what is recorded."""

    name: str  # path:<param>[...] or env:<NAME>
    digest: str  # what enters the key
    record: dict[str, Any]  # kept in the step entry: shown by explain, runs show, lineage
    entries: tuple[Entry, ...] = ()  # a folder's listing, kept in the index under record["digest"]


def step_externals(
    step: Any,
    params: typing.Mapping[str, Any],
    env_names: typing.Iterable[str],
    memo: StatMemo,
    cwd: str,
) -> tuple[External, ...]:
    """The step's path and environment ingredients, sorted by name. Relative paths
    are read against `cwd` (the working directory when the run started)."""
    found: list[External] = []
    options = step.options
    skip = options.ignore | options.by_name
    annotations: dict[str, Any] | None = None
    for name, value in params.items():
        if name in skip or type(value) in _PLAIN:
            continue
        if annotations is None:
            annotations = step.input_types
        for label, given, expect in _paths(value, annotations.get(name), name):
            try:
                found.append(path_external(label, given, expect, memo, cwd))
            except InputPathError as exc:
                raise InputPathError(
                    f"parameter {name!r}: {exc}; make it readable, pass another path, or list "
                    f"{name!r} in by_name= if the step only uses its name"
                ) from exc
    found.extend(env_external(n) for n in sorted(set(env_names)))
    return tuple(sorted(found, key=lambda e: e.name))


def path_external(label: str, given: str, expect: str | None, memo: StatMemo, cwd: str) -> External:
    full = os.path.join(cwd, os.path.expanduser(given))
    content = content_of(full, memo)
    if expect is not None and content.kind in (FILE, DIR) and content.kind != expect:
        marker = "File" if expect == FILE else "Dir"
        other = "Dir" if expect == FILE else "File"
        raise InputPathError(
            f"{given} is a {'folder' if content.kind == DIR else 'file'}, but the parameter "
            f"says zencache.{marker}; use zencache.{other} (or pathlib.Path)"
        )
    h = Hasher("zencache/path/v1").text(content.kind)
    h.text(given if content.kind == MISSING else content.digest)
    record: dict[str, Any] = {"path": given, "kind": content.kind, "digest": content.digest}
    if content.kind in (FILE, DIR):
        record["size"] = content.size
    if content.kind == DIR:
        record["count"] = content.count
    if content.kind == LINK:
        record["target"] = content.digest
    return External(f"{PATH_PREFIX}{label}", h.hexdigest(), record, content.entries)


def env_external(name: str) -> External:
    value = os.environ.get(name)
    h = Hasher("zencache/env/v1")
    digest = (h.text("unset") if value is None else h.text("set").text(value)).hexdigest()
    record: dict[str, Any] = {"name": name, "value": value}
    if value is not None and _SECRET.search(name):
        record = {"name": name, "value": None, "set": True, "redacted": True, "digest": digest}
    return External(f"{ENV_PREFIX}{name}", digest, record)


def moved_since(recorded: dict[str, dict[str, Any]], memo: StatMemo, cwd: str) -> list[str]:
    """What a step entry read from outside that is not the same now: one phrase per
    path or variable (`file data.csv changed since`, `env MODE: "a" -> "b"`)."""
    moved = []
    for name, entry in sorted(recorded.items()):
        if name.startswith(ENV_PREFIX):
            now = env_external(entry.get("name", name[len(ENV_PREFIX) :]))
            if now.record == entry:
                continue
            if entry.get("redacted") or now.record.get("redacted"):
                if entry.get("digest") != now.record.get("digest"):
                    moved.append(f"env {now.record['name']} changed (its value is not recorded)")
                continue
            before, after = (
                "unset" if e.get("value") is None else json.dumps(e["value"], ensure_ascii=False)
                for e in (entry, now.record)
            )
            moved.append(f"env {now.record['name']}: {before} -> {after}")
            continue
        given = entry.get("path", "")
        try:
            now = path_external(name, given, None, memo, cwd)
        except InputPathError as exc:
            moved.append(f"{given} cannot be read now ({exc})")
            continue
        if (now.record["kind"], now.record["digest"]) != (entry.get("kind"), entry.get("digest")):
            kind = {FILE: "file", DIR: "folder"}.get(entry.get("kind", ""), "path")
            state = "is missing now" if now.record["kind"] == MISSING else "changed since"
            moved.append(f"{kind} {given} {state}")
    return moved


# Types that never hold a path: most parameters are these, and skip the walk.
_PLAIN = frozenset({int, float, bool, type(None), bytes, complex})


def _paths(value: Any, annotation: Any, label: str) -> Iterator[tuple[str, str, str | None]]:
    """(label, path text, expected kind or None) of every path in a parameter value."""
    if isinstance(value, File | Dir):
        yield label, str(value), FILE if isinstance(value, File) else DIR
    elif isinstance(value, pathlib.PurePath):
        yield label, os.fspath(value), _marker_kind(annotation)
    elif isinstance(value, str):
        if _is_path_annotation(annotation):
            yield label, value, _marker_kind(annotation)
    elif isinstance(value, list | tuple):
        inner = _element_annotation(annotation)
        for i, item in enumerate(value):
            yield from _paths(item, inner, f"{label}[{i}]")
    elif isinstance(value, dict):
        inner = _value_annotation(annotation)
        for key in sorted(value, key=repr):
            yield from _paths(value[key], inner, f"{label}[{key!r}]")


def _options(annotation: Any) -> tuple[Any, ...]:
    """The types an annotation allows: the members of a union, the type of Annotated."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _options(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        return tuple(t for arg in typing.get_args(annotation) for t in _options(arg))
    return (annotation,)


def _is_path_annotation(annotation: Any) -> bool:
    return any(
        isinstance(t, type) and issubclass(t, pathlib.PurePath | File | Dir)
        for t in _options(annotation)
    )


def _marker_kind(annotation: Any) -> str | None:
    kinds = {FILE if t is File else DIR for t in _options(annotation) if t is File or t is Dir}
    return kinds.pop() if len(kinds) == 1 else None


def _element_annotation(annotation: Any) -> Any:
    for t in _options(annotation):
        args = typing.get_args(t)
        if typing.get_origin(t) in (list, tuple, collections.abc.Sequence) and args:
            return args[0]
    return None


def _value_annotation(annotation: Any) -> Any:
    for t in _options(annotation):
        args = typing.get_args(t)
        if typing.get_origin(t) in (dict, collections.abc.Mapping) and len(args) == 2:
            return args[1]
    return None
