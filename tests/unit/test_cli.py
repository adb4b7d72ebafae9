"""`bothways check`: good messages re-emitted, bad lines reported with their line, exit code."""

from __future__ import annotations

import io
import sys

import pytest

from bothways.cli import EXIT_BAD_INPUT, main


class _Stdin:
    def __init__(self, data: bytes) -> None:
        self.buffer = io.BufferedReader(io.BytesIO(data))  # type: ignore[arg-type]


def test_check_reports_bad_lines(
    monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    monkeypatch.setattr(sys, "stdin", _Stdin(b'{"a": 1}\n{oops\n[2, 3]\n'))
    assert main(["check"]) == EXIT_BAD_INPUT
    out, err = capsysbinary.readouterr()
    assert out == b'{"a":1}\n[2,3]\n'
    assert b"DECODE_ERROR: line 2, col 2" in err


def test_check_passes_good_stream(
    monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    monkeypatch.setattr(sys, "stdin", _Stdin(b"1\n2\n"))
    assert main(["check", "-q"]) == 0
    assert capsysbinary.readouterr().out == b""
