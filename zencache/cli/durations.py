"""How long something took, as every command shows it: one formatter for the CLI."""

from __future__ import annotations


def human_duration(seconds: float, *, precise: bool = False) -> str:
    """`<1 ms`, `12 ms`, `3.4 s`, `2m 05s`, `1h 02m`. `precise` gives one more digit
    under a minute (`0.1 ms`, `12.3 ms`, `3.42 s`): the per-step table of a run, where
    a cache hit takes a fraction of a millisecond."""
    if seconds < 0.001 and not precise:
        return "<1 ms"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms" if precise else f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s" if precise else f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"
