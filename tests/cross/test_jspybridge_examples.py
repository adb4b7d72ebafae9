"""JSPyBridge's README examples, redone through bothways: the same programs' intent, written anew.

JSPyBridge (PyPI ``javascript`` / npm ``pythonia``) is the closest project to bothways' objects
and callbacks (spec/PROTOCOL.md section 10). Its README shows short programs; those that need no
npm package, no network, no numpy, matplotlib or GUI are redone here, each as a test that checks
the result instead of printing it. They correspond to these README sections:

- "Access JavaScript from Python" (its first snippet: Node's ``fs`` and the date from Python;
  ``chalk`` is an npm package, left out): test_node_builtins_from_python.
- "From Python" > "Basic import" (a module's function returning the time): test_basic_import.
- "From Python" > "Event emitter" (an EventEmitter subclass, a Python listener that stops
  listening after the first event): test_event_emitter_listener_stops_itself; passing the
  Python function straight to ``emitter.on`` (which calls it with ``handler.apply``) is
  test_python_function_as_an_event_listener.
- "From Python" > "ES5 class" (a constructor function, not ``class`` syntax):
  test_es5_constructor. bothways' Python side has no ``new`` of its own (JSPyBridge's ``.new``
  pseudo-method): a JS factory does it.
- "From Python" > "Iteration" (looping over JS items in Python): test_iteration.
- "From Python" > "Callback" (JS calls a Python lambda with 42 + salt): test_callback.
- "Extra details" (foreign references, ``valueOf()`` for a JSON copy, ``blobValueOf()`` for a
  Buffer's bytes): test_references_copies_and_bytes.
- "Access Python from JavaScript" (tkinter: an object made remotely, keyword arguments with
  ``$``, methods; a stand-in class here), "From JavaScript" > "Basic import" and
  "From JavaScript" > "Iterating" (a Python generator pulled with ``for await``):
  test_node_uses_python, which runs tests/fixtures/jspybridge_examples_node.mjs.

bothways loads a module by path (``node.require("./m.mjs")``), not npm packages by name, so the
JavaScript halves live in tests/fixtures/jspybridge_examples.mjs and the Python halves in
tests/fixtures/jspybridge_examples.py.
"""

from __future__ import annotations

import datetime
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bothways import RemoteError, node
from bothways.objects import RemoteObject, release, value

from ..conftest import FIXTURES, UNIT, require_tool
from .node import run_node

MODULE = FIXTURES / "jspybridge_examples.mjs"


@pytest.fixture
def m() -> Iterator[Any]:
    require_tool("node")
    with node.require(MODULE, stderr="keep") as module:
        yield module


def test_node_builtins_from_python(m: Any, tmp_path: Path) -> None:
    target = tmp_path / "HelloWorld.txt"
    # Node's own fs.writeFileSync, called from Python. Its options are passed: the host checks
    # a call against the parameters the function declares, (file, data, options), as Python would
    m.writeFileSync(str(target), "hi!", "utf8")
    assert target.read_text() == "hi!"
    assert m.readFileSync(str(target), "utf8") == "hi!"


def test_basic_import(m: Any) -> None:
    shown = m.whatTimeIsIt()  # e.g. "12/5/2026, 6:08:30 AM", in UTC
    when = datetime.datetime.strptime(shown, "%m/%d/%Y, %I:%M:%S %p").replace(tzinfo=datetime.timezone.utc)
    assert abs(datetime.datetime.now(datetime.timezone.utc) - when) < datetime.timedelta(minutes=5)


def test_event_emitter_listener_stops_itself(m: Any) -> None:
    ticker = m.Ticker()  # a subclass of Node's EventEmitter, made from Python
    heard: list[int] = []
    stops: list[Any] = []

    def on_increment(counter: int) -> None:
        heard.append(counter)
        assert stops[0]() == 0  # stop listening from inside the listener: no listener left

    stops.append(m.listen(ticker, "increment", on_increment))
    assert ticker.inc() == 1
    assert ticker.inc() == 2  # emitted to nobody
    assert heard == [1]
    assert ticker.count == 2  # a class field, read with $/get


def test_python_function_as_an_event_listener(m: Any) -> None:
    ticker = m.Ticker()
    heard: list[int] = []
    ticker.on("increment", heard.append)
    ticker.inc()  # emit() calls handler.apply(this, args): the proxy's own apply
    assert heard == [1]


def test_es5_constructor(m: Any) -> None:
    holder = m.makeHolder(3)  # new Holder(3) on the JS side
    assert holder.getNum() == 3  # a closure, not a prototype method: looked up, then called
    with pytest.raises(RemoteError, match="Cannot set properties of undefined"):
        m.Holder(3)  # called without new, as plain functions are


def test_iteration(m: Any) -> None:
    assert [item for item in m.items()] == [5, 6, 7, 8]  # an array crosses as a list
    assert list(m.itemSet()) == [5, 6, 7, 8]  # a Set is lent, and pulled as an iterator


def test_callback(m: Any) -> None:
    got: list[int] = []
    m.method(got.append, 2)
    assert got == [44]
    assert m.method(lambda v: v * 10, 2) == 440  # what the callback returns goes back too


def test_references_copies_and_bytes(m: Any) -> None:
    scores = m.scores()  # lent by reference (ref() on the JS side), like JSPyBridge's results
    assert isinstance(scores, RemoteObject)
    assert scores["ada"] == 3 and scores["bob"] == 5  # $/item
    assert m.bump(scores, "ada") == 4  # handed back: JavaScript gets its own object
    assert value(scores) == {"ada": 4, "bob": 5}  # a JSON copy: JSPyBridge's valueOf()
    release(scores)
    blob = m.blob(1 << 20)  # a Buffer arrives as bytes: what blobValueOf() is for
    assert type(blob) is bytes and blob == b"*" * (1 << 20)


def test_a_callback_may_call_into_node_again(m: Any) -> None:
    """JSPyBridge's docs ask callbacks not to block (they share one callback thread); here a
    callback may call into Node again, which calls Python back, while the outer call waits."""
    assert m.method(lambda v: m.method(lambda w: w + 1, v), 0) == 85  # 42 + (42 + 0) + 1


def test_node_uses_python(tmp_path: Path) -> None:
    for name in ("a.txt", "b.py", "c"):
        (tmp_path / name).touch()
    out = run_node("jspybridge_examples_node.mjs", sys.executable, str(tmp_path), timeout=60 * UNIT)
    result = json.loads(out)
    when = datetime.datetime.fromisoformat(result["time"])
    assert abs(datetime.datetime.now() - when) < datetime.timedelta(minutes=5)
    assert sorted(result["files"]) == ["a.txt", "b.py", "c"]
    assert result["packed"] == ["Hello World"]
