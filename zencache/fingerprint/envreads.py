"""Environment variables a function reads by literal name, found in its bytecode.

`os.environ["X"]`, `os.environ.get("X")`, `os.getenv("X")` and `"X" in os.environ`
(also through `from os import environ, getenv`, a closure, or an import inside
the function) name X: its value enters the step's key at plan time
(inputs/external.py), never the memoized fingerprint. A read whose name is
computed, or a use of the whole environment (`os.environ.items()`, `dict(os.environ)`,
passing it on), is returned as a note: the fingerprint reports it as untracked.
Writes (`os.environ["X"] = v`, `del`, `update`, `pop`, `setdefault`) are not reads.
Imports nothing of ours.
"""

from __future__ import annotations

import builtins
import dis
import os
import sys
import types
from typing import Any

_CHAIN_OPS = frozenset({"LOAD_ATTR", "LOAD_METHOD"})
_FAST_OPS = frozenset({"LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_FAST_BORROW"})
_HEAD_OPS = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "LOAD_DEREF", "LOAD_CLASSDEREF"}) | _FAST_OPS
_SKIP = frozenset({"EXTENDED_ARG", "CACHE", "NOP"})
_READ_OPS = frozenset({"BINARY_SUBSCR", "BINARY_OP"})
_WRITE_OPS = frozenset({"STORE_SUBSCR", "DELETE_SUBSCR"})
_GETTERS = frozenset({"get", "__getitem__"})
_WRITERS = frozenset({"update", "pop", "setdefault", "clear", "__setitem__", "__delitem__"})
_WRITERS |= frozenset({"putenv", "unsetenv"})


def env_reads(fn: types.FunctionType) -> tuple[set[str], list[str]]:
    """(names read literally, notes on reads zencache cannot follow) of fn's code,
    including code nested in it (comprehensions, inner functions)."""
    names: set[str] = set()
    notes: list[str] = []
    reader = f"{fn.__module__}:{fn.__qualname__}"
    _scan(fn, fn.__code__, names, notes, reader)
    return names, notes


def _scan(
    fn: types.FunctionType,
    code: types.CodeType,
    names: set[str],
    notes: list[str],
    reader: str,
) -> None:
    instructions = [i for i in dis.get_instructions(code) if i.opname not in _SKIP]
    local_imports: dict[str, Any] = {}  # `import os` / `from os import environ` inside fn
    pending_module: Any = None
    for pos, ins in enumerate(instructions):
        op = ins.opname
        if op == "LOAD_CONST" and isinstance(ins.argval, types.CodeType):
            _scan(fn, ins.argval, names, notes, reader)
            continue
        if op == "IMPORT_NAME":
            pending_module = sys.modules.get(str(ins.argval).partition(".")[0])
            if ins.argval in ("os", "posix", "nt"):
                pending_module = os
            continue
        if op == "IMPORT_FROM" and pending_module is not None:
            nxt = instructions[pos + 1] if pos + 1 < len(instructions) else None
            if nxt is not None and nxt.opname in ("STORE_FAST", "STORE_DEREF", "STORE_NAME"):
                local_imports[nxt.argval] = getattr(pending_module, str(ins.argval), None)
            continue
        if op in ("STORE_FAST", "STORE_DEREF", "STORE_NAME") and pending_module is not None:
            if instructions[pos - 1].opname == "IMPORT_NAME":  # `import os` (as x)
                local_imports[ins.argval] = pending_module
                pending_module = None
            continue  # after IMPORT_FROM: `from os import a, b` stores each in turn
        if op == "POP_TOP":
            pending_module = None  # the end of a `from ... import` statement
            continue
        if op not in _HEAD_OPS:
            continue
        obj = _head(fn, op, ins.argval, local_imports)
        end = pos + 1
        attrs: list[str] = []
        while end < len(instructions) and instructions[end].opname in _CHAIN_OPS:
            attrs.append(str(instructions[end].argval))
            end += 1
        what = _resolve(obj, attrs)
        if what is None:
            continue
        nxt = instructions[end] if end < len(instructions) else None
        prev = instructions[pos - 1] if pos else None
        nxt = _as_constant(fn, nxt, local_imports)
        _classify(what, nxt, instructions, end, prev, names, notes, reader)


class _Constant:
    """A name the code loads whose value is a string now (`os.environ.get(SETTING)`
    with a module-level SETTING = "X"): read as the literal it holds; the
    fingerprint tracks the constant itself."""

    opname = "LOAD_CONST"

    def __init__(self, value: str) -> None:
        self.argval = value


def _as_constant(fn: types.FunctionType, ins: Any, local_imports: dict[str, Any]) -> Any:
    if ins is None or ins.opname not in ("LOAD_GLOBAL", "LOAD_NAME", "LOAD_DEREF"):
        return ins
    value = _head(fn, ins.opname, ins.argval, local_imports)
    return _Constant(value) if isinstance(value, str) else ins


def _head(fn: types.FunctionType, op: str, name: Any, local_imports: dict[str, Any]) -> Any:
    if op in _FAST_OPS:
        return local_imports.get(name)
    if op in ("LOAD_DEREF", "LOAD_CLASSDEREF"):
        freevars = fn.__code__.co_freevars
        if name in freevars and fn.__closure__ is not None:
            try:
                return fn.__closure__[freevars.index(name)].cell_contents
            except ValueError:
                return None
        return local_imports.get(name)
    if name in local_imports:
        return local_imports[name]
    if name in fn.__globals__:
        return fn.__globals__[name]
    return vars(builtins).get(name)


def _resolve(obj: Any, attrs: list[str]) -> tuple[str, str] | None:
    """("environ", method or "") or ("getenv", "") when obj.attrs reaches them."""
    for i, attr in enumerate(attrs):
        if obj is os.environ:
            return ("environ", attr) if i == len(attrs) - 1 else ("environ", "?")
        if not isinstance(obj, types.ModuleType):
            return None
        obj = getattr(obj, attr, None)
    if obj is os.environ:
        return "environ", ""
    if obj is os.getenv:
        return "getenv", ""
    return None


def _classify(
    what: tuple[str, str],
    nxt: Any,
    instructions: list[Any],
    end: int,
    prev: Any,
    names: set[str],
    notes: list[str],
    reader: str,
) -> None:
    kind, method = what
    literal = nxt is not None and nxt.opname == "LOAD_CONST" and isinstance(nxt.argval, str) and nxt
    after = instructions[end + 1] if end + 1 < len(instructions) else None
    if kind == "getenv" or method in _GETTERS:
        if literal:
            names.add(nxt.argval)
        else:
            notes.append(
                f"{reader} reads an environment variable whose name is computed "
                "(os.environ / os.getenv with a non-literal name): list it in @step(env=...)"
            )
        return
    if method in _WRITERS:
        return
    if method == "":
        if literal and after is not None and after.opname in _READ_OPS:
            names.add(nxt.argval)
            return
        if literal and after is not None and after.opname in _WRITE_OPS:
            return
        if (
            nxt is not None
            and nxt.opname == "CONTAINS_OP"
            and prev is not None
            and prev.opname == "LOAD_CONST"
            and isinstance(prev.argval, str)
        ):
            names.add(prev.argval)
            return
        if nxt is not None and nxt.opname in _WRITE_OPS:
            return  # os.environ[name] = value, with the value loaded before
        if nxt is not None and after is not None and after.opname in _WRITE_OPS:
            return  # os.environ[name] = value, with a computed name
    notes.append(
        f"{reader} reads the environment in a way zencache cannot follow "
        f"(os.environ{'.' + method if method else ''} without a literal name): "
        "list the variables it depends on in @step(env=...)"
    )
