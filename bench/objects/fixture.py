"""The Python side of bench/objects.py: what Node calls into (bothways' python.import serves it by
name from this folder; pythonia imports it by path)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy


class Counter:
    """A class whose instances cross as handles: made and used from Node."""

    def __init__(self, start: int = 0) -> None:
        self.n = start

    def add(self, k: int) -> int:
        self.n += k
        return self.n


def numbers(n: int) -> Iterator[int]:
    """Yields 0 .. n-1: the stream Node pulls."""
    yield from range(n)


def call_back(callback: Callable[[int], Any], n: int) -> int:
    """Calls back ``callback(i)`` n times, one after the other; the sum of what it answered."""
    total = 0
    for i in range(n):
        total += callback(i)
    return total


_made: dict[str, Any] = {}


def prepare(byte_count: int, float_count: int) -> bool:
    """Makes (once) what ``data`` and ``floats`` hand out, so that only the transfer is timed."""
    _made["bytes"] = bytes(range(256)) * (byte_count // 256)
    _made["floats"] = numpy.arange(float_count, dtype=numpy.float64) * 0.25 + 0.1
    _made["list"] = _made["floats"].tolist()
    return True


def data() -> bytes:
    return _made["bytes"]


def floats() -> Any:
    return _made["floats"]


def float_list() -> list[float]:
    """The same float64 values as a list: JSON numbers on the wire."""
    return _made["list"]


def size(value: Any) -> int:
    """The length of what arrived (bytes, a numpy array or a list): a one-way transfer."""
    return len(value)
