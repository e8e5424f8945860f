"""Code fingerprints of steps: what a function's result depends on, as digests.

Owns the normalized AST of user functions and classes, the walk through everything
they reach (globals, closures, `module.attr`, wrappers, classes), constants by value,
and third-party code by `dist==version`. Imports only hashing and errors from
zencache, and never numpy or any other heavy package at import time.
"""

from __future__ import annotations

import ast
import builtins
import copy
import dis
import enum
import functools
import importlib
import importlib.metadata
import importlib.util
import linecache
import logging
import os
import re
import sys
import sysconfig
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import UnhashableParameterError
from .hashing import Hasher, hash_value

log = logging.getLogger(__name__)

# The AST dump format and the bytecode both change between minor versions, so
# every fingerprint carries the Python minor version, not only those that call
# into the standard library.
PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"


# The names in `parts` are shown to users (cache status, explain) and are stable:
#   code:<module>:<qualname>   a user function or class (its own normalized AST)
#   const:<module>:<NAME>      a module-level constant, by value
#   const:<module>:<qualname>.<name>   a closure variable, or a class attribute
#   const:<module>:<NAME>(args)        the bound arguments of a functools.partial
#   const:<module>:<qualname>(<param>=)  a default value that is not a literal
#   dist:<distribution>        "<distribution>==<version>" of third-party code
#   python                     the minor version, e.g. "3.11" (always present)
@dataclass(frozen=True, slots=True)
class Fingerprint:
    digest: str  # 32 lowercase hex digits, xxh3_128 over the sorted parts
    parts: Mapping[str, str]  # read-only; dict(fp.parts) is JSON-serialisable
    untracked: tuple[str, ...]  # what the fingerprint cannot see, for `explain`

    def __hash__(self) -> int:
        return hash(self.digest)


def fingerprint(fn: Callable[..., Any]) -> Fingerprint:
    """The code fingerprint of `fn` and of everything it reaches; memoized per process."""
    hit = _FINGERPRINTS.get(id(fn))
    if hit is not None and hit[0] is fn:
        return hit[1]
    result = _collect(fn)
    # The strong reference to fn keeps its id from being reused by another object.
    _FINGERPRINTS[id(fn)] = (fn, result)
    return result


_FINGERPRINTS: dict[int, tuple[object, Fingerprint]] = {}


def _main_module_name() -> str:
    """A script run as __main__ is named after its file in part names, so that
    `python flow.py` and `zencache run flow.py:p` agree on every fingerprint."""
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    return os.path.splitext(os.path.basename(main_file))[0] if main_file else "__main__"


# --- where code comes from ---------------------------------------------------------------

_USER, _PYTHON, _ZENCACHE = "user", "python", "zencache"  # or "pkg:<top-level module>"
_SITE_DIRS = frozenset({"site-packages", "dist-packages"})
_ZENCACHE_DIR = os.path.normcase(os.path.dirname(os.path.abspath(__file__)))


def _python_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    dirs = {paths["stdlib"], paths["platstdlib"], os.path.dirname(os.__file__)}
    # A prefix that is a shared root (a system Python in /usr, a Docker image's
    # /usr/local) also holds user projects such as /usr/src/app: only its stdlib
    # directories count there, or edits to that code would go unnoticed.
    shared_roots = {os.path.abspath(p) for p in ("/", "/usr", "/usr/local", "/opt")}
    for prefix in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix):
        if os.path.abspath(prefix) not in shared_roots:
            dirs.add(prefix)
    return tuple(sorted(os.path.normcase(os.path.abspath(d)) for d in dirs))


_PYTHON_DIRS = _python_dirs()


def _under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


@functools.lru_cache(maxsize=4096)
def _file_origin(filename: str) -> str:
    path = os.path.normcase(os.path.abspath(filename))
    if _under(path, _ZENCACHE_DIR):
        return _ZENCACHE
    components = path.split(os.sep)
    for i in range(len(components) - 2, -1, -1):
        if components[i] in _SITE_DIRS:
            top = components[i + 1].partition(".")[0]  # six.py, _foo.cpython-311-x86_64.so
            return _ZENCACHE if top == "zencache" else f"pkg:{top}"
    if any(_under(path, d) for d in _PYTHON_DIRS):
        return _PYTHON
    return _USER


