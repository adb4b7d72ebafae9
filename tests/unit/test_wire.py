"""The Python wire core beyond the shared vectors: types only Python has, limits, properties.

Every test takes the ``wire`` fixture and so runs once per backend of bothways.wire: orjson, and
the standard library's json (a twin of the module loaded with orjson hidden, tests/vectors.py).
The tests after "Both backends" check that the two give the same bytes, values and errors.
"""

from __future__ import annotations

import array
import collections
import dataclasses
import datetime
import enum
import importlib.util
import json
import math
import os
import subprocess
import sys
import uuid
import zoneinfo
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bothways.wire
from bothways import DecodeError, EncodeError, FrameTooLarge

from ..conftest import ROOT
from ..vectors import BACKENDS, codec, flat, same


@pytest.fixture(params=BACKENDS, scope="module")
def wire(request: pytest.FixtureRequest) -> ModuleType:
    """The codec module of one backend (module-scoped: hypothesis tests take it too)."""
    return codec(request.param)


@dataclasses.dataclass
class Reading:
    sensor: str
    seq: int
    celsius: float


class Unit(enum.Enum):
    CELSIUS = "C"


def test_python_types_map_as_the_table_says(wire: ModuleType) -> None:
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
    assert wire.decode(wire.encode(value)) == {
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
def test_encode_error_names_the_path(wire: ModuleType, value: Any, path: str, words: str) -> None:
    with pytest.raises(EncodeError) as info:
        wire.encode(value)
    assert info.value.path == path
    assert words in str(info.value)
    assert isinstance(info.value, ValueError)
    assert info.value.to_json()["path"] == path


def test_strict_mode_sees_nan_inside_numpy_and_dataclasses(wire: ModuleType) -> None:
    with pytest.raises(EncodeError, match=r"\$\.x\[1\]: nan"):
        wire.encode({"x": np.array([1.0, np.nan])}, strict=True)
    with pytest.raises(EncodeError, match=r"\$\[0\]\.celsius: inf"):
        wire.encode([Reading("s", 1, float("inf"))], strict=True)
    assert wire.encode({"x": np.array([1.0, np.nan])}) == b'{"x":[1.0,null]}\n'


def test_deep_nesting_beyond_orjson_recursion_limit(wire: ModuleType) -> None:
    value: Any = {"leaf": [1.5, "x"]}
    for _ in range(600):
        value = [value]
    line = wire.encode(value)
    assert line == b"[" * 600 + b'{"leaf":[1.5,"x"]}' + b"]" * 600 + b"\n"
    deep_bad: Any = {"a": 2**60}
    for _ in range(300):
        deep_bad = [deep_bad]
    with pytest.raises(EncodeError) as info:
        wire.encode(deep_bad)
    assert info.value.path == "$" + "[0]" * 300 + ".a"


def test_nesting_limit_is_1024_both_ways(wire: ModuleType) -> None:
    deepest: Any = []
    for _ in range(1023):
        deepest = [deepest]  # 1024 arrays
    assert wire.encode(deepest) == b"[" * 1024 + b"]" * 1024 + b"\n"
    assert same(wire.decode(b"[" * 1024 + b"]" * 1024), deepest)
    with pytest.raises(EncodeError, match="nesting deeper than 1024") as encode_info:
        wire.encode([deepest])
    assert encode_info.value.path == "$" + "[0]" * 1024
    with pytest.raises(DecodeError) as decode_info:
        wire.decode(b"[" * 1025 + b"]" * 1025)
    assert (decode_info.value.column, decode_info.value.reason) == (
        1025,
        "nesting deeper than 1024 arrays/objects",
    )


def test_decode_error_says_where(wire: ModuleType) -> None:
    with pytest.raises(DecodeError) as info:
        wire.decode(b'{"sensor": "s1",\n "celsius": 12.5 "seq": 3}')
    err = info.value
    assert (err.line, err.column) == (2, 18)
    assert '"seq"' in err.excerpt
    assert str(err).startswith("line 2, col 18: ")
    assert err.to_json()["code"] == "DECODE_ERROR"


def test_numbers_read_as_orjson_reads_them(wire: ModuleType) -> None:
    assert same(wire.decode(b"[1E2,-0.0,-0,1e-400,18446744073709551615]"), [100.0, -0.0, 0, 0.0, 2**64 - 1])
    assert same(wire.decode(b"[18446744073709551616,-9223372036854775809]"), [2.0**64, -(2.0**63)])
    assert same(wire.decode(b"-9223372036854775808"), -(2**63))
    for text in (b"1e400", b"[-1e400]", b"1" * 400, b"9" * 5000):
        with pytest.raises(DecodeError, match=r"number too large \(it overflows to infinity\)"):
            wire.decode(text)
    for text in (b"NaN", b"[Infinity]", b"-Infinity", b"01", b"1.", b"+1", b'"\\ud800"', b'"\xed\xa0\x80"'):
        with pytest.raises(DecodeError):
            wire.decode(text)


def test_excerpt_is_short_and_marks_cuts(wire: ModuleType) -> None:
    line = b'{"a": "' + b"x" * 200 + b'" oops}\n'
    [event] = wire.Decoder().feed(line)
    assert isinstance(event, wire.Malformed)
    assert len(event.error.excerpt) <= 42
    assert event.error.excerpt.startswith("…") and "oops" in event.error.excerpt


def test_over_long_line_is_dropped_not_buffered(wire: ModuleType) -> None:
    decoder = wire.Decoder(max_line=1000)
    events = decoder.feed(b"1\n" + b"x" * 600)
    assert flat(events) == [{"message": 1, "line": 1}]
    events = decoder.feed(b"x" * 600)
    assert [type(e) for e in events] == [wire.Malformed]
    assert isinstance(events[0].error, FrameTooLarge)
    assert events[0].error.limit == 1000
    for _ in range(100):  # 10 MB more of the same line: nothing is held
        assert decoder.feed(b"x" * 100_000) == []
        assert decoder.buffered == 0
    assert flat(decoder.feed(b'x\n"next"\n')) == [{"message": "next", "line": 3}]


def test_default_limit_is_16_mib(wire: ModuleType) -> None:
    assert wire.MAX_LINE == 16 * 1024 * 1024
    decoder = wire.Decoder()
    big = b'"' + b"a" * (wire.MAX_LINE - 2) + b'"'
    assert flat(decoder.feed(big + b"\n")) == [{"message": "a" * (wire.MAX_LINE - 2), "line": 1}]
    events = decoder.feed(big + b"a\n")
    assert isinstance(events[0], wire.Malformed) and events[0].error.code == "FRAME_TOO_LARGE"


def test_feed_after_eof_is_a_usage_error(wire: ModuleType) -> None:
    decoder = wire.Decoder()
    assert decoder.feed_eof() == []
    assert decoder.feed_eof() == []
    with pytest.raises(RuntimeError, match=r"^feed\(\) after feed_eof\(\)$"):
        decoder.feed(b"1\n")
    with pytest.raises(ValueError):
        wire.Decoder(max_line=0)


def test_a_decoder_takes_any_bytes_like_chunk(wire: ModuleType) -> None:
    for kind in (bytes, bytearray, memoryview):
        decoder = wire.Decoder()
        events = decoder.feed(kind(b"1\n")) + decoder.feed(kind(b'[2,\n"x"]\n3')) + decoder.feed(kind(b"\n"))
        assert flat(events) == flat(wire.Decoder().feed(b'1\n[2,\n"x"]\n3\n')), kind


def test_truncated_events_carry_the_excerpt(wire: ModuleType) -> None:
    decoder = wire.Decoder()
    decoder.feed(b'{"celsius": 4')
    [event] = decoder.feed_eof()
    assert isinstance(event, wire.Truncated)
    assert not event.error.delivered
    assert event.error.excerpt == '{"celsius": 4'
    decoder = wire.Decoder()
    decoder.feed(b"4")
    messages, truncated = decoder.feed_eof()
    assert isinstance(messages, wire.Messages) and messages.values == [4]
    assert isinstance(truncated, wire.Truncated) and truncated.error.delivered


def test_line_counter_and_buffered(wire: ModuleType) -> None:
    decoder = wire.Decoder()
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
@given(value=JSON_VALUES)
def test_any_json_value_round_trips(wire: ModuleType, value: Any) -> None:
    line = wire.encode(value)
    assert line.endswith(b"\n") and b"\n" not in line[:-1]
    assert same(wire.decode(line), value)


LINES = st.one_of(
    JSON_VALUES.map(lambda v: bothways.wire.encode(v)[:-1]),
    st.sampled_from([b"", b"  ", b"{bad", b"NaN", b'"\xff"', b"\xef\xbb\xbf1", b"1 2"]),
)


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(st.tuples(LINES, st.sampled_from([b"\n", b"\r\n"])), max_size=12),
    tail=st.binary(max_size=3).filter(lambda b: b"\n" not in b),
    cut_points=st.lists(st.integers(min_value=0, max_value=10_000), max_size=10),
    max_line=st.integers(min_value=5, max_value=200),
)
def test_any_chunking_gives_the_events_of_feeding_whole(
    wire: ModuleType, lines: list[tuple[bytes, bytes]], tail: bytes, cut_points: list[int], max_line: int
) -> None:
    data = b"".join(line + end for line, end in lines) + tail
    cuts = sorted({c % (len(data) + 1) for c in cut_points})

    def run(pieces: list[bytes]) -> list[Any]:
        decoder = wire.Decoder(max_line=max_line)
        events = [e for piece in pieces for e in decoder.feed(piece)]
        return flat(events + decoder.feed_eof())

    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=False)]
    assert repr(run(pieces)) == repr(run([data]))


