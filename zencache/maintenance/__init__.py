"""Cache maintenance as data: stats, ls, verify/repair, gc, clear, runs and lineage.

Owns the policies over the two stores (what is garbage, what a damaged object
takes down with it, what a size limit evicts); the index and the store own none.
Sits below core and the executors, which call the size limit after a run:
imports storage, config, errors and materializers.artifacts; never core, an
executor or the CLI, and prints nothing.
"""

from .gc import DEFAULT_GRACE, TEMP_GRACE, ClearReport, GcReport, clear, gc, parse_duration
from .inventory import CacheStats, OutputInfo, StepEntry, ls, stats
from .provenance import (
    MIN_PREFIX,
    Lineage,
    LineageInput,
    LineageNode,
    RunDetails,
    count_runs,
    lineage,
    list_runs,
    resolve_run,
    run_details,
)
from .snapshot import StepRef
from .verify import DamagedArtifact, DamagedObject, DamagedStep, Repair, VerifyReport, verify

__all__ = [
    "DEFAULT_GRACE",
    "MIN_PREFIX",
    "TEMP_GRACE",
    "CacheStats",
    "ClearReport",
    "DamagedArtifact",
    "DamagedObject",
    "DamagedStep",
    "GcReport",
    "Lineage",
    "LineageInput",
    "LineageNode",
    "OutputInfo",
    "Repair",
    "RunDetails",
    "StepEntry",
    "StepRef",
    "VerifyReport",
    "clear",
    "count_runs",
    "gc",
    "lineage",
    "list_runs",
    "ls",
    "parse_duration",
    "resolve_run",
    "run_details",
    "stats",
    "verify",
]
