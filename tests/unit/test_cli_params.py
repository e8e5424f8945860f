"""`-p` text to values by annotation (cli/params.py) and the global options' hoisting."""

# ruff: noqa: UP045  (Optional[...] is one of the spellings users write)

from __future__ import annotations

import enum
import inspect
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal, Optional

import pytest

from zencache.cli.app import hoist_global_options
from zencache.cli.params import annotations_of, coerce_params, convert, describe
from zencache.errors import TargetError


class Color(enum.Enum):
    RED = "red"
    BLUE = 2


@pytest.mark.parametrize(
    ("text", "annotation", "expected"),
    [
        ("1", float, 1.0),
        ("1e-3", float, 0.001),
        ("-2.5", float, -2.5),
        ("7", int, 7),
        ("1e3", int, 1000),
        ("2.0", int, 2),
        ("true", bool, True),
        ("No", bool, False),
        ("1", bool, True),
        ("2024", str, "2024"),
        ('"a b"', str, "a b"),
        ("x", bytes, b"x"),
        ("data/a.csv", Path, Path("data/a.csv")),
        ("a/b", PurePosixPath, PurePosixPath("a/b")),
        ("none", Optional[int], None),
        ("null", int | None, None),
        ("3", Optional[int], 3),
        ("none", str | None, None),
        ("text", str | None, "text"),
        ("3", int | str, 3),
        ("three", int | str, "three"),
        ("slow", Literal["fast", "slow"], "slow"),
        ("2", Literal[1, 2], 2),
        ("red", Color, Color.RED),
        ("RED", Color, Color.RED),
        ("blue", Color, Color.BLUE),
        ("2", Color, Color.BLUE),
        ("[1, 2]", list, [1, 2]),
        ("[1, 2]", list[int], [1, 2]),
        ("[1, 2]", tuple[int, ...], (1, 2)),
        ('{"a": 1}', dict[str, int], {"a": 1}),
        ("5", Annotated[int, "meta"], 5),
        ("[1]", Any, [1]),
        ("plain", Any, "plain"),
    ],
)
def test_text_that_fits_is_converted(text: str, annotation: Any, expected: Any) -> None:
    value = convert(text, annotation)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("text", "annotation", "described"),
    [
        ("abc", float, "float"),
        ("abc", int, "int"),
        ("2.5", int, "int"),
        ("inf", int, "int"),
        ("maybe", bool, "bool"),
        ("", Path, "a path"),
        ("lots", Optional[int], "int or None"),
        ("medium", Literal["fast", "slow"], "one of 'fast', 'slow'"),
        ("green", Color, "a Color (RED, BLUE)"),
        ("3", list, "a JSON list"),
        ("[1]", dict[str, int], "a JSON dict"),
    ],
)
def test_text_that_does_not_fit_names_the_parameter_value_and_type(
    text: str, annotation: Any, described: str
) -> None:
    def fn(x): ...  # type: ignore[no-untyped-def]

    signature = inspect.signature(fn)
    with pytest.raises(TargetError) as caught:
        coerce_params("pipeline 'p'", signature, {"x": text}, {"x": annotation})
    assert str(caught.value) == (
        f"-p x={text!r}: parameter 'x' of pipeline 'p' expects {described}; "
        "pass a value of that type"
    )
    assert describe(annotation) == described


def test_unannotated_parameters_take_json_else_text() -> None:
    def fn(a, b, c): ...  # type: ignore[no-untyped-def]

    values = coerce_params("f", inspect.signature(fn), {"a": "1", "b": "x y", "c": "[1]"}, {})
    assert values == {"a": 1, "b": "x y", "c": [1]}


def test_string_annotations_are_evaluated() -> None:
    namespace: dict[str, Any] = {}
    exec(
        "from __future__ import annotations\n"
        "def f(rate: float, n: int, missing: NotDefined, flag: bool): ...\n",
        namespace,
    )
    hints = annotations_of(namespace["f"])
    # One annotation cannot be evaluated: the builtin ones are still understood.
    assert hints == {"rate": float, "n": int, "flag": bool}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["cache", "stats", "--cache-dir", "X"], ["--cache-dir", "X", "cache", "stats"]),
        (
            ["cache", "stats", "--cache-dir=X", "--json"],
            ["--cache-dir=X", "cache", "stats", "--json"],
        ),
        (["run", "f.py:p", "--debug", "-p", "a=1"], ["--debug", "run", "f.py:p", "-p", "a=1"]),
        (["--debug", "runs", "ls"], ["--debug", "runs", "ls"]),
        (["run", "--", "--debug"], ["run", "--", "--debug"]),
    ],
)
def test_global_options_after_the_command_move_before_it(
    args: list[str], expected: list[str]
) -> None:
    assert hoist_global_options(args) == expected
