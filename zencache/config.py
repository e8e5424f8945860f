"""Project discovery and settings, found the way git finds a repository.

Precedence, lowest first: built-in defaults, `[tool.zencache]` in the nearest
`pyproject.toml`, `ZENCACHE_*` environment variables, then explicit options and
arguments (`--cache-dir`, `Cache(path)`, `run(executor=...)`). Every effective
value remembers where it came from, so `zencache config` can say so.

The cache folder, when nothing names it: the nearest existing `.zencache` folder
from the working directory upwards, else `.zencache` beside the nearest project
marker (`pyproject.toml` or `.git`), else `./.zencache`. The upward walk stops at
the first folder holding a project marker, so a cache of an enclosing project is
never picked up by accident.

A leaf: imports only errors and the standard library (tomllib is stdlib in 3.11).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

CACHE_DIRNAME = ".zencache"
PROJECT_MARKERS = ("pyproject.toml", ".git")
REMOTE_MODES = ("read-write", "read-only", "off")
EXECUTORS = ("local", "processes", "dask")

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "kib": 2**10,
    "m": 10**6, "mb": 10**6, "mib": 2**20,
    "g": 10**9, "gb": 10**9, "gib": 2**30,
    "t": 10**12, "tb": 10**12, "tib": 2**40,
    "p": 10**15, "pb": 10**15, "pib": 2**50,
}  # fmt: skip


def parse_size(text: str | int, *, what: str = "size") -> int:
    """Bytes from `20GB` (decimal), `20GiB` (binary), `500MB` or a plain number of bytes."""
    if isinstance(text, int) and not isinstance(text, bool) and text >= 0:
        return text
    match = _SIZE.match(str(text))
    unit = (match.group(2) or "").lower() if match else ""
    if match is None or unit not in _UNITS:
        raise ConfigError(
            f"{what} {text!r} is not a size; write it like 20GB (decimal), 20GiB (binary) or 500MB"
        )
    return int(float(match.group(1)) * _UNITS[unit])


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{what} must be a non-empty string (got {value!r})")
    return value


def _choice(options: tuple[str, ...]) -> Callable[[Any, str], str]:
    def parse(value: Any, what: str) -> str:
        if value not in options:
            raise ConfigError(f"{what} is {value!r}; use one of {', '.join(options)}")
        return str(value)

    return parse


def _workers(value: Any, what: str) -> int | None:
    if value in (None, "", "auto"):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if isinstance(value, bool) or number < 1:
        raise ConfigError(f"{what} is {value!r}; use a whole number of workers of 1 or more")
    return number


def _flag(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{what} is {value!r}; use true or false (1 or 0)")


def _names(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigError(f"{what} must be a list of names (got {value!r})")


def _max_size(value: Any, what: str) -> int | None:
    if value in (None, "", 0, "0"):
        return None
    return parse_size(value, what=what)


@dataclass(frozen=True, slots=True)
class _Spec:
    default: Any
    parse: Callable[[Any, str], Any]
    env: str
    help: str


SPECS: dict[str, _Spec] = {
    "cache_dir": _Spec(None, _text, "ZENCACHE_DIR", "the cache folder"),
    "remote": _Spec(None, _text, "ZENCACHE_REMOTE", "URL of a shared remote cache"),
    "remote_mode": _Spec(
        "read-write", _choice(REMOTE_MODES), "ZENCACHE_REMOTE_MODE", "use of the remote"
    ),
    "remote_upload": _Spec(
        "wait",
        _choice(("wait", "defer")),
        "ZENCACHE_REMOTE_UPLOAD",
        "wait for a run's uploads, or defer them to 'zencache push'",
    ),
    "executor": _Spec("local", _choice(EXECUTORS), "ZENCACHE_EXECUTOR", "default executor"),
    "workers": _Spec(None, _workers, "ZENCACHE_WORKERS", "parallel workers (default: cores)"),
    "strict": _Spec(False, _flag, "ZENCACHE_STRICT", "untracked inputs are errors"),
    "max_size": _Spec(None, _max_size, "ZENCACHE_MAX_SIZE", "size limit of the cache"),
    "hooks": _Spec((), _names, "ZENCACHE_HOOKS", "hooks called by every run"),
}


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    value: Any
    source: str  # "default", "<path>/pyproject.toml", "ZENCACHE_X", "option"


@dataclass(frozen=True, slots=True)
class Project:
    """Where the project is: its marker folder and its settings file, when there are any."""

    root: Path | None  # the folder holding the nearest project marker
    pyproject: Path | None  # the nearest pyproject.toml (at or above the working directory)
    cache_dir: Path | None  # the nearest existing .zencache folder within the project


@dataclass(frozen=True, slots=True)
class Settings:
    project: Project
    entries: Mapping[str, Setting]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.entries[name].value
        except KeyError:
            raise AttributeError(name) from None

    def source(self, name: str) -> str:
        return self.entries[name].source


def find_project(start: str | os.PathLike[str] | None = None) -> Project:
    """Walk up from `start` (the working directory) to the first project marker.

    String paths and os.path, not pathlib: every run() without an explicit executor
    or cache resolves the project, and pathlib's objects cost ~4x as much here."""
    folder = os.path.abspath(os.fspath(start) if start is not None else os.getcwd())
    cache_dir = pyproject = root = None
    join, exists = os.path.join, os.path.exists
    while True:
        if cache_dir is None and os.path.isdir(join(folder, CACHE_DIRNAME)):
            cache_dir = join(folder, CACHE_DIRNAME)
        if pyproject is None and os.path.isfile(join(folder, "pyproject.toml")):
            pyproject = join(folder, "pyproject.toml")
        if any(exists(join(folder, marker)) for marker in PROJECT_MARKERS):
            root = folder
            break
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return Project(
        root=None if root is None else Path(root),
        pyproject=None if pyproject is None else Path(pyproject),
        cache_dir=None if cache_dir is None else Path(cache_dir),
    )


