"""Category 1: one interpreter, changed code (notebooks). A run, a change made in
the same process (a cell re-run binds a new function, a constant rebound, a
module-level dict or list mutated, a module reloaded after an edit), a second run:
it must see the change and load what a run on an empty cache computes."""

from __future__ import annotations

from pathlib import Path

import pytest
from sound_harness import Project

FLOW = """
import helpers
from zencache import pipeline, step

FACTOR = 2
CONFIG = {"offset": 1}
WEIGHTS = [1, 2, 3]


def helper(x):
    return x * FACTOR


class Scaler:
    def apply(self, x):
        return x + 100


@step
def load() -> int:
    return 5


@step
def transform(x: int) -> int:
    return helper(x) + CONFIG["offset"] + sum(WEIGHTS)


@step
def scale(x: int) -> int:
    return helpers.scale(x) + Scaler().apply(0)


@pipeline
def p():
    x = load()
    return scale(x=transform(x=x))
"""

HELPERS = """
def scale(x):
    return x * 10
"""

TWICE = """
import flow, helpers, importlib

first = flow.p().run(cache=CACHE)
{change}
second = flow.p().run(cache=CACHE)
fresh = flow.p().run(cache=FRESH)
print(json.dumps({{"first": outcome(first), "second": outcome(second), "fresh": outcome(fresh)}}))
"""


@pytest.fixture
def project(tmp_path: Path) -> Project:
    project = Project(tmp_path)
    project.write("flow.py", FLOW)
    project.write("helpers.py", HELPERS)
    return project


CHANGES = {
    "cell re-run redefines a helper": (
        "exec('def helper(x):\\n    return x * 3', vars(flow))",
        ["transform", "scale"],
    ),
    "module constant rebound": ("flow.FACTOR = 7", ["transform", "scale"]),
    "module-level dict mutated": ("flow.CONFIG['offset'] = 40", ["transform", "scale"]),
    "module-level list appended to": ("flow.WEIGHTS.append(4)", ["transform", "scale"]),
    "method assigned to a class": (
        "flow.Scaler.apply = lambda self, x: x + 200",
        ["scale"],
    ),
    "module reloaded after an edit": (
        "open(helpers.__file__, 'w').write('def scale(x):\\n    return x * 11\\n')\n"
        "importlib.invalidate_caches()\nimportlib.reload(helpers)",
        ["scale"],
    ),
    "function code replaced": (
        "flow.helper.__code__ = (lambda x: x * 5).__code__",
        ["transform", "scale"],
    ),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_second_run_in_one_interpreter_sees_the_change(project: Project, change: str) -> None:
    code, rerun = CHANGES[change]
    result = project.session(TWICE.format(change=code))
    assert set(result["first"]["steps"].values()) == {"executed"}
    assert result["second"]["output"] == result["fresh"]["output"], result
    assert result["second"]["output"] != result["first"]["output"], result
    executed = sorted(n for n, s in result["second"]["steps"].items() if s == "executed")
    assert executed == sorted(rerun), result


def test_no_change_stays_cached_in_one_interpreter(project: Project) -> None:
    result = project.session(TWICE.format(change="pass"))
    assert set(result["second"]["steps"].values()) == {"cached"}
    assert result["second"]["output"] == result["fresh"]["output"]


def test_reverting_a_change_hits_the_first_entry(project: Project) -> None:
    result = project.session(
        TWICE.format(change="flow.FACTOR = 7\nflow.p().run(cache=CACHE)\nflow.FACTOR = 2")
    )
    assert set(result["second"]["steps"].values()) == {"cached"}
    assert result["second"]["output"] == result["fresh"]["output"] == result["first"]["output"]


def test_closure_variable_rebound(project: Project) -> None:
    project.write(
        "closure_flow.py",
        """
        from zencache import pipeline, step

        def make():
            factor = 2
            def helper(x):
                return x * factor
            def set_factor(value):
                nonlocal factor
                factor = value
            return helper, set_factor

        helper, set_factor = make()

        @step
        def use() -> int:
            return helper(21)

        @pipeline
        def p():
            return use()
        """,
    )
    result = project.session(
        """
        import closure_flow as m
        first = m.p().run(cache=CACHE)
        m.set_factor(3)
        second = m.p().run(cache=CACHE)
        fresh = m.p().run(cache=FRESH)
        print(json.dumps({"first": outcome(first), "second": outcome(second), "fresh": outcome(fresh)}))
        """
    )
    assert result["second"]["steps"] == {"use": "executed"}
    assert result["second"]["output"] == result["fresh"]["output"] == "63"


def test_status_in_the_same_interpreter_predicts_the_rerun_and_names_the_change(
    project: Project,
) -> None:
    result = project.session(
        """
        import flow
        from zencache.cli.phrasing import reason_lines
        from zencache.inspection.status import pipeline_status
        flow.p().run(cache=CACHE)
        flow.CONFIG["offset"] = 40
        status = {
            s.step: [str(s.status), reason_lines(s.reasons)]
            for s in pipeline_status(flow.p(), Cache(CACHE))
        }
        second = flow.p().run(cache=CACHE)
        print(json.dumps({"status": status, "second": outcome(second)}))
        """
    )
    status, steps = result["status"], result["second"]["steps"]
    assert status["load"][0] == "cached" and steps["load"] == "cached"
    assert status["transform"][0] == "stale" and steps["transform"] == "executed"
    assert any("CONFIG" in reason for reason in status["transform"][1]), status
    assert status["scale"][0] == "stale" and steps["scale"] == "executed"


def test_a_log_list_the_step_appends_to_does_not_make_it_rerun(project: Project) -> None:
    project.write(
        "log_flow.py",
        """
        from zencache import pipeline, step

        CALLS = []

        @step
        def work() -> int:
            CALLS.append("work")
            return 1

        @pipeline
        def p():
            return work()
        """,
    )
    result = project.session(
        """
        import log_flow as m
        first = m.p().run(cache=CACHE)
        second = m.p().run(cache=CACHE)
        print(json.dumps({"first": outcome(first), "second": outcome(second)}))
        """
    )
    assert result["second"]["steps"] == {"work": "cached"}
