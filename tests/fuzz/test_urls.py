"""Fuzz target: bothways.urls.parse. For any text: it returns an Address or raises UrlError,
nothing else; an Address's canonical form (``str(address)``, ``address.url``) parses back to
the same Address, and is its own canonical form."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from bothways.errors import UrlError
from bothways.urls import SCHEMES, parse

from .common import brief, corpus, run

OPTIONS = ["max_line", "token", "reconnect", "timeout", "backlog", "reopen", "state", "poll", "follow"]
OPTIONS += ["max_bytes", "keep", "qos", "client_id", "clean", "session", "share", "protocol", "keepalive"]
OPTIONS += ["ws_path", "typo"]
_piece = st.sampled_from(list("aZ09.-_~/:@[]%+#?&=! é😀\x00\t")) | st.sampled_from(
    ["%2", "%zz", "%ff", "%C3%A9"]
)
_text = st.lists(_piece, max_size=8).map("".join)
_value = st.one_of(
    _text,
    st.sampled_from(["0", "1", "yes", "No", "TRUE", "0.5", "1e3", "5", "3.1.1", "/p", "+", "1.", ".5"]),
    st.integers(0, 2**70).map(str),
    st.from_regex(r"[0-9]{1,25}(\.[0-9]{1,25})?", fullmatch=True),
)


@st.composite
def urls(draw: Any) -> str:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=30))
    scheme = draw(st.sampled_from([*SCHEMES, "TCP", "Ws", "http", "mqtt+WS", "x-y", ""]))
    host = draw(
        st.sampled_from(
            ["", "localhost", "127.0.0.1", "[::1]", "[::1", "[fe80::1%eth0]", "Host.Example", "a_b"]
        )
        | _text
    )
    port = draw(
        st.sampled_from(["", ":", ":0", ":80", ":65535", ":65536", ":0x1", ":٣"]) | _text.map(":".__add__)
    )
    path = draw(st.sampled_from(["", "/", "/p", "/a/+/#", "//", "/tmp/r%20x", "rel/p"]) | _text)
    start = draw(st.sampled_from(["//", "", "///", "/"]))
    url = f"{scheme}:{start}{host}{port}{path}"
    keys = draw(st.lists(st.sampled_from(OPTIONS) | _text, max_size=3))
    if keys:
        url += "?" + "&".join(f"{k}={draw(_value)}" if draw(st.integers(0, 5)) else k for k in keys)
    if draw(st.integers(0, 9)) == 0:
        url += "#" + draw(_text)
    return url


def open_bug(url: str) -> bool:
    """Inputs of the open bugs (tests/fuzz/corpus/urls/open-*): a run of 300 digits or more
    (Python's int() refuses more than 4,300 digits with ValueError; a timeout or poll of 309
    digits reads as inf, accepted, and its canonical form ``timeout=inf`` does not parse); a
    fifo/file path that decodes to one starting with ``//`` (``file:%2F%2Ftmp`` is the path
    ``//tmp``, whose canonical form ``file://tmp`` names a host)."""
    try:
        decoded = unquote(url, errors="strict")
    except UnicodeDecodeError:
        decoded = url
    if re.search(r"(?i)^(fifo|file):(//)?(/|%2f){2}", url) or re.search(
        r"(?i)^(fifo|file):(%2f|/){2}", decoded
    ):
        return True
    return re.search(r"[0-9]{300}", url + " " + decoded) is not None


def check(url: str) -> None:
    try:
        address = parse(url)
    except UrlError as exc:
        assert exc.code == "URL_ERROR" and exc.url == url
        return
    canonical = str(address)
    assert canonical == address.url
    again = parse(canonical)
    assert again == address, f"{url!r} -> {canonical!r} -> {again!r}"
    assert again.url == canonical


@given(urls())
@brief(200)
def target_parse(url: str) -> None:
    assume(not open_bug(url))
    check(url)


def test_parse() -> None:
    run(target_parse)


@pytest.mark.parametrize("path", corpus("urls"))
def test_corpus(path: Path) -> None:
    """A corpus file: one URL per line, as a JSON string."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            check(json.loads(line))
