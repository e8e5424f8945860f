"""Why a step misses, as `MissReason`s: its key's ingredients against the last entry
recorded for it (the `latest` pointer of its pipeline and invocation name).

Coarse on purpose: one reason per kind of ingredient, from at most two index reads,
and only when something listens to the run's events. `zencache explain` gives the
ingredient-by-ingredient diff (inspection/status.py). Imports plan, keys and the index.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..core.keys import RUNTIME_MATERIALIZER
from ..core.plan import PlannedStep
from ..errors import ZencacheError
from ..storage.protocols import Index
from .events import MissReason


def miss_reasons(
    index: Index,
    pipeline: str,
    ps: PlannedStep,
    key: str,
    input_ids: Mapping[str, str],
    *,
    force: bool,
) -> tuple[tuple[MissReason, ...], str]:
    """The reasons `ps` executes under `key`, and the key of its last entry ("" if none)."""
    if not ps.step.options.cache:
        return (MissReason.NOT_CACHED,), ""
    previous = index.latest_key(pipeline, ps.name) or ""
    if force:
        return (MissReason.FORCED,), previous
    if not previous:
        return (MissReason.NEW,), ""
    try:
        record = index.get_step(previous)
    except ZencacheError:  # a damaged entry reads as one removed: the step executes anyway
        record = None
    if record is None or previous == key:
        return (MissReason.ENTRY_GONE,), previous
    reasons = []
    if record.step != ps.step.identity or record.fingerprint != ps.parts.code:
        reasons.append(MissReason.CODE)
    if {n: p["hash"] for n, p in record.params.items()} != dict(ps.parts.params):
        reasons.append(MissReason.PARAMETERS)
    if dict(record.inputs) != dict(input_ids):
        reasons.append(MissReason.INPUTS)
    if dict(record.external) != {e.name: e.record for e in ps.externals}:
        reasons.append(MissReason.EXTERNAL)
    names = tuple(name for name, _ in ps.parts.outputs)
    if names != tuple(record.output_names) or any(
        identity not in (RUNTIME_MATERIALIZER, record.materializers.get(name, identity))
        for name, identity in ps.parts.outputs
    ):
        reasons.append(MissReason.OUTPUTS)
    return tuple(reasons) or (MissReason.FORMAT,), previous