def test_encode_errors_come_in_document_order(wire: ModuleType) -> None:
    with pytest.raises(EncodeError) as info:
        wire.encode({"a\ud800": 1, "b\ud800": 2})
    assert info.value.path == '$["a\\ud800"]'
    with pytest.raises(EncodeError) as info:
        wire.encode({"x": 2**60, "k\ud800": 1})
    assert info.value.path == "$.x"


def test_a_cycle_is_named_as_such(wire: ModuleType) -> None:
    loop: dict[str, Any] = {"a": [1]}
    loop["self"] = loop
    with pytest.raises(EncodeError, match=r"^\$\.self: circular reference"):
        wire.encode(loop)
    shared = [1, 2]
    assert wire.encode({"x": shared, "y": shared}) == b'{"x":[1,2],"y":[1,2]}\n'  # shared is not a cycle


def test_encode_many_is_the_lines_of_encode(wire: ModuleType) -> None:
    values = [{"a": 1}, [2.5, None], "x\u2028", float("nan")]
    assert wire.encode_many(values) == b"".join(wire.encode(v) for v in values)
    assert wire.encode_many([]) == b""
    with pytest.raises(EncodeError, match=r"^\$: nan"):
        wire.encode_many(values, strict=True)


# Both backends: the same bytes, values and errors -----------------------------------------------


