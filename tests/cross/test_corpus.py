"""10,000 seeded values cross the real boundary both ways and come back equal."""

from __future__ import annotations

import json
import math
import random
from typing import Any

from bothways import Decoder, Messages, decode, encode

from .node import run_node

COUNT = 10_000
PIECES = [
    "a",
    " ",
    '"',
    "\\",
    "/",
    "\n",
    "\t",
    "\x00",
    "\x1f",
    "\x7f",
    "é",
    "€",
    "中",
    "\u2028",
    "\u2029",
    "\ufeff",
    "\U0001d11e",
    "\U0001f600",
    "\U0010ffff",
    "\U00020000",
]


def make_value(rng: random.Random, depth: int) -> Any:
    kind = rng.randrange(6 if depth > 3 else 8)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.randint(-(2**53 - 1), 2**53 - 1)
    if kind == 3:
        special = [0.1 + 0.2, 5e-324, 1.7976931348623157e308, -273.15, 1e21, 1e-7, 2.5e-5, 1.0, -0.0]
        return (
            rng.choice(special) if rng.random() < 0.3 else (rng.random() - 0.5) * 10.0 ** rng.randint(-20, 20)
        )
    if kind in (4, 5):
        return "".join(rng.choice(PIECES) for _ in range(rng.randrange(12)))
    if kind == 6:
        return [make_value(rng, depth + 1) for _ in range(rng.randrange(5))]
    return {f"{make_value(rng, 9)}{i}": make_value(rng, depth + 1) for i in range(rng.randrange(5))}


def same_across(a: Any, b: Any) -> bool:
    """Equal after a trip through JavaScript, where every number is a double: 1.0 comes back as 1,
    -0.0 as 0, and 4.5e17 as the integer 449999999999999990 (the same double, written as digits).
    """
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return js_order(list(a)) == list(b) and all(same_across(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_across(x, y) for x, y in zip(a, b, strict=False))
    return type(a) is type(b) and a == b


def js_order(keys: list[str]) -> list[str]:
    """The order JavaScript gives object keys: array indices ("3") first, ascending, then the rest."""
    indices = [k for k in keys if k.isdecimal() and k.isascii() and str(int(k)) == k and int(k) < 2**32 - 1]
    return sorted(indices, key=int) + [k for k in keys if k not in indices]


def decode_stream(data: bytes) -> list[Any]:
    decoder = Decoder()
    values: list[Any] = []
    for event in decoder.feed(data) + decoder.feed_eof():
        assert isinstance(event, Messages), event
        values.extend(event.values)
    return values


def test_python_corpus_through_node_and_back() -> None:
    rng = random.Random(20261124)
    corpus = [make_value(rng, 0) for _ in range(COUNT)]
    sent = b"".join(encode(v) for v in corpus)
    echoed = run_node("js_echo.mjs", data=sent)
    back = decode_stream(echoed)
    assert len(back) == COUNT
    bad = [i for i, (a, b) in enumerate(zip(corpus, back, strict=False)) if not same_across(a, b)]
    assert not bad, [(corpus[i], back[i]) for i in bad[:5]]


def test_node_corpus_through_python_and_back() -> None:
    made = run_node("js_corpus.mjs", "7", str(COUNT))
    values = decode_stream(made)
    assert len(values) == COUNT
    returned = b"".join(encode(v) for v in values)
    report = json.loads(run_node("js_corpus.mjs", "7", str(COUNT), "--check", data=returned))
    assert report == {"checked": COUNT, "mismatches": [], "problems": []}


def test_python_and_node_agree_on_bad_lines() -> None:
    stream = b'1\n{bad\n"\xff"\n\n"ok"\n' + b"[" * 1025 + b"]" * 1025 + b'\n"\\ud800"\n1e400\n2'
    echoed = run_node("js_echo.mjs", data=stream)
    js_events = [decode(line) for line in echoed.splitlines()]
    assert js_events == [
        1,
        {"$error": "DECODE_ERROR", "line": 2},
        {"$error": "DECODE_ERROR", "line": 3},
        "ok",
        {"$error": "DECODE_ERROR", "line": 6},
        {"$error": "DECODE_ERROR", "line": 7},
        {"$error": "DECODE_ERROR", "line": 8},
        2,
    ]
