"""Python calls a JavaScript module's functions: bothways.node.require over a real Node child."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bothways import (
    CallTimeout,
    ChildExited,
    ConnectError,
    EncodeError,
    RemoteError,
    TransportClosed,
    __version__,
    node,
)

from ..conftest import FIXTURES, ROOT, UNIT, require_tool

MODULE = FIXTURES / "js_module.mjs"


@pytest.fixture(autouse=True)
def node_on_path() -> None:
    require_tool("node")


def test_require_calls_exported_functions() -> None:
    lines: list[str] = []
    with node.require(MODULE, stderr=lines.append) as m:
        assert m.mean([1, 2, 3, 4]) == 2.5
        assert m.shout("hi") == "HI"
        assert set(m.functions) >= {"mean", "shout", "fail", "nap"}
        with pytest.raises(RemoteError) as info:
            m.fail("too far")
        assert info.value.remote_type == "RangeError"
        assert "js_module.mjs" in info.value.remote_traceback
        with pytest.raises(AttributeError, match="exports no function 'nope'"):
            m.nope()
    assert any("HI" in line or "hi" in line for line in lines)  # console.log went to stderr


def test_concurrent_calls_from_threads() -> None:
    with node.require(MODULE, stderr="keep") as m, ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: m.shout(f"x{i}"), range(300)))
    assert results == [f"X{i}" for i in range(300)]


def test_missing_module_is_a_clear_error() -> None:
    with pytest.raises(ConnectError, match="no such JavaScript module"):
        node.require(FIXTURES / "nope.mjs")


def test_async_require_and_a_crash_mid_call() -> None:
    async def main() -> None:
        m = await node.async_require(MODULE, stderr="keep")
        async with m:
            assert await m.mean([10, 20]) == 15
            pending = [asyncio.ensure_future(m.nap(30_000)) for _ in range(3)]
            await asyncio.sleep(0.3)
            os.kill(m._peer.channel.pid, signal.SIGKILL)  # type: ignore[attr-defined]
            results = await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), 1)
        assert all(isinstance(r, ChildExited) for r in results), results

    asyncio.run(main())


def test_console_output_is_shown_and_cannot_corrupt_200_concurrent_calls() -> None:
    """console.log, process.stdout.write and a raw fs.writeSync(1, ...) in the module during the
    calls: every call succeeds and every line is shown (forwarded by the parent)."""
    lines: list[str] = []

    async def main() -> None:
        async with await node.async_require(FIXTURES / "host_noisy.mjs", stderr=lines.append) as m:
            results = await asyncio.gather(*(m.noisy(i) for i in range(200)))
            assert results == [2 * i for i in range(200)]

    asyncio.run(main())
    for i in range(200):
        assert {f"log {i}", f"write {i}", f"raw {i}", f"err {i}"} <= set(lines), i


def test_blocking_calls_time_out_and_a_late_answer_is_not_taken_for_another() -> None:
    with node.require(MODULE, stderr="keep") as m:
        started = time.monotonic()
        with pytest.raises(CallTimeout, match=r"nap: no answer within 0\.2 s"):
            m.nap(400, timeout=0.2)
        assert 0.15 < time.monotonic() - started < 2 * UNIT
        assert m._caller.endpoint.pending == []
        assert m.nap(600) == 600  # the first nap's answer comes meanwhile: dropped, not taken
        assert m.mean([1, 2], timeout=5) == 1.5


def test_a_crash_fails_the_blocking_calls_of_every_thread_within_a_second() -> None:
    with node.require(MODULE, stderr="keep") as m, ThreadPoolExecutor(4) as pool:
        waiting = [pool.submit(m.nap, 30_000) for _ in range(4)]
        time.sleep(0.3)
        os.kill(m._caller.channel.pid, signal.SIGKILL)  # type: ignore[attr-defined]
        errors = [future.exception(timeout=1 * UNIT) for future in waiting]
        assert all(isinstance(e, ChildExited) for e in errors), errors
        assert "SIGKILL" in str(errors[0])
        with pytest.raises(ChildExited):
            m.mean([1])


def test_an_argument_that_cannot_cross_is_refused_before_anything_is_sent() -> None:
    with node.require(MODULE, stderr="keep") as m:
        with pytest.raises(EncodeError, match=r"\$\.params\[0\]\[0\]: string contains a lone surrogate"):
            m.mean(["\ud800"])
        assert m._caller.endpoint.pending == []
        assert m.mean([1, 3]) == 2
    with pytest.raises(TransportClosed, match="the connection was closed"):
        m.mean([1])


def test_blocking_calls_from_many_threads_answered_out_of_order_each_get_their_own() -> None:
    # One thread reads for all; answers come back in another order than the calls left.
    with node.require(FIXTURES / "calls_module.mjs", stderr="keep") as m, ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: m.later(i, f"l{i}", (i * 7) % 11), range(800)))
        assert results == [{"n": i, "label": f"l{i}"} for i in range(800)]
        assert m._caller.endpoint.pending == []


def test_a_host_of_another_protocol_is_refused_naming_both_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy of the Node side altered to speak protocol 2: the handshake refuses it at once."""
    js = tmp_path / "js"
    shutil.copytree(ROOT / "js" / "src", js / "src")
    shutil.copytree(ROOT / "js" / "bin", js / "bin")
    shutil.copy2(ROOT / "js" / "package.json", js / "package.json")
    rpc = js / "src" / "rpc.js"
    original = rpc.read_text()
    rpc.write_text(original.replace("export const PROTOCOL = 1;", "export const PROTOCOL = 2;"))
    assert rpc.read_text() != original
    monkeypatch.setenv("BOTHWAYS_JS_HOST", str(js / "bin" / "host.mjs"))
    with pytest.raises(ConnectError, match="protocol mismatch") as info:
        node.require(MODULE, stderr="keep")
    message = str(info.value)
    assert f"bothways {__version__} for python (protocol 1)" in message
    assert f"bothways {__version__} for javascript (protocol 2)" in message

    async def main() -> None:
        with pytest.raises(ConnectError, match="protocol mismatch"):
            await node.async_require(MODULE, stderr="keep")

    asyncio.run(main())
