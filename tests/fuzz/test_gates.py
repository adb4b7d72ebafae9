"""Fuzz targets: the tcp hello gate (ServerGate, ClientHandshake, refusal in
src/bothways/transports/tcp.py) and the file reader's state file (_load_state, then Tail.start
in src/bothways/transports/file.py): what a peer or a file on disk hands them.

- ServerGate, any bytes in any chunks, with or without a token: feed never raises; the gate ends
  open or refused the same whatever the chunking, with the same reply and the same bytes for the
  Inbox; a refused connection delivers nothing; a server with a token delivers only after a
  hello with that token; a server without one delivers every byte (a hello line becomes "\\n").
- ClientHandshake.check / refusal: any values; only Refused is raised.
- _load_state: any bytes in the state file: None, a position, or TransportError; a position it
  returns is one Tail takes, and Tail.start with it never raises.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bothways.errors import TransportError
from bothways.transports.file import Tail, _load_state
from bothways.transports.tcp import HELLO_LIMIT, WELCOME, ClientHandshake, Refused, ServerGate, refusal

from .common import brief, corpus, run
from .streams import json_values

TOKENS = st.none() | st.sampled_from(["s3cret", "", "é", "a\nb"])
_hello = st.builds(
    lambda token, extra: json.dumps({"bothways": "hello", "token": token, **extra}).encode(),
    st.sampled_from(["s3cret", "", "é", "wrong", 1, None]),
    st.dictionaries(st.sampled_from(["x", "bothways"]), json_values, max_size=1),
)
_first = st.one_of(
    _hello,
    st.sampled_from([b'{"bothways":"welcome"}', b'{"bothways":"refused"}', b"[1]", b"", b"\xef\xbb\xbf"]),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=20),
    st.integers(HELLO_LIMIT - 40, HELLO_LIMIT + 2).map(
        lambda n: b'{"bothways":"hello","token":"' + b"x" * n + b'"}'
    ),
)


@st.composite
def connections(draw: Any) -> tuple[bytes, list[int]]:
    data = draw(_first) + draw(st.sampled_from([b"\n", b"\r\n", b"", b"\n\n"])) + draw(st.binary(max_size=12))
    at = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=5))))
    return data, at


def gate(token: str | None, data: bytes, at: list[int], eof: bool) -> tuple[str, bytes, bytes]:
    """(state, replies, bytes for the Inbox) after ``data`` came in chunks cut at ``at``."""
    server = ServerGate(token)
    replies = inbox = b""
    start = 0
    for cut in [*at, len(data)]:
        chunk, start = data[start:cut], cut
        if server.state == "waiting":
            reply, delivered = server.feed(chunk)
            replies += reply
            inbox += delivered
        elif server.state == "open":
            inbox += chunk
    if eof and server.state == "waiting":
        inbox += server.feed_eof()
    return server.state, replies, inbox


def check_gate(token: str | None, data: bytes, at: list[int]) -> None:
    for eof in (False, True):
        whole = gate(token, data, [], eof)
        assert gate(token, data, at, eof) == whole, f"chunks {at} differ from the whole buffer"
        state, replies, inbox = whole
        assert state in ("waiting", "open", "refused")
        if state == "refused":
            assert inbox == b""  # (the reply is the refusal, or nothing: the peer ended first)
            assert replies.startswith(b'{"bothways":"refused"') or (eof and replies == b"")
        elif state == "open" and token is not None:
            assert replies == WELCOME and inbox.startswith(b"\n")
        elif state == "open":
            assert replies in (b"", WELCOME)
            if replies == WELCOME:  # the hello line is replaced by a newline
                assert data.endswith(inbox[1:]) and inbox.startswith(b"\n")
            else:
                assert inbox == data
        if state == "waiting":
            assert not eof and b"\n" not in data[: HELLO_LIMIT + 1] and len(data) <= HELLO_LIMIT


@given(TOKENS, connections())
@brief(100)
def target_server_gate(token: str | None, connection: tuple[bytes, list[int]]) -> None:
    check_gate(token, *connection)


def test_server_gate() -> None:
    run(target_server_gate)


def check_client(values: list[Any]) -> None:
    try:
        ClientHandshake("t").check(values)
    except Refused:
        pass
    reason = refusal(values)
    assert reason is None or isinstance(reason, str)


@given(
    st.lists(
        json_values | st.builds(dict, bothways=st.sampled_from(["welcome", "refused", "hello"])), max_size=4
    )
)
@brief(100)
def target_client(values: list[Any]) -> None:
    check_client(values)


def test_client() -> None:
    run(target_client)


def check_state(content: bytes, folder: str) -> None:
    state = os.path.join(folder, "state")
    with open(state, "wb") as file:
        file.write(content)
    try:
        position = _load_state(state, "file:/x")
    except TransportError:
        return
    assert position is not None
    tail = Tail(os.path.join(folder, "log"), position=position)
    for _ in range(4):  # START_TRIES: then it gives up on the position and reads the oldest file
        tail.start([None, (position["inode"], b"{}\n" * 30), ("7", b"")])


_positions = st.fixed_dictionaries(
    {"inode": st.text(max_size=4) | json_values, "head": st.text(max_size=9) | json_values},
    optional={"offset": st.integers(-1, 2**70) | json_values, "x": json_values},
).map(lambda p: json.dumps(p).encode())


@given(_positions | st.binary(max_size=40) | json_values.map(lambda v: json.dumps(v).encode()))
@brief(100)
def target_state_file(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        check_state(content, folder)


def test_state_file() -> None:
    run(target_state_file)


@pytest.mark.parametrize("path", corpus("gates"))
def test_corpus(path: Path, tmp_path: Path) -> None:
    """``hello-*``: a connection's bytes (checked with no token and with "s3cret", cut at every
    offset); ``state-*``: a state file's bytes."""
    data = path.read_bytes()
    if path.name.startswith("state-"):
        check_state(data, str(tmp_path))
        return
    for token in (None, "s3cret"):
        check_gate(token, data, list(range(1, len(data))))
        for cut in range(1, len(data), max(1, len(data) // 64)):
            check_gate(token, data, [cut])
