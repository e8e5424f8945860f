"""What a function's bytecode reads and what that resolves to: globals, closure
cells, `module.attr` chains and imports inside the function (user modules are
imported to be followed). Imports only origin, node and values from this package.
"""

from __future__ import annotations

import builtins
import collections
import dis
import importlib
import importlib.util
import sys
import types
from typing import Any

from .node import MISSING, Node, Where, qualname_of
from .origin import PYTHON_VERSION, USER, class_origin, file_origin, module_origin
from .values import use

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


def scan(code: types.CodeType) -> set[_Use]:
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
    _scan_dynamic(instructions, uses)


# Between the operands of a call and what follows it: nothing that changes a value.
_CALL_GLUE = frozenset(
    {"PRECALL", "CALL", "PUSH_NULL", "CACHE", "KW_NAMES", "NOP", "EXTENDED_ARG", "CALL_KW"}
)


def _scan_dynamic(instructions: list[dis.Instruction], uses: set[_Use]) -> None:
    """Lookups by name at run time: `globals()["x"]`, `sys.modules["m"]`,
    `importlib.import_module("m")`, `getattr(module, "name")` are followed when the
    name is a literal (with the attributes read from what they return); with a
    computed name, and for eval/exec, a note says that what they reach is untracked."""
    n = len(instructions)

    def skip(j: int) -> int:
        while j < n and instructions[j].opname in _CALL_GLUE:
            j += 1
        return j

    def literal(j: int) -> str | None:
        ins = instructions[j] if j < n else None
        if ins is not None and ins.opname == "LOAD_CONST" and isinstance(ins.argval, str):
            return ins.argval
        return None

    def subscript(j: int) -> bool:
        ins = instructions[j] if j < n else None
        return ins is not None and (
            ins.opname == "BINARY_SUBSCR" or (ins.opname == "BINARY_OP" and ins.argrepr == "[]")
        )

    def chain(j: int) -> tuple[tuple[str, ...], int]:
        names = []
        j = skip(j)
        while j < n and instructions[j].opname in _CHAIN_OPS:
            names.append(instructions[j].argval)
            j = skip(j + 1)
        return tuple(names), j

    def keyed(j: int) -> str | None:
        """The literal of `[<literal>]` or `.get(<literal>)` at j."""
        name = literal(j)
        if name is not None and subscript(j + 1):
            return name
        ins = instructions[j] if j < n else None
        if ins is not None and ins.opname in _CHAIN_OPS and ins.argval == "get":
            name = literal(skip(j + 1))
            return name
        return None

    def end_of(j: int) -> int:  # past `[<literal>]` or `.get(<literal>)` at j
        return j + 2 if subscript(j + 1) else skip(j + 1) + 1

    for i, ins in enumerate(instructions):
        if ins.opname not in _GLOBAL_OPS:
            continue
        name = ins.argval
        if name == "globals":
            j = skip(i + 1)
            key = keyed(j)
            if key is not None:
                uses.add(("global", key, chain(end_of(j))[0], False))
            else:
                uses.add(("dynamic", "reads globals() by a computed name", (), True))
        elif name == "sys" and i + 1 < n and instructions[i + 1].argval == "modules":
            j = skip(i + 2)
            key = keyed(j)
            if key is not None:
                attrs = chain(end_of(j))[0]
                uses.add(("import", (key, 0), attrs, not attrs))
            elif instructions[i + 1].opname in _CHAIN_OPS:
                uses.add(("dynamic", "reads sys.modules by a computed name", (), True))
        elif name in ("importlib", "import_module", "__import__"):
            j = i + 1
            if name == "importlib":
                if j >= n or instructions[j].argval != "import_module":
                    continue
                j += 1
            j = skip(j)
            module = literal(j)
            if module is not None and literal(j + 1) is None and skip(j + 1) > j + 1:
                attrs = chain(skip(j + 1))[0] if name != "__import__" else ()
                uses.add(("import", (module, 0), attrs, not attrs))
            else:
                uses.add(("dynamic", f"imports a module by a computed name ({name})", (), True))
        elif name == "getattr":
            target = instructions[i + 1] if i + 1 < n else None
            if target is None or target.opname not in _GLOBAL_OPS | _DEREF_OPS:
                continue  # getattr on a local or an argument: that object's own business
            scope = "global" if target.opname in _GLOBAL_OPS else "closure"
            attrs, j = chain(i + 2)
            attr = literal(j)
            if attr is not None:
                uses.add((scope, target.argval, (*attrs, attr, *chain(j + 1)[0]), False))
                # The module itself was passed to getattr, not used as a value.
                if (scope, target.argval, attrs, False) in uses:
                    uses.discard((scope, target.argval, attrs, False))
                    uses.add((scope, target.argval, attrs, True))
            else:
                what = f"reads an attribute of '{target.argval}' by a computed name"
                uses.add(("dynamic", what, (target.argval,), True))
                if (scope, target.argval, attrs, False) in uses:  # said once is enough
                    uses.discard((scope, target.argval, attrs, False))
                    uses.add((scope, target.argval, attrs, True))
        elif name in ("eval", "exec") and "NULL" in ins.argrepr:
            # Called (not passed along as a value); with a literal, the code it runs
            # is a constant of this function, hashed with it.
            j = skip(i + 1)
            if literal(j) is None or skip(j + 1) == j + 1:
                uses.add(("dynamic", f"calls {name}() on code built at run time", (), True))


_MISSING = object()


def _user_owned(obj: Any) -> bool:
    if isinstance(obj, types.ModuleType):
        return (module_origin(obj.__name__) or USER) == USER
    return obj is not None and class_origin(obj if isinstance(obj, type) else type(obj)) == USER


