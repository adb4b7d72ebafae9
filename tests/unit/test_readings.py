"""spec/vectors/readings.json: to_reading of the telemetry app (js/test/telemetry.test.js runs it
too), and what the vectors cannot say."""

from __future__ import annotations

from typing import Any

import pytest

from bothways import BothwaysError
from bothways.telemetry import InvalidReading, to_reading

from ..vectors import load

CASES = load("readings.json")


def test_the_vectors_cover_both_outcomes() -> None:
    assert sum("reading" in c for c in CASES) >= 8
    assert sum("invalid" in c for c in CASES) >= 15


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_reading(case: dict[str, Any]) -> None:
    seqs = dict(case["seqs"])
    if "invalid" in case:
        with pytest.raises(InvalidReading) as info:
            to_reading(case["value"], source=case["source"], now=case["now"], seqs=seqs)
        assert info.value.reason == case["invalid"]
        assert info.value.source == case["source"]
        assert info.value.to_json() == {
            "code": "INVALID_READING",
            "message": f"{case['source']}: {case['invalid']}",
            "reason": case["invalid"],
            "source": case["source"],
        }
        assert seqs == case["seqs"]
        return
    reading = to_reading(case["value"], source=case["source"], now=case["now"], seqs=seqs)
    assert reading == case["reading"]
    assert list(reading) == list(case["reading"])  # field order too
    assert [type(reading[k]) for k in ("seq", "t", "celsius")] == [int, float, float]
    assert seqs == case.get("seqs_after", case["seqs"])


def test_bare_numbers_stay_new_across_restarts() -> None:
    """A listener restarted a moment later numbers a source's bare numbers past its last run."""
    first: dict[str, int] = {}
    a = [to_reading(1.0, source="s", now=1000.0, seqs=first)["seq"] for _ in range(3)]
    second: dict[str, int] = {}
    b = to_reading(1.0, source="s", now=1000.001, seqs=second)["seq"]
    assert a == [1_000_000_000, 1_000_000_001, 1_000_000_002]
    assert b > a[-1]


def test_invalid_reading_is_in_the_error_tree() -> None:
    error = InvalidReading("x")
    assert isinstance(error, BothwaysError) and isinstance(error, ValueError)
    assert str(error) == "x" and error.code == "INVALID_READING"


def test_infinite_bare_number_is_invalid() -> None:
    with pytest.raises(InvalidReading, match="finite"):
        to_reading(float("inf"), source="s", now=1.0, seqs={})
