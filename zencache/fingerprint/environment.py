"""The environment a run executed in: interpreter, platform, installed distributions.

Captured once per process (again once numpy is loaded: its BLAS, LAPACK and the
SIMD extensions it dispatches to on this CPU can change floating-point results)
and stored once per distinct environment (its id is a digest of its content), so
a run record only names it. Also where the user's code lives (`user_sys_path`),
so that an audit can import it again. Imports hashing and records; never imports
numpy.
"""

from __future__ import annotations

import functools
import os
import platform
import sys
import sysconfig

from ..hashing import Hasher
from ..storage.records import EnvRecord
from .distributions import installed, name_and_version


def current_environment() -> EnvRecord:
    # Keyed on numpy being loaded: a process that captured its environment before
    # importing numpy must still record numpy's configuration for later runs.
    return _environment("numpy" in sys.modules)


@functools.cache
def _environment(numpy_loaded: bool) -> EnvRecord:
    distributions: dict[str, str] = {}
    for dist in installed():
        name, version = name_and_version(dist)
        if name:
            distributions[name.lower()] = version
    extra: dict[str, str] = {}
    numpy = sys.modules.get("numpy") if numpy_loaded else None
    if numpy is not None:
        extra.update(_numpy_summary(numpy))
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


def _numpy_summary(numpy: object) -> dict[str, str]:
    """BLAS and LAPACK libraries and the SIMD extensions numpy uses on this CPU."""
    try:
        config = numpy.show_config(mode="dicts")  # type: ignore[attr-defined]
    except TypeError:  # numpy < 1.26 has no mode=
        return {"numpy_blas": "unknown"}
    deps = config.get("Build Dependencies", {})
    out = {}
    for name in ("blas", "lapack"):
        lib = deps.get(name, {})
        out[f"numpy_{name}"] = f"{lib.get('name', '?')} {lib.get('version', '?')}"
    simd = config.get("SIMD Extensions", {})
    if isinstance(simd, dict) and simd:
        baseline = " ".join(simd.get("baseline", []) or [])
        found = " ".join(simd.get("found", []) or [])
        out["numpy_simd"] = f"baseline {baseline or '-'}; found {found or '-'}"
    return out


def user_sys_path() -> tuple[str, ...]:
    """The entries of sys.path that hold user code (absolute), in order.

    Entries inside the interpreter's prefixes, site-packages and zip files are
    left out: the audit's fresh interpreter has those by itself.
    """
    roots = _interpreter_roots()
    out: list[str] = []
    for entry in sys.path:
        if not isinstance(entry, str):
            continue
        path = os.path.abspath(entry or os.curdir)
        parts = set(path.split(os.sep))
        if (
            path in out
            or not os.path.isdir(path)
            or parts & {"site-packages", "dist-packages"}
            or any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)
        ):
            continue
        out.append(path)
    return tuple(out)


@functools.cache
def _interpreter_roots() -> frozenset[str]:
    """The interpreter's own folders (once per process: sysconfig.get_paths() cost
    ~0.9 ms, paid by every run record)."""
    prefixes = {
        os.path.abspath(p)
        for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)
    }
    stdlib = {os.path.abspath(sysconfig.get_paths()[k]) for k in ("stdlib", "platstdlib")}
    shared = {os.path.abspath(p) for p in ("/", "/usr", "/usr/local", "/opt")}
    return frozenset((prefixes - shared) | stdlib)


def module_file(fn: object) -> str:
    """The absolute path of the file that defines `fn`'s module, or "" (a notebook)."""
    module = sys.modules.get(getattr(fn, "__module__", "") or "")
    path = getattr(module, "__file__", None)
    return os.path.abspath(path) if isinstance(path, str) else ""


def working_directory() -> str:
    try:
        return os.getcwd()
    except OSError:  # the directory was removed under the process
        return ""