_MODULE_ORIGINS: dict[str, str] = {}


def _module_origin(name: str) -> str | None:
    """Origin of a module by name; None when it cannot be told (not loaded, unknown)."""
    cached = _MODULE_ORIGINS.get(name)
    if cached is not None:
        return cached
    origin = _find_module_origin(name)
    if origin is not None:
        _MODULE_ORIGINS[name] = origin
    return origin


def _find_module_origin(name: str) -> str | None:
    top = name.partition(".")[0]
    if top == "zencache":
        return _ZENCACHE
    if name == "builtins" or top in sys.builtin_module_names:
        return _PYTHON
    module = sys.modules.get(name)
    if module is not None:
        filename = getattr(module, "__file__", None)
        if not filename:  # a namespace package: judge it by where its portions are
            filename = next(iter(getattr(module, "__path__", None) or ()), None)
        if isinstance(filename, str) and filename:
            return _file_origin(filename)
    if top in sys.stdlib_module_names:
        return _PYTHON
    if top in _packages_distributions():
        return f"pkg:{top}"
    if name == "__main__":  # an interactive session has no file
        return _USER
    return None


def _function_origin(fn: types.FunctionType) -> str:
    filename = fn.__code__.co_filename
    if filename and not filename.startswith("<"):
        return _file_origin(filename)
    # exec'd code ("<string>"): judge by the module whose globals it runs in
    return _module_origin(str(fn.__globals__.get("__name__", fn.__module__))) or _USER


def _class_origin(cls: type) -> str:
    # A class whose module cannot be found is fingerprinted like user code:
    # tracking too much costs a cache miss, tracking too little returns stale results.
    return _module_origin(str(cls.__module__)) or _USER


@functools.cache
def _packages_distributions() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


@functools.cache
def _distribution_parts(top: str) -> tuple[tuple[str, str], ...] | str:
    """("dist:<name>", "<name>==<version>") parts for a top-level module, or a note."""
    parts = []
    for dist in sorted(set(_packages_distributions().get(top, ()))):
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
        parts.append((f"dist:{dist}", f"{dist}=={version}"))
    if parts:
        return tuple(parts)
    version = getattr(sys.modules.get(top), "__version__", None)
    if isinstance(version, str):
        return ((f"dist:{top}", f"{top}=={version}"),)
    return (
        f"third-party module '{top}': no installed distribution and no __version__, "
        "so a change of its version is not tracked"
    )


# --- the graph: one node per user function or class, memoized --------------------------


@dataclass(slots=True)
class _Node:
    parts: list[tuple[str, str]] = field(default_factory=list)
    refs: list[object] = field(default_factory=list)  # user functions and classes
    notes: list[str] = field(default_factory=list)

    def part(self, name: str, value: str) -> None:
        self.parts.append((name, value))

    def origin(self, origin: str) -> None:
        if origin == _PYTHON:
            self.part("python", PYTHON_VERSION)
        elif origin.startswith("pkg:"):
            found = _distribution_parts(origin[4:])
            if isinstance(found, str):
                self.notes.append(found)
            else:
                self.parts.extend(found)
        # user code is a ref, never an origin part; zencache's own behaviour is
        # versioned by the cache key's format version, not by fingerprints.


@dataclass(frozen=True, slots=True)
class _Where:
    """How a value was reached: its part name and its description in notes."""

    label: str  # e.g. "const:mymod:CONFIG"
    subject: str  # e.g. "global 'CONFIG'"
    location: str  # e.g. "in module mymod"

    def inner(self, suffix: str, what: str) -> _Where:
        return _Where(f"{self.label}{suffix}", f"{what} {self.subject}", self.location)


_NODES: dict[int, tuple[object, _Node]] = {}


def _node_for(obj: object) -> _Node:
    hit = _NODES.get(id(obj))
    if hit is not None and hit[0] is obj:
        return hit[1]
    if isinstance(obj, types.FunctionType):
        node = _function_node(obj)
    else:
        assert isinstance(obj, type), obj
        node = _class_node(obj)
    _NODES[id(obj)] = (obj, node)
    return node


