"""Objects, callbacks, streams and bytes across a real Node process (spec/PROTOCOL.md 10), from
Python: node.require of tests/fixtures/objects_module.mjs, blocking and asyncio. The other
direction (Node using a Python module) is js/test/objects_python.test.js."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import threading
import time
from typing import Any

import numpy
import pytest

from bothways import ChildExited, HandleError, RemoteError, node
from bothways.objects import RemoteObject, release

from ..conftest import ROOT

MODULE = ROOT / "tests" / "fixtures" / "objects_module.mjs"


@pytest.fixture
def m() -> Any:
    with node.require(MODULE, stderr="keep") as module:
        yield module


def test_a_javascript_class_instantiated_and_used_from_python(m: Any) -> None:
    parser = m.Parser({"separator": ";"})
    assert isinstance(parser, RemoteObject)
    assert parser.parse("a;b;c") == ["a", "b", "c"]
    assert parser.count == 1  # a getter: read with $/get
    parser.separator = "|"
    assert parser.parse("x|y") == ["x", "y"] and parser.count == 2
    assert "Parser" in repr(parser)
    with pytest.raises(RemoteError, match="Cannot read properties of undefined") as info:
        parser.parse()  # text is undefined there
    assert info.value.remote_type == "TypeError"
    table = m.table()
    assert table["a"] == 1 and table["b"] == 2 and len(table) == 2
    release(parser)
    with pytest.raises(HandleError, match="was released"):
        parser.parse("a")


def test_a_generator_is_pulled_with_credit_and_a_break_stops_it(m: Any) -> None:
    assert sum(m.numbers(100_000)) == sum(range(100_000))
    stream = m.numbers(1_000_000)
    for item in stream:
        if item == 10:
            break
    release(stream)  # (GC would do it too: see the million-handles test)
    assert m.closedOnes() == [100_000, 1_000_000]  # the generator's finally ran


def test_a_python_callback_called_10000_times_after_the_call_returned_in_order(m: Any) -> None:
    got: list[int] = []
    done = threading.Event()

    def callback(i: int) -> int:
        got.append(i)
        if len(got) == 10_000:
            done.set()
        return i

    assert m.callLater(callback, 10_000) == "scheduled"
    assert done.wait(60)
    assert got == list(range(10_000))


def test_calls_nest_fifty_deep_both_ways(m: Any) -> None:
    def ours(depth: int) -> int:
        return 0 if depth == 0 else m.bounce(ours, depth) + 1

    assert ours(50) == 50
    assert m.twice(lambda x: x * 3, 2) == 18


def test_bytes_and_a_float64_array_both_ways_equal(m: Any) -> None:
    data = numpy.random.default_rng(1).integers(0, 256, 100 * 1024 * 1024, dtype=numpy.uint8).tobytes()
    assert m.echo(data) == data  # 100 MB there and back
    floats = numpy.random.default_rng(2).standard_normal(10_000_000)  # 80 MB
    back = m.echo(floats)
    assert back.dtype == numpy.float64 and back.shape == floats.shape and numpy.array_equal(back, floats)
    assert m.sum(floats[:1000]) == pytest.approx(floats[:1000].sum())
    assert m.kinds([b"ab", floats[:3], numpy.arange(4, dtype=numpy.int32)]) == [
        "Buffer",
        "Float64Array",
        "Int32Array",
    ]
    made = m.floats(6)
    assert made.dtype == numpy.float64 and made.tolist() == [0, 0.5, 1, 1.5, 2, 2.5]
    assert m.bytes(3) == b"\x00\x01\x02"


def test_a_million_handles_keep_the_other_sides_table_and_rss_bounded(m: Any) -> None:
    most = 0
    rss = []
    for round_ in range(1000):
        batch = m.many(1000)
        assert isinstance(batch[999], RemoteObject)
        del batch
        if round_ % 100 == 99:
            rss.append(m.rss())
        most = max(most, m._caller.call("$/handles"))
    gc.collect()
    m.echo(0)
    assert most <= 2000, most
    assert m._caller.call("$/handles") == 0
    assert max(rss[3:]) < rss[2] * 1.5, rss  # flat after the start


def test_a_killed_peer_fails_pending_calls_and_handle_uses_with_child_exited() -> None:
    module = node.require(MODULE, stderr="keep")
    parser = module.Parser()
    results: list[BaseException] = []

    def wait_forever() -> None:
        try:
            module.hang()
        except BaseException as exc:  # noqa: BLE001 - what the test looks at
            results.append(exc)

    thread = threading.Thread(target=wait_forever)
    thread.start()
    time.sleep(0.2)
    os.kill(module._caller.channel.pid, signal.SIGKILL)
    thread.join(10)
    assert not thread.is_alive()
    assert isinstance(results[0], ChildExited) and results[0].signal == "SIGKILL"
    with pytest.raises(ChildExited):
        parser.parse("a,b")
    module.close()


def test_the_asyncio_flavour_uses_objects_streams_and_callbacks() -> None:
    async def main() -> None:
        async with await node.async_require(MODULE, stderr="keep") as m:
            parser = await m.Parser({"separator": "-"})
            assert await parser.parse("a-b") == ["a", "b"]
            assert await parser.count == 1
            total = 0
            async for item in await m.numbers(10_000):
                total += item
            assert total == sum(range(10_000))
            assert await m.twice(lambda x: x + 1, 1) == 3

            async def slow_double(x: int) -> int:
                await asyncio.sleep(0)
                return x * 2

            assert await m.twice(slow_double, 3) == 12

    asyncio.run(main())
