"""Where a listener's connections go, between accept() and the merged stream: one rule
(``base.Router``, spec/PROTOCOL.md section 7), the same tests for tcp:// and ws://, blocking and
asyncio. js/test/tcp.test.js holds the same tests for Node ("routing ...")."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from bothways import TransportClosed
from bothways.channels import async_connect, async_listen, connect, listen
from bothways.transports.base import Router

from ..conftest import UNIT

WAIT = 10 * UNIT
URLS = {"tcp": "tcp://127.0.0.1:0", "ws": "ws://127.0.0.1:0/feed"}
SCHEMES = pytest.mark.parametrize("scheme", sorted(URLS))


def test_router_the_rule() -> None:
    router: Router[str] = Router()
    assert router.arrive("a") is False and router.arrive("b") is False  # held: nobody uses it yet
    router.begin_accept()
    assert router.take() == "a"  # the oldest
    assert router.end_accept() == []  # not merging: b stays held
    assert router.start_merging() == ["b"]
    assert router.arrive("c") is True  # merging, no accept() waits: merged at once
    router.begin_accept()
    assert router.take() is None  # merged ones are never taken
    assert router.arrive("d") is False  # an accept() waits: held for it
    assert router.start_merging() == []  # (it is the accept()'s)
    assert router.take() == "d"
    router.begin_accept()  # two accept() calls, one connection
    assert router.arrive("e") is False and router.end_accept() == []  # the other still waits
    assert router.take() == "e" and router.end_accept() == []
    router.begin_accept()
    assert router.arrive("f") is False
    assert router.end_accept() == ["f"]  # the accept() gave up: merged
    assert router.arrive("g") is True
    router.merging = False
    assert router.arrive("h") is False
    router.forget("h")
    router.forget("h")  # (twice: nothing)
    assert router.arrive("i") is False and router.close() == ["i"] and router.held == type(router.held)()


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def _accept_in_thread(server: Any) -> queue.Queue[Any]:
    """Starts ``server.accept()`` in a thread and returns once it waits (the router says so)."""
    accepted: queue.Queue[Any] = queue.Queue()

    def accept() -> None:
        try:
            accepted.put(server.accept())
        except TransportClosed as exc:
            accepted.put(exc)

    threading.Thread(target=accept, daemon=True).start()
    _until(lambda: _router(server).accepting > 0)
    return accepted


def _router(server: Any) -> Router[Any]:
    board = getattr(server, "_board", None)
    return board.router if board is not None else server._router  # type: ignore[no-any-return]


@SCHEMES
def test_routing_held_until_accept_or_merging(scheme: str) -> None:
    with listen(URLS[scheme]) as server:
        a = connect(server.url)
        a.send("from a")
        b = connect(server.url)
        b.send("from b")
        with a, b:
            with server.accept() as conn:  # both held (nobody used the merged stream): the oldest
                assert server.receive() == "from b"  # the first receive merges the other
                assert conn.receive() == "from a"  # everything a sent, from its first message
                conn.send("to a")
                server.send("to all")  # a broadcast: b only
                assert a.receive() == "to a"
                assert b.receive() == "to all"


@SCHEMES
def test_routing_a_merged_connection_is_never_accepted(scheme: str) -> None:
    with listen(URLS[scheme]) as server, connect(server.url) as first:
        first.send("one")
        assert server.receive() == "one"  # merging: first is merged, for good
        accepted = _accept_in_thread(server)
        first.send("two")
        assert server.receive() == "two"  # accept() did not take it
        assert accepted.empty()
        with connect(server.url) as second, accepted.get(timeout=WAIT) as conn:  # to the waiting accept()
            second.send("three")
            assert conn.receive() == "three"
            third = connect(server.url)  # no accept() waits any more: merged at once
            with third:
                third.send("four")
                assert server.receive() == "four"


@SCHEMES
def test_routing_a_send_merges_the_held_connections(scheme: str) -> None:
    with listen(URLS[scheme]) as server, connect(server.url) as client:
        _until(lambda: server.peers == 1 if scheme == "tcp" else bool(_router(server).held))
        server.send("hello")  # a send uses the merged stream too: client joins it
        assert client.receive() == "hello"
        client.send("back")
        assert server.receive() == "back"
        accepted = _accept_in_thread(server)  # accept() cannot take it any more: it waits
        client.send("still merged")
        assert server.receive() == "still merged"
        server.close()
        assert isinstance(accepted.get(timeout=WAIT), TransportClosed)


@SCHEMES
def test_routing_async(scheme: str) -> None:
    async def main() -> None:
        async with await async_listen(URLS[scheme]) as server:
            a = await async_connect(server.url)
            await a.send("from a")
            b = await async_connect(server.url)
            await b.send("from b")
            conn = await server.accept()  # held: the oldest
            assert await server.receive() == "from b"  # merges b
            assert await conn.receive() == "from a"
            waiting = asyncio.ensure_future(server.accept())  # merged b is never taken
            await b.send("again")
            assert await server.receive() == "again"
            assert not waiting.done()
            c = await async_connect(server.url)
            other = await asyncio.wait_for(waiting, WAIT)  # c went to the waiting accept()
            await c.send("from c")
            assert await other.receive() == "from c"
            d = await async_connect(server.url)  # no accept() waits: merged at once
            await d.send("from d")
            assert await server.receive() == "from d"
            for channel in (conn, other, a, b, c, d):
                await channel.close()

    asyncio.run(asyncio.wait_for(main(), 20 * UNIT))
