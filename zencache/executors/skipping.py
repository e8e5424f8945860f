"""Importing the user's code without running its pipelines.

A module may run a pipeline when imported (a notebook exported as a script ends
with an unguarded `my_pipeline.run()`). Whoever imports it only to find a pipeline
or a step (the CLI's TARGET, a worker resolving a step by name) must not execute
that run: inside `runs_skipped()`, `run()` executes nothing, records nothing and
returns a SkippedRun. If the module goes on to read that run's result, its import
stops there (InspectionStop) and keeps what it defined up to that line.

The switch is a ContextVar: it holds for the importing thread only, so the steps a
Dask worker runs on its other threads meanwhile are not affected. Imports nothing
of ours.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any


class InspectionStop(BaseException):
    """The module used the result of a run that was skipped while it was imported.
    A BaseException, so that the module's `except Exception` lets it through to the
    importer, which keeps what the module defined up to there."""


class SkippedRun:
    """What `run()` returns while the module that calls it is only being imported.

    Reading anything from it stops the import rather than inventing results the
    module might act on."""

    def __init__(self, pipeline: str) -> None:
        self._pipeline = pipeline

    def __repr__(self) -> str:
        return f"<run of {self._pipeline!r} skipped: its module was being imported>"

    def __getattr__(self, name: str) -> Any:
        raise InspectionStop(
            f"the module used .{name} of the run of pipeline {self._pipeline!r}, which was "
            "skipped because the module was only being imported"
        )


# The pipelines whose run() was skipped, while user code is imported (None: runs execute).
_skipped: ContextVar[list[str] | None] = ContextVar("zencache_skipped_runs", default=None)


@contextlib.contextmanager
def runs_skipped() -> Iterator[list[str]]:
    """While it lasts (on this thread), `run()` executes nothing and returns a SkippedRun;
    the names of the pipelines it was called for are collected in the yielded list."""
    outer = _skipped.get()
    if outer is not None:  # nested: the outer caller collects the names
        yield outer
        return
    names: list[str] = []
    token = _skipped.set(names)
    try:
        yield names
    finally:
        _skipped.reset(token)


def skip_run(pipeline: str) -> SkippedRun | None:
    """A SkippedRun when runs are being skipped now (the run is noted), else None."""
    names = _skipped.get()
    if names is None:
        return None
    names.append(pipeline)
    return SkippedRun(pipeline)


def exec_module(
    name: str, spec: importlib.machinery.ModuleSpec
) -> tuple[types.ModuleType, InspectionStop | None]:
    """Run a module's code as an import would, its runs skipped. An InspectionStop keeps
    the module (what it defined so far) and is returned; any other error propagates,
    with the module unregistered as importlib does."""
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs, so that pickling, dataclasses and fingerprints find it.
    sys.modules[name] = module
    stop = None
    try:
        assert spec.loader is not None
        with runs_skipped():
            spec.loader.exec_module(module)
    except InspectionStop as exc:
        stop = exc
    except BaseException:
        sys.modules.pop(name, None)
        raise
    parent, _, child = name.rpartition(".")
    if parent and parent in sys.modules:
        setattr(sys.modules[parent], child, module)
    return module, stop


def import_module(name: str) -> types.ModuleType:
    """importlib.import_module, with the runs the module makes at import time skipped."""
    loaded = sys.modules.get(name)
    if loaded is not None:
        return loaded
    with runs_skipped():
        spec = importlib.util.find_spec(name)  # imports the parent packages
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    return exec_module(name, spec)[0]
