"""Category 4 in fresh interpreters: lambdas and closures are told apart by where
they are bound and what they capture; decorators are followed to the code they
hold. Each edit is checked against a run of the edited code on an empty cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from sound_harness import Project

FLOW = """
import functools
from zencache import pipeline, step

A = lambda x: x + 1
B = lambda x: x * 2


def make(k):
    return lambda x: x + k


ADD_ONE = make(1)
ADD_TEN = make(10)


@functools.singledispatch
def describe(value):
    return "thing"


@describe.register
def _(value: int):
    return "int"


@step
def lambdas(v: int = 3) -> int:
    return A(v) * 100 + B(v)


@step
def closures(v: int = 3) -> int:
    return ADD_ONE(v) * 100 + ADD_TEN(v)


@step
def dispatch(v: int = 3) -> str:
    return describe(v)


@pipeline
def p():
    return lambdas(), closures(), dispatch()
"""

ALL = ["lambdas", "closures", "dispatch"]

EDITS = {
    "two lambdas swapped": (
        ("A = lambda x: x + 1\nB = lambda x: x * 2", "A = lambda x: x * 2\nB = lambda x: x + 1"),
        ["lambdas"],
    ),
    "two closures of one factory swapped": (
        ("ADD_ONE = make(1)\nADD_TEN = make(10)", "ADD_ONE = make(10)\nADD_TEN = make(1)"),
        ["closures"],
    ),
    "a singledispatch registration": (('return "int"', 'return "integer"'), ["dispatch"]),
}


@pytest.fixture
def project(tmp_path: Path) -> Project:
    project = Project(tmp_path)
    project.write("flow.py", FLOW)
    assert set(project.run()["steps"].values()) == {"executed"}
    return project


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_function_identity_edits_rerun_exactly_their_steps(project: Project, edit: str) -> None:
    (old, new), rerun = EDITS[edit]
    project.edit("flow.py", old, new)
    project.check(executed=rerun, cached=[s for s in ALL if s not in rerun])


def test_unchanged_is_all_cached(project: Project) -> None:
    project.check(executed=[], cached=ALL)
