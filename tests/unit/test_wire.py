"""The Python wire core beyond the shared vectors: types only Python has, limits, properties."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import uuid
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bothways import (
    MAX_LINE,
    DecodeError,
    Decoder,
    EncodeError,
    FrameTooLarge,
    Malformed,
    Messages,
    Truncated,
    decode,
    encode,
    encode_many,
)

from ..vectors import flat, same


@dataclasses.dataclass
class Reading:
    sensor: str
    seq: int
    celsius: float


class Unit(enum.Enum):
    CELSIUS = "C"


def test_python_types_map_as_the_table_says() -> None:
    when = datetime.datetime(2026, 11, 24, 18, 43, 42, 500000, tzinfo=datetime.timezone.utc)
    value = {
        "tuple": (1, 2),
        "when": when,
        "day": datetime.date(2026, 11, 24),
        "reading": Reading("s1", 3, 12.5),
        "unit": Unit.CELSIUS,
        "id": uuid.UUID(int=1),
        "np_float": np.float64(2.5),
        "np_int": np.int32(7),
        "array": np.arange(3, dtype=np.int64),
        "matrix": np.array([[1.5, 2.0]]),
    }
    assert decode(encode(value)) == {
        "tuple": [1, 2],
        "when": "2026-11-24T18:43:42.500000+00:00",
        "day": "2026-11-24",
        "reading": {"sensor": "s1", "seq": 3, "celsius": 12.5},
        "unit": "C",
        "id": "00000000-0000-0000-0000-000000000001",
        "np_float": 2.5,
        "np_int": 7,
        "array": [0, 1, 2],
        "matrix": [[1.5, 2.0]],
    }


@pytest.mark.parametrize(
    ("value", "path", "words"),
    [
        ({"a": {1, 2}}, "$.a", "set is not JSON serializable"),
        ({"a": [object()]}, "$.a[0]", "object is not JSON serializable"),
        ({1: "x"}, "$", "object key 1 is a int"),
        ({"r": [Reading("s", 2**60, 1.0)]}, "$.r[0].seq", "beyond ±(2**53-1)"),
        ({"n": np.array([2**60])}, "$.n[0]", "beyond ±(2**53-1)"),
    ],
)
def test_encode_error_names_the_path(value: Any, path: str, words: str) -> None:
    with pytest.raises(EncodeError) as info:
        encode(value)
    assert info.value.path == path
    assert words in str(info.value)
    assert isinstance(info.value, ValueError)
    assert info.value.to_json()["path"] == path


def test_strict_mode_sees_nan_inside_numpy_and_dataclasses() -> None:
    with pytest.raises(EncodeError, match=r"\$\.x\[1\]: nan"):
        encode({"x": np.array([1.0, np.nan])}, strict=True)
    with pytest.raises(EncodeError, match=r"\$\[0\]\.celsius: inf"):
        encode([Reading("s", 1, float("inf"))], strict=True)
    assert encode({"x": np.array([1.0, np.nan])}) == b'{"x":[1.0,null]}\n'


def test_deep_nesting_beyond_orjson_recursion_limit() -> None:
    value: Any = {"leaf": [1.5, "x"]}
    for _ in range(600):
        value = [value]
    line = encode(value)
    assert line == b"[" * 600 + b'{"leaf":[1.5,"x"]}' + b"]" * 600 + b"\n"
    deep_bad: Any = {"a": 2**60}
    for _ in range(300):
        deep_bad = [deep_bad]
    with pytest.raises(EncodeError) as info:
        encode(deep_bad)
    assert info.value.path == "$" + "[0]" * 300 + ".a"


def test_decode_error_says_where() -> None:
    with pytest.raises(DecodeError) as info:
        decode(b'{"sensor": "s1",\n "celsius": 12.5 "seq": 3}')
    err = info.value
    assert (err.line, err.column) == (2, 18)
    assert '"seq"' in err.excerpt
    assert str(err).startswith("line 2, col 18: ")
    assert err.to_json()["code"] == "DECODE_ERROR"


def test_excerpt_is_short_and_marks_cuts() -> None:
    line = b'{"a": "' + b"x" * 200 + b'" oops}\n'
    [event] = Decoder().feed(line)
    assert isinstance(event, Malformed)
    assert len(event.error.excerpt) <= 42
    assert event.error.excerpt.startswith("…") and "oops" in event.error.excerpt


def test_over_long_line_is_dropped_not_buffered() -> None:
    decoder = Decoder(max_line=1000)
    events = decoder.feed(b"1\n" + b"x" * 600)
    assert flat(events) == [{"message": 1, "line": 1}]
    events = decoder.feed(b"x" * 600)
    assert [type(e) for e in events] == [Malformed]
    assert isinstance(events[0].error, FrameTooLarge)  # type: ignore[union-attr]
    assert events[0].error.limit == 1000  # type: ignore[union-attr]
    for _ in range(100):  # 10 MB more of the same line: nothing is held
        assert decoder.feed(b"x" * 100_000) == []
        assert decoder.buffered == 0
    assert flat(decoder.feed(b'x\n"next"\n')) == [{"message": "next", "line": 3}]


def test_default_limit_is_16_mib() -> None:
    assert MAX_LINE == 16 * 1024 * 1024
    decoder = Decoder()
    big = b'"' + b"a" * (MAX_LINE - 2) + b'"'
    assert flat(decoder.feed(big + b"\n")) == [{"message": "a" * (MAX_LINE - 2), "line": 1}]
    events = decoder.feed(big + b"a\n")
    assert isinstance(events[0], Malformed) and events[0].error.code == "FRAME_TOO_LARGE"


def test_feed_after_eof_is_a_usage_error() -> None:
    decoder = Decoder()
    assert decoder.feed_eof() == []
    assert decoder.feed_eof() == []
    with pytest.raises(RuntimeError):
        decoder.feed(b"1\n")
    with pytest.raises(ValueError):
        Decoder(max_line=0)


def test_truncated_events_carry_the_excerpt() -> None:
    decoder = Decoder()
    decoder.feed(b'{"celsius": 4')
    [event] = decoder.feed_eof()
    assert isinstance(event, Truncated)
    assert not event.error.delivered
    assert event.error.excerpt == '{"celsius": 4'
    decoder = Decoder()
    decoder.feed(b"4")
    messages, truncated = decoder.feed_eof()
    assert isinstance(messages, Messages) and messages.values == [4]
    assert isinstance(truncated, Truncated) and truncated.error.delivered


def test_line_counter_and_buffered() -> None:
    decoder = Decoder()
    decoder.feed(b"1\n\n2\n[")
    assert decoder.line == 3
    assert decoder.buffered == 1


# Property tests -------------------------------------------------------------------------------

SAFE_INTS = st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
TEXT = st.text(st.characters(exclude_categories=["Cs"]))  # no lone surrogates
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | SAFE_INTS | FLOATS | TEXT,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(TEXT, children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_any_json_value_round_trips(value: Any) -> None:
    line = encode(value)
    assert line.endswith(b"\n") and b"\n" not in line[:-1]
    assert same(decode(line), value)


LINES = st.one_of(
    JSON_VALUES.map(lambda v: encode(v)[:-1]),
    st.sampled_from([b"", b"  ", b"{bad", b"NaN", b'"\xff"', b"\xef\xbb\xbf1", b"1 2"]),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(LINES, st.sampled_from([b"\n", b"\r\n"])), max_size=12),
    st.binary(max_size=3).filter(lambda b: b"\n" not in b),
    st.lists(st.integers(min_value=0, max_value=10_000), max_size=10),
    st.integers(min_value=5, max_value=200),
)
def test_any_chunking_gives_the_events_of_feeding_whole(
    lines: list[tuple[bytes, bytes]], tail: bytes, cut_points: list[int], max_line: int
) -> None:
    data = b"".join(line + end for line, end in lines) + tail
    cuts = sorted({c % (len(data) + 1) for c in cut_points})

    def run(pieces: list[bytes]) -> list[Any]:
        decoder = Decoder(max_line=max_line)
        events = [e for piece in pieces for e in decoder.feed(piece)]
        return flat(events + decoder.feed_eof())

    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=False)]
    assert repr(run(pieces)) == repr(run([data]))


def test_encode_errors_come_in_document_order() -> None:
    with pytest.raises(EncodeError) as info:
        encode({"a\ud800": 1, "b\ud800": 2})
    assert info.value.path == '$["a\\ud800"]'
    with pytest.raises(EncodeError) as info:
        encode({"x": 2**60, "k\ud800": 1})
    assert info.value.path == "$.x"


def test_a_cycle_is_named_as_such() -> None:
    loop: dict[str, Any] = {"a": [1]}
    loop["self"] = loop
    with pytest.raises(EncodeError, match=r"^\$\.self: circular reference"):
        encode(loop)
    shared = [1, 2]
    assert encode({"x": shared, "y": shared}) == b'{"x":[1,2],"y":[1,2]}\n'  # shared is not a cycle


def test_encode_many_is_the_lines_of_encode() -> None:
    values = [{"a": 1}, [2.5, None], "x\u2028", float("nan")]
    assert encode_many(values) == b"".join(encode(v) for v in values)
    assert encode_many([]) == b""
    with pytest.raises(EncodeError, match=r"^\$: nan"):
        encode_many(values, strict=True)
