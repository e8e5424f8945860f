"""The environment a run executed in: interpreter, platform, installed distributions.

Captured once per process and stored once per distinct environment (its id is a
digest of its content), so a run record only names it. Imports hashing and
records; reads numpy's BLAS configuration only if numpy is already loaded.
"""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import sys

from .hashing import Hasher
from .records import EnvRecord


@functools.cache
def current_environment() -> EnvRecord:
    distributions: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            distributions[name.lower()] = dist.version
    extra: dict[str, str] = {}
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        extra["numpy_blas"] = _blas_summary(numpy)
    fields = {
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
    h = Hasher("zencache/env/v1")
    for key, value in sorted({**fields, **extra}.items()):
        h.text(key).text(value)
    for name, version in sorted(distributions.items()):
        h.text(name).text(version)
    return EnvRecord(env_id=h.hexdigest(), distributions=distributions, extra=extra, **fields)


def _blas_summary(numpy: object) -> str:
    try:
        config = numpy.show_config(mode="dicts")  # type: ignore[attr-defined]
    except TypeError:  # numpy < 1.26 has no mode=
        return "unknown"
    blas = config.get("Build Dependencies", {}).get("blas", {})
    return f"{blas.get('name', '?')} {blas.get('version', '?')}"
