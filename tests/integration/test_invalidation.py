"""The invalidation matrix: rewrite user modules between runs, each run in a fresh
interpreter, and check exactly which steps execute.

The project under test has a pipeline module (flow.py), a helper module
(helpers.py) and a deeper helper module (deep.py):

    load -> double -> report        load reads CONSTANT and helpers.scale()
                                    double calls fit() imported by name from helpers
                                    report calls helpers.fmt() as module.func,
                                    which calls deep.pad() two calls deep
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from zencache_testing import check_execution

FLOW = '''
import helpers
from helpers import fit
from zencache import pipeline, step

CONSTANT = 3


def unrelated():
    return "not used by any step"


@step
def load(n: int = 4) -> list:
    """Load some numbers."""
    return [helpers.scale(i) * CONSTANT for i in range(n)]


@step
def double(values: list) -> list:
    return [fit(v) for v in values]


@step
def report(values: list) -> str:
    return helpers.fmt(sum(values))


@pipeline
def flow(n: int = 4):
    values = load(n=n)
    doubled = double(values=values)
    return report(values=doubled)
'''

HELPERS = """
import deep


def scale(x):
    return x + 1


def fit(v):
    return v * 2


def fmt(total):
    return deep.pad(str(total))
"""

DEEP = """
def pad(text):
    return text.rjust(8)
