"""Fuzz target: wire.Decoder, both backends. For any bytes, options and chunking: the events of
the chunks equal the events of the whole buffer (every field: line, column, reason, excerpt),
and the orjson and json backends give the same events.

One field is left out of the chunking comparison: the excerpt of a FRAME_TOO_LARGE line, which
shows the bytes held when the line passed the limit, and so depends on where the chunks were cut
(both languages do the same; the differential target compares it, for the same chunks)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from ..vectors import codecs
from .common import brief, corpus, run
from .streams import chunking_free, cuts, decode, open_bug, options, same_flat, streams

WIRES = codecs()


def check(data: bytes, max_line: int, binary: bool, at: list[int]) -> None:
    """The property, for one stream and one chunking."""
    whole = decode(WIRES[0], data, max_line, binary, [])
    for wire in WIRES:
        if wire is not WIRES[0]:
            other = decode(wire, data, max_line, binary, [])
            assert same_flat(other, whole), f"{wire.BACKEND} differs on the whole buffer"
        chunked = decode(wire, data, max_line, binary, at)
        assert same_flat(chunking_free(chunked), chunking_free(whole)), (
            f"{wire.BACKEND}: chunks {at} differ from the whole buffer"
        )


@pytest.mark.parametrize("path", corpus("wire"))
def test_corpus(path: Path) -> None:
    """Every corpus stream: whole vs cut at each offset (in two) vs one byte at a time.
    ``open-*`` files are bugs reported and not fixed yet: expected to fail (strict)."""
    data = path.read_bytes()
    max_line, binary = options(path)
    check(data, max_line, binary, list(range(1, len(data))))
    step = max(1, len(data) // 64)  # (a long file: 64 places)
    for cut in range(1, len(data), step):
        check(data, max_line, binary, [cut])


@given(st.data())
@brief(60)
def target_chunking(data: st.DataObject) -> None:
    stream, max_line, binary = data.draw(streams(), "stream")
    assume(not open_bug(stream, max_line, binary))
    check(stream, max_line, binary, data.draw(cuts(len(stream)), "cuts"))


def test_chunking() -> None:
    run(target_chunking)