def test_the_backend_is_orjson_when_it_imports() -> None:
    hidden = os.environ.get("BOTHWAYS_HIDE_ORJSON") == "1"  # (tests/conftest.py: make mutation)
    expected = "orjson" if importlib.util.find_spec("orjson") and not hidden else "json"
    assert bothways.wire.BACKEND == expected


def test_without_orjson_the_standard_library_takes_over() -> None:
    """A fresh interpreter where ``import orjson`` fails, at Python's default recursion limit:
    the json backend is chosen, and reads and writes at the nesting limit all the same."""
    code = """if True:
        import sys
        sys.modules["orjson"] = None
        import bothways, bothways.wire as w
        assert w.BACKEND == "json", w.BACKEND
        assert sys.getrecursionlimit() == 1000
        assert w.encode({"t": 1e-05, "n": float("nan")}) == b'{"t":0.00001,"n":null}\\n'
        deep = b"[" * 1024 + b"]" * 1024
        assert w.encode(w.decode(deep)) == deep + b"\\n"
        try:
            w.decode(b"[" * 1025 + b"]" * 1025)
        except bothways.DecodeError as exc:
            assert exc.reason == "nesting deeper than 1024 arrays/objects", exc
        else:
            raise AssertionError("1025 deep was accepted")
        print("ok")
    """
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        timeout=60,
    )
    assert (result.returncode, result.stdout.strip()) == (0, "ok"), result.stderr


@pytest.fixture(scope="module")
def backends() -> tuple[ModuleType, ModuleType]:
    """(orjson's module, json's module); skipped where orjson is not installed."""
    return codec("orjson"), codec("json")


def outcome(call: Callable[[], Any]) -> tuple[Any, ...]:
    """What a call gives, comparable across backends: its value, or its error in full."""
    try:
        result = call()
    except (EncodeError, DecodeError) as exc:
        return (type(exc).__name__, str(exc), getattr(exc, "path", None))
    if isinstance(result, bytes):
        return ("bytes", result)
    return ("value", json.dumps(result, default=repr, allow_nan=True))


class Small(enum.IntEnum):
    TWO = 2
    HUGE = 2**60


class Letter(str, enum.Enum):
    A = "a"


class Odd(enum.Enum):
    PAIR = (1, 2.5)
    BIG = 2**60
    DAY = datetime.date(2020, 1, 2)
    BAD_KEY = {1: 2}


class Celsius(float):
    pass


class Count(int):
    pass


@dataclasses.dataclass
class WithExtras:
    a: Any
    _hidden: Any = 2**60  # orjson does not write "_" attributes, so neither is checked
    init: dataclasses.InitVar[int] = 0

    def __post_init__(self, init: int) -> None:
        self.extra = init  # orjson writes __dict__, so this is written (and checked)


@dataclasses.dataclass(slots=True)
class Slotted:
    a: Any
    _b: Any = None


class NotADataclass(Reading):  # a subclass without the decorator: orjson does not take it
    pass


Point = collections.namedtuple("Point", "x y")


def _nested(depth: int, leaf: Any = None) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def _tz(**offset: int) -> datetime.timezone:
    return datetime.timezone(datetime.timedelta(**offset))


class _PytzLike(datetime.tzinfo):
    """A tzinfo with pytz's normalize() (orjson calls it; this one moves to +02:00)."""

    def utcoffset(self, dt: datetime.datetime | None) -> datetime.timedelta:
        return datetime.timedelta(hours=1)

    def dst(self, dt: datetime.datetime | None) -> None:
        return None

    def tzname(self, dt: datetime.datetime | None) -> str:
        return "X"

    def normalize(self, dt: datetime.datetime) -> datetime.datetime:
        return dt.replace(tzinfo=_tz(hours=2))


class _PendulumLike(_PytzLike):
    """normalize() and convert(): orjson leaves such a tzinfo's normalize alone."""

    def convert(self, dt: datetime.datetime) -> datetime.datetime:
        return dt


class _NoOffset(datetime.tzinfo):
    """Aware in name only: utcoffset() is None (orjson writes +00:00)."""

    def utcoffset(self, dt: datetime.datetime | None) -> None:
        return None

    def dst(self, dt: datetime.datetime | None) -> None:
        return None

    def tzname(self, dt: datetime.datetime | None) -> None:
        return None


def _cycle() -> Any:
    loop: dict[str, Any] = {"a": []}
    loop["a"].append(loop)
    return loop


