"""Calls into a real Python child: ``python -m bothways.host MODULE`` driven by a Peer."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from typing import Any

import pytest

from bothways import ChildExited, RemoteError, TransportClosed
from bothways.peer import Peer
from bothways.transports import async_spawn

from ..conftest import FIXTURES


def host(module: str, lines: list[str], channel_fd: bool = False, threads: int = 0) -> Any:
    return async_spawn(
        [sys.executable, "-m", "bothways.host", *(["--threads", str(threads)] if threads else []), module],
        cwd=FIXTURES,
        stderr=lines.append,
        channel_fd=channel_fd,
    )


def test_statistics_from_a_python_child() -> None:
    async def main() -> None:
        lines: list[str] = []
        async with Peer(await host("statistics", lines)) as peer:
            assert await peer.call("mean", [1, 2, 3, 4]) == 2.5
            assert await peer.call("median", [3, 1, 2]) == 2
            assert "fmean" in await peer.call("$/functions")
            with pytest.raises(RemoteError) as info:
                await peer.call("mean", [])
            assert info.value.remote_type == "StatisticsError"
            assert "statistics.py" in info.value.remote_traceback

    asyncio.run(main())


def test_print_in_the_module_does_not_corrupt_calls() -> None:
    async def main() -> None:
        lines: list[str] = []
        async with Peer(await host("py_module", lines)) as peer:
            results = await asyncio.gather(*(peer.call("shout", f"x{i}") for i in range(200)))
            assert results == [f"X{i}" for i in range(200)]
            with pytest.raises(RemoteError, match="LookupError: nothing here"):
                await peer.call("fail", "nothing here")
        assert any("debug: shouting 'x0'" in line for line in lines)

    asyncio.run(main())


def test_a_killed_child_fails_pending_calls_with_the_cause() -> None:
    async def main() -> None:
        child = await host("py_module", [])
        async with Peer(child) as peer:
            calls = [asyncio.ensure_future(peer.call("nap", 30)) for _ in range(3)]
            await asyncio.sleep(0.3)
            os.kill(child.pid, signal.SIGKILL)
            results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 1)
        assert all(isinstance(r, ChildExited) and r.signal == "SIGKILL" for r in results), results

    asyncio.run(main())


@pytest.mark.parametrize("channel_fd", [True, False], ids=["channel socket", "stdin/stdout"])
def test_output_of_the_module_is_shown_and_cannot_corrupt_200_concurrent_calls(channel_fd: bool) -> None:
    """print(), sys.stdout.write and a raw os.write(1, ...) during the calls: every call succeeds
    and every line is shown (forwarded by the parent)."""

    async def main() -> list[str]:
        lines: list[str] = []
        async with Peer(await host("host_noisy", lines, channel_fd)) as peer:
            results = await asyncio.gather(*(peer.call("noisy", i) for i in range(200)))
            assert results == [2 * i for i in range(200)]
            assert await peer.call("later", {"a": [1]}) == {"a": [1]}  # async functions too
        return lines

    lines = asyncio.run(main())
    for i in range(200):
        assert {f"print {i}", f"write {i}", f"raw {i}", f"err {i}"} <= set(lines), i


def test_with_threads_a_slow_sync_function_does_not_hold_up_a_fast_one() -> None:
    async def main() -> None:
        async with Peer(await host("host_noisy", [], channel_fd=True, threads=4)) as peer:
            finished: list[str] = []

            async def call(name: str, *args: Any) -> None:
                finished.append(await peer.call(name, *args))

            start = time.monotonic()
            await asyncio.gather(call("slow", 1.5), call("fast"), call("fast"))
            assert finished == ["fast", "fast", "slow"]
            assert time.monotonic() - start < 5

    asyncio.run(main())


def test_without_threads_sync_functions_run_one_at_a_time_in_order() -> None:
    async def main() -> None:
        async with Peer(await host("host_noisy", [], channel_fd=True)) as peer:
            finished: list[str] = []

            async def call(name: str, *args: Any) -> None:
                finished.append(await peer.call(name, *args))

            await asyncio.gather(call("slow", 0.5), call("fast"), call("fast"))
            assert finished == ["slow", "fast", "fast"]

    asyncio.run(main())


def test_the_host_ends_when_the_channel_closes_even_with_a_sync_call_running() -> None:
    async def main() -> None:
        child = await host("host_noisy", [], channel_fd=True, threads=2)
        async with Peer(child) as peer:
            pending = asyncio.ensure_future(peer.call("slow", 60))
            assert await peer.call("fast") == "fast"
            child.close_stdin()  # the host's channel ends: it goes, not waiting for slow()
            assert await asyncio.wait_for(child.wait(), 10) == 0
            with pytest.raises(TransportClosed):
                await pending

    asyncio.run(main())


@pytest.mark.parametrize(
    ("module", "loop"), [("py_plain", False), ("py_plain_async", True)], ids=["plain", "with async def"]
)
@pytest.mark.parametrize("channel_fd", [True, False], ids=["channel socket", "stdin/stdout"])
def test_plain_modules_are_served_without_an_event_loop_by_the_same_rules(
    module: str, loop: bool, channel_fd: bool
) -> None:
    """Only plain functions: the blocking server (no event loop); one async def: the Peer. The
    same answers either way."""

    async def main() -> None:
        child = await host(module, [], channel_fd)
        async with Peer(child) as peer:
            assert await peer.call("in_event_loop") is loop
            assert await peer.call("frozen_objects") > 1000  # what the imports made: out of GC passes
            assert await asyncio.gather(*(peer.call("add", i, 1) for i in range(1000))) == list(
                range(1, 1001)
            )
            assert await peer.call("doubled_later", 21) == 42
            with pytest.raises(RemoteError, match="Invalid params"):
                await peer.call("add", 1)
            with pytest.raises(RemoteError, match="result: ") as info:
                await peer.call("unsendable")
            assert info.value.rpc_code == -32603  # INTERNAL_ERROR: cannot be encoded
            with pytest.raises(RemoteError, match="Method not found"):
                await peer.call("nothing")
            assert await peer.call("add", 2, 3) == 5  # and it goes on
        async with await host(module, [], channel_fd) as raw:  # a batch, by hand
            await raw.send([{"jsonrpc": "2.0", "method": "add", "params": [1, 2], "id": 1}, {"bad": 1}])
            answers = {answer["id"]: answer for answer in await raw.receive()}  # any order
            assert answers[1] == {"jsonrpc": "2.0", "result": 3, "id": 1}
            assert answers[None]["error"]["code"] == -32600  # INVALID_REQUEST

    asyncio.run(main())
