"""ws:// across the boundary: a Python listener with Node clients, a Node listener with Python
clients (tests/fixtures/ws_node_peer.mjs runs the Node side in a real ``node`` process).
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest
from websockets.sync.client import connect as bare_connect

from bothways import channels
from bothways.errors import ConnectError, DecodeError, FrameTooLarge, TransportClosed

from ..conftest import FIXTURES, ROOT, UNIT, require_tool
from ..unit.test_ws import frame_recorder

WAIT = 10 * UNIT


class NodePeer:
    """A running ws_node_peer.mjs (or ``script``, given ``args`` instead of the options);
    ``next()`` is its next stdout line, parsed."""

    def __init__(
        self,
        mode: str,
        url: str,
        options: dict[str, Any] | None = None,
        *,
        script: str = "ws_node_peer.mjs",
        args: tuple[int, ...] | None = None,
    ) -> None:
        node = require_tool("node")
        rest = [json.dumps(options or {})] if args is None else [str(arg) for arg in args]
        self.process = subprocess.Popen(
            [node, str(FIXTURES / script), mode, url, *rest],
            stdout=subprocess.PIPE,
            cwd=ROOT,
            text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def next(self, timeout: float = WAIT) -> Any:
        line = self._lines.get(timeout=timeout)
        assert line is not None, f"the node peer ended (exit code {self.process.wait(WAIT)})"
        return json.loads(line)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(WAIT)

    def wait(self) -> int:
        return self.process.wait(WAIT)


@contextmanager
def node_peer(
    mode: str,
    url: str,
    options: dict[str, Any] | None = None,
    *,
    script: str = "ws_node_peer.mjs",
    args: tuple[int, ...] | None = None,
) -> Iterator[NodePeer]:
    peer = NodePeer(mode, url, options, script=script, args=args)
    try:
        yield peer
    finally:
        peer.kill()
        assert peer.process.stdout is not None
        peer.process.stdout.close()


def take(channel: Any, n: int) -> list[Any]:
    got: list[Any] = []
    while len(got) < n:
        got.extend(channel.receive_many())
    return got


# --------------------------------------------------------------------------------------------
# Python listener, Node clients


def test_python_listener_node_client_both_ways_then_node_closes() -> None:
    with channels.listen("ws://127.0.0.1:0/feed", token="s3cret") as listener:
        with node_peer("client", listener.url, {"token": "s3cret"}) as peer:
            assert peer.next() == {"connected": True}
            with listener.accept() as channel:
                assert channel.receive() == {"hello": peer.process.pid}
                channel.send({"cmd": "send", "n": 10_000})
                assert take(channel, 10_000) == [{"seq": i} for i in range(10_000)]
                sender = threading.Thread(target=lambda: [channel.send({"n": i}) for i in range(10_000)])
                sender.start()
                assert take(channel, 10_000) == [{"echo": {"n": i}} for i in range(10_000)]
                sender.join(WAIT)
                channel.send({"cmd": "close"})
                assert list(channel) == []  # Node closed with 1000: iteration ends cleanly
                assert peer.next() == {"closed": "by command"}
                assert peer.wait() == 0


def test_python_listener_refuses_a_node_client_with_a_wrong_token() -> None:
    with channels.listen("ws://127.0.0.1:0/feed", token="s3cret") as listener:
        with node_peer("client", listener.url, {"token": "nope"}) as peer:
            answer = peer.next()
            assert "refused: wrong token (HTTP 403)" in answer["connect_error"]
            assert listener.url in answer["connect_error"]
        with node_peer("client", listener.url, {"token": "s3cret", "origin": "http://evil.example"}) as peer:
            assert "origin http://evil.example is not allowed (HTTP 403)" in peer.next()["connect_error"]
        with node_peer("client", listener.url, {"token": "s3cret"}) as peer:
            assert peer.next() == {"connected": True}
            assert listener.receive() == {"hello": peer.process.pid}  # the first thing it got


def test_python_listener_reports_bad_frames_from_node() -> None:
    errors: list[DecodeError] = []
    with channels.listen("ws://127.0.0.1:0/feed", max_line=1000, on_error=errors.append) as listener:
        with node_peer("raw", listener.url, {"big": 2000}) as peer:
            assert peer.next() == {"sent": 5}
            assert take(listener, 2) == [{"seq": 1}, {"seq": 4}]
            assert peer.next() == {"closed": 1009}  # over the limit: closed
            # Errors are reported in their turn, by receive(): the next call reports the last one.
            receiving = threading.Thread(target=lambda: pytest.raises(TransportClosed, listener.receive))
            receiving.start()
            deadline = time.monotonic() + WAIT
            while len(errors) < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            listener.close()
            receiving.join(WAIT)
    assert [(type(e), e.line) for e in errors] == [(DecodeError, 2), (DecodeError, 3), (FrameTooLarge, 5)]


def test_python_listener_over_size_from_a_node_client() -> None:
    errors: list[DecodeError] = []
    with channels.listen("ws://127.0.0.1:0/feed", max_line=1000, on_error=errors.append) as listener:
        with node_peer("client", listener.url) as peer:
            assert peer.next() == {"connected": True}
            with listener.accept() as channel:
                assert channel.receive() == {"hello": peer.process.pid}
                channel.send({"cmd": "big", "size": 5000})
                with pytest.raises(TransportClosed):
                    channel.receive()
            assert "1009" in peer.next()["closed"]
    assert [(type(e), e.line) for e in errors] == [(FrameTooLarge, 2)]


def test_ten_megabytes_python_listener_node_client() -> None:
    size = 10 * 1024 * 1024
    with channels.listen("ws://127.0.0.1:0/feed", max_line=32 * 1024 * 1024) as listener:
        with node_peer("client", listener.url, {"maxLine": 32 * 1024 * 1024}) as peer:
            assert peer.next() == {"connected": True}
            with listener.accept() as channel:
                assert channel.receive() == {"hello": peer.process.pid}
                channel.send({"cmd": "big", "size": size})
                assert channel.receive() == {"big": "x" * size}
                blob = {"blob": "é" * size}
                channel.send(blob)
                assert channel.receive() == {"echo": blob}


def test_a_killed_node_client_leaves_the_python_listener_with_transport_closed() -> None:
    with channels.listen("ws://127.0.0.1:0/feed") as listener:
        with node_peer("client", listener.url) as peer:
            with listener.accept() as channel:
                assert channel.receive() == {"hello": peer.process.pid}
                peer.kill()
                with pytest.raises(TransportClosed):
                    channel.receive()


# --------------------------------------------------------------------------------------------
# Node listener, Python clients


def test_node_listener_python_client_both_ways_then_python_closes() -> None:
    with node_peer("server", "ws://127.0.0.1:0/feed", {"token": "s3cret"}) as peer:
        url = peer.next()["url"]
        assert "s3cret" not in url
        with channels.connect(url, token="s3cret") as client:
            client.send({"cmd": "send", "n": 10_000})
            assert take(client, 10_000) == [{"seq": i} for i in range(10_000)]
            sender = threading.Thread(target=lambda: [client.send({"n": i}) for i in range(10_000)])
            sender.start()
            assert take(client, 10_000) == [{"echo": {"n": i}} for i in range(10_000)]
            sender.join(WAIT)
            blob = {"blob": "é" * (1024 * 1024)}
            client.send(blob)
            assert client.receive() == {"echo": blob}
        with channels.connect(url, token="s3cret") as client:  # the listener goes on
            client.send("again")
            assert client.receive() == {"echo": "again"}
            client.send({"cmd": "close"})
            assert list(client) == []  # Node's listener closed with 1001: iteration ends
        assert peer.wait() == 0


def test_node_listener_refuses_wrong_token_origin_and_path() -> None:
    with node_peer("server", "ws://127.0.0.1:0/feed", {"token": "s3cret"}) as peer:
        url = peer.next()["url"]
        with pytest.raises(ConnectError, match=r"refused: wrong token \(HTTP 403\)"):
            channels.connect(url, token="nope")
        with pytest.raises(ConnectError, match="missing token"):
            channels.connect(url)
        with pytest.raises(ConnectError, match=r"origin http://evil.example is not allowed \(HTTP 403\)"):
            channels.connect(url, token="s3cret", origin="http://evil.example")
        with pytest.raises(
            ConnectError, match=r"no WebSocket at /x \(this listener serves /feed\) \(HTTP 404\)"
        ):
            channels.connect(url.replace("/feed", "/x"), token="s3cret")
        with channels.connect(url, token="s3cret") as client:
            client.send("first")
            assert client.receive() == {"echo": "first"}  # nothing else came before


def test_node_listener_reports_bad_frames_from_python() -> None:
    with node_peer("server", "ws://127.0.0.1:0/feed", {"maxLine": 1000}) as peer:
        url = peer.next()["url"]
        with bare_connect(url) as raw:
            for frame in ('{"seq": 1}', "{oops", b"\x00\x01", '{"seq": 4}'):
                raw.send(frame)
            got = [json.loads(raw.recv(timeout=WAIT)) for _ in range(4)]
        # (the fixture reports an error as it comes, and echoes messages as it takes them)
        assert [m for m in got if "echo" in m] == [{"echo": {"seq": 1}}, {"echo": {"seq": 4}}]
        assert [m for m in got if "error" in m] == [
            {"error": "DECODE_ERROR", "line": 2},
            {"error": "DECODE_ERROR", "line": 3},
        ]
        errors: list[DecodeError] = []
        with channels.connect(url, on_error=errors.append) as client:
            client.send({"cmd": "big", "size": 0})  # small: fine
            assert client.receive() == {"big": ""}
            client.send({"big": "z" * 5000})  # over Node's limit
            with pytest.raises(TransportClosed, match="1009"):
                client.receive()


def test_a_killed_node_listener_ends_the_client_or_with_reconnect_it_resumes() -> None:
    with node_peer("server", "ws://127.0.0.1:0/feed") as first:
        url = first.next()["url"]
        plain = channels.connect(url)
        plain.send("zero")  # once answered, the server has registered `plain` for its broadcasts
        assert plain.receive() == {"echo": "zero"}
        steady = channels.connect(url, reconnect=True)
        with plain, steady:
            steady.send("one")
            assert steady.receive() == {"echo": "one"}
            assert plain.receive() == {"echo": "one"}
            first.kill()
            with pytest.raises(TransportClosed):
                plain.receive()
            result: queue.Queue[Any] = queue.Queue()
            threading.Thread(target=lambda: result.put(steady.receive()), daemon=True).start()
            time.sleep(0.3)
            with node_peer("server", url) as second:
                assert second.next() == {"url": url}
                steady.send("two")  # waits for the new connection
                assert result.get(timeout=WAIT) == {"echo": "two"}
                # "one" went on the connection that broke without a close frame: never confirmed
                with pytest.raises(
                    TransportClosed, match="close: 1 messages were sent on connections that broke"
                ):
                    steady.close()


def test_async_python_client_with_node_listener() -> None:
    import asyncio

    async def main() -> None:
        with node_peer("server", "ws://127.0.0.1:0/feed") as peer:
            url = await asyncio.to_thread(peer.next)
            async with await channels.async_connect(url["url"]) as client:
                for i in range(1000):
                    await client.send(i)
                assert [await client.receive() for _ in range(1000)] == [{"echo": i} for i in range(1000)]

    asyncio.run(asyncio.wait_for(main(), 20 * UNIT))


# --------------------------------------------------------------------------------------------
# Several messages per frame: send_many / sendMany across the boundary
# (tests/fixtures/ws_node_batches.mjs is the Node side)

COUNT, BATCH = 10_000, 1000


def message(i: int) -> dict[str, Any]:
    return {"seq": i, "text": "é€😀"}


def node_batches(mode: str, url: str, *args: int) -> AbstractContextManager[NodePeer]:
    return node_peer(mode, url, script="ws_node_batches.mjs", args=args)


def test_python_send_many_reaches_a_node_listener_in_frames_of_1000() -> None:
    values = [message(i) for i in range(COUNT)]
    with node_batches("receive", "ws://127.0.0.1:0/feed", COUNT) as peer:
        url = peer.next()["url"]
        with channels.connect(url) as client:
            for start in range(0, COUNT, BATCH):
                client.send_many(values[start : start + BATCH])
        assert peer.next() == {"received": COUNT, "in_order": True}
        assert peer.wait() == 0
    with node_batches("frames", "ws://127.0.0.1:0/feed", COUNT) as peer:  # what went on the wire
        url = peer.next()["url"]
        with channels.connect(url) as client:
            for start in range(0, COUNT, BATCH):
                client.send_many(values[start : start + BATCH])
        assert peer.next() == {"frames": COUNT // BATCH, "lines": COUNT}


def test_python_async_send_many_reaches_a_node_listener() -> None:
    import asyncio

    values = [message(i) for i in range(COUNT)]

    async def main() -> None:
        with node_batches("receive", "ws://127.0.0.1:0/feed", COUNT) as peer:
            url = (await asyncio.to_thread(peer.next))["url"]
            async with await channels.async_connect(url) as client:
                for start in range(0, COUNT, BATCH):
                    await client.send_many(values[start : start + BATCH])
            assert await asyncio.to_thread(peer.next) == {"received": COUNT, "in_order": True}

    asyncio.run(asyncio.wait_for(main(), 20 * UNIT))


def test_node_send_many_reaches_a_python_listener_in_frames_of_1000() -> None:
    values = [message(i) for i in range(COUNT)]
    with channels.listen("ws://127.0.0.1:0/feed") as listener:
        with node_batches("send", listener.url, COUNT, BATCH) as peer:
            assert take(listener, COUNT) == values
            assert peer.next() == {"sent": COUNT}
            assert peer.wait() == 0
    with frame_recorder() as (url, frames, ended):  # what went on the wire
        with node_batches("send", url, COUNT, BATCH) as peer:
            assert peer.next() == {"sent": COUNT}
        assert ended.wait(WAIT)
    assert len(frames) == COUNT // BATCH
    assert [json.loads(line) for frame in frames for line in str(frame).splitlines()] == values


def test_node_send_many_reaches_a_python_asyncio_listener() -> None:
    import asyncio

    values = [message(i) for i in range(COUNT)]

    async def main() -> None:
        async with await channels.async_listen("ws://127.0.0.1:0/feed") as listener:
            with node_batches("send", listener.url, COUNT, BATCH) as peer:
                assert [await listener.receive() for _ in range(COUNT)] == values
                assert await asyncio.to_thread(peer.next) == {"sent": COUNT}

    asyncio.run(asyncio.wait_for(main(), 20 * UNIT))
