"""Peer over memory_pair(): calls both ways, errors, timeouts, cancellation, a peer that goes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from bothways import CallTimeout, EncodeError, RemoteError, TransportClosed
from bothways.peer import Peer
from bothways.transports import memory_pair


def run(body: Callable[[Peer, Peer], Awaitable[None]]) -> None:
    async def main() -> None:
        left, right = memory_pair()
        async with Peer(left) as a, Peer(right) as b:
            await asyncio.wait_for(body(a, b), 20)

    asyncio.run(main())


def test_many_concurrent_calls_pair_up() -> None:
    async def body(a: Peer, b: Peer) -> None:
        async def slow_double(x: int) -> int:
            await asyncio.sleep((x % 7) / 1000)  # answers come back out of order
            return 2 * x

        b.expose(slow_double)
        results = await asyncio.gather(*(a.call("slow_double", i) for i in range(2000)))
        assert results == [2 * i for i in range(2000)]

    run(body)


def test_both_sides_call_each_other_and_callbacks_reenter() -> None:
    async def body(a: Peer, b: Peer) -> None:
        a.expose(lambda: "a's name", name="name")

        @b.expose
        async def greet(greeting: str) -> str:
            caller = await b.call("name")  # calls back into the caller before answering
            return f"{greeting}, {caller}"

        b.expose(lambda: "b's name", name="name")
        assert await a.call("greet", greeting="hello") == "hello, a's name"
        assert await b.call("name") == "a's name"

    run(body)


def test_remote_exception_carries_type_and_traceback() -> None:
    async def body(a: Peer, b: Peer) -> None:
        def divide(x: float, y: float) -> float:
            return x / y

        b.expose(divide)
        with pytest.raises(RemoteError) as info:
            await a.call("divide", 1, 0)
        err = info.value
        assert err.remote_type == "ZeroDivisionError"
        assert "in divide" in err.remote_traceback and "return x / y" in err.remote_traceback
        assert str(err).startswith("ZeroDivisionError: division by zero")
        with pytest.raises(RemoteError, match="Method not found: nope") as missing:
            await a.call("nope")
        assert missing.value.rpc_code == -32601
        with pytest.raises(RemoteError, match="Invalid params") as bad:
            await a.call("divide", 1)
        assert bad.value.rpc_code == -32602
        b.expose(lambda: {1, 2}, name="a_set")
        with pytest.raises(RemoteError, match="set is not JSON serializable"):
            await a.call("a_set")

    run(body)


def test_timeout_and_cancellation_reach_the_callee() -> None:
    async def body(a: Peer, b: Peer) -> None:
        seen: list[str] = []

        @b.expose
        async def forever(tag: str) -> None:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                seen.append(tag)
                raise

        with pytest.raises(CallTimeout):
            await a.call("forever", "timeout", timeout=0.05)
        task = asyncio.ensure_future(a.call("forever", "cancel"))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(100):
            if len(seen) == 2:
                break
            await asyncio.sleep(0.01)
        assert sorted(seen) == ["cancel", "timeout"]
        assert a.endpoint.pending == []

    run(body)


def test_a_peer_that_goes_fails_every_pending_call() -> None:
    async def main() -> None:
        left, right = memory_pair()
        a = await Peer(left).start()
        b = await Peer(right).start()
        b.expose(lambda: asyncio.sleep(60), name="hang")
        calls = [asyncio.ensure_future(a.call("hang")) for _ in range(5)]
        await asyncio.sleep(0.05)
        await b.close()
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 1)
        assert all(isinstance(r, TransportClosed) for r in results), results
        with pytest.raises(TransportClosed):
            await a.call("hang")
        await a.close()

    asyncio.run(main())


def test_notifications() -> None:
    async def body(a: Peer, b: Peer) -> None:
        got: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        b.notification_handler = lambda method, params: got.put_nowait((method, params))
        await a.notify("progress", 50)
        assert await got.get() == ("progress", [50])

    run(body)


def test_bad_arguments_and_a_failing_notification_handler_leave_the_peer_working() -> None:
    async def body(a: Peer, b: Peer) -> None:
        b.expose(lambda x: x, name="echo")

        def broken(method: str, params: Any) -> None:
            raise RuntimeError("handler bug")

        b.notification_handler = broken
        await a.notify("tick")
        with pytest.raises(EncodeError):
            await a.call("echo", {1, 2})
        assert a.endpoint.pending == []
        assert await a.call("echo", 5) == 5  # the reader survived the failing handler

    run(body)
