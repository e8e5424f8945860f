"""Pipelines the remote tests run (a module, so that worker processes can import them)."""

from __future__ import annotations

import numpy as np

from zencache import pipeline, step


@step
def make(n: int = 100_000) -> np.ndarray:
    return np.arange(n, dtype=np.float64)


@step
def total(a: np.ndarray, scale: float = 1.0) -> float:
    return float(a.sum()) * scale


@step
def label(value: float) -> str:
    return f"total={value}"


@pipeline
def chain(n: int = 100_000, scale: float = 1.0):
    return label(value=total(a=make(n=n), scale=scale))


@step
def square(x: int) -> int:
    return x * x


@step
def add(a: int, b: int) -> int:
    return a + b


@pipeline
def fan(width: int = 4, base: int = 0):
    values = [square(x=base + i) for i in range(width)]
    result = values[0]
    for value in values[1:]:
        result = add(a=result, b=value)
    return result


class Box:
    """No materializer is registered for it: stored with pickle."""

    def __init__(self, value: int) -> None:
        self.value = value


@step
def boxed(value: int = 1) -> Box:
    return Box(value)


@pipeline
def boxes(value: int = 1):
    return boxed(value=value)
