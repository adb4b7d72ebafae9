"""Fuzz target: bothways.objects.from_tree. For any tree a peer could send (any JSON value,
markers well formed or not, with or without binary frames): it returns a value or raises
HandleError, nothing else, at Python's default recursion limit (a decoded message nests up to
1,024 deep, and the tests raise the limit: tests/conftest.py)."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from bothways.errors import HandleError
from bothways.objects import MARK, Handles, from_tree

from .common import brief, corpus, run

DEFAULT_RECURSION_LIMIT = 1000
KINDS = ["ref", "yours", "bytes", "array", "object", "tree", "", "REF", None, 1, ["ref"]]
DTYPES = ["bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32"]
DTYPES += ["float64", "float16", "complex", "", None]
_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
)
_base64 = st.one_of(
    st.binary(max_size=16).map(lambda b: __import__("base64").b64encode(b).decode()),
    st.sampled_from(["", "A", "AA", "AA=", "AA==", "AAA=", "A===", "AB=A", "@@@@", " AAA", "AAAA\n", "é"]),
)


@st.composite
def markers(draw: Any, inner: Any) -> dict[str, Any]:
    kind = draw(st.sampled_from(KINDS))
    marker: dict[str, Any] = {MARK: kind}
    fields = {
        "id": st.integers(-1, 3) | _scalar,
        "kind": st.sampled_from(["function", "class", "object", "iterator", "thing"]) | _scalar,
        "type": st.text(max_size=4) | _scalar,
        "class": st.integers(0, 3) | _scalar,
        "methods": st.lists(st.text(max_size=3), max_size=3) | _scalar,
        "base64": _base64 | _scalar,
        "blob": st.integers(-1, 3) | _scalar,
        "dtype": st.sampled_from(DTYPES),
        "shape": st.lists(st.integers(0, 4), max_size=3) | st.lists(_scalar, max_size=2) | _scalar,
        "value": inner,
    }
    for key in draw(st.lists(st.sampled_from(sorted(fields)), unique=True, max_size=5)):
        marker[key] = draw(fields[key])
    return marker


trees = st.recursive(
    _scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["a", "b c", MARK, "0", "value"]), inner, max_size=3),
        markers(inner),
    ),
    max_leaves=10,
)
blob_lists = st.none() | st.lists(st.binary(max_size=16), max_size=3)


def open_bug(tree: Any) -> bool:
    """Inputs of the open bug tests/fuzz/corpus/objects/open-array-of-65-dimensions.jsonl: an
    array marker whose shape has more than 64 dimensions (numpy and memoryview refuse it)."""
    text = json.dumps(tree)
    return '"shape": [' in text and any(
        isinstance(t, dict) and isinstance(t.get("shape"), list) and len(t["shape"]) > 64 for t in _walk(tree)
    )


def _walk(tree: Any) -> Any:
    stack = [tree]
    while stack:
        item = stack.pop()
        yield item
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def check(tree: Any, blobs: list[bytes] | None) -> None:
    handles = Handles()
    handles.lend(object())  # "yours" id 1 is held

    def borrow(handle_id: int, kind: str, type_name: str, methods: Any) -> Any:
        assert type(handle_id) is int and handle_id >= 1 and type(type_name) is str
        return ("proxy", handle_id, kind)

    try:
        from_tree(tree, handles, borrow, blobs)
    except HandleError:
        pass


def check_at_default_limit(tree: Any, blobs: list[bytes] | None) -> None:
    """``check`` in a new thread (a fresh stack) under Python's default recursion limit."""
    failure: list[BaseException] = []

    def work() -> None:
        try:
            check(tree, blobs)
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            failure.append(exc)

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(DEFAULT_RECURSION_LIMIT)
    try:
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
    finally:
        sys.setrecursionlimit(limit)
    if failure:
        raise failure[0]


@given(trees, blob_lists)
@brief(150)
def target_from_tree(tree: Any, blobs: list[bytes] | None) -> None:
    assume(not open_bug(tree))
    check(tree, blobs)


def test_from_tree() -> None:
    run(target_from_tree)


@pytest.mark.parametrize("path", corpus("objects"))
def test_corpus(path: Path) -> None:
    """A corpus file: one case per line, ``{"tree": ..., "blobs": [hex, ...] or null}``."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            case = json.loads(line)
            blobs = None if case.get("blobs") is None else [bytes.fromhex(b) for b in case["blobs"]]
            check_at_default_limit(case["tree"], blobs)
