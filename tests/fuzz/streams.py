"""Byte streams for the decoder targets: a grammar of lines (good JSON, broken JSON, blank,
CRLF, BOMs, invalid UTF-8, over-long lines, binary frames) and the ways to cut them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

from hypothesis import strategies as st

from ..vectors import flat, same

MAX_LINES = [1, 2, 3, 4, 6, 8, 12, 16, 40, 64, 200, 16 * 1024 * 1024]

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12,
)

_JSONISH = st.text(
    alphabet=st.sampled_from(list('{}[]",:0123456789.eE+-truefalsn\\ \t\rx#é€😀\u2028\x00\x7f')),
    max_size=24,
)
_RAW = st.sampled_from(
    [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf0\x9f", b"\xe2\x82", b"\xc0\xaf", b"\x80", b"\xef\xbb\xbf"]
)


@st.composite
def _good(draw: Any) -> bytes:
    text = json.dumps(draw(json_values), ensure_ascii=draw(st.booleans()), allow_nan=False)
    if draw(st.booleans()):
        text = text.replace(",", ", ").replace(":", ": ")
    return text.encode("utf-8", "surrogatepass")


@st.composite
def _frame(draw: Any) -> bytes:
    data = draw(st.binary(max_size=24))
    size = len(data) if draw(st.integers(0, 5)) else draw(st.integers(0, 40))
    cr = b"\r" if draw(st.integers(0, 4)) == 0 else b""
    return b"#blob %d%s\n%s" % (size, cr, data)


_pieces = st.one_of(
    _good().map(lambda b: b + b"\n"),
    _good().map(lambda b: b + b"\r\n"),
    _JSONISH.map(lambda t: t.encode("utf-8", "surrogatepass") + b"\n"),
    st.sampled_from([b"\n", b"  \t\r\n", b"\r\n", b"\r", b" "]),
    _RAW,
    st.binary(max_size=12),
    _frame(),
    st.sampled_from(
        [b"#blob x\n", b"#blob 01\n", b"#blob -1\n", b"#blob 1 \n", b"#blob \n", b"#blob", b"#blob 3"]
        + [b"#blob 99999999999999999999\n", b"#blob 4\r\r\n", b'["#blob 2"]\n', b"#blo\n"]
    ),
    st.integers(1, 300).map(lambda n: b'"' + b"x" * n + b'"\n'),
    st.integers(1, 80).map(lambda n: b"[" * n + b"]" * n + b"\n"),
)


@st.composite
def streams(draw: Any, max_size: int = 12) -> tuple[bytes, int, bool]:
    """(bytes, max_line, binary)."""
    data = b"".join(draw(st.lists(_pieces, max_size=max_size)))
    if draw(st.integers(0, 5)) == 0:
        data = b"\xef\xbb\xbf" + data
    return data, draw(st.sampled_from(MAX_LINES)), draw(st.booleans())


@st.composite
def cuts(draw: Any, size: int) -> list[int]:
    """Increasing offsets inside a stream of ``size`` bytes: where the chunks end."""
    if size > 1 and draw(st.integers(0, 9)) == 0:
        return list(range(1, size))  # one byte at a time
    return sorted(set(draw(st.lists(st.integers(0, size), max_size=8))))


def decode(wire: ModuleType, data: bytes, max_line: int, binary: bool, at: list[int]) -> list[dict[str, Any]]:
    """The events of ``data`` cut at ``at``, in the flat form with every detail (reason,
    column, excerpt, delivered) that spec/PROTOCOL.md says both languages give alike."""
    decoder = wire.Decoder(max_line=max_line, binary=binary)
    events: list[Any] = []
    start = 0
    for cut in [*at, len(data)]:
        events += decoder.feed(data[start:cut])
        start = cut
    events += decoder.feed_eof()
    out = flat(events, detail=True)
    errors = iter(e.error for e in events if type(e).__name__ in ("Malformed", "Truncated"))
    for item in out:
        if "error" in item:
            item["excerpt"] = next(errors).excerpt
    return out


def options(path: Path) -> tuple[int, bool]:
    """A corpus file's decoder options, from its name: ``*.binary*``, ``*.max_line-N*``."""
    match = re.search(r"\.max_line-(\d+)", path.name)
    return (int(match.group(1)) if match else 16 * 1024 * 1024), ".binary" in path.name


def same_flat(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> bool:
    """Flat events equal, messages compared by type and value (1 is not 1.0, nor True)."""
    if len(got) != len(expected):
        return False
    for g, e in zip(got, expected, strict=True):
        if set(g) != set(e):
            return False
        if "message" in e and not same(g["message"], e["message"]):
            return False
        if any(g[k] != e[k] for k in e if k != "message"):
            return False
    return True


def chunking_free(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events without what depends on the chunking: a too-long line's excerpt."""
    return [
        {k: v for k, v in e.items() if not (k == "excerpt" and e["error"] == "FRAME_TOO_LARGE")}
        for e in events
    ]


def open_bug(data: bytes, max_line: int, binary: bool) -> bool:
    """Inputs of a bug reported and not fixed yet, which the fuzzer should not find again and
    again (tests/fuzz/corpus/wire/open-*: the regression cases, xfail until fixed).

    Python's Decoder, binary=True: a line starting with ``#blob `` longer than max_line is a
    frame header (or an invalid one) when it comes in one chunk, FRAME_TOO_LARGE when it is held
    across chunks (js/src/wire.js reports FRAME_TOO_LARGE both ways)."""
    if not binary:
        return False
    at = data.find(b"#blob ")
    while at >= 0:
        end = data.find(b"\n", at)
        if (end if end >= 0 else len(data)) - at > max_line:
            return True
        at = data.find(b"#blob ", at + 1)
    return False
