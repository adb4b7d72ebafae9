"""Peer over memory_pair(): calls both ways, errors, timeouts, cancellation, a peer that goes."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from bothways import CallTimeout, EncodeError, RemoteError, TransportClosed, decode
from bothways.peer import Caller, Peer
from bothways.rpc import METHOD_NOT_FOUND
from bothways.transports import memory_pair
from bothways.transports.base import AsyncChannel
from bothways.transports.stdio import StdioChannel


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
        b.expose(lambda: "\ud800", name="a_set")  # (a set would be lent: spec 10)
        with pytest.raises(RemoteError, match="lone surrogate"):
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
            await a.call("echo", "\ud800")
        assert a.endpoint.pending == []
        assert await a.call("echo", 5) == 5  # the reader survived the failing handler

    run(body)


def test_arguments_that_do_not_fit_are_refused_without_running_the_function() -> None:
    async def body(a: Peer, b: Peer) -> None:
        ran: list[Any] = []

        def add(x: int, y: int = 0, *, scale: int = 1) -> int:
            ran.append((x, y, scale))
            return (x + y) * scale

        b.expose(add)
        b.expose(lambda *numbers: sum(numbers), name="total")
        assert await a.call("add", 1) == 1
        assert await a.call("add", x=1, y=2, scale=3) == 9
        for args, kwargs, reason in [
            ((), {}, "missing a required argument: 'x'"),
            ((1, 2, 3), {}, "too many positional arguments"),
            ((), {"x": 1, "z": 2}, "got an unexpected keyword argument 'z'"),
        ]:
            with pytest.raises(RemoteError) as info:
                await a.call("add", *args, **kwargs)
            assert info.value.rpc_code == -32602
            assert info.value.reason == f"Invalid params: {reason}"
        assert ran == [(1, 0, 1), (1, 2, 3)]
        assert await a.call("total", *range(100)) == 4950
        assert await a.call("total") == 0

    run(body)


def test_a_batch_whose_result_cannot_be_encoded_gets_an_error_answer() -> None:
    async def main() -> None:
        raw, end = memory_pair()
        async with Peer(end) as peer:
            peer.expose(lambda x: x * 2, name="double")
            peer.expose(lambda: ["\ud800"], name="a_set")
            await raw.send(
                [
                    {"jsonrpc": "2.0", "method": "double", "params": [1], "id": "a"},
                    {"jsonrpc": "2.0", "method": "a_set", "id": "b"},
                    {"jsonrpc": "2.0", "method": "double", "params": [3], "id": "c"},
                ]
            )
            a, b, c = await asyncio.wait_for(raw.receive(), 5)
            assert a == {"jsonrpc": "2.0", "result": 2, "id": "a"}
            assert c == {"jsonrpc": "2.0", "result": 6, "id": "c"}
            assert b["id"] == "b" and b["error"]["code"] == -32603
            assert b["error"]["message"].startswith("result: ")
            assert "lone surrogate" in b["error"]["message"]
            assert b["error"]["data"]["type"] == "EncodeError"
            await raw.close()

    asyncio.run(main())


def test_call_sends_at_once_and_returns_a_future() -> None:
    async def body(a: Peer, b: Peer) -> None:
        started: list[int] = []

        @b.expose
        async def slow(n: int) -> int:
            started.append(n)
            await asyncio.sleep(60)
            return n

        b.expose(lambda x: x, name="echo")
        futures = [a.call("echo", i) for i in range(5000)]  # no task each
        assert all(isinstance(f, asyncio.Future) for f in futures)
        assert await asyncio.gather(*futures) == list(range(5000))
        pending = a.call("slow", 1)  # sent without being awaited
        for _ in range(100):
            if started:
                break
            await asyncio.sleep(0.01)
        assert started == [1]
        assert pending.cancel()  # cancelling the future tells the other side
        for _ in range(100):
            if not b._serving:
                break
            await asyncio.sleep(0.01)
        assert not b._serving and a.endpoint.pending == []
        with pytest.raises(EncodeError):
            a.call("echo", "\ud800")  # at once, before any await
        with pytest.raises(EncodeError):
            await a.notify("log", "\ud800")
        assert a.endpoint.pending == [] and a.endpoint.messages_to_send() == []

    run(body)


class Clogged(AsyncChannel):
    """A stream channel whose writes wait now and then, as a full pipe makes them."""

    def __init__(self, inner: AsyncChannel) -> None:
        self.inner = inner
        self.writes = 0

    async def send(self, value: Any) -> None:
        await self.inner.send(value)

    async def send_bytes(self, data: bytes) -> None:
        self.writes += 1
        if self.writes % 3 == 0:
            await asyncio.sleep(0.001)
        for line in data.splitlines():
            await self.inner.send(decode(line))

    async def receive(self) -> Any:
        return await self.inner.receive()

    async def close(self) -> None:
        await self.inner.close()


def test_writes_that_wait_keep_order_and_lose_nothing() -> None:
    async def main() -> None:
        left, right = memory_pair()
        clogged = Clogged(left)
        async with Peer(clogged) as a, Peer(right) as b:
            seen: list[Any] = []
            b.notification_handler = lambda method, params: seen.append(params[0])
            b.expose(lambda x: -x, name="negate")
            for round_ in range(20):
                calls = [a.call("negate", i) for i in range(round_ * 50)]
                await a.notify("tick", round_)
                assert await asyncio.wait_for(asyncio.gather(*calls), 5) == [-i for i in range(round_ * 50)]
                assert await a.call("negate", round_) == -round_  # sequential: written at once
            assert seen == list(range(20))
            assert clogged.writes > 20

    asyncio.run(main())


def test_a_blocking_caller_answers_a_request_from_the_other_side_method_not_found() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        caller = Caller(StdioChannel(stdin_fd=ours.fileno(), stdout_fd=ours.fileno()))
        seen: list[Any] = []

        def other_side() -> None:
            with theirs.makefile("rb") as lines:
                request = json.loads(lines.readline())
                theirs.sendall(b'{"jsonrpc":"2.0","method":"ask","params":[],"id":"s1"}\n')
                seen.append(json.loads(lines.readline()))  # our question's answer
                answer = {"jsonrpc": "2.0", "result": request["params"][0] * 2, "id": request["id"]}
                theirs.sendall(json.dumps(answer).encode() + b"\n")

        thread = threading.Thread(target=other_side)
        thread.start()
        assert caller.call("double", 21) == 42
        thread.join(5)
    refused = {"code": METHOD_NOT_FOUND, "message": "Method not found: ask"}
    assert seen == [{"jsonrpc": "2.0", "error": refused, "id": "s1"}]
