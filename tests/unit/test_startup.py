"""What a fresh process pays before its first cache lookup: the installed
distributions are read as text, and must read exactly as importlib.metadata does."""

from __future__ import annotations

import importlib.metadata

from zencache.environment import name_and_version
from zencache.fingerprint import origin


def test_names_and_versions_read_as_importlib_metadata_reads_them() -> None:
    dists = list(importlib.metadata.distributions())
    assert dists
    for dist in dists:
        assert name_and_version(dist) == (dist.metadata["Name"], dist.version)


def test_packages_distributions_match_importlib_metadata() -> None:
    origin._packages_distributions.cache_clear()
    try:
        assert dict(origin._packages_distributions()) == importlib.metadata.packages_distributions()
    finally:
        origin._packages_distributions.cache_clear()