def _collect(root: object) -> Fingerprint:
    start = _Node()
    name = getattr(root, "__qualname__", None) or type(root).__qualname__
    module = getattr(root, "__module__", None) or "?"
    _use(root, start, _Where(f"const:{module}:{name}", f"'{name}'", f"in module {module}"))
    start.part("python", PYTHON_VERSION)

    merged: dict[str, set[str]] = {}
    notes: set[str] = set()
    seen: set[int] = set()
    stack = [start]
    while stack:
        node = stack.pop()
        for key, value in node.parts:
            merged.setdefault(key, set()).add(value)
        notes.update(node.notes)
        for ref in node.refs:
            if id(ref) not in seen:
                seen.add(id(ref))
                stack.append(_node_for(ref))

    main = _main_module_name()
    renamed = {key.replace(":__main__:", f":{main}:", 1): v for key, v in merged.items()}
    parts = {key: _one_value(values) for key, values in sorted(renamed.items())}
    hasher = Hasher("zencache/fingerprint/v1")
    for key, value in parts.items():
        hasher.text(key).text(value)
    return Fingerprint(hasher.hexdigest(), types.MappingProxyType(parts), tuple(sorted(notes)))


def _one_value(values: set[str]) -> str:
    # Two objects under one name (closures made by one factory, several lambdas
    # in a module) are both tracked: their values combine, order-independently.
    if len(values) == 1:
        return next(iter(values))
    hasher = Hasher("zencache/fingerprint/merged/v1")
    for value in sorted(values):
        hasher.text(value)
    return hasher.hexdigest()


# --- functions -------------------------------------------------------------------------


def _function_node(fn: types.FunctionType) -> _Node:
    node = _Node()
    code = fn.__code__
    module = str(fn.__globals__.get("__name__", fn.__module__))
    qualname = _qualname(fn)
    reader = f"{module}:{qualname}"

    hasher = Hasher("zencache/code/v1")
    dump = _function_dump(fn)
    if dump is not None:
        hasher.text("ast").text(dump)
    else:
        # Lambdas share their source line with whatever surrounds them; functions
        # without source (exec'd, stale) still have bytecode that says what they do.
        hasher.text("bytecode").text(_code_digest(code))
    _hash_defaults(fn, hasher, node, module, qualname)
    node.part(f"code:{reader}", hasher.hexdigest())

    uses = _scan(code)
    for scope, head, attrs, quiet in uses:
        _resolve(fn, node, scope, head, attrs, quiet=quiet)
    read = {head for scope, head, _, _ in uses if scope == "closure"}
    for name in code.co_freevars:  # e.g. __class__ for super(), which no opcode reads
        if name not in read:
            _resolve(fn, node, "closure", name, (), quiet=True)

    wrapped = fn.__dict__.get("__wrapped__")
    if wrapped is not None:
        _use(wrapped, node, _Where(f"const:{reader}.__wrapped__", "'__wrapped__'", f"of {reader}"))
    return node


_LITERAL_TYPES = (type(None), bool, int, float, complex, str, bytes)
_LITERAL_TYPES += (tuple, list, dict, set, frozenset)


def _qualname(fn: types.FunctionType) -> str:
    code = fn.__code__
    if code.co_filename.startswith("<"):
        return fn.__qualname__  # generated (dataclass __init__): its code says __create_fn__
    # co_qualname, unlike __qualname__, is not overwritten by functools.wraps, so a
    # wrapper and the function it wraps keep distinct names.
    return getattr(code, "co_qualname", fn.__qualname__)


def _hash_defaults(
    fn: types.FunctionType, hasher: Hasher, node: _Node, module: str, qualname: str
) -> None:
    # A default such as `lr=DEFAULT_LR` is evaluated when the module runs: the AST
    # shows the name, only the value shows a change of DEFAULT_LR.
    code = fn.__code__
    defaults = fn.__defaults__ or ()
    positional = code.co_varnames[: code.co_argcount]
    named = list(zip(positional[len(positional) - len(defaults) :], defaults, strict=True))
    named += sorted((fn.__kwdefaults__ or {}).items())
    for param, value in named:
        hasher.text(param)
        if isinstance(value, _LITERAL_TYPES):
            try:
                hasher.text(hash_value(value))
                continue
            except (UnhashableParameterError, RecursionError):
                pass
        # a class, a function, an object: followed like any value the code reads
        hasher.text("<followed>")
        where = _Where(
            f"const:{module}:{qualname}({param}=)",
            f"default value of parameter '{param}'",
            f"of {module}:{qualname}",
        )
        _use(value, node, where)


