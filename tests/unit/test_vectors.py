"""The shared vectors (spec/vectors/*.json), the contract that js/test/vectors.test.js runs too.

values.json cases: ``value`` + ``text``: encode(value) is text + newline and decode(text) is
``decodes_to`` (default: value); ``value`` + ``encode_error``: encode raises that code at ``path``;
``text``/``base64`` alone: decode gives ``decodes_to`` or raises ``decode_error`` at ``line`` and
``column`` with ``reason``.
streams.json cases: the Decoder's flat events, fed whole, a byte at a time, split at every offset
and in random chunks.

Every case runs once per backend of bothways.wire (orjson, and the standard library's json).
"""

from __future__ import annotations

import random
from types import ModuleType
from typing import Any

import pytest

from bothways import BothwaysError

from ..vectors import BACKENDS, codec, flat, input_bytes, load, same, same_events, untag

VALUES = [c for c in load("values.json") if not c.get("js_only")]
STREAMS = load("streams.json")


def test_vector_files_are_big_enough() -> None:
    assert len(load("values.json")) >= 60
    assert len(STREAMS) >= 40


@pytest.fixture(params=BACKENDS, scope="module")
def wire(request: pytest.FixtureRequest) -> ModuleType:
    """The codec module of one backend."""
    return codec(request.param)


def _options(case: dict[str, Any]) -> dict[str, Any]:
    return dict(case.get("options", {}))


@pytest.mark.parametrize("case", VALUES, ids=[c["name"] for c in VALUES])
def test_value(wire: ModuleType, case: dict[str, Any]) -> None:
    encode, decode = wire.encode, wire.decode
    if "value" in case:
        value = untag(case["value"])
        if "encode_error" in case:
            with pytest.raises(BothwaysError) as info:
                encode(value, **_options(case))
            assert info.value.code == case["encode_error"]
            assert info.value.path == case["path"]  # type: ignore[attr-defined]
            return
        text = case.get("text_py", case["text"])
        assert encode(value, **_options(case)) == text.encode() + b"\n"
        expected = untag(case["decodes_to"]) if "decodes_to" in case else value
        assert same(decode(text.encode()), expected)
        assert same(decode(text), expected)  # str input too
        return
    data = input_bytes(case)
    if "decode_error" in case:
        where = (case["decode_error"], case["line"], case["column"], case["reason"])
        inputs = [data] if "base64" in case else [data, case["text"]]
        for given in inputs:
            with pytest.raises(BothwaysError) as info:
                decode(given)
            error = info.value
            assert (error.code, error.line, error.column, error.reason) == where  # type: ignore[attr-defined]
            assert str(error).startswith(f"line {case['line']}, col {case['column']}: {case['reason']}")
    else:
        assert same(decode(data), untag(case["decodes_to"]))


def _feed(
    wire: ModuleType, data: bytes, cuts: list[int], max_line: int | None, binary: bool = False
) -> list[dict[str, Any]]:
    decoder = wire.Decoder(max_line=max_line, binary=binary) if max_line else wire.Decoder(binary=binary)
    events = []
    start = 0
    for cut in [*cuts, len(data)]:
        events.extend(decoder.feed(data[start:cut]))
        start = cut
    events.extend(decoder.feed_eof())
    return flat(events, detail=True)


@pytest.mark.parametrize("case", STREAMS, ids=[c["name"] for c in STREAMS])
def test_stream(wire: ModuleType, case: dict[str, Any]) -> None:
    data = input_bytes(case)
    max_line = case.get("max_line")
    binary = case.get("binary", False)
    expected = case["events"]
    whole = _feed(wire, data, [], max_line, binary)
    assert same_events(whole, expected), whole
    assert same_events(_feed(wire, data, list(range(1, len(data))), max_line, binary), expected), (
        "byte at a time"
    )
    if len(data) <= 300:
        for cut in range(1, len(data)):
            assert same_events(_feed(wire, data, [cut], max_line, binary), expected), f"split at {cut}"
    rng = random.Random(case["name"])
    for _ in range(20):
        cuts = (
            sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 8))))
            if len(data) > 1
            else []
        )
        assert same_events(_feed(wire, data, cuts, max_line, binary), expected), f"cuts {cuts}"
