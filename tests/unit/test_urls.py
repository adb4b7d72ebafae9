"""The channel URL parser against spec/vectors/urls.json (js/test/urls.test.js runs them too),
and the dispatch table of ``connect``/``listen``."""

from __future__ import annotations

from typing import Any

import pytest

from bothways import UrlError
from bothways.channels import TRANSPORTS, connect
from bothways.urls import SCHEMES, Address, parse

from ..vectors import load

CASES = load("urls.json")


def test_the_vectors_cover_every_scheme_and_many_errors() -> None:
    parsed = {c["address"]["scheme"] for c in CASES if "address" in c}
    assert parsed == set(SCHEMES) == set(TRANSPORTS)
    assert sum("error" in c for c in CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c["url"] or "(empty)" for c in CASES])
def test_url(case: dict[str, Any]) -> None:
    if "error" in case:
        with pytest.raises(UrlError) as info:
            parse(case["url"])
        assert info.value.reason == case["error"]
        assert info.value.url == case["url"]
        assert str(info.value) == f"bad URL {case['url']!r}: {case['error']}"
        return
    address = parse(case["url"])
    expected = case["address"]
    got = {k: getattr(address, k) for k in ("scheme", "host", "port", "path", "params", "url")}
    assert got == expected
    for key, value in expected["params"].items():
        assert type(got["params"][key]) is type(value) or isinstance(value, int)
    assert parse(address.url) == address  # the canonical form reads back the same


def test_with_port_keeps_the_rest() -> None:
    address = parse("ws://localhost:0/readings?token=t")
    assert address.with_port(8765).url == "ws://localhost:8765/readings?token=t"
    assert str(address) == address.url


def test_a_non_string_is_refused_clearly() -> None:
    with pytest.raises(UrlError, match="expected a string, got int"):
        parse(9000)  # type: ignore[arg-type]


def test_connect_refuses_a_bad_url_before_any_io() -> None:
    with pytest.raises(UrlError, match="unknown scheme 'http:'"):
        connect("http://127.0.0.1:1/x")
    assert isinstance(parse("tcp://:1"), Address)


def test_one_url_serves_both_ends() -> None:
    address = parse("file:/log/r?state=/log/r.pos&max_bytes=100&max_line=50")
    assert address.params_for("listen") == {"state": "/log/r.pos", "max_line": 50}
    assert address.params_for("connect") == {"max_bytes": 100, "max_line": 50}
    assert parse("tcp://h:1?token=t&reconnect=1").params_for("listen") == {"token": "t"}


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("tcp://h:" + "1" * 5000, "port " + "1" * 5000 + " is out of range (0-65535)"),
        ("tcp://h:" + "0" * 5000 + "80", None),
        ("stdio:?max_line=" + "1" * 5000, f"max_line must be at most {2**53 - 1}, got '{'1' * 5000}'"),
        ("stdio:?max_line=" + "0" * 5000 + "7", None),
        ("mqtt://h:1/t?session=" + "2" * 5000, f"session must be at most {2**53 - 1}, got '{'2' * 5000}'"),
    ],
)
def test_digit_runs_past_the_int_limit(url: str, reason: str | None) -> None:
    """Python's int() refuses 4,300 digits and more with ValueError: a UrlError, or the number."""
    if reason is None:
        assert parse(parse(url).url) == parse(url)
        return
    with pytest.raises(UrlError) as info:
        parse(url)
    assert info.value.reason == reason
