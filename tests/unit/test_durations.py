"""cli/durations.py: the one duration formatter every command uses."""

from __future__ import annotations

import pytest

from zencache.cli.durations import human_duration


@pytest.mark.parametrize(
    ("seconds", "coarse", "precise"),
    [
        (0.00005, "<1 ms", "0.1 ms"),
        (0.0123, "12 ms", "12.3 ms"),
        (0.5, "500 ms", "500.0 ms"),
        (3.456, "3.5 s", "3.46 s"),
        (59.0, "59.0 s", "59.00 s"),
        (125, "2m 05s", "2m 05s"),
        (3725, "1h 02m", "1h 02m"),
    ],
)
def test_durations_read_the_same_everywhere(seconds: float, coarse: str, precise: str) -> None:
    assert human_duration(seconds) == coarse
    assert human_duration(seconds, precise=True) == precise