def _genuine_builtin(value: Any) -> bool:
    """The interpreter's own builtins (functions, types, constants); anything else
    found in builtins was put there by a program, or by site (exit, help)."""
    return (
        value is None
        or isinstance(value, bool | type(Ellipsis) | type(NotImplemented))
        or (getattr(value, "__module__", None) == "builtins")
    )


def resolve(
    fn: types.FunctionType, node: Node, scope: str, head: Any, attrs: tuple[str, ...], quiet: bool
) -> None:
    module = str(fn.__globals__.get("__name__", fn.__module__))
    qualname = qualname_of(fn)
    reader = f"{module}:{qualname}"

    if scope == "dynamic":
        if attrs and not _user_owned(fn.__globals__.get(attrs[0])):
            return  # getattr(np, name): inside a library, its version covers the rest
        node.notes.append(f"{reader} {head}: what it reaches that way is not tracked")
        return
    if scope == "global":
        node.bind(fn.__globals__, head, fn.__globals__.get(head, MISSING))
        if head in fn.__globals__:
            obj = fn.__globals__[head]
        else:
            # typeshed lacks FunctionType.__builtins__ (Python 3.10+)
            own = getattr(fn, "__builtins__", None)
            namespace = own if isinstance(own, dict) else vars(builtins)
            node.bind(namespace, head, namespace.get(head, MISSING))
            if head in namespace and not _genuine_builtin(namespace[head]):
                # A name a program put into builtins (a notebook's magic, a plugin):
                # what it holds is followed like a global.
                where = Where(
                    f"const:builtins:{head}", f"builtins name '{head}'", f"read by {reader}"
                )
                use(namespace[head], node, where)
            elif head in namespace:
                node.part("python", PYTHON_VERSION)
            else:
                node.notes.append(
                    f"global name '{head}' read by {reader} is not defined at fingerprint time"
                )
            return
        where = Where(f"const:{module}:{head}", f"global '{head}'", f"in module {module}")
    elif scope == "closure":
        if head not in fn.__code__.co_freevars:
            return  # a cell of the function itself or of code nested in it: a local
        cell = fn.__closure__[fn.__code__.co_freevars.index(head)]  # type: ignore[index]
        try:
            obj = cell.cell_contents
        except ValueError:
            node.cells.append((cell, MISSING))
            node.notes.append(f"closure variable '{head}' of {reader} is empty at fingerprint time")
            return
        where = Where(
            f"const:{module}:{qualname}.{head}", f"closure variable '{head}'", f"of {reader}"
        )
        node.cells.append((cell, obj))
    else:  # an import inside the function
        found = _import_target(fn, node, head[0], head[1], reader)
        if found is None:
            return
        obj, name = found
        where = Where(f"const:{name}", f"module {name}", f"imported by {reader}", f"import:{name}")

    rest = attrs
    for attr in attrs:
        if not isinstance(obj, types.ModuleType):
            break  # attributes of classes and instances are covered by the object itself
        rest = rest[1:]
        origin = module_origin(obj.__name__) or USER
        if origin != USER:
            break  # inside a third-party or stdlib module, its version covers the rest
        value = _module_attr(obj, attr, node, reader)
        namespace = vars(obj)
        node.bind(namespace, attr, namespace.get(attr, MISSING))
        if attr not in namespace:  # a submodule not yet bound in its package
            node.bind(
                sys.modules,
                f"{obj.__name__}.{attr}",
                sys.modules.get(f"{obj.__name__}.{attr}", MISSING),
            )
        if value is _MISSING:
            node.notes.append(
                f"'{obj.__name__}.{attr}' read by {reader} is not defined at fingerprint time"
            )
            return
        where = Where(
            f"const:{obj.__name__}:{attr}",
            f"global '{attr}'",
            f"in module {obj.__name__}",
            f"{where.edge}.{attr}",  # `mod.helper` as the reader wrote it
        )
        obj = value

    if isinstance(obj, types.ModuleType):
        origin = module_origin(obj.__name__) or USER
        if origin == USER:
            if not quiet:
                node.notes.append(
                    f"module {obj.__name__} is used by {reader} other than as "
                    f"`{obj.__name__.rpartition('.')[2]}.name`: only names read that way are tracked"
                )
        else:
            node.origin(origin)
        return
    if rest and rest[0] in _SINK_METHODS and type(obj) in _SINK_TYPES:
        # `CALLS.append(name)`: the step writes to the container, and what the
        # call returns (None) does not depend on what it holds. A read elsewhere
        # (`len(CALLS)`) is a use of its own, hashed by value.
        return
    use(obj, node, where)


_SINK_TYPES = (list, dict, set, collections.deque)
_SINK_METHODS = frozenset(
    {"append", "appendleft", "extend", "extendleft", "add", "insert", "update", "clear", "discard"}
)


def _module_attr(module: types.ModuleType, attr: str, node: Node, reader: str) -> Any:
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
    fn: types.FunctionType, node: Node, name: str, level: int, reader: str
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
        node.bind(sys.modules, name, sys.modules.get(name, MISSING))
        if not isinstance(found, types.ModuleType):
            if isinstance(found, str):
                node.origin(found)
            return None
        module = found
    else:
        node.bind(sys.modules, name, module)
    return module, name


def _load_user_module(name: str, node: Node, reader: str) -> types.ModuleType | str | None:
    """Import a module that fn imports but nobody has yet, if it is user code (the
    step would import it when it runs); for other code, only say where it is from."""
    origin = module_origin(name)
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
        origin = file_origin(spec.origin) if spec.origin and spec.has_location else USER
    if origin != USER:
        return origin
    try:
        return importlib.import_module(name)
    except Exception as exc:
        node.notes.append(
            f"module {name} imported by {reader} could not be imported to fingerprint it "
            f"({type(exc).__name__}: {exc})"
        )
        return None