ODD_VALUES: list[Any] = [
    # floats where Python's repr is not orjson's
    [1e-05, 2.5e-05, 9.999999999999999e-05, 1e-06, 1.5e-07, 2.3523573848418126e-09, 1e-10, 1e-4, 1e16],
    [-1e-05, -0.0, 0.0, 5e-324, 1.7976931348623157e308, 0.30000000000000004, 1234567890123456.0],
    [float("nan"), float("inf"), -float("inf"), {"x": float("nan")}, np.array([np.nan, 1e-5])],
    # integers at the edges
    [2**53 - 1, -(2**53 - 1), 2**53, 2**53 + 1, 10**20, 32533379248343410, 2**63, 2**64, -(2**63) - 1],
    10**400,
    [Count(5), Count(2**64 + 1), Small.TWO, Small.HUGE, np.int64(2**60), np.uint64(2**63), True],
    # strings and keys
    ['\x00\x1f\x7f\u2028\u2029\ufeff é😀 "\\/', "x\ud800", "\udfff"],
    {"1": 1, "2024": 2, "true": 3, "null": 4, "-1": 5, "e-05": 6},
    {1: "x"},
    {-3: "x"},
    {1.5: "x"},
    {float("nan"): "x"},
    {True: "x"},
    {False: "x"},
    {float("inf"): "x"},
    {-float("inf"): "x"},
    {None: "x"},
    {(1,): "x"},
    {"k\ud800": 1},
    {Letter.A: 1, "b": collections.OrderedDict(c=1)},
    {"a": [1, {"b": 2}], 1: 2},
    # datetimes, as orjson writes them
    [datetime.datetime(2020, 1, 2, 3, 4, 5), datetime.datetime(5, 1, 2, 3, 4, 5, 6)],
    [datetime.datetime(2020, 1, 2, tzinfo=tz) for tz in (datetime.timezone.utc, _tz(hours=5, minutes=30))],
    [
        datetime.datetime(2020, 1, 2, tzinfo=_tz(**o))
        for o in ({"seconds": 45}, {"seconds": -30}, {"seconds": 29})
    ],
    [datetime.datetime(2020, 1, 2, tzinfo=_tz(hours=5, minutes=59, seconds=30))],
    [
        datetime.datetime(2020, 1, 2, 3, 4, 5, tzinfo=tz)
        for tz in (_PytzLike(), _PendulumLike(), _NoOffset(), _tz(seconds=-29), _tz(seconds=1))
    ],
    [datetime.datetime(2020, 11, 1, 1, 30, fold=1, tzinfo=zoneinfo.ZoneInfo("America/New_York"))],
    [datetime.date(12, 1, 2), datetime.time(1, 2, 3), datetime.time(1, 2, 3, 400)],
    datetime.time(1, 2, tzinfo=datetime.timezone.utc),
    [uuid.UUID(int=2**128 - 1), Unit.CELSIUS, Letter.A, Odd.PAIR, Odd.DAY],
    Odd.BIG,
    [Odd.BAD_KEY],
    # dataclasses, subclasses, sequences
    [WithExtras(1), WithExtras(2**60), WithExtras(1, init=2**60), Slotted(1, _b=object())],
    NotADataclass("s", 1, 1.0),
    [Celsius(1.5), Celsius(float("nan")), Point(1, 2), (1, (2,)), [Point(3, [4])]],
    {"p": [WithExtras(Point(1, Celsius(2.5)))]},
    # what cannot be sent
    [{1, 2}],
    [b"bytes"],
    {"o": object()},
    [complex(1, 2)],
    _cycle(),
    # nesting around orjson's 255 and the 1024 limit
    _nested(254, 1),
    _nested(256, {"a": 2**60}),
    _nested(600, WithExtras(_nested(300))),
    _nested(1023, np.float32(1.5)),
    _nested(1024),
    _nested(1025),
]


@pytest.mark.parametrize(
    "options", [{}, {"strict": True}, {"big_ints": True}], ids=["default", "strict", "big_ints"]
)
@pytest.mark.parametrize("value", ODD_VALUES, ids=[f"odd{i}" for i in range(len(ODD_VALUES))])
def test_both_backends_write_odd_values_alike(
    backends: tuple[ModuleType, ModuleType], value: Any, options: dict[str, bool]
) -> None:
    ours, theirs = (outcome(lambda w=w: w.encode(value, **options)) for w in backends)
    assert ours == theirs


@pytest.mark.parametrize(
    ("value", "line"),
    [
        ([1e-05, 2.5e-07, -1.5e-05], b"[0.00001,2.5e-7,-0.000015]"),
        (
            datetime.datetime(2020, 1, 2, tzinfo=_tz(hours=5, minutes=30, seconds=45)),
            b'"2020-01-02T00:00:00+05:31"',
        ),
        (datetime.datetime(2020, 1, 2, tzinfo=_tz(seconds=-30)), b'"2020-01-02T00:00:00-00:01"'),
        (
            [datetime.datetime(2020, 1, 2, tzinfo=tz) for tz in (_PytzLike(), _NoOffset(), _tz(seconds=-29))],
            b'["2020-01-02T00:00:00+02:00","2020-01-02T00:00:00+00:00","2020-01-02T00:00:00-00:00"]',
        ),
        (WithExtras(1, init=7), b'{"a":1,"extra":7}'),
        (Slotted(1), b'{"a":1}'),
        ([Celsius(1.5), Point(1, 2), Small.TWO, Odd.PAIR], b"[1.5,[1,2],2,[1,2.5]]"),
        ({"k": "\u2028\x1f"}, b'{"k":"\xe2\x80\xa8\\u001f"}'),
    ],
)
def test_what_orjson_writes_the_standard_library_writes(
    backends: tuple[ModuleType, ModuleType], value: Any, line: bytes
) -> None:
    for wire in backends:
        assert wire.encode(value) == line + b"\n", wire.BACKEND


