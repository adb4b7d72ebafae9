"""Readings, the telemetry app's messages: what one is, and how any message becomes one.

A reading is ``{"sensor": str, "seq": int, "t": float, "celsius": float}`` plus any other fields
the sensor sent (kept, after the four, in their order). ``to_reading`` turns a decoded message
into one or raises InvalidReading saying why; js/src/telemetry.js mirrors it name for name and
word for word, and spec/vectors/readings.json pins both:

- a bare number (the tutorial's sensors write one per line) becomes a reading of the sensor
  named after its source, at the time it was received, numbered by that time in microseconds
  (one more than the last number given to the source when that is not larger), so that numbers
  from a listener that was restarted are new ones;
- an object must have ``sensor`` (a non-empty string), ``seq`` (an integer from 0 to 2**53-1: the
  sensor's own count, which makes a resend harmless) and ``celsius`` (a finite number); ``t``
  (seconds since the epoch, a finite number) defaults to the time received;
- anything else is not a reading.

Sans-I/O: no clock here; the caller passes ``now``.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import BothwaysError

__all__ = ["FIELDS", "MAX_SEQ", "InvalidReading", "to_reading"]

FIELDS = ("sensor", "seq", "t", "celsius")
MAX_SEQ = 2**53 - 1  # the largest integer both languages hold exactly


class InvalidReading(BothwaysError, ValueError):
    """A message that is not a reading: ``reason`` says why, ``source`` where it came from."""

    code = "INVALID_READING"

    def __init__(self, reason: str, *, source: str = "") -> None:
        super().__init__(f"{source}: {reason}" if source else reason)
        self.reason = reason
        self.source = source

    def details(self) -> dict[str, Any]:
        return {"reason": self.reason, "source": self.source}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "an array"
    return type(value).__name__


def to_reading(value: Any, *, source: str, now: float, seqs: dict[str, int]) -> dict[str, Any]:
    """The reading that ``value`` (a decoded message from ``source``) stands for.

    Args:
        value: the message.
        source: where it came from (a URL, a command, "http"); names the sensor of bare numbers.
        now: the time it was received, seconds since the epoch.
        seqs: the last seq given to each source's bare numbers (updated here).

    Raises:
        InvalidReading: it is not a reading; the reason says why.
    """
    if _is_number(value):
        if not math.isfinite(value):
            raise InvalidReading('"celsius" must be a finite number', source=source)
        seq = max(seqs.get(source, 0) + 1, int(now * 1_000_000))
        seqs[source] = seq
        return {"sensor": source, "seq": seq, "t": float(now), "celsius": float(value)}
    if not isinstance(value, dict):
        raise InvalidReading(f"a reading is an object or a number, not {_kind(value)}", source=source)
    sensor = value.get("sensor")
    if "sensor" not in value:
        raise InvalidReading('missing "sensor"', source=source)
    if not isinstance(sensor, str) or not sensor:
        raise InvalidReading('"sensor" must be a non-empty string', source=source)
    if "seq" not in value:
        raise InvalidReading('missing "seq"', source=source)
    seq = value["seq"]
    if not (_is_number(seq) and math.isfinite(seq) and seq == int(seq) and 0 <= seq <= MAX_SEQ):
        raise InvalidReading(f'"seq" must be an integer from 0 to {MAX_SEQ}', source=source)
    t = value.get("t", now)
    if not (_is_number(t) and math.isfinite(t)):
        raise InvalidReading('"t" must be a number (seconds since the epoch)', source=source)
    if "celsius" not in value:
        raise InvalidReading('missing "celsius"', source=source)
    celsius = value["celsius"]
    if not (_is_number(celsius) and math.isfinite(celsius)):
        raise InvalidReading('"celsius" must be a finite number', source=source)
    reading = {"sensor": sensor, "seq": int(seq), "t": float(t), "celsius": float(celsius)}
    for key, extra in value.items():
        if key not in reading:
            reading[key] = extra
    return reading
