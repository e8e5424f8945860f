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

    wrapped = fn.__dict__.get("__wrapped__")
    if wrapped is not None:
        use(wrapped, node, Where(f"const:{reader}.__wrapped__", "'__wrapped__'", f"of {reader}"))
    return node


_LITERAL_TYPES = (type(None), bool, int, float, complex, str, bytes)
_LITERAL_TYPES += (tuple, list, dict, set, frozenset)


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