# Both backends, on random input

SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
ANY_TEXT = st.text(st.characters(exclude_categories=()) | SURROGATES, max_size=8)
ANY_INTS = st.integers() | st.sampled_from([2**53, 2**53 + 1, 10**20, 2**63, 2**64, -(2**63) - 1])
ANY_FLOATS = st.floats() | st.sampled_from([1e-05, 2.5e-07, -1e-09, 1e16, 5e-324])
ODD_LEAVES = st.sampled_from(
    [
        Small.TWO,
        Small.HUGE,
        Letter.A,
        Odd.PAIR,
        Odd.BIG,
        Celsius(2.5),
        Count(2**70),
        np.float32(0.1),
        np.int64(2**60),
    ]
    + [datetime.date(2020, 1, 2), datetime.time(4, 5, 6, 7), uuid.UUID(int=7), {1, 2}, b"x", Point(1, 2)]
)
ANY_KEYS = ANY_TEXT | st.sampled_from([1, -2, 1.5, float("nan"), True, None, "1", "2024", "true", Letter.A])
ANY_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | ANY_INTS
    | ANY_FLOATS
    | ANY_TEXT
    | ODD_LEAVES
    | st.datetimes(timezones=st.timezones()),
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=3).map(tuple)
        | st.dictionaries(ANY_KEYS, children, max_size=4)
        | st.builds(WithExtras, children)
    ),
    max_leaves=12,
)


@settings(max_examples=500, deadline=None)
@given(value=ANY_VALUES, options=st.sampled_from([{}, {"strict": True}, {"big_ints": True}]))
def test_both_backends_write_the_same_bytes(
    backends: tuple[ModuleType, ModuleType], value: Any, options: dict[str, bool]
) -> None:
    ours, theirs = (outcome(lambda w=w: w.encode(value, **options)) for w in backends)
    assert ours == theirs


def _mutated(text: str, edits: list[tuple[int, int, str]]) -> str:
    for position, kind, piece in edits:
        at = position % (len(text) + 1)
        text = text[:at] + piece + text[at + kind :]  # kind 0: insert, 1: replace one, 2: cut two
    return text


JSON_TEXTS = st.builds(
    _mutated,
    st.builds(lambda v, ascii: json.dumps(v, ensure_ascii=ascii), JSON_VALUES, st.booleans()),
    st.lists(
        st.tuples(
            st.integers(min_value=0),
            st.integers(min_value=0, max_value=2),
            st.sampled_from(
                ["", " ", ",", ":", "[", "]", "{", "}", '"', "\\", "-", ".", "e", "0", "1" * 20, "tr", "nul"]
                + ["\\ud800", "\\udc00", "\\u00", "1e400", "NaN", "\x00", "\x1f", "é", "\ufeff", "\n", "\r"]
            ),
        ),
        max_size=3,
    ),
)


@settings(max_examples=1000, deadline=None)
@given(data=st.binary(max_size=24) | JSON_TEXTS.map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_both_backends_read_the_same_values_and_errors(
    backends: tuple[ModuleType, ModuleType], data: bytes
) -> None:
    ours, theirs = (outcome(lambda w=w: w.decode(data)) for w in backends)
    assert ours == theirs
    try:
        text = data.decode("utf-8", "surrogatepass")  # str input too, lone surrogates and all
    except UnicodeDecodeError:
        return
    ours, theirs = (outcome(lambda w=w: w.decode(text)) for w in backends)
    assert ours == theirs


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(
        JSON_TEXTS.map(lambda t: t.replace("\n", "").encode("utf-8", "surrogatepass")), max_size=8
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6),
)
def test_both_backends_give_the_same_events(
    backends: tuple[ModuleType, ModuleType], lines: list[bytes], cuts: list[int]
) -> None:
    data = b"\n".join(lines)
    points = sorted({c % (len(data) + 1) for c in cuts})

    def events(wire: ModuleType) -> list[Any]:
        decoder = wire.Decoder(max_line=300)
        got = [
            e
            for a, b in zip([0, *points], [*points, len(data)], strict=False)
            for e in decoder.feed(data[a:b])
        ]
        got += decoder.feed_eof()
        return [(row, str(getattr(e, "error", ""))) for e in got for row in flat([e])]

    ours, theirs = (events(w) for w in backends)
    assert repr(ours) == repr(theirs)