_tables: dict[Path, tuple[tuple[int, int], dict[str, Any]]] = {}


def read_table(pyproject: Path) -> dict[str, Any]:
    """`[tool.zencache]` of one pyproject.toml (memoized by mtime and size), keys normalized."""
    stat = pyproject.stat()
    stamp = (stat.st_mtime_ns, stat.st_size)
    memo = _tables.get(pyproject)
    if memo is not None and memo[0] == stamp:
        return memo[1]
    try:
        with pyproject.open("rb") as fh:
            document = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {pyproject}: {exc}; fix the file's TOML syntax") from exc
    raw = document.get("tool", {}).get("zencache", {})
    if not isinstance(raw, dict):
        raise ConfigError(f"{pyproject}: [tool.zencache] must be a table")
    table = {key.replace("-", "_"): value for key, value in raw.items()}
    unknown = sorted(set(table) - set(SPECS))
    if unknown:
        raise ConfigError(
            f"{pyproject}: unknown setting {unknown[0]!r} under [tool.zencache]; "
            f"known: {', '.join(SPECS)}"
        )
    _tables[pyproject] = (stamp, table)
    return table


def load_settings(
    start: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    **options: Any,
) -> Settings:
    """The effective settings for a working directory; `options` that are not None win."""
    unknown = sorted(set(options) - set(SPECS))
    if unknown:
        raise TypeError(f"unknown setting {unknown[0]!r}")
    environ = os.environ if environ is None else environ
    project = find_project(start)
    table = read_table(project.pyproject) if project.pyproject else {}
    entries: dict[str, Setting] = {}
    for name, spec in SPECS.items():
        value, source = spec.default, "default"
        if name in table:
            where = f"{project.pyproject} [tool.zencache]"
            value, source = spec.parse(table[name], f"{name} in {where}"), str(project.pyproject)
        if environ.get(spec.env):
            value, source = spec.parse(environ[spec.env], spec.env), spec.env
        if options.get(name) is not None:
            value, source = spec.parse(options[name], f"option {name}"), "option"
        entries[name] = Setting(name, value, source)
    entries["cache_dir"] = _cache_dir(entries["cache_dir"], project, start)
    return Settings(project=project, entries=entries)


def _cache_dir(given: Setting, project: Project, start: str | os.PathLike[str] | None) -> Setting:
    """The cache folder as an absolute path; relative settings are relative to where they were set."""
    if given.value is not None:
        path = Path(given.value).expanduser()
        if given.source == str(project.pyproject) and project.pyproject is not None:
            path = project.pyproject.parent / path
        return Setting("cache_dir", _absolute(path, start), given.source)
    if project.cache_dir is not None:
        return Setting("cache_dir", project.cache_dir, "found")
    base = project.root if project.root is not None else Path(start or os.getcwd())
    return Setting("cache_dir", _absolute(base / CACHE_DIRNAME, start), "default")


def _absolute(path: Path, start: str | os.PathLike[str] | None) -> Path:
    return path if path.is_absolute() else Path(start or os.getcwd()).absolute() / path