"""

DRIVER = """
import json, sys
sys.path.insert(0, sys.argv[1])
import flow
params = json.loads(sys.argv[3])
run = flow.flow(**params).run(cache=sys.argv[2])
print(json.dumps({"steps": {n: s.status for n, s in run.steps.items()}, "output": run.output()}))
"""


class Project:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.src = root / "src"
        self.src.mkdir()
        self.cache = root / "cache"
        self.write("flow.py", FLOW)
        self.write("helpers.py", HELPERS)
        self.write("deep.py", DEEP)
        (root / "driver.py").write_text(DRIVER)

    def write(self, name: str, text: str) -> None:
        (self.src / name).write_text(textwrap.dedent(text))

    def edit(self, name: str, old: str, new: str) -> None:
        path = self.src / name
        text = path.read_text()
        assert old in text, f"{old!r} not in {name}"
        path.write_text(text.replace(old, new))

    def run(self, **params: object) -> dict:
        done = subprocess.run(
            [
                sys.executable,
                str(self.root / "driver.py"),
                str(self.src),
                str(self.cache),
                json.dumps(params),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def baseline_output() -> str:
    return str(sum((i + 1) * 3 * 2 for i in range(4))).rjust(8)


@pytest.fixture
def project(tmp_path: Path, baseline_output: str) -> Project:
    project = Project(tmp_path)
    first = project.run()
    check_execution(first["steps"], executed=["load", "double", "report"], cached=[])
    assert first["output"] == baseline_output
    return project


ALL = ["load", "double", "report"]


def test_rerun_without_change_executes_nothing(project: Project) -> None:
    check_execution(project.run()["steps"], executed=[], cached=ALL)


@pytest.mark.parametrize(
    ("name", "old", "new"),
    [
        ("flow.py", '"""Load some numbers."""', '"""Load numbers: a new docstring."""'),
        (
            "flow.py",
            "    doubled = double(values=values)",
            "    # a comment\n    doubled = double(values = values)",
        ),
        (
            "flow.py",
            "return [fit(v) for v in values]",
            "return [fit(v)   for v in values]  # formatting",
        ),
        ("flow.py", 'return "not used by any step"', 'return "changed, still unused"'),
    ],
    ids=["docstring", "comment-and-call-format", "format-in-step", "unrelated-function"],
)
def test_cosmetic_or_unrelated_change_does_not_recompute(
    project: Project, name: str, old: str, new: str
) -> None:
    project.edit(name, old, new)
    check_execution(project.run()["steps"], executed=[], cached=ALL)


def test_step_body_change_reruns_it_and_its_changed_dependents(project: Project) -> None:
    project.edit(
        "flow.py", "return [fit(v) for v in values]", "return [fit(v) + 1 for v in values]"
    )
    check_execution(project.run()["steps"], executed=["double", "report"], cached=["load"])


def test_helper_in_other_module_imported_by_name(project: Project) -> None:
    project.edit("helpers.py", "return v * 2", "return v * 3")
    check_execution(project.run()["steps"], executed=["double", "report"], cached=["load"])


def test_helper_reached_as_module_attribute(project: Project) -> None:
    project.edit("helpers.py", "return x + 1", "return x + 2")
    check_execution(project.run()["steps"], executed=["load", "double", "report"], cached=[])


def test_helper_two_calls_deep(project: Project) -> None:
    project.edit("deep.py", "rjust(8)", "rjust(9)")
    check_execution(project.run()["steps"], executed=["report"], cached=["load", "double"])


def test_module_constant(project: Project) -> None:
    project.edit("flow.py", "CONSTANT = 3", "CONSTANT = 5")
    check_execution(project.run()["steps"], executed=["load", "double", "report"], cached=[])


def test_default_value_change(project: Project) -> None:
    project.edit("flow.py", "def load(n: int = 4)", "def load(n: int = 5)")
    # The pipeline passes n explicitly, but the step's own code changed: it reruns,
    # produces identical data, and its dependents stay cached (early cutoff).
    check_execution(project.run()["steps"], executed=["load"], cached=["double", "report"])


def test_parameter_value(project: Project) -> None:
    check_execution(project.run(n=5)["steps"], executed=ALL, cached=[])
    check_execution(project.run(n=4)["steps"], executed=[], cached=ALL)


def test_dependency_code_change_same_result_does_not_recompute(project: Project) -> None:
    project.edit("helpers.py", "return x + 1", "return 1 + x")
    check_execution(project.run()["steps"], executed=["load"], cached=["double", "report"])


def test_version_pin_ignores_code_changes_until_bumped(project: Project) -> None:
    project.edit("flow.py", "@step\ndef double", '@step(version="1")\ndef double')
    check_execution(project.run()["steps"], executed=["double"], cached=["load", "report"])
    project.edit(
        "flow.py", "return [fit(v) for v in values]", "return [fit(v) + 0 for v in values]"
    )
    check_execution(project.run()["steps"], executed=[], cached=ALL)
    project.edit("flow.py", 'version="1"', 'version="2"')
    check_execution(project.run()["steps"], executed=["double"], cached=["load", "report"])


def test_cache_false_always_executes(project: Project) -> None:
    project.edit("flow.py", "@step\ndef load", "@step(cache=False)\ndef load")
    check_execution(project.run()["steps"], executed=["load"], cached=["double", "report"])
    check_execution(project.run()["steps"], executed=["load"], cached=["double", "report"])


def test_seed_style_injected_steps_share_the_cache_rules(project: Project) -> None:
    project.edit(
        "flow.py",
        "@pipeline\ndef flow(n: int = 4):",
        "@pipeline\ndef injected(loader, doubler, reporter):\n"
        "    return reporter(values=doubler(values=loader()))\n\n\n"
        "def seeded(n: int = 4):\n"
        "    return injected(loader=load(n=n), doubler=double(), reporter=report())\n\n\n"
        "@pipeline\ndef flow(n: int = 4):",
    )
    driver = project.root / "driver.py"
    driver.write_text(DRIVER.replace("flow.flow(**params)", "flow.seeded(**params)"))
    # Keys depend on what a step is and gets, not on its invocation name: the
    # injected instances find the entries the other style wrote.
    check_execution(project.run()["steps"], executed=[], cached=["loader", "doubler", "reporter"])
    project.edit("helpers.py", "return v * 2", "return v * 3")
    check_execution(project.run()["steps"], executed=["doubler", "reporter"], cached=["loader"])


def test_script_run_as_main_shares_keys_with_the_imported_module(project: Project) -> None:
    script = project.src / "flow.py"
    script.write_text(
        script.read_text()
        + "\n\nif __name__ == '__main__':\n"
        + "    import sys\n"
        + "    run = flow().run(cache=sys.argv[1])\n"
        + "    print(sorted(s.status for s in run.steps.values()))\n"
    )
    done = subprocess.run(
        [sys.executable, str(script), str(project.cache)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['cached', 'cached', 'cached']"
