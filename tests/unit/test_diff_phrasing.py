"""How `runs diff` and the report name a changed fingerprint part."""

from __future__ import annotations

import pytest

from zencache.cli.results_commands import describe_code
from zencache.results import CodeChange
from zencache.results.diff import _code_changes


@pytest.mark.parametrize(
    ("change", "text"),
    [
        (CodeChange("version", "version:1", "version:2"), "version 1 -> 2"),
        (CodeChange("version", "abc", "version:3"), "pinned: version 3"),
        (CodeChange("version", "version:3", "abc"), "no longer pinned (was version 3)"),
        (CodeChange("", "a" * 32, "b" * 32), "fingerprint aaaaaaaaaaaa -> bbbbbbbbbbbb"),
        (
            CodeChange("dist:scikit-learn", "scikit-learn==1.4", "scikit-learn==1.5"),
            "package scikit-learn 1.4 -> 1.5",
        ),
        (CodeChange("python", "3.11", "3.12"), "Python 3.11 -> 3.12"),
        (CodeChange("code:nowhere:fit", "x", "y"), "helper `fit` in module nowhere"),
        (CodeChange("code:nowhere:fit", None, "y"), "now uses helper `fit` in module nowhere"),
        (CodeChange("const:nowhere:SCALE", "x", None), "no longer uses constant `SCALE`"),
        (CodeChange("code:nowhere:train", "x", "y", own=True), "step function `train`"),
    ],
)
def test_each_kind_of_part_is_named(change: CodeChange, text: str) -> None:
    assert describe_code(change).startswith(text)


def test_code_changes_are_the_parts_that_differ() -> None:
    parts_a = {"code:m:step": "1", "code:m:fit": "2", "python": "3.11"}
    parts_b = {"code:m:step": "1", "code:m:fit": "3", "const:m:K": "4", "python": "3.11"}
    assert _code_changes("m:step", "f1", "f2", parts_a, parts_b) == [
        CodeChange("code:m:fit", "2", "3"),
        CodeChange("const:m:K", None, "4"),
    ]
    assert _code_changes("m:step", "f1", "f1", parts_a, parts_b) == []
    assert _code_changes("m:step", "version:1", "f2", parts_a, parts_b) == [
        CodeChange("version", "version:1", "f2")
    ]
    assert _code_changes("m:step", "f1", "f2", parts_a, parts_a) == [CodeChange("", "f1", "f2")]
    own = _code_changes("m:step", "f1", "f2", {"code:m:step": "1"}, {"code:m:step": "2"})
    assert own == [CodeChange("code:m:step", "1", "2", own=True)]
