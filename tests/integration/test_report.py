"""The HTML report on a real cache: every step a graph node of the right status, a
1,000-step chain under 2 MiB, failed and skipped steps, and the --diff variant."""

from __future__ import annotations

import re
from typing import Any

import pytest

from zencache import Cache, pipeline, step
from zencache.cli.report_html import build_report
from zencache.results import diff_runs

STEPS = 1000


@step
def inc(x: int) -> int:
    return x + 1


@pipeline
def chain(start: int = 0):
    x = inc(x=start)
    for _ in range(STEPS - 1):
        x = inc(x=x)
    return x


@step
def source() -> int:
    return 3


@step
def explode(x: int) -> int:
    raise RuntimeError(f"cannot use {x} <here>")


@step
def after(x: int) -> int:
    return x


@pipeline
def fragile():
    x = source()
    return after(x=explode(x=x))


def nodes(page: str) -> list[tuple[str, str]]:
    return re.findall(r'<g class="node [^"]*" data-step="([^"]+)" data-status="([^"]+)"', page)


@pytest.fixture
def public(cache: Any) -> Cache:
    return Cache(cache.path)


def test_a_1000_step_chain_has_one_node_per_step_and_stays_small(public: Cache) -> None:
    chain().run(cache=public)
    second = chain(start=1).run(cache=public)
    run = public.run(second.run_id)
    page = build_report(public, run, public.run("latest~1"))
    assert len(page.encode()) < 2 * 1024 * 1024
    found = nodes(page)
    assert len(found) == STEPS
    assert found == [(name, s.status) for name, s in run.steps.items()]
    assert {status for _, status in found} == {"executed", "cached"}
    assert page.count('<details class="step ') == STEPS
    assert page.count('id="q"') == 1  # the search box
    assert len(re.findall(r'<path d="M', page)) == STEPS - 1  # one edge per link
    # the step that ran again says why; the hits name the run that computed them
    assert "executed: parameter x: 0 -&gt; 1" in page
    assert f"cache hit (computed by run {public.run('latest~1').id})" in page
    plain = build_report(public, run, previews=False)
    assert len(plain) < len(page)


def test_runs_diff_of_a_1000_step_chain(public: Cache) -> None:
    chain().run(cache=public)
    chain(start=1).run(cache=public)
    found = diff_runs(public.run("chain@latest~1"), public.run("chain@latest"))
    assert found.params[0].name == "start"
    # start=1 shifts every value by one: each step's input and output now carry the
    # ids its successor had, so every key differs, and most steps are hits anyway
    assert len(found.steps) == STEPS and all(s.content_changed for s in found.steps)
    statuses = {(s.status_a, s.status_b) for s in found.steps}
    assert statuses == {("executed", "executed"), ("executed", "cached")}
    assert len(found.metrics) == STEPS
    assert all(m.delta == 1 for m in found.metrics)


def test_failed_and_skipped_steps_are_drawn_and_explained(public: Cache) -> None:
    with pytest.raises(Exception, match="failed"):
        fragile().run(cache=public)
    page = build_report(public, public.run())
    assert nodes(page) == [("source", "executed"), ("explode", "failed"), ("after", "skipped")]
    assert "cannot use 3 &lt;here&gt;" in page and "<here>" not in page
    assert "skipped: an upstream step failed" in page
    assert "executed: first recorded run of this pipeline" in page


def test_the_diff_variant_marks_what_changed(public: Cache) -> None:
    @step
    def scale(x: int, factor: int = 2) -> int:
        return x * factor

    @step
    def report(x: int, y: int) -> dict:
        return {"score": x + y}

    @pipeline
    def scored(factor: int = 2):
        x = source()
        return report(x=x, y=scale(x=x, factor=factor))

    scored().run(cache=public)
    scored(factor=5).run(cache=public)
    page = build_report(public, public.run(), public.run("latest~1"))
    assert re.search(r'class="node cached" data-step="source"', page)
    assert re.search(r'class="node executed changed" data-step="scale"', page)
    assert "Changes since run" in page and "output.score" in page
    assert 'id="only-changed"' in page
