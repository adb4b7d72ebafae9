"""The differential target: the same inputs through Python and through one Node process running
js/src (js/test/fuzz/child.mjs, fed batches of cases as NDJSON). They must agree:

- wire: the same bytes, options and chunks give the same events, event for event: messages
  (numbers compared as doubles), error codes, lines, columns, reasons, excerpts, delivered;
- urls: parse gives the same address (scheme, host, port, path, params, canonical url) or the
  same UrlError reason;
- objects: fromTree / from_tree of the same tree both succeed or both raise HandleError with
  the same message.
"""

from __future__ import annotations

import base64
import json
import math
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import bothways.wire
from bothways.errors import HandleError, UrlError
from bothways.objects import MARK, Handles, from_tree
from bothways.urls import parse

from ..conftest import ROOT, require_tool
from . import test_objects, test_urls
from .common import brief, corpus, number, run
from .streams import cuts, decode, open_bug, options, streams

CHILD = ROOT / "js" / "test" / "fuzz" / "child.mjs"


class Node:
    """The one Node child of a run: ``ask(target, cases)`` returns its results."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [require_tool("node"), str(CHILD)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT / "js",
        )

    def ask(self, target: str, cases: list[Any]) -> list[Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"target": target, "cases": cases}).encode() + b"\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, "the node child died"
        results: list[Any] = json.loads(line)["results"]
        for result in results:
            assert not (isinstance(result, dict) and "crash" in result), result["crash"]
        return results

    def close(self) -> None:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)
        self.process.stdout.close()


_node: Node | None = None


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    global _node
    _node = Node()
    yield _node
    _node.close()
    _node = None


# -- wire ---------------------------------------------------------------------------------------


def python_events(data: bytes, max_line: int, binary: bool, at: list[int]) -> list[dict[str, Any]]:
    out = decode(bothways.wire, data, max_line, binary, at)
    for item in out:
        if "message" in item:
            item["message"] = number(item["message"])
    return out


def compare_wire(node: Node, cases: list[tuple[bytes, int, bool, list[int]]]) -> None:
    asked = [
        {"data": base64.b64encode(d).decode(), "max_line": m, "binary": b, "cuts": at}
        for d, m, b, at in cases
    ]
    for case, got in zip(cases, node.ask("wire", asked), strict=True):
        for item in got:
            if "message" in item:
                item["message"] = number(item["message"])
        assert got == python_events(*case), f"JavaScript differs on {case!r}"


@given(st.lists(st.tuples(streams(), st.data()), min_size=1, max_size=20))
@brief(15)
def target_wire(batch: list[Any]) -> None:
    cases = []
    for (data, max_line, binary), draw in batch:
        if not open_bug(data, max_line, binary):
            cases.append((data, max_line, binary, draw.draw(cuts(len(data)))))
    assume(cases)
    assert _node is not None
    compare_wire(_node, cases)


def test_wire(node: Node) -> None:
    run(target_wire)


@pytest.mark.parametrize("path", corpus("wire", differential=True))
def test_wire_corpus(node: Node, path: Path) -> None:
    data = path.read_bytes()
    max_line, binary = options(path)
    compare_wire(
        node, [(data, max_line, binary, at) for at in ([], list(range(1, len(data))), [len(data) // 2])]
    )


def open_url_difference(text: str) -> bool:
    """Inputs of the open differences tests/fuzz/corpus/urls/open-differ-*: a lone surrogate
    (JavaScript's parse takes it, then ``url`` throws URIError; Python: UrlError); a character
    that is not printable (the reasons show it as Python's repr() does, JavaScript's pyRepr
    leaves it raw)."""
    return any("\ud800" <= c <= "\udfff" or not c.isprintable() for c in text)


def open_tree_difference(tree: Any) -> bool:
    """Inputs of the open differences tests/fuzz/corpus/objects/open-differ-*: a ``"$bothways":
    null`` member (Python: a plain object; JavaScript: unknown marker kind null); a ``yours``
    marker whose id is not an integer (the message shows it as Python's str() or JavaScript's
    String(), ``None``/``undefined``); an integral float (``1.0``) as an id, class, blob or
    shape (Python: not an integer; JavaScript: Number.isInteger); a shape whose byte count
    passes 2**53 (JavaScript writes it as a rounded double, ``8.1e+31``), or any integer past
    2**53 (a frame number: JavaScript reads it rounded); an object with an
    integer-like key beside others (JavaScript walks ``"0"`` first, so another bad marker may be
    the first one it reports); a float shown in a message (a marker kind, dtype or shape: Python
    writes ``1e-05``, JavaScript ``0.00001``)."""
    for item in test_objects._walk(tree):
        if isinstance(item, float) and item.is_integer() or isinstance(item, int) and abs(item) > 2**53:
            return True
        if isinstance(item, dict) and len(item) > 1 and any(k.isdigit() for k in item):
            return True
        if isinstance(item, dict) and MARK in item:
            shown = [item[MARK], item.get("dtype"), item.get("shape")]
            if any(isinstance(x, float) for x in test_objects._walk(shown)):
                return True
        if isinstance(item, dict) and isinstance(item.get("shape"), list):
            sizes = [n for n in item["shape"] if type(n) is int]
            if math.prod(sizes) * 8 >= 2**53:
                return True
        if isinstance(item, dict) and MARK in item:
            if item[MARK] is None:
                return True
            if item[MARK] == "yours" and type(item.get("id")) is not int:
                return True
    return False


# -- urls ---------------------------------------------------------------------------------------


def python_url(text: str) -> Any:
    try:
        address = parse(text)
    except UrlError as exc:
        return {"error": exc.code, "reason": exc.reason}
    ok = {"scheme": address.scheme, "host": address.host, "port": address.port, "path": address.path}
    return {"ok": {**ok, "params": address.params, "url": address.url}}


def normal(result: Any) -> Any:
    if "ok" in result:
        result["ok"]["params"] = number(result["ok"]["params"])
        result["ok"]["port"] = number(result["ok"]["port"])
    return result


def compare_urls(node: Node, texts: list[str]) -> None:
    for text, got in zip(texts, node.ask("urls", texts), strict=True):
        assert normal(got) == normal(python_url(text)), f"JavaScript differs on {text!r}"


@given(st.lists(test_urls.urls(), min_size=1, max_size=30))
@brief(15)
def target_urls(texts: list[str]) -> None:
    texts = [t for t in texts if not test_urls.open_bug(t) and not open_url_difference(t)]
    assert _node is not None
    compare_urls(_node, texts)


def test_urls_differ_not(node: Node) -> None:
    run(target_urls)


@pytest.mark.parametrize("path", corpus("urls", differential=True))
def test_urls_corpus(node: Node, path: Path) -> None:
    compare_urls(node, [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line])


# -- objects ------------------------------------------------------------------------------------


def python_tree(text: str, blobs: list[str] | None) -> Any:
    try:
        value = bothways.wire.decode(text)
    except ValueError:
        return {"skip": True}
    handles = Handles()
    handles.lend(object())
    try:
        from_tree(value, handles, lambda *a: a, None if blobs is None else [bytes.fromhex(b) for b in blobs])
    except HandleError as exc:
        return {"error": exc.code, "message": str(exc)}
    return {"ok": True}


def compare_trees(node: Node, cases: list[tuple[Any, list[str] | None]]) -> None:
    asked = [{"tree": json.dumps(tree), "blobs": blobs} for tree, blobs in cases]
    for case, got in zip(asked, node.ask("objects", asked), strict=True):
        assert got == python_tree(case["tree"], case["blobs"]), f"JavaScript differs on {case}"


@given(st.lists(st.tuples(test_objects.trees, test_objects.blob_lists), min_size=1, max_size=20))
@brief(15)
def target_objects(batch: list[Any]) -> None:
    cases = [(tree, None if b is None else [x.hex() for x in b]) for tree, b in batch]
    cases = [c for c in cases if not test_objects.open_bug(c[0]) and not open_tree_difference(c[0])]
    assert _node is not None
    compare_trees(_node, cases)


def test_objects_differ_not(node: Node) -> None:
    run(target_objects)


@pytest.mark.parametrize("path", corpus("objects", differential=True))
def test_objects_corpus(node: Node, path: Path) -> None:
    cases = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    compare_trees(node, [(c["tree"], c["blobs"]) for c in cases])