def _code_digest(code: types.CodeType) -> str:
    hasher = Hasher("zencache/bytecode/v1")
    hasher.raw(b"c", code.co_code)
    hasher.raw(b"x", getattr(code, "co_exceptiontable", b""))
    hasher.text(f"{code.co_argcount}/{code.co_posonlyargcount}/{code.co_kwonlyargcount}")
    hasher.text(f"names:{len(code.co_names)}")
    for name in code.co_names:
        hasher.text(name)
    hasher.text(f"consts:{len(code.co_consts)}")
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            hasher.text("code").text(_code_digest(const))
        elif const is Ellipsis:
            hasher.text("...")
        else:
            # Only literals reach co_consts: if one cannot be hashed, that is our bug.
            hasher.text(hash_value(const))
    return hasher.hexdigest()


# --- source: one parse (and compile) per file ----------------------------------------


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


def _function_dump(fn: types.FunctionType) -> str | None:
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


def _class_dump(cls: type) -> str | None:
    module = sys.modules.get(str(cls.__module__))
    filename = getattr(module, "__file__", None)
    if not isinstance(filename, str):
        return None
    source = _source_file(filename, vars(module))
    statement = source.classes.get(cls.__qualname__) if source is not None else None
    if statement is None:
        return None
    return ast.dump(statement, annotate_fields=True, include_attributes=False)


# --- reading the bytecode ------------------------------------------------------------------

_CHAIN_OPS = frozenset({"LOAD_ATTR", "LOAD_METHOD"})
_GLOBAL_OPS = frozenset({"LOAD_GLOBAL", "LOAD_NAME"})
_DEREF_OPS = frozenset({"LOAD_DEREF", "LOAD_CLASSDEREF", "LOAD_FROM_DICT_OR_DEREF"})
_FAST_OPS = frozenset({"LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_FAST_LOAD_FAST", "LOAD_FAST_BORROW"})
_STORE_OPS = frozenset({"STORE_FAST", "STORE_NAME", "STORE_DEREF", "STORE_GLOBAL"})
_IMPORT_GLUE = frozenset({"IMPORT_FROM", "SWAP", "POP_TOP", "EXTENDED_ARG"} | _STORE_OPS)

# (scope, head, attrs, quiet): scope "global" | "closure" names a variable; scope
# "import" has head (module name, level). quiet: a user module at the end of the
# chain is expected (an import statement), not a module used as a value.
_Use = tuple[str, Any, tuple[str, ...], bool]


def _scan(code: types.CodeType) -> set[_Use]:
    """Every dotted name `a.b.c` the code (and code nested in it) reads from a
    global, a closure cell or a module imported inside the function."""
    uses: set[_Use] = set()
    _scan_into(code, uses)
    return uses


