"""Calls into a real Python child: ``python -m bothways.host MODULE`` driven by a Peer."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

import pytest

from bothways import ChildExited, RemoteError
from bothways.peer import Peer
from bothways.transports import async_spawn

from ..conftest import FIXTURES


def host(module: str, lines: list[str]) -> Any:
    return async_spawn([sys.executable, "-m", "bothways.host", module], cwd=FIXTURES, stderr=lines.append)


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
