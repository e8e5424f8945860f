"""The installed distributions, found as importlib.metadata finds them, without it.

Importing importlib.metadata costs ~12 ms (it imports the email, zipfile and csv
packages), paid by every fresh process that fingerprints a step calling
third-party code or records its environment: a quarter of what `zencache cache
status` may add to the import of a pipeline (benchmarks, goal 6). zencache
needs only a distribution's files as text, so this module lists the
`*.dist-info` and `*.egg-info` folders of every `sys.path` entry in the order
importlib.metadata.distributions() yields them (tests/unit/test_startup.py
compares the two on every installed distribution). Zipped eggs are not read.
"""

from __future__ import annotations

import os
import re
import sys


class Distribution:
    """An installed distribution's metadata folder."""

    __slots__ = ("folder",)

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def __repr__(self) -> str:
        return f"Distribution({self.folder!r})"

    def read_text(self, filename: str) -> str | None:
        """A metadata file's text, or None where it is missing or unreadable."""
        try:
            with open(os.path.join(self.folder, filename), encoding="utf-8") as fh:
                return fh.read()
        except (OSError, UnicodeDecodeError):
            return None


def normalized_name(name: str) -> str:
    """A distribution name as importlib.metadata compares them."""
    return re.sub(r"[-_.]+", "-", name).lower().replace("-", "_")


def installed() -> list[Distribution]:
    """Every distribution on sys.path, first path first; within a path folder, in
    listing order grouped by normalized name (importlib.metadata's order)."""
    found: list[Distribution] = []
    for entry in sys.path:
        root = entry or os.getcwd()
        try:
            children = os.listdir(root)
        except OSError:
            continue  # a zip file, a missing folder
        groups: dict[str, list[Distribution]] = {}
        for child in children:
            low = child.lower()
            if low.endswith((".dist-info", ".egg-info")):
                name = normalized_name(low.rpartition(".")[0].partition("-")[0])
                groups.setdefault(name, []).append(Distribution(os.path.join(root, child)))
        for group in groups.values():
            found.extend(group)
    return found


def name_and_version(dist: Distribution) -> tuple[str, str]:
    """The Name and Version headers of its METADATA (or PKG-INFO), read as text.

    The stdlib parses each METADATA file whole with the email package: 50 ms for
    140 installed distributions, in every fresh process that records a run.
    """
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    found: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break  # the end of the headers
        header, colon, value = line.partition(":")
        key = header.lower()
        if colon and key in ("name", "version") and key not in found:
            found[key] = value.strip()
    if len(found) < 2 or not all(found.values()):
        return _stdlib_name_and_version(dist)  # an unusual file: the stdlib decides
    return found["name"], found["version"]


def _stdlib_name_and_version(dist: Distribution) -> tuple[str, str]:
    import importlib.metadata  # for unusual files only: see the module docstring
    import pathlib

    stdlib = importlib.metadata.PathDistribution(pathlib.Path(dist.folder))
    return stdlib.metadata["Name"] or "", stdlib.version or ""
