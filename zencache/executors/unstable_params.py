"""Parameters whose canonical form holds a memory address: a warning before the run.

Such a step would miss the cache on every run, silently. Imports the plan and
hashing; runs once per run, in the driver.
"""

from __future__ import annotations

import re
import warnings

from ..core.plan import PlannedStep
from ..hashing import canonical_encoding


class UnstableParameterWarning(UserWarning):
    """A parameter's canonical form holds a memory address: its key changes every run."""


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]{6,}")


def warn_unstable_params(planned: list[PlannedStep]) -> None:
    """Warn when a parameter hashes an object's address (a registered hasher that
    returns repr(value), a string made with str(obj)): such a step would miss the
    cache on every run, silently. Objects with no canonical form at all are refused
    earlier (UnhashableParameterError); only values whose repr shows an address are
    re-encoded here, so the usual run pays nothing."""
    for ps in planned:
        if not ps.param_reprs:  # most steps: no parameters (no items view to make)
            continue
        for name, text in ps.param_reprs.items():
            if " at 0x" not in text:  # a substring test: 10x cheaper than the search
                continue
            found = _ADDRESS.search(text)
            if found is None:
                continue
            value = ps.invocation.params[name]
            if found.group().encode() in canonical_encoding(value):
                warnings.warn(
                    f"parameter {name!r} of step {ps.name!r} hashes a memory address "
                    f"({text}), so its cache key changes every run and the step never hits; "
                    "register a hasher that encodes the value's content "
                    "(zencache.hashing.register_hasher), pass it as an artifact, or add it "
                    "to ignore=",
                    UnstableParameterWarning,
                    stacklevel=2,
                )
