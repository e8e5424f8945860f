"""Category 4: function identity. Lambdas and closures are told apart by where they
are bound and what they capture, not merged by name; a lambda's parameter names
count; decorators are followed to the user code and the values they hold."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

from zencache.fingerprint import fingerprint


def made(source: str) -> Any:
    """`f` from `source`, run as a module without a file (its code hashed by bytecode)."""
    namespace: dict[str, Any] = {"__name__": "zcfp_identity", "functools": functools, "np": np}
    exec(compile(source, "<identity>", "exec"), namespace)
    return namespace["f"]


PAIRS = {
    "two lambdas swapped": (
        "A = lambda x: x + 1\nB = lambda x: x * 2\ndef f(v):\n    return A(v) + B(v)\n",
        "A = lambda x: x * 2\nB = lambda x: x + 1\ndef f(v):\n    return A(v) + B(v)\n",
    ),
    "two closures of one factory swapped": (
        "def make(k):\n    return lambda x: x + k\nA = make(1)\nB = make(2)\n"
        "def f(v):\n    return A(v) * 10 + B(v)\n",
        "def make(k):\n    return lambda x: x + k\nA = make(2)\nB = make(1)\n"
        "def f(v):\n    return A(v) * 10 + B(v)\n",
    ),
    "captured values in another order": (
        "def make(a, b):\n    return lambda: (a, b)\nA = make(1, 2)\ndef f():\n    return A()\n",
        "def make(a, b):\n    return lambda: (a, b)\nA = make(2, 1)\ndef f():\n    return A()\n",
    ),
    "a lambda's parameter names": (
        "g = lambda x: x\ndef f(v):\n    return g(x=v)\n",
        "g = lambda y: y\ndef f(v):\n    return g(x=v)\n",
    ),
    "an attribute a decorator set": (
        "def g(x):\n    return x\ng.limit = 3\ndef f(v):\n    return min(g(v), g.limit)\n",
        "def g(x):\n    return x\ng.limit = 4\ndef f(v):\n    return min(g(v), g.limit)\n",
    ),
    "a singledispatch registration": (
        "@functools.singledispatch\ndef g(x):\n    return 1\n@g.register\ndef _(x: int):\n"
        "    return 2\ndef f(v):\n    return g(v)\n",
        "@functools.singledispatch\ndef g(x):\n    return 1\n@g.register\ndef _(x: int):\n"
        "    return 3\ndef f(v):\n    return g(v)\n",
    ),
    "functools.partial arguments": (
        "def g(x, k):\n    return x + k\nh = functools.partial(g, k=1)\ndef f(v):\n    return h(v)\n",
        "def g(x, k):\n    return x + k\nh = functools.partial(g, k=2)\ndef f(v):\n    return h(v)\n",
    ),
    "lru_cache's wrapped function": (
        "@functools.lru_cache\ndef g(x):\n    return x + 1\ndef f(v):\n    return g(v)\n",
        "@functools.lru_cache\ndef g(x):\n    return x + 2\ndef f(v):\n    return g(v)\n",
    ),
    "numpy.vectorize's function": (
        "g = np.vectorize(lambda x: x + 1)\ndef f(v):\n    return g(v)\n",
        "g = np.vectorize(lambda x: x + 2)\ndef f(v):\n    return g(v)\n",
    ),
    "a class-based decorator's arguments": (
        "class Deco:\n    def __init__(self, n):\n        self.n = n\n    def __call__(self, fn):\n"
        "        functools.update_wrapper(self, fn)\n        self.fn = fn\n        return self\n"
        "@Deco(2)\ndef g(x):\n    return x\ndef f(v):\n    return g(v)\n",
        "class Deco:\n    def __init__(self, n):\n        self.n = n\n    def __call__(self, fn):\n"
        "        functools.update_wrapper(self, fn)\n        self.fn = fn\n        return self\n"
        "@Deco(3)\ndef g(x):\n    return x\ndef f(v):\n    return g(v)\n",
    ),
}


@pytest.mark.parametrize("case", sorted(PAIRS))
def test_functions_that_behave_differently_have_different_fingerprints(case: str) -> None:
    before, after = PAIRS[case]
    a, b = fingerprint(made(before)), fingerprint(made(after))
    assert a.digest != b.digest
    assert a.untracked == b.untracked == ()


def test_the_same_source_gives_the_same_fingerprint() -> None:
    for before, _ in PAIRS.values():
        assert fingerprint(made(before)).digest == fingerprint(made(before)).digest
