"""The node of a user function: its normalized AST (or bytecode), its default
values, what its code reads, and what it wraps. Imports hashing and errors from
zencache, and node, source, references and values from this package.
"""

from __future__ import annotations

import types

from ..errors import UnhashableParameterError
from ..hashing import Hasher, hash_value
from .envreads import env_reads
from .node import Node, Where, qualname_of
from .references import resolve, scan
from .source import code_digest, function_dump
from .values import use


def function_node(fn: types.FunctionType) -> Node:
    node = Node()
    code = fn.__code__
    # Re-running a notebook cell binds a new function; assigning __code__ or
    # __defaults__ changes this one: the guards see both.
    node.attrs.append((fn, "__code__", code))
    node.attrs.append((fn, "__defaults__", fn.__defaults__))
    node.attrs.append((fn, "__kwdefaults__", fn.__kwdefaults__))
    module = str(fn.__globals__.get("__name__", fn.__module__))
    qualname = qualname_of(fn)
    reader = f"{module}:{qualname}"

    hasher = Hasher("zencache/code/v1")
    dump = function_dump(fn)
    if dump is not None:
        hasher.text("ast").text(dump)
    else:
        # Lambdas share their source line with whatever surrounds them; functions
        # without source (exec'd, stale) still have bytecode that says what they do.
        hasher.text("bytecode").text(code_digest(code))
    _hash_defaults(fn, hasher, node, module, qualname)
    node.part(f"code:{reader}", hasher.hexdigest())

    uses = scan(code)
    for scope, head, attrs, quiet in uses:
        resolve(fn, node, scope, head, attrs, quiet=quiet)
    node.env, env_notes = env_reads(fn)
    node.notes.extend(env_notes)
    read = {head for scope, head, _, _ in uses if scope == "closure"}
    for name in code.co_freevars:  # e.g. __class__ for super(), which no opcode reads
        if name not in read:
            resolve(fn, node, "closure", name, (), quiet=True)

    _use_attributes(fn, node, reader)
    node.names = code_names(code)
    node.reflective = not REFLECTION.isdisjoint(node.names)
    return node


# Reading attributes by a name computed at run time: any class member may be the
# one read, so a fingerprint whose code does this keeps every member.
REFLECTION = frozenset(
    {"getattr", "hasattr", "attrgetter", "methodcaller", "vars", "dir", "__dict__"}
    | {"getmembers", "getattr_static", "__getattribute__"}
)


def code_names(code: types.CodeType) -> frozenset[str]:
    """Every global, attribute and string-constant name in code and code nested in it."""
    names: set[str] = set()
    stack = [code]
    while stack:
        current = stack.pop()
        names.update(current.co_names)
        consts = list(current.co_consts)
        while consts:
            const = consts.pop()
            if isinstance(const, str):
                names.add(const)
            elif isinstance(const, types.CodeType):
                stack.append(const)
            elif isinstance(const, tuple | frozenset):
                consts.extend(const)
    return frozenset(names)


# What functools.update_wrapper copies and the interpreter keeps: not behaviour.
_FUNCTION_BOOKKEEPING = frozenset(
    {"__module__", "__name__", "__qualname__", "__doc__", "__signature__", "__type_params__"}
)


def _use_attributes(fn: types.FunctionType, node: Node, reader: str) -> None:
    """What a decorator set on the function: `__wrapped__`, a singledispatch
    registry, a threshold attached as `fn.limit = 3`; each is followed like a
    value the code reads."""
    attributes = fn.__dict__
    node.members.append((fn, tuple(attributes), tuple(attributes.values())))  # type: ignore[arg-type]
    for name, value in attributes.items():
        if name in _FUNCTION_BOOKKEEPING:
            continue
        what = f"'{name}'" if name == "__wrapped__" else f"function attribute '{name}'"
        use(value, node, Where(f"const:{reader}.{name}", what, f"of {reader}"))


_LITERAL_TYPES: tuple[type, ...] = (type(None), bool, int, float, complex, str, bytes)
_LITERAL_TYPES += (tuple, list, dict, set, frozenset)
_IMMUTABLE_TYPES = (type(None), bool, int, float, complex, str, bytes, frozenset)


def _hash_defaults(
    fn: types.FunctionType, hasher: Hasher, node: Node, module: str, qualname: str
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
                if not isinstance(value, _IMMUTABLE_TYPES):  # `def f(seen=[])`, appended to
                    node.values.append((value, hash_value(value), hash_value))
                continue
            except (UnhashableParameterError, RecursionError):
                pass
        # a class, a function, an object: followed like any value the code reads
        hasher.text("<followed>")
        where = Where(
            f"const:{module}:{qualname}({param}=)",
            f"default value of parameter '{param}'",
            f"of {module}:{qualname}",
        )
        use(value, node, where)
