"""Category 8: minimal as well as sound. Moving a helper unchanged to another
module, or adding a method that nothing calls to a class, reruns nothing; the
same edits that do change behaviour still rerun exactly the steps they reach.
Each run in a fresh interpreter, checked against a run on an empty cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from sound_harness import Project

HELPERS = """
SCALE = 3


def scaled(x):
    return x * SCALE + offset()


def offset():
    return 1
"""

MODELS = """
import dataclasses


class Box:
    def __init__(self, side):
        self.side = side

    def area(self):
        return self.side * self._square()

    def _square(self):
        return self.side


@dataclasses.dataclass
class Config:
    size: int

    def doubled(self):
        return self.size * 2
"""

FLOW = """
from helpers import scaled
from models import Box, Config
from zencache import pipeline, step


@step
def compute(x: int) -> int:
    return scaled(x)


@step
def make(side: int) -> object:
    return Box(side)


@step
def passed(box) -> object:
    return box


@step
def measure(box) -> int:
    return box.area()


@step
def configured(cfg: Config) -> int:
    return cfg.doubled()


@step
def independent(x: int) -> int:
    return x + 1


@pipeline
def p():
    a = compute(x=2)
    b = measure(box=passed(box=make(side=3)))
    c = configured(cfg=Config(4))
    d = independent(x=1)
    return a, b, c, d
"""

ALL = ["compute", "make", "passed", "measure", "configured", "independent"]


@pytest.fixture
def project(tmp_path: Path) -> Project:
    project = Project(tmp_path)
    project.write("helpers.py", HELPERS)
    project.write("models.py", MODELS)
    project.write("flow.py", FLOW)
    first = project.run()
    assert set(first["steps"].values()) == {"executed"}, first
    return project


def test_helper_moved_unchanged_to_another_module_reruns_nothing(project: Project) -> None:
    # scaled, offset and SCALE move to a new module; flow imports from there.
    project.write("helpers.py", "")
    project.write("numerics.py", HELPERS)
    project.edit("flow.py", "from helpers import scaled", "from numerics import scaled")
    project.check(executed=[], cached=ALL)


def test_helper_moved_into_a_package_module_reruns_nothing(project: Project) -> None:
    project.write("helpers.py", "from lib.maths import scaled  # noqa: F401\n")
    project.write("lib/__init__.py", "")
    project.write("lib/maths.py", HELPERS)
    project.check(executed=[], cached=ALL)


def test_moved_and_changed_helper_reruns(project: Project) -> None:
    project.write("helpers.py", "")
    project.write("numerics.py", HELPERS.replace("SCALE = 3", "SCALE = 4"))
    project.edit("flow.py", "from helpers import scaled", "from numerics import scaled")
    project.check(executed=["compute"], cached=[s for s in ALL if s != "compute"])


def test_two_same_named_helpers_swapped_between_modules_rerun(tmp_path: Path) -> None:
    # Names without modules must not merge two helpers: swapping what a.f and
    # b.f do changes what step() computes.
    project = Project(tmp_path)
    project.write("a.py", "def f(x):\n    return x + 1\n")
    project.write("b.py", "def f(x):\n    return x * 10\n")
    project.write(
        "flow.py",
        "import a, b\nfrom zencache import pipeline, step\n\n\n"
        "@step\ndef s(x: int) -> int:\n    return a.f(x) - b.f(x)\n\n\n"
        "@pipeline\ndef p():\n    return s(x=3)\n",
    )
    assert project.run()["steps"] == {"s": "executed"}
    project.write("a.py", "def f(x):\n    return x * 10\n")
    project.write("b.py", "def f(x):\n    return x + 1\n")
    project.check(executed=["s"], cached=[])


def test_uncalled_method_added_to_a_class_reruns_nothing(project: Project) -> None:
    project.edit(
        "models.py",
        "    def _square(self):",
        "    def perimeter(self):\n        return 4 * self.side\n\n    def _square(self):",
    )
    project.edit(
        "models.py",
        "    def doubled(self):",
        "    def describe(self):\n        return f'size {self.size}'\n\n    def doubled(self):",
    )
    project.check(executed=[], cached=ALL)


def test_changed_method_reruns_only_the_steps_that_call_it(project: Project) -> None:
    # Through a pass-through step too: measure carries Box from make, two steps up.
    project.edit("models.py", "return self.side\n", "return self.side + 1\n")
    project.check(executed=["measure"], cached=[s for s in ALL if s != "measure"])


def test_a_method_that_starts_being_called_reruns(project: Project) -> None:
    project.edit(
        "models.py",
        "    def _square(self):",
        "    def perimeter(self):\n        return 4 * self.side\n\n    def _square(self):",
    )
    project.check(executed=[], cached=ALL)
    project.edit("flow.py", "return box.area()", "return box.area() + box.perimeter()")
    project.check(executed=["measure"], cached=[s for s in ALL if s != "measure"])
    project.edit("models.py", "return 4 * self.side", "return 5 * self.side")
    project.check(executed=["measure"], cached=[s for s in ALL if s != "measure"])


def test_dunder_and_decorated_methods_always_count(project: Project) -> None:
    # == calls __eq__ by no name the code spells out: a dunder always counts, and
    # every step whose code reaches Box (or carries it from upstream) reruns.
    project.edit(
        "models.py",
        "    def area(self):",
        "    def __eq__(self, other):\n        return True\n\n    def area(self):",
    )
    project.check(
        executed=["make", "passed", "measure"], cached=["compute", "configured", "independent"]
    )


def test_reflection_keeps_every_method(tmp_path: Path) -> None:
    # getattr with a computed name can reach any method: none is left out.
    project = Project(tmp_path)
    project.write(
        "models.py",
        "class Ops:\n    def op_add(self, x):\n        return x + 1\n\n"
        "    def op_mul(self, x):\n        return x * 2\n",
    )
    project.write(
        "flow.py",
        "from models import Ops\nfrom zencache import pipeline, step\n\n\n"
        "@step\ndef s(kind: str) -> int:\n    return getattr(Ops(), 'op_' + kind)(5)\n\n\n"
        "@pipeline\ndef p():\n    return s(kind='mul')\n",
    )
    assert project.run()["steps"] == {"s": "executed"}
    project.edit("models.py", "return x * 2", "return x * 3")
    project.check(executed=["s"], cached=[])


def test_moved_class_reruns_what_stores_it(project: Project) -> None:
    # A pickled Box names models.Box: a cached value must not outlive the move.
    project.write("shapes.py", MODELS)
    project.write("models.py", "from shapes import Box, Config  # noqa: F401\n")
    project.edit("flow.py", "from models import Box, Config", "from shapes import Box, Config")
    result = project.check(
        executed=["make", "passed", "measure", "configured"], cached=["compute", "independent"]
    )
    assert not result.get("errors")


def test_worker_processes_agree_on_carried_classes(project: Project) -> None:
    # Workers fingerprint measure with the Box it carries from make (and pickling a
    # Box leaves copyreg's __slotnames__ on the class: bookkeeping, not code).
    project.check(executed=[], cached=ALL, executor="processes")
    project.edit("models.py", "return self.side\n", "return self.side + 1\n")
    project.check(
        executed=["measure"], cached=[s for s in ALL if s != "measure"], executor="processes"
    )