def _scan_into(code: types.CodeType, uses: set[_Use]) -> None:
    instructions = list(dis.get_instructions(code))
    stored = {i.argval for i in instructions if i.opname == "STORE_NAME"}
    imported: dict[str, tuple[str, int, tuple[str, ...]]] = {}  # local -> import target
    head: tuple[str, Any, tuple[str, ...]] | None = None  # scope, head, attrs so far
    attrs: list[str] = []
    consts: list[Any] = []
    base: tuple[str, int, tuple[str, ...]] | None = None  # the module an import pushed
    current: tuple[str, int, tuple[str, ...]] | None = None
    chained = False  # IMPORT_FROM on the result of IMPORT_FROM (`import a.b.c as d`)

    for ins in instructions:
        op = ins.opname
        if op == "EXTENDED_ARG":
            continue
        if head is not None:
            if op in _CHAIN_OPS:
                attrs.append(ins.argval)
                continue
            uses.add((head[0], head[1], (*head[2], *attrs), False))
            head, attrs = None, []
        if base is not None and op not in _IMPORT_GLUE:
            base = current = None
        if op == "LOAD_CONST":
            consts = [*consts[-1:], ins.argval]
            if isinstance(ins.argval, types.CodeType):
                _scan_into(ins.argval, uses)
        elif op in _GLOBAL_OPS:
            if not (op == "LOAD_NAME" and ins.argval in stored):
                head = ("global", ins.argval, ())
        elif op in _DEREF_OPS:
            head = ("closure", ins.argval, ())
        elif op in _FAST_OPS:
            name = ins.argval[-1] if isinstance(ins.argval, tuple) else ins.argval
            target = imported.get(name)
            if target is not None:
                head = ("import", target[:2], target[2])
        elif op == "IMPORT_NAME":
            level = consts[0] if len(consts) == 2 and isinstance(consts[0], int) else 0
            fromlist = consts[-1] if consts else None
            module = ins.argval if fromlist is not None else ins.argval.partition(".")[0]
            base = current = (module, level, ())
            chained = False
            if fromlist is None:  # `import a.b.c` runs a.b.c even if only `a` is bound
                uses.add(("import", (ins.argval, level), (), True))
        elif op == "IMPORT_FROM" and base is not None:
            start = current if chained and current is not None else base
            current = (start[0], start[1], (*start[2], ins.argval))
            chained = True
        elif op in _STORE_OPS and base is not None and current is not None:
            imported[ins.argval] = current
            uses.add(("import", current[:2], current[2], True))
            current, chained = base, False
    if head is not None:
        uses.add((head[0], head[1], (*head[2], *attrs), False))


# --- resolving what the bytecode reads --------------------------------------------------

_MISSING = object()


def _resolve(
    fn: types.FunctionType, node: _Node, scope: str, head: Any, attrs: tuple[str, ...], quiet: bool
) -> None:
    module = str(fn.__globals__.get("__name__", fn.__module__))
    qualname = _qualname(fn)
    reader = f"{module}:{qualname}"

    if scope == "global":
        if head in fn.__globals__:
            obj = fn.__globals__[head]
        else:
            namespace = fn.__builtins__ if isinstance(fn.__builtins__, dict) else vars(builtins)
            if head in namespace:
                node.part("python", PYTHON_VERSION)
            else:
                node.notes.append(
                    f"global name '{head}' read by {reader} is not defined at fingerprint time"
                )
            return
        where = _Where(f"const:{module}:{head}", f"global '{head}'", f"in module {module}")
    elif scope == "closure":
        if head not in fn.__code__.co_freevars:
            return  # a cell of the function itself or of code nested in it: a local
        cell = fn.__closure__[fn.__code__.co_freevars.index(head)]  # type: ignore[index]
        try:
            obj = cell.cell_contents
        except ValueError:
            node.notes.append(f"closure variable '{head}' of {reader} is empty at fingerprint time")
            return
        where = _Where(
            f"const:{module}:{qualname}.{head}", f"closure variable '{head}'", f"of {reader}"
        )
    else:  # an import inside the function
        found = _import_target(fn, node, head[0], head[1], reader)
        if found is None:
            return
        obj, name = found
        where = _Where(f"const:{name}", f"module {name}", f"imported by {reader}")

    for attr in attrs:
        if not isinstance(obj, types.ModuleType):
            break  # attributes of classes and instances are covered by the object itself
        origin = _module_origin(obj.__name__) or _USER
        if origin != _USER:
            break  # inside a third-party or stdlib module, its version covers the rest
        value = _module_attr(obj, attr, node, reader)
        if value is _MISSING:
            node.notes.append(
                f"'{obj.__name__}.{attr}' read by {reader} is not defined at fingerprint time"
            )
            return
        where = _Where(
            f"const:{obj.__name__}:{attr}", f"global '{attr}'", f"in module {obj.__name__}"
        )
        obj = value

    if isinstance(obj, types.ModuleType):
        origin = _module_origin(obj.__name__) or _USER
        if origin == _USER:
            if not quiet:
                node.notes.append(
                    f"module {obj.__name__} is used by {reader} other than as "
                    f"`{obj.__name__.rpartition('.')[2]}.name`: only names read that way are tracked"
                )
        else:
            node.origin(origin)
        return
    _use(obj, node, where)


