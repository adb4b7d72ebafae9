"""Calls across a real process boundary, at volume: Python's Peer against a Node child.

10,000 calls in flight at once, answered out of order, some with errors, must each get their
own answer (js/test/calls.test.js drives the other direction: Node's Peer against Python).
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pytest

from bothways import RemoteError, TransportClosed, async_listen, node
from bothways.peer import Peer
from bothways.transports import async_spawn

from ..conftest import FIXTURES, UNIT, require_tool

N = 10_000
# A hang guard, not a speed limit: 10,000 calls take ~1 s alone, ~6 s in asyncio's debug mode
# (make test), and over 20 s in debug mode beside the heaviest tests on two busy cores.
CALLS_WITHIN = 90 * UNIT


@pytest.fixture(autouse=True)
def node_on_path() -> None:
    require_tool("node")


def expected(i: int) -> Any:
    if i % 97 == 0:
        return f"RangeError: refused {i}"
    if i % 3 == 0:
        return [i, f"t{i}"]
    return {"n": i, "label": f"l{i}"}


def test_10000_concurrent_calls_to_a_js_module_each_get_their_own_answer() -> None:
    async def main() -> None:
        module = await node.async_require(FIXTURES / "calls_module.mjs", stderr="keep")
        async with module:

            async def one(i: int) -> Any:
                if i % 97 == 0:
                    try:
                        await module.refuse(i, i % 5)
                    except RemoteError as exc:
                        return f"{exc.remote_type}: {exc.reason}"
                    raise AssertionError(f"call {i} did not fail")
                if i % 3 == 0:
                    return await module.tag(i, f"t{i}")
                return await module.later(i, f"l{i}", i % 7)  # answers come back out of order

            results = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(N))), CALLS_WITHIN)
            assert results == [expected(i) for i in range(N)]
            assert module._peer.endpoint.pending == []

    asyncio.run(main())


@pytest.mark.parametrize("scheme", ["tcp", "ws"])
def test_calls_both_ways_at_once_over_a_network_channel(scheme: str) -> None:
    """The same Peer over tcp:// and ws:// (a Node Peer connects to our listener): each of 2,000
    calls to Node calls back into us before it is answered; a crash on the far side fails what
    is pending."""

    async def main() -> None:
        url = f"{scheme}://127.0.0.1:0" + ("/calls" if scheme == "ws" else "")
        async with await async_listen(url) as listener:
            child = await async_spawn(["node", str(FIXTURES / "calls_peer.mjs"), listener.url], stderr="keep")
            async with child:
                connection = await asyncio.wait_for(listener.accept(), 10 * UNIT)
                async with Peer(connection) as peer:

                    @peer.expose
                    async def square(n: int) -> int:
                        if n < 0:
                            await asyncio.Event().wait()  # never: the call stays pending
                        await asyncio.sleep((n % 3) / 1000)
                        return n * n

                    calls = [peer.call("relay", i) for i in range(2000)]
                    results = await asyncio.wait_for(asyncio.gather(*calls), CALLS_WITHIN)
                    assert results == [{"n": i, "square": i * i} for i in range(2000)]
                    with pytest.raises(RemoteError, match="Method not found"):
                        await peer.call("nothing")
                    pending = peer.call("relay", -1)
                    await asyncio.sleep(0.1)
                    os.kill(child.pid, signal.SIGKILL)
                    with pytest.raises(TransportClosed):  # at once, not after a timeout
                        await asyncio.wait_for(pending, 5 * UNIT)

    asyncio.run(main())


def test_10000_calls_both_ways_at_once_over_one_pipe() -> None:
    """Each call to the Node child calls back into us before it is answered."""

    async def main() -> None:
        child = await async_spawn(["node", str(FIXTURES / "calls_peer.mjs")], stderr="keep")
        async with Peer(child) as peer:
            squared: list[int] = []

            @peer.expose
            async def square(n: int) -> int:
                squared.append(n)
                await asyncio.sleep((n % 5) / 1000)
                return n * n

            calls = [peer.call("relay", i) for i in range(N)]
            results = await asyncio.wait_for(asyncio.gather(*calls), CALLS_WITHIN)
            assert results == [{"n": i, "square": i * i} for i in range(N)]
            assert sorted(squared) == list(range(N))
            assert peer.endpoint.pending == []
        assert child.returncode == 0, child.stderr_tail

    asyncio.run(main())
