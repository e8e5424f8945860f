"""Results as data: past runs, their steps and artifacts as read-only views
(`Cache().runs()`, `Cache().run("latest")`, `Cache().artifact(id)`), summaries of
values for `show`, `runs diff` and the HTML report. Sits beside maintenance and
inspection (DESIGN.md §8); never imports the CLI, and prints nothing.
"""

from .api import Artifact, Cache, export_files, find_step, resolve_artifact_id
from .diff import Change, MetricChange, RunDiff, StepDiff, diff_runs
from .summary import describe, render, summarize

__all__ = [
    "Artifact",
    "Cache",
    "Change",
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