def _module_attr(module: types.ModuleType, attr: str, node: _Node, reader: str) -> Any:
    try:
        return getattr(module, attr)
    except AttributeError:
        pass
    except Exception as exc:  # a module-level __getattr__ of user code
        node.notes.append(
            f"reading '{module.__name__}.{attr}' for {reader} raised {type(exc).__name__}: {exc}"
        )
        return _MISSING
    submodule = sys.modules.get(f"{module.__name__}.{attr}")
    if submodule is not None:
        return submodule
    if hasattr(module, "__path__"):  # `from pkg import submodule` imports it
        found = _load_user_module(f"{module.__name__}.{attr}", node, reader)
        if isinstance(found, types.ModuleType):
            return found
    return _MISSING


def _import_target(
    fn: types.FunctionType, node: _Node, name: str, level: int, reader: str
) -> tuple[Any, str] | None:
    """The module an import statement inside fn names, or None when its origin
    part (or a note) says all there is to say."""
    if level:
        package = fn.__globals__.get("__package__") or str(fn.__module__).rpartition(".")[0]
        try:
            name = importlib.util.resolve_name("." * level + name, package)
        except (ImportError, ValueError) as exc:
            node.notes.append(f"relative import in {reader} cannot be resolved: {exc}")
            return None
    module = sys.modules.get(name)
    if module is None:
        found = _load_user_module(name, node, reader)
        if not isinstance(found, types.ModuleType):
            if isinstance(found, str):
                node.origin(found)
            return None
        module = found
    return module, name


def _load_user_module(name: str, node: _Node, reader: str) -> types.ModuleType | str | None:
    """Import a module that fn imports but nobody has yet, if it is user code (the
    step would import it when it runs); for other code, only say where it is from."""
    origin = _module_origin(name)
    if origin is None:
        try:
            spec = importlib.util.find_spec(name)
        except Exception as exc:
            node.notes.append(
                f"module {name} imported by {reader} cannot be found ({type(exc).__name__}: {exc})"
            )
            return None
        if spec is None:
            return None  # the caller notes a missing attribute, or the import fails at run time
        origin = _file_origin(spec.origin) if spec.origin and spec.has_location else _USER
    if origin != _USER:
        return origin
    try:
        return importlib.import_module(name)
    except Exception as exc:
        node.notes.append(
            f"module {name} imported by {reader} could not be imported to fingerprint it "
            f"({type(exc).__name__}: {exc})"
        )
        return None


# --- what a name can hold -------------------------------------------------------------

_DESCRIPTOR_TYPES = (
    types.WrapperDescriptorType,
    types.MethodDescriptorType,
    types.ClassMethodDescriptorType,
    types.GetSetDescriptorType,
    types.MemberDescriptorType,
)

# Immutable type-level objects and loggers are read by many functions and change
# no results: reporting each of them as untracked would bury the notes that matter.
_INERT_TYPE_MODULES = frozenset({"typing", "typing_extensions"})
_INERT_TYPES = (types.GenericAlias, types.UnionType, logging.Logger, logging.LoggerAdapter)
_INERT_TYPES += (types.EllipsisType, types.NotImplementedType)
# Stateless markers in the code that dataclasses generates (__init__'s defaults).
_MARKER_TYPES = frozenset(
    {
        "dataclasses._HAS_DEFAULT_FACTORY_CLASS",
        "dataclasses._MISSING_TYPE",
        "dataclasses._KW_ONLY_TYPE",
    }
)

_MAX_WRAPPING = 100


