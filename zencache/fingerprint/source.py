"""Source text and code digests: one parse (and compile) per file, docstrings
dropped, defs and classes indexed so a function's normalized AST is used only
when the file still compiles to the code that runs; otherwise its bytecode digest.
Imports only hashing from zencache and nothing from this package.
"""

from __future__ import annotations

import ast
import copy
import linecache
import logging
import sys
import types
from dataclasses import dataclass
from typing import Any

from ..hashing import Hasher, hash_value

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _SourceFile:
    lines: list[str]  # the linecache entry this was built from
    defs: dict[tuple[int, str], ast.FunctionDef | ast.AsyncFunctionDef]  # (first line, name)
    codes: dict[tuple[int, str], types.CodeType]  # the same text, compiled
    classes: dict[str, ast.ClassDef | None]  # qualname -> node; None when defined twice


_SOURCES: dict[str, _SourceFile | None] = {}


def _source_file(filename: str, module_globals: Any, refresh: bool = False) -> _SourceFile | None:
    """The parsed text of a file, read once per process (and again on `refresh`)."""
    if refresh:
        linecache.checkcache(filename)
    elif filename in _SOURCES:
        return _SOURCES[filename]
    lines = linecache.getlines(filename, module_globals)
    cached = _SOURCES.get(filename)
    if cached is not None and cached.lines is lines:
        return cached
    source = None
    if lines:
        try:
            source = _SourceFile(lines, {}, {}, {})
            tree = ast.parse("".join(lines), filename)
            module_code = compile(tree, filename, "exec", dont_inherit=True)
        except (SyntaxError, ValueError) as exc:  # edited into a broken state, or not Python
            log.debug("cannot parse %s (%s): hashing bytecode instead", filename, exc)
            source = None
        else:
            _index_codes(module_code, source.codes)
            _index_defs(tree.body, "", source)
    _SOURCES[filename] = source
    return source


def _index_codes(code: types.CodeType, out: dict[tuple[int, str], types.CodeType]) -> None:
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            out[(const.co_firstlineno, const.co_name)] = const
            _index_codes(const, out)


def _index_defs(statements: list[ast.stmt], prefix: str, out: _SourceFile) -> None:
    """Drop every docstring, and index defs by first line and classes by qualname."""
    for statement in statements:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            body = statement.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                statement.body = body[1:] or [ast.Pass()]
            qualname = prefix + statement.name
            if isinstance(statement, ast.ClassDef):
                out.classes[qualname] = None if qualname in out.classes else statement
                _index_defs(statement.body, qualname + ".", out)
            else:
                # co_firstlineno is the line of the first decorator
                first = min([statement.lineno] + [d.lineno for d in statement.decorator_list])
                out.defs[(first, statement.name)] = statement
                _index_defs(statement.body, qualname + ".<locals>.", out)
            continue
        for name in ("body", "orelse", "finalbody"):
            nested = getattr(statement, name, None)
            if isinstance(nested, list):
                _index_defs(nested, prefix, out)
        for clause in (*getattr(statement, "handlers", ()), *getattr(statement, "cases", ())):
            _index_defs(clause.body, prefix, out)


def function_dump(fn: types.FunctionType) -> str | None:
    """ast.dump of fn's source without docstrings and without its own decorators,
    or None when no source is known to be the code that runs."""
    code = fn.__code__
    if code.co_name == "<lambda>" or code.co_filename.startswith("<"):
        # A lambda shares its line with whatever surrounds it; exec'd code has no file.
        return None
    key = (code.co_firstlineno, code.co_name)
    for refresh in (False, True):
        source = _source_file(code.co_filename, fn.__globals__, refresh)
        # The file compiles to this very code object only if it still holds the
        # source the function was made from; otherwise (edited since import) the
        # bytecode is the only faithful account of what runs.
        if source is not None and source.codes.get(key) == code:
            statement = source.defs[key]
            # The @step line (or any decorator) is not the function's code; what
            # a decorator wraps a helper in is reached through its global name.
            undecorated = copy.copy(statement)
            undecorated.decorator_list = []
            return ast.dump(undecorated, annotate_fields=True, include_attributes=False)
    log.debug("no source matches the code of %s: hashing its bytecode", fn.__qualname__)
    return None


@dataclass(frozen=True, slots=True)
class ClassHeader:
    """A class statement without the functions and classes defined in its body
    (each is a member, hashed on its own), and what those defs were."""

    dump: str  # ast.dump of the rest: decorators, bases, keywords, assignments
    plain_defs: frozenset[str]  # defs whose decorators only say what kind of member they are
    names: frozenset[str]  # the names and strings the rest mentions


# Decorators that make a method a static/class method or a property and nothing
# else: what such a member does is all in its own code.
_KIND_DECORATORS = frozenset(
    {"staticmethod", "classmethod", "property", "cached_property", "setter", "getter", "deleter"}
)


def class_header(cls: type) -> ClassHeader | None:
    module = sys.modules.get(str(cls.__module__))
    filename = getattr(module, "__file__", None)
    if not isinstance(filename, str):
        return None
    # A reloaded module's classes are new objects, and their file may be new too.
    source = _source_file(filename, vars(module), refresh=True)
    statement = source.classes.get(cls.__qualname__) if source is not None else None
    if statement is None:
        return None
    header = copy.copy(statement)
    header.body = []
    plain: set[str] = set()
    fancy: set[str] = set()
    for item in statement.body:
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
            kinds = [_decorator_name(d) for d in item.decorator_list]
            (plain if all(k in _KIND_DECORATORS for k in kinds) else fancy).add(item.name)
        elif not isinstance(item, ast.ClassDef):
            header.body.append(item)
    names: set[str] = set()
    for sub in ast.walk(header):
        if isinstance(sub, ast.Name):
            names.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            names.add(sub.attr)
        elif isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            names.add(sub.value)
    return ClassHeader(
        ast.dump(header, annotate_fields=True, include_attributes=False),
        frozenset(plain - fancy),
        frozenset(names),
    )


def _decorator_name(decorator: ast.expr) -> str:
    if isinstance(decorator, ast.Name):
        return decorator.id
    if isinstance(decorator, ast.Attribute):
        return decorator.attr
    return ""


def code_digest(code: types.CodeType) -> str:
    hasher = Hasher("zencache/bytecode/v1")
    hasher.raw(b"c", code.co_code)
    hasher.raw(b"x", getattr(code, "co_exceptiontable", b""))
    hasher.text(f"{code.co_argcount}/{code.co_posonlyargcount}/{code.co_kwonlyargcount}")
    # Parameter names are part of the interface (`f(x=1)` fails on `lambda y: y`).
    arguments = code.co_argcount + code.co_kwonlyargcount
    arguments += bool(code.co_flags & 0x04) + bool(code.co_flags & 0x08)  # *args, **kwargs
    hasher.text("params:" + ",".join(code.co_varnames[:arguments]))
    hasher.text(f"names:{len(code.co_names)}")
    for name in code.co_names:
        hasher.text(name)
    hasher.text(f"consts:{len(code.co_consts)}")
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            hasher.text("code").text(code_digest(const))
        elif const is Ellipsis:
            hasher.text("...")
        else:
            # Only literals reach co_consts: if one cannot be hashed, that is our bug.
            hasher.text(hash_value(const))
    return hasher.hexdigest()
