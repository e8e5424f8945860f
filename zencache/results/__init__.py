"""Results as data: past runs, their steps and artifacts as read-only views
(`Cache().runs()`, `Cache().run("latest")`, `Cache().artifact(id)`), summaries of
values for `show`, and the data of `runs diff` and of the HTML report (which the
CLI phrases and writes). Sits beside maintenance and
inspection (DESIGN.md §8); never imports the CLI, and prints nothing.

`import zencache` imports this package for `Cache`: the diff and summary names
load their modules (and the status and maintenance layers) on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from .api import Artifact, Cache, export_files, find_step, resolve_artifact_id

_LAZY = {
    "Change": "diff",
    "CodeChange": "diff",
    "MetricChange": "diff",
    "RunDiff": "diff",
    "StepDiff": "diff",
    "diff_runs": "diff",
    "describe": "summary",
    "render": "summary",
    "summarize": "summary",
}

__all__ = [
    "Artifact",
    "Cache",
    "Change",
    "CodeChange",
    "MetricChange",
    "RunDiff",
    "StepDiff",
    "describe",
    "diff_runs",
    "export_files",
    "find_step",
    "render",
    "resolve_artifact_id",
    "summarize",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
