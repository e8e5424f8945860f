"""Category 2: workers run exactly the code that was fingerprinted. A module saved
after the driver imported it is what a fresh worker imports: the worker must
refuse to run the step (a clear message), and no result may be stored under the
driver's key; after the edit is reverted, a fresh process gets the right result."""

from __future__ import annotations

from pathlib import Path

import pytest
from sound_harness import Project

FLOW = """
import helpers
from zencache import pipeline, step


@step
def load() -> int:
    return 5


@step
def work(x: int) -> int:
    return helpers.scale(x)


@pipeline
def p():
    return work(x=load())
"""

HELPERS = """
def scale(x):
    return x * 10
"""

EDITED = "def scale(x):\n    return x * 11\n"

EDIT_THEN_RUN = """
import helpers
{define}
open(helpers.__file__, "w").write({edited!r})  # saved while the driver holds the old code
steps = {{}}
try:
    p().run(cache=CACHE, executor="processes", max_workers=1,
            progress=lambda event: steps.__setitem__(event.name, event.status))
    error = ""
except Exception as exc:
    error = str(exc)
print(json.dumps({{"error": error, "steps": steps}}))
"""


@pytest.fixture
def project(tmp_path: Path) -> Project:
    project = Project(tmp_path)
    project.write("flow.py", FLOW)
    project.write("helpers.py", HELPERS)
    return project


@pytest.mark.parametrize("sent", ["by name", "by value"])
def test_worker_with_edited_module_refuses_to_run_the_step(project: Project, sent: str) -> None:
    define = "from flow import p" if sent == "by name" else FLOW
    result = project.session(EDIT_THEN_RUN.format(define=define, edited=EDITED))
    assert result["steps"]["work"] == "failed", result
    assert (
        "was not run" in result["error"]
        and "edited after the driver imported it" in result["error"]
    ), result
    # Reverted: nothing was stored under the old code's key, so a fresh process
    # executes the step and gets what the code on disk computes.
    project.write("helpers.py", HELPERS)
    if sent == "by name":
        project.check(executed=["work"], cached=["load"])
    else:  # the session's own steps are named after its script, not flow.py
        project.check(executed=["load", "work"], cached=[])


def test_unchanged_code_runs_in_workers_and_is_then_cached(project: Project) -> None:
    first = project.run(executor="processes")
    assert set(first["steps"].values()) == {"executed"}, first
    project.check(executed=[], cached=["load", "work"], executor="processes")
    project.edit("helpers.py", "* 10", "* 12")
    project.check(executed=["work"], cached=["load"], executor="processes")
