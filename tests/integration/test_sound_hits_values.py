"""Category 3: values that carry code. A parameter or an artifact whose type is a
user class brings that class's methods into the step; early cutoff must not hide
a changed method. Category 6 end to end: parameters that behave differently key
apart. Each run in a fresh interpreter, checked against a run on an empty cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from sound_harness import Project

MODELS = """
import dataclasses
import enum


@dataclasses.dataclass(frozen=True)
class Config:
    size: int
    scale: dataclasses.InitVar[int] = 1

    def __post_init__(self, scale):
        object.__setattr__(self, "size", self.size * scale)

    def total(self):
        return self.size + 1

    @property
    def label(self):
        return f"size={self.size}"


class Mode(enum.Enum):
    FAST = "fast"

    def factor(self):
        return 2


class Linear:
    @staticmethod
    def apply(x):
        return x * 3


class Box:
    def __init__(self, side):
        self.side = side

    def area(self):
        return self.side * self.side
"""

FLOW = """
from models import Box, Config, Linear, Mode
from zencache import pipeline, step


@step
def configured(cfg: Config) -> str:
    return f"{cfg.total()} {cfg.label}"


@step
def moded(mode: Mode) -> int:
    return mode.factor()


@step
def with_class(model_cls: type) -> int:
    return model_cls.apply(5)


@step
def make(side: int) -> object:
    return Box(side)


@step
def measure(box) -> int:
    return box.area()


@pipeline
def p():
    a = configured(cfg=Config(4, scale=2))
    b = moded(mode=Mode.FAST)
    c = with_class(model_cls=Linear)
    d = measure(box=make(side=3))
    return a, b, c, d
"""

ALL = ["configured", "moded", "with_class", "make", "measure"]


@pytest.fixture
def project(tmp_path: Path) -> Project:
    project = Project(tmp_path)
    project.write("models.py", MODELS)
    project.write("flow.py", FLOW)
    first = project.run()
    assert sorted(first["steps"]) == sorted(ALL)
    assert set(first["steps"].values()) == {"executed"}, first
    return project


EDITS = {
    "dataclass method": (("return self.size + 1", "return self.size + 2"), ["configured"]),
    "dataclass property": (('f"size={self.size}"', 'f"n={self.size}"'), ["configured"]),
    "dataclass InitVar post-init": (
        ("self.size * scale", "self.size * scale * 10"),
        ["configured"],
    ),
    "enum method": (("return 2", "return 5"), ["moded"]),
    "class passed as a parameter": (("return x * 3", "return x * 4"), ["with_class"]),
    # make() builds a Box but never calls area(): it stays a hit, and its pickle
    # names Box, not its code. measure() calls box.area(): it carries Box from
    # upstream and must rerun, early cutoff or not.
    "method of an artifact's class": (
        ("return self.side * self.side", "return self.side * 4"),
        ["measure"],
    ),
}


def test_no_change_is_all_cached(project: Project) -> None:
    project.check(executed=[], cached=ALL)


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_changed_class_code_reruns_the_steps_that_carry_it(project: Project, edit: str) -> None:
    (old, new), rerun = EDITS[edit]
    project.edit("models.py", old, new)
    project.check(executed=rerun, cached=[s for s in ALL if s not in rerun])


PARAMS = """
import collections
from zencache import pipeline, step


@step
def kind(value: object) -> str:
    return f"{type(value).__name__} {list(value) if isinstance(value, dict) else ''}"


@pipeline
def p():
    return kind(value={value})
"""


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ('b"ab"', 'bytearray(b"ab")'),
        ("collections.OrderedDict(a=1, b=2)", "collections.OrderedDict(b=2, a=1)"),
        ("collections.defaultdict(list)", "collections.defaultdict(int)"),
    ],
)
def test_parameters_that_behave_differently_key_apart(
    tmp_path: Path, first: str, second: str
) -> None:
    project = Project(tmp_path)
    project.write("flow.py", PARAMS.replace("{value}", first))
    assert project.run()["steps"] == {"kind": "executed"}
    project.write("flow.py", PARAMS.replace("{value}", second))
    project.check(executed=["kind"], cached=[])
