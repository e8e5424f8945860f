"""The garbage collector is paused for the runner's bookkeeping only: user code
runs with it as the application set it, and the state is restored after a run,
also one that fails."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from zencache import Cache, pipeline, step
from zencache.errors import StepFailedError
from zencache.executors import collector

seen: list[bool] = []


@step
def observe(x: int) -> int:
    seen.append(gc.isenabled())
    return x + 1


@step
def explode(x: int) -> int:
    raise RuntimeError("boom")


@pipeline
def two(start: int = 0):
    return observe(x=observe(x=start))


@pipeline
def failing():
    return explode(x=observe(x=-1))


@pytest.fixture(autouse=True)
def restore_collector() -> Iterator[None]:
    was = gc.isenabled()
    seen.clear()
    yield
    (gc.enable if was else gc.disable)()


@pytest.mark.parametrize("app_enabled", [True, False])
def test_step_functions_see_the_collector_as_the_application_set_it(
    cache: Cache, app_enabled: bool
) -> None:
    (gc.enable if app_enabled else gc.disable)()
    two(start=10).run(cache=cache)
    assert seen == [app_enabled, app_enabled]
    assert gc.isenabled() is app_enabled
    seen.clear()
    run = two(start=10).run(cache=cache)  # all hits: no user code
    assert seen == [] and {s.status for s in run.steps.values()} == {"cached"}
    assert gc.isenabled() is app_enabled


def test_a_failing_run_restores_the_collector(cache: Cache) -> None:
    gc.enable()
    with pytest.raises(StepFailedError):
        failing().run(cache=cache)
    assert gc.isenabled()


def test_paused_nests_and_restores() -> None:
    gc.enable()
    with collector.paused() as outer:
        assert outer is True and not gc.isenabled()
        with collector.running_user_code(outer):
            assert gc.isenabled()
            with collector.paused() as inner:
                assert inner is True and not gc.isenabled()
            assert gc.isenabled()
        assert not gc.isenabled()
        with collector.paused() as inner:
            assert inner is False
        assert not gc.isenabled()
    assert gc.isenabled()
