"""Untracked inputs, before anything runs: what each step reads that its code
fingerprint cannot see is an UntrackedInputWarning (once per step and cause in a
process), or in strict mode (the step's `strict=`, else the project's `strict`
setting) an UntrackedInputError. Imports config and errors; the plan's fingerprints
say what is untracked.
"""

from __future__ import annotations

import warnings

from ..core.plan import PlannedStep
from ..errors import UntrackedInputError, UntrackedInputWarning

_WARNED: set[tuple[str, str]] = set()  # (step identity, note) already warned about


def report_untracked(planned: list[PlannedStep]) -> None:
    """Say, before anything runs, what each step reads that its fingerprint cannot
    track: an UntrackedInputWarning once per step and cause in this process, or in
    strict mode (the step's strict=, else the project's setting) an error."""
    project_strict: bool | None = None
    seen: set[int] = set()
    for ps in planned:
        fp = ps.fingerprint
        if fp is None or not fp.untracked or id(ps.step) in seen:
            continue
        seen.add(id(ps.step))
        strict = ps.step.options.strict
        if strict is None:
            if project_strict is None:
                from ..config import load_settings

                project_strict = bool(load_settings().strict)
            strict = project_strict
        notes = fp.untracked
        if strict:
            more = f" (and {len(notes) - 1} more)" if len(notes) > 1 else ""
            raise UntrackedInputError(
                f"step {ps.name!r} is strict, and its code fingerprint cannot track: "
                f"{notes[0]}{more}; pass that value as a parameter or an artifact, pin the "
                "step's code with @step(version=...), or set strict=False "
                "(see 'zencache explain' for every note)"
            )
        for note in notes:
            if (ps.step.identity, note) in _WARNED:
                continue
            _WARNED.add((ps.step.identity, note))
            warnings.warn(
                f"step {ps.name!r}: {note}; a change there does not invalidate its cache entry "
                "(pass it as a parameter, pin @step(version=...), or use strict mode to make "
                "this an error)",
                UntrackedInputWarning,
                stacklevel=2,
            )
