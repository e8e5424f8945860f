"""What a fresh process pays before its first cache lookup: the installed
distributions are found and read as text without importlib.metadata, and must
read exactly as importlib.metadata does."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

from zencache.fingerprint import origin
from zencache.fingerprint.distributions import Distribution, installed, name_and_version


def test_distributions_are_found_as_importlib_metadata_finds_them() -> None:
    expected = [str(d._path) for d in importlib.metadata.distributions()]  # type: ignore[attr-defined]
    assert expected
    assert [d.folder for d in installed()] == expected


def test_names_and_versions_read_as_importlib_metadata_reads_them() -> None:
    dists = list(importlib.metadata.distributions())
    assert dists
    for dist in dists:
        ours = Distribution(str(dist._path))  # type: ignore[attr-defined]
        assert name_and_version(ours) == (dist.metadata["Name"], dist.version)


def test_versions_of_top_level_modules_match_importlib_metadata() -> None:
    for top, names in importlib.metadata.packages_distributions().items():
        parts = origin.distribution_parts(top)
        if isinstance(parts, str):
            continue  # a module with neither distribution nor __version__
        for name in names:
            assert (f"dist:{name}", f"{name}=={importlib.metadata.version(name)}") in parts, top


def test_unusual_metadata_headers_go_to_the_email_parser(tmp_path: Path) -> None:
    folder = tmp_path / "odd-1.0.dist-info"
    folder.mkdir()
    (folder / "METADATA").write_text("Metadata-Version: 2.1\nName: odd\nVersion:\n 1.0\n\nbody")
    stdlib = importlib.metadata.PathDistribution(folder)
    assert name_and_version(Distribution(str(folder))) == (stdlib.metadata["Name"], stdlib.version)


def test_fingerprinting_and_the_environment_do_not_import_importlib_metadata() -> None:
    code = (
        "import sys, numpy\n"
        "from zencache.fingerprint.environment import current_environment\n"
        "from zencache.fingerprint.origin import distribution_parts\n"
        "assert distribution_parts('numpy')\n"
        "assert current_environment().distributions['numpy']\n"
        "print('importlib.metadata' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


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