def _use(obj: Any, node: _Node, where: _Where, depth: int = 0) -> None:
    """Add to node whatever makes obj's contribution to a result visible."""
    if depth > _MAX_WRAPPING:
        node.notes.append(f"{where.subject} {where.location}: wrapped too deeply to follow")
        return
    deeper = depth + 1
    if isinstance(obj, types.ModuleType):
        origin = _module_origin(obj.__name__) or _USER
        if origin != _USER:
            node.origin(origin)
        return
    if isinstance(obj, type):
        origin = _class_origin(obj)
        if origin == _USER:
            node.refs.append(obj)
        else:
            node.origin(origin)
        return
    if isinstance(obj, types.FunctionType):
        origin = _function_origin(obj)
        if origin == _USER:
            node.refs.append(obj)  # its node follows its own __wrapped__
            return
        node.origin(origin)
        wrapped = obj.__dict__.get("__wrapped__")
        if wrapped is not None:  # a library's decorator around a user function
            _use(wrapped, node, where, deeper)
        return
    if isinstance(obj, types.MethodType):
        _use(obj.__func__, node, where, deeper)
        _use(obj.__self__, node, where.inner(".__self__", "the object bound to"), deeper)
        return
    if isinstance(obj, functools.partial | functools.partialmethod):
        _use(obj.func, node, where, deeper)
        _use_value((obj.args, obj.keywords), node, where.inner("(args)", "the arguments of"))
        return
    if isinstance(obj, staticmethod | classmethod):
        _use(obj.__func__, node, where, deeper)
        return
    if isinstance(obj, property):
        for accessor in (obj.fget, obj.fset, obj.fdel):
            if accessor is not None:
                _use(accessor, node, where, deeper)
        return
    if isinstance(obj, functools.cached_property):
        _use(obj.func, node, where, deeper)
        return
    if isinstance(obj, types.BuiltinFunctionType):
        owner = obj.__self__
        if owner is None or isinstance(owner, types.ModuleType):
            module = obj.__module__ or getattr(owner, "__name__", None) or "builtins"
            node.origin(_module_origin(module) or _PYTHON)
        else:  # a method of a C object (e.g. rng.random): the object's state counts
            _use(owner, node, where.inner(".__self__", "the object bound to"), deeper)
        return
    if isinstance(obj, types.MethodWrapperType):
        _use(obj.__self__, node, where.inner(".__self__", "the object bound to"), deeper)
        return
    if isinstance(obj, _DESCRIPTOR_TYPES):
        _use(obj.__objclass__, node, where, deeper)
        return

    cls = type(obj)
    origin = _class_origin(cls)
    wrapped = _wrapped_of(obj, node, where) if callable(obj) else None
    if wrapped is not None:  # lru_cache, numpy's array-function dispatchers, ...
        _use(cls, node, where, deeper)
        _use(wrapped, node, where, deeper)
        return
    if origin == _ZENCACHE:
        return
    _use_value(obj, node, where)


def _wrapped_of(obj: Any, node: _Node, where: _Where) -> Any:
    try:
        return getattr(obj, "__wrapped__", None)
    except Exception as exc:  # a user-defined __getattr__
        node.notes.append(
            f"{where.subject} {where.location}: reading __wrapped__ raised "
            f"{type(exc).__name__}: {exc}"
        )
        return None


def _use_value(obj: Any, node: _Node, where: _Where) -> None:
    cls = type(obj)
    origin = _class_origin(cls)
    digest = _value_digest(obj, node, where)
    if digest is not None:
        node.part(where.label, digest)
        _use(cls, node, where)  # an enum's or dataclass's class; numpy for an array
        return
    if (
        cls.__module__ in _INERT_TYPE_MODULES
        or isinstance(obj, _INERT_TYPES)
        or f"{cls.__module__}.{cls.__qualname__}" in _MARKER_TYPES
    ):
        node.origin(origin)
        return
    if origin != _USER and callable(obj) and isinstance(getattr(obj, "__name__", None), str):
        node.origin(origin)  # a named callable of a library, e.g. a numpy ufunc
        return
    node.notes.append(
        f"{where.subject} of type {cls.__module__}.{cls.__qualname__} {where.location}: "
        "not tracked (its value cannot be hashed)"
    )
    _use(cls, node, where)  # its methods still count


_SCALARS = (type(None), bool, int, float, str)
# id -> (value, digest or None, callables inside it). One module-level array or
# table read by a thousand steps is hashed once; the strong reference keeps the
# id from being reused (these values are held by modules and functions anyway).
_VALUES: dict[int, tuple[object, str | None, tuple[Any, ...]]] = {}


