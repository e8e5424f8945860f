"""Where code comes from: user code, Python and its standard library, zencache,
or a third-party package (tracked as `dist==version`, looked up in the installed
distributions). Imports only environment (how installed distributions are read)
of zencache; the lowest module of the package.
"""

from __future__ import annotations

import csv
import functools
import importlib.machinery
import os
import pathlib
import re
import sys
import sysconfig
import types

from .distributions import Distribution, installed, name_and_version, normalized_name

# The AST dump format and the bytecode both change between minor versions, so
# every fingerprint carries the Python minor version, not only those that call
# into the standard library.
PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"

USER, PYTHON, ZENCACHE = "user", "python", "zencache"  # or "pkg:<top-level module>"
_SITE_DIRS = frozenset({"site-packages", "dist-packages"})
# zencache/ itself (this file is zencache/fingerprint/origin.py)
_ZENCACHE_DIR = os.path.normcase(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _python_dirs() -> tuple[str, ...]:
    # Only the standard library's own directories: a prefix (a virtualenv, /usr,
    # a Docker image's /usr/local) also holds user code, such as a src/ checkout
    # inside the virtualenv or /usr/src/app, whose edits must count.
    paths = sysconfig.get_paths()
    dirs = {paths["stdlib"], paths["platstdlib"], os.path.dirname(os.__file__)}
    for prefix in {sys.base_prefix, sys.base_exec_prefix}:
        for key in ("stdlib", "platstdlib"):
            dirs.add(
                sysconfig.get_path(
                    key,
                    vars={
                        "installed_base": prefix,
                        "base": prefix,
                        "platbase": prefix,
                        "installed_platbase": prefix,
                    },
                )
            )
    return tuple(sorted(os.path.normcase(os.path.abspath(d)) for d in dirs))


_PYTHON_DIRS = _python_dirs()


def _under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


@functools.lru_cache(maxsize=4096)
def file_origin(filename: str) -> str:
    path = os.path.normcase(os.path.abspath(filename))
    if _under(path, _ZENCACHE_DIR):
        return ZENCACHE
    components = path.split(os.sep)
    for i in range(len(components) - 2, -1, -1):
        if components[i] in _SITE_DIRS:
            top = components[i + 1].partition(".")[0]  # six.py, _foo.cpython-311-x86_64.so
            return ZENCACHE if top == "zencache" else f"pkg:{top}"
    if any(_under(path, d) for d in _PYTHON_DIRS):
        return PYTHON
    return USER


_MODULE_ORIGINS: dict[str, str] = {}


def module_origin(name: str) -> str | None:
    """Origin of a module by name; None when it cannot be told (not loaded, unknown)."""
    cached = _MODULE_ORIGINS.get(name)
    if cached is not None:
        return cached
    origin = _find_module_origin(name)
    if origin is not None:
        _MODULE_ORIGINS[name] = origin
    return origin


def _find_module_origin(name: str) -> str | None:
    top = name.partition(".")[0]
    if top == "zencache":
        return ZENCACHE
    if name == "builtins" or top in sys.builtin_module_names:
        return PYTHON
    module = sys.modules.get(name)
    if module is not None:
        filename = getattr(module, "__file__", None)
        if not filename:  # a namespace package: judge it by where its portions are
            filename = next(iter(getattr(module, "__path__", None) or ()), None)
        if isinstance(filename, str) and filename:
            return file_origin(filename)
    if top in sys.stdlib_module_names:
        # A project module may shadow a standard one (statistics.py, or a utils.py
        # beside the script): where the import system would find it decides.
        return _found_origin(top) if module is None and "." not in name else PYTHON
    if _distributions_of(top):
        return f"pkg:{top}"
    if name == "__main__":  # an interactive session has no file
        return USER
    return None


def _found_origin(top: str) -> str:
    try:
        spec = importlib.machinery.PathFinder.find_spec(top)
    except Exception:  # an unreadable sys.path entry: judge by the name
        return PYTHON
    if spec is None or not spec.origin or not spec.has_location:
        return PYTHON  # built into the interpreter, or frozen
    return file_origin(spec.origin)


def function_origin(fn: types.FunctionType) -> str:
    filename = fn.__code__.co_filename
    if filename and not filename.startswith("<"):
        return file_origin(filename)
    # exec'd code ("<string>"): judge by the module whose globals it runs in
    return module_origin(str(fn.__globals__.get("__name__", fn.__module__))) or USER


def class_origin(cls: type) -> str:
    # A class whose module cannot be found is fingerprinted like user code:
    # tracking too much costs a cache miss, tracking too little returns stale results.
    return module_origin(str(cls.__module__)) or USER


@functools.cache
def _installed() -> tuple[tuple[Distribution, tuple[str, ...], str], ...]:
    """Each installed distribution, its declared top-level names, and else its RECORD."""
    found = []
    for dist in installed():
        declared = tuple((dist.read_text("top_level.txt") or "").split())
        found.append((dist, declared, "" if declared else dist.read_text("RECORD") or ""))
    return tuple(found)


@functools.cache
def _versions() -> dict[str, str]:
    """Normalized distribution name -> version, the first found winning (as
    importlib.metadata.version finds it)."""
    versions: dict[str, str] = {}
    for dist, _, _ in _installed():
        name, version = name_and_version(dist)
        if name:
            versions.setdefault(normalized_name(name), version)
    return versions


def _unusual(record: str) -> bool:
    """RECORD rows that the one-regex test below could misread: let pathlib decide."""
    text = "\n" + record
    return any(mark in text for mark in ('"', "//", "/./", "\n/", "\n./"))


@functools.cache
def _distributions_of(top: str) -> tuple[str, ...]:
    """importlib.metadata.packages_distributions().get(top, []), at a fraction of its cost.

    The stdlib parses every distribution's METADATA with the email package and
    every RECORD into pathlib objects (~55 ms with 140 distributions installed,
    in every fresh process that runs a pipeline calling numpy). Here names are
    read from the headers, and a RECORD is searched for `top`'s .py files with
    one regex; test_startup compares the two on every installed distribution.
    """
    row = re.compile(
        rf"^(?:{re.escape(top)}/(?:[^,\n]*/)?[^/,\n]+|{re.escape(top)})\.py,", re.MULTILINE
    )
    names = []
    for dist, declared, record in _installed():
        if declared:
            provides = top in declared
        elif record and not _unusual(record):
            provides = row.search(record) is not None
        else:
            provides = top in _top_level_inferred(dist)
        if provides:
            names.append(name_and_version(dist)[0])
    return tuple(names)


def _top_level_inferred(dist: Distribution) -> set[str]:
    """What importlib.metadata's _top_level_inferred gives, from RECORD's text (for
    the RECORDs with unusual rows), or an egg-info's list of installed files."""
    record = dist.read_text("RECORD")
    if record:
        rows = [row[0] if row else "" for row in csv.reader(record.splitlines())]
    else:
        listed = dist.read_text("installed-files.txt") or dist.read_text("SOURCES.txt") or ""
        rows = listed.splitlines()
    tops = set()
    for path in rows:
        last = path.rpartition("/")[2]
        if not (last.endswith(".py") and last.rfind(".") > 0):
            continue  # pathlib's suffix is ".py" exactly for these
        if path.startswith(("/", "./")) or "//" in path or "/./" in path:
            parts = pathlib.PurePosixPath(path).parts  # rare shapes: let pathlib decide
            tops.add(parts[0] if len(parts) > 1 else parts[0][:-3])
        elif "/" in path:
            tops.add(path.partition("/")[0])
        else:
            tops.add(last[:-3])
    return tops


@functools.cache
def distribution_parts(top: str) -> tuple[tuple[str, str], ...] | str:
    """("dist:<name>", "<name>==<version>") parts for a top-level module, or a note."""
    parts = []
    versions = _versions()
    for dist in sorted(set(_distributions_of(top))):
        version = versions.get(normalized_name(dist))
        if version is None:
            continue
        parts.append((f"dist:{dist}", f"{dist}=={version}"))
    if parts:
        return tuple(parts)
    version = getattr(sys.modules.get(top), "__version__", None)
    if isinstance(version, str):
        return ((f"dist:{top}", f"{top}=={version}"),)
    return (
        f"third-party module '{top}': no installed distribution and no __version__, "
        "so a change of its version is not tracked"
    )
