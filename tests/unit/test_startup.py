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
    expected = importlib.metadata.packages_distributions()
    assert expected
    for top, names in expected.items():
        assert list(origin._distributions_of(top)) == names, top
    assert origin._distributions_of("no_such_module_zc") == ()


def test_unusual_record_rows_are_read_as_pathlib_reads_them() -> None:
    class Dist:
        def __init__(self, record: str) -> None:
            self.record = record

        def read_text(self, name: str) -> str | None:
            return self.record if name == "RECORD" else None

    record = '"odd,name/x.py",,\n./flat.py,,\nreal//deep.py,,\n/abs/y.py,,\nmod/.py,,\n'
    assert origin._top_level_inferred(Dist(record)) == {"odd,name", "flat", "real", "/"}