@pytest.mark.parametrize("backend", BACKENDS)
def test_encode_many_passes_strict_and_big_ints_on_to_every_value(backend: str) -> None:
    wire = codec(backend)
    assert wire.encode_many([1, 2], strict=True) == b"1\n2\n"
    assert wire.encode_many([2**60, 3], big_ints=True) == b"1152921504606846976\n3\n"
    with pytest.raises(EncodeError, match=r"beyond ±\(2\*\*53-1\)"):
        wire.encode_many([2**60])
    with pytest.raises(EncodeError, match="strict mode"):
        wire.encode_many([1, float("nan")], strict=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_frames_among_lines_keep_the_line_count_and_name_bad_headers(backend: str) -> None:
    decoder = codec(backend).Decoder(binary=True, max_line=64)
    assert flat(decoder.feed(b"1\n2\n")) == flat(codec(backend).Decoder().feed(b"1\n2\n"))
    events = decoder.feed(b"3\n#blob 2\nab4\nx\n#blob z\n#blob 99\n")
    assert [type(e).__name__ for e in events] == [
        "Messages",
        "Binary",
        "Messages",
        "Malformed",
        "Malformed",
        "Malformed",
    ]
    messages, binary, after, bad, header, too_large = events
    assert (messages.values, messages.line, binary.data, binary.line, after.values, after.line) == (
        [3],
        3,
        b"ab",
        4,
        [4],
        5,
    )
    assert bad.error.line == 6
    assert (type(header.error), header.error.line, header.error.column) == (DecodeError, 7, 1)
    assert (header.error.reason, header.error.excerpt) == ("invalid binary frame header", "#blob z")
    assert isinstance(too_large.error, FrameTooLarge)
    assert (too_large.error.line, too_large.error.limit) == (8, 64)
    assert str(too_large.error) == "line 8: binary frame of 99 bytes is over the limit of 64 bytes (skipped)"
    assert decoder.feed(b"y\n") == [] and decoder.line == 8  # the skipped frame's bytes


# Pieces that run once at import (the json backend's encoders and scanners) or whose answer is
# cached per class (_classify, behind _kind): the tests above reach them before any mutant is
# switched on (mutmut forks each mutant's run from a process that has imported bothways), so they
# are checked here afresh. They exist with either backend.


def test_classify_knows_orjsons_own_types_by_exact_class() -> None:
    w = bothways.wire

    class Level(enum.IntEnum):
        LOW = 1

    class Enum:  # the name alone is not enough: Enum from the enum module
        __qualname__ = "Enum"

    class Later(datetime.datetime):  # exact classes only, as orjson
        pass

    class Undecorated(Reading):  # a dataclass's subclass without @dataclass of its own
        pass

    kinds = {
        datetime.datetime: w._DATETIME,
        datetime.date: w._DATE,
        datetime.time: w._TIME,
        uuid.UUID: w._UUID,
        Unit: w._ENUM,
        Level: w._ENUM,
        Reading: w._DATACLASS,
        Enum: w._OTHER,
        Later: w._OTHER,
        Undecorated: w._OTHER,
        dict: w._OTHER,
        np.ndarray: w._OTHER,
    }
    assert len({w._DATETIME, w._DATE, w._TIME, w._UUID, w._ENUM, w._DATACLASS, w._OTHER}) == 7
    assert {cls: w._classify(cls) for cls in kinds} == kinds


def test_the_json_backends_encoder_is_compact_utf8_in_order_and_checks_cycles() -> None:
    w = bothways.wire
    markers: dict[int, Any] = {}
    encode = w._new_c_encoder(markers, False)
    assert isinstance(encode, json.encoder.c_make_encoder)  # type: ignore[attr-defined] # json's C one
    value = {"b": [1, 2.5, "é\n", None, True], "a": {}}
    assert "".join(encode(value, 0)) == '{"b":[1,2.5,"é\\n",null,true],"a":{}}'
    assert "".join(encode([datetime.date(2024, 1, 2), Unit.CELSIUS], 0)) == '["2024-01-02","C"]'
    with pytest.raises(ValueError, match="Out of range float"):
        "".join(encode([float("nan")], 0))
    markers.clear()
    with pytest.raises(TypeError, match="keys must be str"):
        "".join(encode({(1, 2): 3}, 0))
    markers.clear()
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(ValueError, match="Circular reference"):
        "".join(encode(cycle, 0))
    assert "".join(w._new_c_encoder({}, True)([float("nan"), -math.inf], 0)) == "[NaN,-Infinity]"


def test_the_json_backends_scanners_read_one_value_and_refuse_nan() -> None:
    w = bothways.wire
    scan = w._scanner()
    assert scan('{"a": [1, 2.5, 18446744073709551616]} tail', 0) == ({"a": [1, 2.5, 2**64]}, 37)
    for constant in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(ValueError, match=f"{constant} is not JSON"):
            scan(constant, 0)
    careful = w._scanner(parse_int=w._orjson_int, parse_float=w._orjson_float)
    assert careful("[18446744073709551616, 1.5]", 0) == ([1.8446744073709552e19, 1.5], 27)
    assert type(careful("[18446744073709551615]", 0)[0][0]) is int
    with pytest.raises(ValueError, match="infinity"):
        careful("1e400", 0)


def test_the_json_backend_keeps_integers_exact_where_orjson_does() -> None:
    read = bothways.wire._orjson_int
    for text, number in (
        ("-1000000000000000000", -(10**18)),
        ("-9223372036854775808", -(2**63)),
        ("18446744073709551615", 2**64 - 1),
    ):
        assert (type(read(text)), read(text)) == (int, number), text
    for text in ("-9223372036854775809", "18446744073709551616", "123456789012345678901"):
        assert (type(read(text)), read(text)) == (float, float(text)), text


def test_the_encoders_hook_writes_numpy_values_and_names_what_it_cannot() -> None:
    w = bothways.wire
    assert w._default(np.arange(6)[::2]) == [0, 2, 4]
    assert w._default(np.float16(1.5)) == 1.5

    class Shaped:  # a dtype but no tolist
        dtype = "int32"

    with pytest.raises(TypeError, match="^Type is not JSON serializable: array$"):
        w._default(array.array("i", [1]))  # a tolist but no dtype: not numpy
    with pytest.raises(TypeError, match="^Type is not JSON serializable: Shaped$"):
        w._default(Shaped())


def deep(value: Any, levels: int = 300) -> Any:
    """``value`` inside ``levels`` arrays: beyond orjson's 255, so the encoder's slow path."""
    for _ in range(levels):
        value = [value]
    return value


def test_decode_skips_one_bom_in_text_too(wire: ModuleType) -> None:
    assert wire.decode("\ufeff[1]") == [1]
    with pytest.raises(DecodeError) as info:
        wire.decode("\ufeff\ufeff[1]")
    assert (info.value.line, info.value.column) == (1, 1)


def test_a_lone_surrogate_in_text_is_named_where_it_is(wire: ModuleType) -> None:
    with pytest.raises(DecodeError) as info:
        wire.decode('["ok", "a\ud800"]')  # (only a str can hold one: bytes hold UTF-8)
    assert (info.value.line, info.value.column, info.value.reason) == (1, 10, "lone surrogate in string")


def test_the_excerpt_of_a_decode_error_is_centred_on_it_and_keeps_its_line(wire: ModuleType) -> None:
    with pytest.raises(DecodeError) as info:
        wire.decode(b'["' + b"a" * 70 + b"\xff" + b"b" * 30 + b'"]')
    assert (info.value.column, info.value.excerpt) == (73, "…" + "a" * 20 + "\ufffd" + "b" * 19 + "…")
    with pytest.raises(DecodeError) as info:
        wire.decode(b"[1 X\r\n")  # the line's own characters, its CR left out
    assert (info.value.column, info.value.excerpt) == (4, "[1 X")


def test_a_value_with_tolist_that_is_not_numpy_is_refused_on_every_path(wire: ModuleType) -> None:
    for value, path in ((array.array("i", [1, 2]), "$"), (deep(array.array("i", [1])), "$" + "[0]" * 300)):
        with pytest.raises(EncodeError) as info:
            wire.encode(value)
        assert (info.value.path, str(info.value)) == (path, f"{path}: array is not JSON serializable")


def test_the_slow_path_walks_numpy_objects_dataclasses_and_enums(wire: ModuleType) -> None:
    class Base:  # gives its subclasses' instances a __dict__, slots or not
        pass

    @dataclasses.dataclass(slots=True)
    class Slotted:
        a: int
        _b: int = 2

    @dataclasses.dataclass(slots=True)
    class SlottedOnBase(Base):
        a: int
        _b: int = 2

    @dataclasses.dataclass
    class Plain:
        a: int
        _b: int = 2

    class Pair(enum.Enum):  # a fresh class each time: its kind is not cached yet
        ONE = (1, 2**70)

    mixed = SlottedOnBase(1)
    mixed.extra = 5  # type: ignore[attr-defined] # in __dict__, not a field: orjson leaves it out
    plain = Plain(1)
    plain.extra = 5  # type: ignore[attr-defined] # orjson writes what __dict__ holds
    cases = [
        (np.array([2**70, 1], dtype=object), b"[1180591620717411303424,1]"),
        (Slotted(1), b'{"a":1}'),
        (mixed, b'{"a":1}'),
        (plain, b'{"a":1,"extra":5}'),
        (Pair.ONE, b"[1,1180591620717411303424]"),
    ]
    for value, text in cases:
        assert wire.encode(value, big_ints=True) == text + b"\n"
        assert wire.encode(deep(value), big_ints=True) == b"[" * 300 + text + b"]" * 300 + b"\n"


def test_an_enum_is_no_level_of_nesting(wire: ModuleType) -> None:
    class Pair(enum.Enum):
        ONE = (1,)

    assert wire.encode(deep(Unit.CELSIUS, 1024)) == b"[" * 1024 + b'"C"' + b"]" * 1024 + b"\n"
    assert wire.encode(deep(Pair.ONE, 1023)) == b"[" * 1024 + b"1" + b"]" * 1024 + b"\n"
    with pytest.raises(EncodeError, match="nesting deeper than 1024"):
        wire.encode(deep(Pair.ONE, 1024))


def test_strict_mode_holds_on_the_slow_path(wire: ModuleType) -> None:
    with pytest.raises(EncodeError) as info:
        wire.encode(deep([1.5, float("nan")]), strict=True)
    assert info.value.path == "$" + "[0]" * 300 + "[1]"


@pytest.mark.parametrize("backend", BACKENDS)
def test_lines_around_frames_keep_their_numbers_in_any_chunk(backend: str) -> None:
    decoder = codec(backend).Decoder(binary=True)
    decoder.feed(b"1\n2\n")
    events = decoder.feed(b"3\n4\n#blob 1\nx5\n6\n")
    assert [(type(e).__name__, e.line) for e in events] == [("Messages", 3), ("Binary", 5), ("Messages", 6)]
    assert (events[0].values, events[1].data, events[2].values, decoder.line) == ([3, 4], b"x", [5, 6], 7)
    events = decoder.feed(b"\n#blob 1\ny7\n")  # a chunk that starts with a blank line
    assert [(type(e).__name__, e.line) for e in events] == [("Binary", 9), ("Messages", 10)]
    assert (events[0].data, events[1].values, decoder.line) == (b"y", [7], 10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_excerpt_of_an_over_long_line_marks_the_cut_whatever_its_characters(backend: str) -> None:
    # characters of 4 bytes: the first 160 bytes hold 40 of them exactly, and more follow; a line
    # held over the limit (cut by the chunks) goes on too
    line = "😀" * 41
    for data in (f"{line}\n".encode(), f'"{line}"\n'.encode(), f"#blob xx{line}\n".encode()):
        for chunks in ([data], [data[:-1], b"\n"], [data[:100], data[100:]]):
            decoder = codec(backend).Decoder(binary=True, max_line=64)
            events = [event for chunk in chunks for event in decoder.feed(chunk)]
            assert len(events) == 1 and isinstance(events[0].error, FrameTooLarge), events
            assert events[0].error.excerpt.endswith("…"), (data[:8], chunks, events[0].error.excerpt)
    # 40 of them in 160 bytes, and no more: nothing cut
    decoder = codec(backend).Decoder(max_line=64)
    (event,) = decoder.feed(("😀" * 40 + "\n").encode())
    assert event.error.excerpt == "😀" * 40


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_decoder_takes_no_frames_and_one_byte_lines_at_least_by_default(backend: str) -> None:
    events = codec(backend).Decoder().feed(b"#blob 1\nx\n")
    assert [(type(e).__name__, e.error.line) for e in events] == [("Malformed", 1), ("Malformed", 2)]
    with pytest.raises(ValueError, match="^max_line must be at least 1$"):
        codec(backend).Decoder(max_line=0)
    assert flat(codec(backend).Decoder(max_line=1).feed(b"1\n")) == flat(
        codec(backend).Decoder().feed(b"1\n")
    )
    # a line of exactly max_line bytes is within it, on the line-by-line path too
    events = codec(backend).Decoder(max_line=3).feed(b"123\nx\n")
    assert [type(e).__name__ for e in events] == ["Messages", "Malformed"] and events[0].values == [123]


def test_nesting_is_counted_whatever_the_containers_hold(wire: ModuleType) -> None:
    """1,024 levels pass and 1,025 do not, both ways, with values and brackets in strings at
    every level (the json backend counts the levels in the text)."""
    for opening, closing in (('[0,"s]",', "]"), ('{"k":"s}","v":', "}")):
        for levels in (1024, 1025):
            text = opening * levels + "1" + closing * levels
            if levels == 1024:
                value = wire.decode(text)
                assert wire.encode(value) == text.encode() + b"\n"
                continue
            with pytest.raises(DecodeError, match="nesting deeper than 1024"):
                wire.decode(text)
            with pytest.raises(EncodeError, match="nesting deeper than 1024"):
                wire.encode(json.loads(text))
    # the deepest branch after a deep sibling: 1 + 1,023 passes, 1 + 1,024 does not
    sibling = "[" * 40 + "]" * 40
    for levels, ok in ((1023, True), (1024, False)):
        text = "[" + sibling + "," + "[" * levels + "]" * levels + "]"
        if ok:
            assert wire.encode(wire.decode(text)) == text.encode() + b"\n"
            continue
        with pytest.raises(DecodeError, match="nesting deeper than 1024"):
            wire.decode(text)
        with pytest.raises(EncodeError, match="nesting deeper than 1024"):
            wire.encode(json.loads(text))


def test_big_ints_leave_the_problem_to_what_follows(wire: ModuleType) -> None:
    with pytest.raises(EncodeError) as info:
        wire.encode([2**60, object()], big_ints=True)
    assert (info.value.path, str(info.value)) == ("$[1]", "$[1]: object is not JSON serializable")


def test_texts_deeper_than_the_recursion_limit_are_read_alike(wire: ModuleType) -> None:
    """At Python's default recursion limit, json's scanner gives up on deep texts and the json
    backend reads them token by token (_read_strict): the same values as at a high limit."""
    inner = (
        '{"a": [1, 2.5, -3e2, 4E-1, 0, "x\\"y\\u00e9\\ud83d\\ude00", true, false, null, {"b": {}}, []],'
        ' "c": 18446744073709551616, "": -0.0}'
    )
    text = "[" * 1020 + inner + "]" * 1020  # (4 levels more inside: 1,024 in all)
    expected = wire.decode(text)  # (at the tests' limit: conftest raises it)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        got = wire.decode(text)
    finally:
        sys.setrecursionlimit(limit)
    assert same(got, expected)
    for _ in range(1020):
        got = got[0]
    assert same(got, wire.decode(inner)) and got["c"] == 2.0**64


def test_decode_takes_any_bytes_like_text(wire: ModuleType) -> None:
    for kind in (bytes, bytearray, memoryview):
        assert wire.decode(kind(b'{"a": [1]}')) == {"a": [1]}, kind


@pytest.mark.parametrize("backend", BACKENDS)
def test_frame_header_starts_a_frame_the_decoder_reads(backend: str) -> None:
    wire = codec(backend)
    assert wire.frame_header(3) == b"#blob 3\n"
    events = wire.Decoder(binary=True).feed(wire.frame_header(3) + b"abc" + wire.frame_header(0) + b"1\n")
    assert [(type(e).__name__, e.line) for e in events] == [("Binary", 1), ("Binary", 2), ("Messages", 3)]
    assert (events[0].data, events[1].data) == (b"abc", b"")
