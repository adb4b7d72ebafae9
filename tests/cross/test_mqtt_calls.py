"""Calls through one Mosquitto of the test's own (tests/broker.py), across the boundary: a Node
caller calls Python functions served with ``async_rpc_listen``, a Python caller calls Node
functions served with ``rpcListen``, and a Python server and a Node server on one ``share`` group
split a Python caller's calls, each answered once (tests/fixtures/mqtt_calls_node.mjs runs the
Node end in a real ``node`` process; the Python ends run here, on one asyncio loop).
"""

from __future__ import annotations

import asyncio
import json
import statistics
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bothways import RemoteError
from bothways.peer import Peer
from bothways.rpc import SERVER_ERROR
from bothways.transports.mqtt import async_rpc_connect, async_rpc_listen

from ..broker import Broker
from ..conftest import FIXTURES, ROOT, UNIT, require_tool

WAIT = 20 * UNIT
CALLS = 200


class NodeEnd:
    """A running mqtt_calls_node.mjs; ``next()`` is its next stdout line, parsed."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, *args: str) -> NodeEnd:
        process = await asyncio.create_subprocess_exec(
            require_tool("node"),
            str(FIXTURES / "mqtt_calls_node.mjs"),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=ROOT,
        )
        return cls(process)

    async def next(self) -> Any:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), WAIT)
        assert line, f"the node end exited with code {await self.process.wait()}"
        return json.loads(line)

    async def end_stdin(self) -> None:
        """Tells a server to close (it then prints what it served)."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        await self.process.stdin.wait_closed()

    async def wait(self) -> int:
        return await asyncio.wait_for(self.process.wait(), WAIT)

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.kill()  # (the process this test started)
        await self.process.wait()
        if self.process.stdin is not None and not self.process.stdin.is_closing():
            self.process.stdin.close()
        assert self.process.stdout is not None
        await self.process.stdout.read()  # (to its end: the pipe is closed)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with Broker(tmp_path / "broker") as b:
        yield b


async def python_server(url: str, **functions: Any) -> Peer:
    """A started Peer on ``async_rpc_listen(url)`` exposing ``functions``."""
    peer = Peer(await async_rpc_listen(url))
    for name, function in functions.items():
        peer.expose(function, name=name)
    return await peer.start()


@pytest.mark.parametrize("scheme", ["mqtt", "mqtt+ws"])
def test_a_node_caller_calls_python(broker: Broker, scheme: str) -> None:
    async def body() -> tuple[list[Any], int]:
        server = await python_server(broker.url("services/stats", scheme), mean=statistics.mean)
        node = await NodeEnd.start("call", broker.url("services/stats", scheme))
        try:
            lines = [await node.next(), await node.next()]
            return lines, await node.wait()
        finally:
            await node.stop()
            await server.close()

    lines, code = asyncio.run(body())
    assert lines == [{"mean": 2.5}, {"error": ["StatisticsError", SERVER_ERROR]}]
    assert code == 0


@pytest.mark.parametrize("scheme", ["mqtt", "mqtt+ws"])
def test_a_python_caller_calls_node(broker: Broker, scheme: str) -> None:
    async def body() -> tuple[Any, list[Any], str, Any, int]:
        url = broker.url("services/geometry", scheme)
        node = await NodeEnd.start("serve", url)
        try:
            ready = await node.next()
            async with Peer(await async_rpc_connect(url, call_timeout=WAIT)) as caller:
                hypot = await caller.call("hypot", 3, 4)
                tags = await asyncio.gather(*(caller.call("tag", n) for n in range(10)))
                with pytest.raises(RemoteError) as info:
                    await caller.call("nope")
            await node.end_stdin()
            served = await node.next()
            return ready, [hypot, *tags], str(info.value), served, await node.wait()
        finally:
            await node.stop()

    ready, results, error, served, code = asyncio.run(body())
    assert ready["ready"].startswith("bothways-listen-")
    assert results == [5, *({"by": "node", "x": n} for n in range(10))]
    assert "nope" in error
    assert served == {"served": 10} and code == 0


def test_a_python_and_a_node_server_split_the_calls(broker: Broker) -> None:
    url = broker.url("services/tag") + "?share=taggers"

    async def body() -> tuple[list[Any], int, int]:
        by_python: list[int] = []

        def tag(x: int) -> dict[str, Any]:
            by_python.append(x)
            return {"by": "python", "x": x}

        node = await NodeEnd.start("serve", url)
        try:
            assert "ready" in await node.next()
            server = await python_server(url, tag=tag)
            try:
                async with Peer(await async_rpc_connect(broker.url("services/tag"))) as caller:
                    calls = (caller.call("tag", n) for n in range(CALLS))
                    results = await asyncio.wait_for(asyncio.gather(*calls), WAIT)
            finally:
                await server.close()
            await node.end_stdin()
            by_node = (await node.next())["served"]
            assert await node.wait() == 0
        finally:
            await node.stop()
        return list(results), len(by_python), by_node

    results, by_python, by_node = asyncio.run(body())
    assert [r["x"] for r in results] == list(range(CALLS))  # every call answered, in its own answer
    counts = Counter(r["by"] for r in results)
    assert (counts["python"], counts["node"]) == (by_python, by_node)
    assert by_python + by_node == CALLS  # each call served once
    assert by_python > 0 and by_node > 0, (by_python, by_node)  # both had a share
