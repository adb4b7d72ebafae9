"""The error tree: classes, builtin bases, codes (the same list as spec/PROTOCOL.md), to_json."""

from __future__ import annotations

import re

import pytest

import bothways.errors as errors
from bothways.errors import (
    BothwaysError,
    CallTimeout,
    ChildExited,
    ConnectError,
    DecodeError,
    EncodeError,
    FrameTooLarge,
    RemoteError,
    TransportClosed,
    TransportError,
    TruncatedLine,
)

from ..conftest import ROOT


def test_tree_and_builtin_bases() -> None:
    assert issubclass(EncodeError, ValueError) and issubclass(DecodeError, ValueError)
    assert issubclass(FrameTooLarge, DecodeError) and issubclass(TruncatedLine, DecodeError)
    for cls in (ConnectError, TransportClosed, ChildExited):
        assert issubclass(cls, TransportError)
    assert issubclass(TransportError, OSError)
    assert issubclass(CallTimeout, TimeoutError)
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), BothwaysError)


def test_codes_are_unique_and_listed_in_the_protocol() -> None:
    codes = {getattr(errors, name).code for name in errors.__all__}
    assert len(codes) == len(errors.__all__)
    table = (ROOT / "spec" / "PROTOCOL.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `([A-Z_]+)` \| `(\w+)` \|", table, re.M))
    assert listed == {(getattr(errors, n).code, n) for n in errors.__all__}


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (EncodeError("bad", path="$.a"), {"code": "ENCODE_ERROR", "message": "$.a: bad", "path": "$.a"}),
        (
            DecodeError("oops", line=3, column=9, excerpt='{"a" 1}'),
            {
                "code": "DECODE_ERROR",
                "message": "line 3, col 9: oops in '{\"a\" 1}'",
                "line": 3,
                "column": 9,
                "excerpt": '{"a" 1}',
            },
        ),
        (
            FrameTooLarge(line=2, limit=10),
            {
                "code": "FRAME_TOO_LARGE",
                "line": 2,
                "column": 0,
                "excerpt": "",
                "limit": 10,
                "message": "line 2: line is longer than the limit of 10 bytes"
                " (skipped up to the next newline)",
            },
        ),
        (
            ConnectError("refused", url="tcp://127.0.0.1:1"),
            {"code": "CONNECT_ERROR", "message": "tcp://127.0.0.1:1: refused", "url": "tcp://127.0.0.1:1"},
        ),
        (
            ChildExited("node exited with code 3", returncode=3, stderr_tail="Error: x"),
            {
                "code": "CHILD_EXITED",
                "message": "node exited with code 3\n--- stderr tail ---\nError: x",
                "returncode": 3,
                "signal": None,
                "stderr_tail": "Error: x",
            },
        ),
        (
            RemoteError("boom", remote_type="ZeroDivisionError", remote_traceback="tb"),
            {
                "code": "REMOTE_ERROR",
                "message": "ZeroDivisionError: boom\n--- remote traceback ---\ntb",
                "rpc_code": -32000,
                "remote_type": "ZeroDivisionError",
                "remote_traceback": "tb",
                "data": None,
            },
        ),
        (CallTimeout("no answer in 5 s"), {"code": "CALL_TIMEOUT", "message": "no answer in 5 s"}),
    ],
)
def test_to_json(error: BothwaysError, expected: dict[str, object]) -> None:
    assert error.to_json() == expected
    assert str(error) == expected["message"]