def _value_digest(obj: Any, node: _Node, where: _Where) -> str | None:
    if isinstance(obj, _SCALARS):
        return hash_value(obj)
    hit = _VALUES.get(id(obj))
    if hit is None or hit[0] is not obj:
        hit = (obj, *_digest_and_callables(obj))
        _VALUES[id(obj)] = hit
    for item in hit[2]:
        _use(item, node, where.inner("[]", "an item of"))
    return hit[1]


def _digest_and_callables(obj: Any) -> tuple[str | None, tuple[Any, ...]]:
    if isinstance(obj, re.Pattern):
        return hash_value(("re.Pattern", obj.pattern, obj.flags)), ()
    try:
        return hash_value(obj), ()
    except UnhashableParameterError:
        pass
    except RecursionError:  # a list that contains itself
        return None, ()
    if not isinstance(obj, list | tuple | dict | set | frozenset):
        return None, ()
    # A container of callables (a dispatch table): hash its shape with each
    # callable named, and follow the callables.
    found: list[Any] = []
    try:
        return hash_value(_name_callables(obj, found)), tuple(found)
    except (UnhashableParameterError, RecursionError):
        return None, ()


@dataclass(frozen=True, slots=True)
class _Named:
    """Stands for a callable inside a container, so its name is hashed, not its code."""

    name: str


def _name_callables(value: Any, found: list[Any]) -> Any:
    kind = type(value)
    if kind in (list, tuple, set, frozenset):
        return kind(_name_callables(item, found) for item in value)
    if kind is dict:
        return {_name_callables(k, found): _name_callables(v, found) for k, v in value.items()}
    if callable(value) and isinstance(getattr(value, "__qualname__", None), str):
        found.append(value)
        return _Named(f"{getattr(value, '__module__', None)}:{value.__qualname__}")
    return value


# --- classes ------------------------------------------------------------------------------

# Bookkeeping that Python, abc, dataclasses and typing put in a class __dict__;
# what it records is in the class source (or not behaviour at all).
_CLASS_BOOKKEEPING = frozenset(
    """
    __module__ __qualname__ __doc__ __dict__ __weakref__ __firstlineno__ __static_attributes__
    __annotations__ __annotate__ __annotate_func__ __annotations_cache__
    __dataclass_fields__ __dataclass_params__ __match_args__ __abstractmethods__ _abc_impl
    __orig_bases__ __parameters__ __type_params__ _is_protocol _is_runtime_protocol
    __protocol_attrs__ __non_callable_proto_members__ __callable_proto_members_only__
    """.split()  # noqa: SIM905 (24 quoted names would hide the few that matter)
)


def _class_node(cls: type) -> _Node:
    node = _Node()
    module, qualname = str(cls.__module__), cls.__qualname__
    reader = f"{module}:{qualname}"
    hasher = Hasher("zencache/class/v1")
    dump = _class_dump(cls)
    if dump is not None:
        hasher.text("ast").text(dump)
    else:  # a class made by type(...): its members, below, are all there is
        hasher.text("members").text(",".join(sorted(cls.__dict__)))
    bases = [f"{b.__module__}:{b.__qualname__}" for b in cls.__bases__]
    hasher.text("bases").text(",".join(bases))
    node.part(f"code:{reader}", hasher.hexdigest())

    for base in (*cls.__bases__, type(cls)):
        if base is not object and base is not type:
            _use(
                base, node, _Where(f"const:{reader}", f"base '{base.__qualname__}'", f"of {reader}")
            )
    for name, value in _class_members(cls):
        where = _Where(f"const:{reader}.{name}", f"class attribute '{name}'", f"of {reader}")
        _use(value, node, where)
    return node


def _class_members(cls: type) -> Iterator[tuple[str, Any]]:
    is_enum = isinstance(cls, enum.EnumMeta)
    for name, value in cls.__dict__.items():
        if name in _CLASS_BOOKKEEPING:
            continue
        if is_enum and _is_sunder(name):
            continue  # _member_map_ and the like: the members themselves are tracked
        if name == "__hash__" and value is None:
            continue
        yield name, value


def _is_sunder(name: str) -> bool:
    return len(name) > 2 and name[0] == name[-1] == "_" and name[1] != "_" and name[-2] != "_"
