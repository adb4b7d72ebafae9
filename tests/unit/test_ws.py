"""The ws:// transport, Python to Python: blocking and asyncio, over real sockets on 127.0.0.1.

Bad frames come from bare ``websockets`` peers (our own channels cannot send them); the peers that
get killed run in their own process (tests/fixtures/ws_py_peer.py); the peers that stop answering
pings are raw sockets that did the handshake by hand.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest
from websockets.sync.client import connect as bare_connect
from websockets.sync.server import serve as bare_serve

from bothways import channels
from bothways.errors import (
    ConnectError,
    DecodeError,
    EncodeError,
    FrameTooLarge,
    TransportClosed,
    TransportError,
)
from bothways.transports import ws
from bothways.transports.ws import check_request
from bothways.urls import parse
from bothways.wire import encode_many

from ..conftest import FIXTURES, UNIT

T = TypeVar("T")
WAIT = 10 * UNIT  # the longest any step may take


def run(main: Callable[[], Awaitable[T]], timeout: float = 20) -> T:
    """Runs an asyncio test body, bounded in time."""

    async def bounded() -> T:
        return await asyncio.wait_for(main(), timeout * UNIT)

    return asyncio.run(bounded())


class Background:
    """Runs ``fn`` in a thread; ``result()`` joins it (bounded) and re-raises what it raised."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._result: Any = None
        self._error: BaseException | None = None

        def target() -> None:
            try:
                self._result = fn()
            except BaseException as exc:  # handed to result()
                self._error = exc

        self._thread = threading.Thread(target=target, daemon=True)
        self._thread.start()

    def result(self, timeout: float = WAIT) -> Any:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the background step did not finish in time"
        if self._error is not None:
            raise self._error
        return self._result


def take(channel: Any, n: int) -> list[Any]:
    got: list[Any] = []
    while len(got) < n:
        got.extend(channel.receive_many())
    return got


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


# --------------------------------------------------------------------------------------------
# The gate (sans-I/O)


@pytest.mark.parametrize(
    ("target", "origin", "token", "origins", "expected"),
    [
        ("/feed", None, None, None, None),
        ("/feed?token=s3cret", None, "s3cret", None, None),
        ("/feed?x=1&token=a%2Bb", None, "a+b", None, None),
        ("/feed?token=a+b", None, "a b", None, (403, "wrong token")),
        ("/feed", None, "s3cret", None, (403, "missing token (add ?token=... to the URL)")),
        ("/feed?token=nope", None, "s3cret", None, (403, "wrong token")),
        (
            "/other?token=s3cret",
            None,
            "s3cret",
            None,
            (404, "no WebSocket at /other (this listener serves /feed)"),
        ),
        ("/feed", "http://127.0.0.1:5000", None, None, None),
        ("/feed", "https://localhost", None, None, None),
        ("/feed", "http://[::1]:8080", None, None, None),
        ("/feed", "http://LOCALHOST:1", None, None, None),
        ("/feed", "http://evil.example", None, None, (403, "origin http://evil.example is not allowed")),
        (
            "/feed",
            "http://localhost.evil.example",
            None,
            None,
            (403, "origin http://localhost.evil.example is not allowed"),
        ),
        ("/feed", "null", None, None, (403, "origin null is not allowed")),
        ("/feed", "file://localhost", None, None, (403, "origin file://localhost is not allowed")),
        ("/feed", "http://app.example", None, ["http://app.example"], None),
        (
            "/feed",
            "http://127.0.0.1:5000",
            None,
            ["http://app.example"],
            (403, "origin http://127.0.0.1:5000 is not allowed"),
        ),
        ("/feed", None, None, ["http://app.example"], None),
        ("/feed", "http://evil.example", "s3cret", None, (403, "origin http://evil.example is not allowed")),
    ],
)
def test_gate(
    target: str, origin: str | None, token: str | None, origins: list[str] | None, expected: Any
) -> None:
    assert check_request(target, origin, path="/feed", token=token, origins=origins) == expected


# --------------------------------------------------------------------------------------------
# Blocking flavour


@contextmanager
def pair(path: str = "/feed", **options: Any) -> Iterator[tuple[ws.WsListener, ws.WsChannel]]:
    """A listener and one client connected to it (options go to both where they apply)."""
    client_options = {k: v for k, v in options.items() if k not in ("origins",)}
    with channels.listen(f"ws://127.0.0.1:0{path}", **options) as listener:
        assert isinstance(listener, ws.WsListener)
        with channels.connect(listener.url, **client_options) as client:
            assert isinstance(client, ws.WsChannel)
            yield listener, client


def test_listener_url_has_the_real_port_and_no_token() -> None:
    with channels.listen("ws://127.0.0.1:0/feed?token=s3cret&max_line=5000") as listener:
        assert listener.url.startswith("ws://127.0.0.1:")
        assert port_of(listener.url) > 0
        assert listener.url.endswith("/feed?max_line=5000")
        assert "s3cret" not in listener.url


def test_ten_thousand_messages_in_order_both_ways() -> None:
    with pair() as (listener, client):
        sender = Background(lambda: [client.send({"seq": i}) for i in range(10_000)])
        assert take(listener, 10_000) == [{"seq": i} for i in range(10_000)]
        sender.result()
        sender = Background(lambda: [listener.send({"back": i}) for i in range(10_000)])
        assert take(client, 10_000) == [{"back": i} for i in range(10_000)]
        sender.result()


def test_ten_megabyte_message_with_max_line_raised() -> None:
    big = {"blob": "x" * (10 * 1024 * 1024), "tail": "é"}
    with pair(max_line=32 * 1024 * 1024) as (listener, client):
        sender = Background(lambda: client.send(big))
        assert listener.receive() == big
        sender.result()
        sender = Background(lambda: listener.send(big))
        assert client.receive() == big
        sender.result()


def test_client_close_ends_the_accepted_channel_cleanly() -> None:
    with pair() as (listener, client):
        server_side = listener.accept()
        client.send({"last": True})
        client.close()
        client.close()  # idempotent
        assert list(server_side) == [{"last": True}]  # iteration ends cleanly
        with pytest.raises(TransportClosed, match="1000"):
            server_side.receive()
        with pytest.raises(TransportClosed):
            client.send({"after": "close"})
        with pytest.raises(TransportClosed):
            client.receive()
        server_side.close()


def test_listener_close_ends_the_client_cleanly() -> None:
    with pair() as (listener, client):
        client.send("hello")
        assert listener.receive() == "hello"  # the client is merged: it gets broadcasts
        listener.send({"bye": 1})
        listener.close()
        assert list(client) == [{"bye": 1}]
        with pytest.raises(TransportClosed, match="1001"):
            client.receive()
        with pytest.raises(TransportClosed):
            listener.receive()
        with pytest.raises(TransportClosed):
            listener.accept()


def test_accept_gives_each_connection_its_own_duplex_channel() -> None:
    with channels.listen("ws://127.0.0.1:0/feed") as listener:
        with channels.connect(listener.url) as a, channels.connect(listener.url) as b:
            first, second = listener.accept(), listener.accept()
            with first, second:
                a.send("from a")
                b.send("from b")
                got = {first.receive(), second.receive()}
                assert got == {"from a", "from b"}
                first.send("to first")
                second.send("to second")
                assert {a.receive(), b.receive()} == {"to first", "to second"}


def test_accept_waits_for_a_connection_that_comes_later() -> None:
    with channels.listen("ws://127.0.0.1:0/feed") as listener:
        waiting = Background(listener.accept)
        time.sleep(0.1)
        with channels.connect(listener.url) as client:
            with waiting.result() as server_side:
                client.send("hi")
                assert server_side.receive() == "hi"


def test_broadcast_reaches_every_merged_connection_and_receive_merges_them() -> None:
    with channels.listen("ws://127.0.0.1:0/feed") as listener:
        with channels.connect(listener.url) as a, channels.connect(listener.url) as b:
            a.send({"from": "a"})
            b.send({"from": "b"})
            assert sorted(m["from"] for m in take(listener, 2)) == ["a", "b"]
            listener.send({"to": "all"})
            assert a.receive() == {"to": "all"}
            assert b.receive() == {"to": "all"}
            with channels.connect(listener.url) as c:  # merged as it arrives, once merging
                c.send({"from": "c"})
                assert listener.receive() == {"from": "c"}


def test_bad_frames_are_reported_and_their_neighbours_delivered() -> None:
    errors: list[DecodeError] = []
    with channels.listen("ws://127.0.0.1:0/feed", on_error=errors.append) as listener:
        with bare_connect(listener.url) as raw:
            raw.send('{"seq": 1}')
            raw.send('{"seq": oops}')
            raw.send(b"\x00\x01binary")
            raw.send('{"seq": 4}\n')  # a trailing newline is fine
            raw.send('\ufeff{"seq": 5}')  # so is a BOM
            assert take(listener, 3) == [{"seq": 1}, {"seq": 4}, {"seq": 5}]
    assert [(type(e), e.line) for e in errors] == [(DecodeError, 2), (DecodeError, 3)]
    assert errors[0].column == 9 and "oops" in errors[0].excerpt
    assert "binary frame of 8 bytes" in str(errors[1])


def test_bad_frames_from_a_server_reach_the_client_on_error() -> None:
    def handler(conn: Any) -> None:
        conn.send("1")
        conn.send("[1,")
        conn.send(b"\xff")
        conn.send("2")
        conn.recv()  # until the client closes

    errors: list[DecodeError] = []
    with bare_serve(handler, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        port = server.socket.getsockname()[1]
        with channels.connect(f"ws://127.0.0.1:{port}/", on_error=errors.append) as client:
            assert [client.receive(), client.receive()] == [1, 2]
        server.shutdown()
        thread.join(WAIT)
    assert [e.line for e in errors] == [2, 3]


def test_strict_policy_raises_in_turn_after_the_good_messages() -> None:
    with channels.listen("ws://127.0.0.1:0/feed", on_error=_raise) as listener:
        with bare_connect(listener.url) as raw:
            for frame in ("1", "{", "3"):
                raw.send(frame)
            with listener.accept() as server_side:
                assert server_side.receive() == 1
                with pytest.raises(DecodeError, match="line 2"):
                    server_side.receive()
                assert server_side.receive() == 3
        with bare_connect(listener.url) as raw:
            for frame in ("4", "[", "6"):
                raw.send(frame)
            assert listener.receive() == 4
            with pytest.raises(DecodeError, match="line 2"):
                listener.receive()
            assert listener.receive() == 6


def _raise(error: DecodeError) -> None:
    raise error


def test_over_size_message_is_reported_then_the_connection_closes() -> None:
    errors: list[DecodeError] = []
    with channels.listen("ws://127.0.0.1:0/feed", max_line=1000, on_error=errors.append) as listener:
        with channels.connect(listener.url) as client:
            client.send({"seq": 1})
            client.send({"blob": "x" * 2000})
            assert listener.receive() == {"seq": 1}
            got = Background(listener.receive)
            deadline = time.monotonic() + WAIT
            while not errors and time.monotonic() < deadline:
                time.sleep(0.01)
            assert [(type(e), e.line, e.limit) for e in errors] == [(FrameTooLarge, 2, 1000)]  # type: ignore[attr-defined]
            assert "larger than the limit of 1000 bytes" in str(errors[0])
            with pytest.raises(TransportClosed, match="1009"):
                client.receive()
            listener.close()
            with pytest.raises(TransportClosed):
                got.result()


def test_over_size_on_an_accepted_channel_and_on_the_client() -> None:
    errors: list[DecodeError] = []
    with channels.listen("ws://127.0.0.1:0/feed", max_line=100, on_error=errors.append) as listener:
        with channels.connect(listener.url, max_line=100, on_error=errors.append) as client:
            with listener.accept() as server_side:
                server_side.send("ok")
                server_side.send("y" * 200)
                assert client.receive() == "ok"
                with pytest.raises(TransportClosed, match="1009"):
                    client.receive()
    assert [(type(e), e.line) for e in errors] == [(FrameTooLarge, 2)]


def test_wrong_or_missing_token_is_refused_and_nothing_is_delivered() -> None:
    with channels.listen("ws://127.0.0.1:0/feed", token="s3cret") as listener:
        with pytest.raises(ConnectError, match=r"refused: wrong token \(HTTP 403\)") as caught:
            channels.connect(listener.url, token="nope")
        assert caught.value.url == listener.url
        with pytest.raises(ConnectError, match="missing token"):
            channels.connect(listener.url)
        with channels.connect(listener.url + "?token=s3cret") as client:
            client.send("the first message")
            assert listener.receive() == "the first message"


def test_bad_origin_is_refused() -> None:
    with channels.listen("ws://127.0.0.1:0/feed") as listener:
        with pytest.raises(ConnectError, match=r"origin http://evil.example is not allowed \(HTTP 403\)"):
            channels.connect(listener.url, origin="http://evil.example")
        with channels.connect(listener.url, origin="http://localhost:8000") as client:
            client.send(1)
            assert listener.receive() == 1
    with channels.listen("ws://127.0.0.1:0/feed", origins=["http://app.example"]) as listener:
        with pytest.raises(ConnectError, match="403"):
            channels.connect(listener.url, origin="http://localhost:8000")
        with channels.connect(listener.url, origin="http://app.example"):
            pass


def test_wrong_path_nothing_listening_and_a_silent_server() -> None:
    with channels.listen("ws://127.0.0.1:0/feed") as listener:
        with pytest.raises(
            ConnectError, match=r"no WebSocket at /other \(this listener serves /feed\) \(HTTP 404\)"
        ):
            channels.connect(listener.url.replace("/feed", "/other"))
        port = port_of(listener.url)
    with pytest.raises(ConnectError, match="connection refused"):
        channels.connect(f"ws://127.0.0.1:{port}/feed")
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        url = f"ws://127.0.0.1:{silent.getsockname()[1]}/feed"
        started = time.monotonic()
        with pytest.raises(ConnectError, match="no WebSocket handshake within 0.3 s"):
            channels.connect(url, timeout=0.3)
        assert time.monotonic() - started < 3 * UNIT


def test_unknown_and_bad_options() -> None:
    address = parse("ws://127.0.0.1:1/feed")
    with pytest.raises(TypeError):
        ws.connect(address, colour="blue")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        ws.listen(address, colour="blue")  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        ws.connect(address, max_line=0)
    with channels.listen("ws://127.0.0.1:0/feed") as listener:
        with pytest.raises(TransportError, match="cannot listen"):
            channels.listen(listener.url)  # the port is taken


def open_then_hold(server: socket.socket) -> socket.socket:
    """A raw server's side: accepts one client, answers its opening handshake, then never reads
    nor answers anything again (no pong, no close frame); returns the connection."""
    conn, _ = server.accept()
    request = b""
    while b"\r\n\r\n" not in request:
        request += conn.recv(4096)
    key = next(
        line.split(b":", 1)[1].strip()
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    conn.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    return conn


def handshake_by_hand(port: int, path: str = "/feed") -> socket.socket:
    """A raw socket that opened a WebSocket and will never answer anything (no pong)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 101"), answer
    return sock


def test_a_peer_that_does_not_answer_pings_is_dropped_by_the_listener() -> None:
    with channels.listen("ws://127.0.0.1:0/feed", ping_interval=0.2) as listener:
        with handshake_by_hand(port_of(listener.url)):
            started = time.monotonic()
            with listener.accept() as server_side, pytest.raises(TransportClosed, match="keepalive"):
                server_side.receive()
            assert time.monotonic() - started < 3 * UNIT


def test_a_server_that_does_not_answer_pings_is_dropped_by_the_client() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        serving = Background(lambda: open_then_hold(server))
        url = f"ws://127.0.0.1:{server.getsockname()[1]}/feed"
        with channels.connect(url, ping_interval=0.2) as client, serving.result():
            started = time.monotonic()
            with pytest.raises(TransportClosed, match="keepalive"):
                client.receive()
            assert time.monotonic() - started < 3 * UNIT


@contextmanager
def peer_process(mode: str, url: str) -> Iterator[subprocess.Popen[str]]:
    """tests/fixtures/ws_py_peer.py in its own process; killed (by its pid) at the end."""
    proc = subprocess.Popen(
        [sys.executable, str(FIXTURES / "ws_py_peer.py"), mode, url],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(WAIT)
        assert proc.stdout is not None
        proc.stdout.close()


def first_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = Background(proc.stdout.readline).result()
    assert line, "the peer process said nothing"
    return str(line).strip()


def test_a_killed_client_leaves_the_listener_with_transport_closed() -> None:
    with channels.listen("ws://127.0.0.1:0/feed") as listener:
        with peer_process("client", listener.url) as proc:
            with listener.accept() as server_side:
                assert server_side.receive() == {"hello": proc.pid}
                proc.kill()
                with pytest.raises(TransportClosed):
                    Background(server_side.receive).result()


def test_a_killed_server_ends_the_client_or_with_reconnect_resumes() -> None:
    with peer_process("server", "ws://127.0.0.1:0/feed") as first:
        url = first_line(first)
        plain = channels.connect(url)
        plain.send("zero")  # once answered, the server has registered `plain` for its broadcasts
        assert plain.receive() == {"echo": "zero"}
        steady = channels.connect(url, reconnect=True)
        with plain, steady:
            steady.send("one")
            assert steady.receive() == {"echo": "one"}
            assert plain.receive() == {"echo": "one"}  # the server echoes to everyone
            first.kill()
            first.wait(WAIT)
            with pytest.raises(TransportClosed):
                Background(plain.receive).result()
            receiving = Background(steady.receive)  # waits through the reconnection
            time.sleep(0.3)
            with peer_process("server", url) as second:
                assert first_line(second) == url
                sending = Background(lambda: steady.send("two"))  # waits for the new connection
                assert receiving.result() == {"echo": "two"}
                sending.result()
                # "one" went on the connection that broke without a close frame: never confirmed
                with pytest.raises(
                    TransportClosed, match="close: 1 messages were sent on connections that broke"
                ):
                    steady.close()


def test_reconnect_is_stopped_by_close_and_by_a_refusal() -> None:
    with channels.listen("ws://127.0.0.1:0/feed") as listener:
        url = listener.url
        client = channels.connect(url, reconnect=True)
    receiving = Background(client.receive)  # nothing listens: it keeps trying
    time.sleep(0.3)
    client.close()
    with pytest.raises(TransportClosed):
        receiving.result()
    # A listener that comes back with a token refuses the reconnection: that is raised, not retried.
    with channels.listen(url) as listener:
        client = channels.connect(url, reconnect=True)
    with client:
        with channels.listen(url, token="s3cret"):
            with pytest.raises(ConnectError, match="wrong token|missing token"):
                Background(client.receive).result()
            with pytest.raises(ConnectError, match="missing token"):  # for good
                client.send("anyone?")


def test_send_blocks_while_the_peer_does_not_read() -> None:
    with pair() as (listener, client):
        server_side = listener.accept()
        sent = 0

        def flood() -> None:
            nonlocal sent
            for _ in range(20_000):
                client.send("x" * 1000)
                sent += 1

        sender = Background(flood)
        time.sleep(0.5)
        stuck_at = sent
        assert stuck_at < 20_000  # the socket buffers filled up: send blocks
        time.sleep(0.2)
        assert sent == stuck_at
        got = 0
        while got < 20_000:
            got += len(server_side.receive_many())
        sender.result()
        server_side.close()


# --------------------------------------------------------------------------------------------
# asyncio flavour


def test_async_ten_thousand_messages_accept_and_broadcast() -> None:
    async def main() -> None:
        async with await channels.async_listen("ws://127.0.0.1:0/feed") as listener:
            assert isinstance(listener, ws.AsyncWsListener)
            async with await channels.async_connect(listener.url) as client:

                async def produce() -> None:
                    for i in range(10_000):
                        await client.send({"seq": i})

                producing = asyncio.ensure_future(produce())
                got = [await listener.receive() for _ in range(10_000)]
                await producing
                assert got == [{"seq": i} for i in range(10_000)]
                async with await channels.async_connect(listener.url) as other:
                    await other.send("hello")
                    assert await listener.receive() == "hello"
                    await listener.send({"to": "all"})
                    assert await client.receive() == {"to": "all"}
                    assert await other.receive() == {"to": "all"}
                async with await channels.async_connect(listener.url) as third:
                    # merging has started: a new connection is merged unless accept() waits for it
                    waiting = asyncio.ensure_future(listener.accept())
                    await asyncio.sleep(0.05)
                    async with await channels.async_connect(listener.url) as fourth:
                        server_side = await waiting
                        await fourth.send("via accept")
                        await third.send("via merge")
                        assert await listener.receive() == "via merge"
                        assert await server_side.receive() == "via accept"
                        await server_side.send("back")
                        assert await fourth.receive() == "back"
                        await server_side.close()

    run(main)


def test_async_ten_megabytes_close_from_either_side() -> None:
    big = {"blob": "y" * (10 * 1024 * 1024)}

    async def main() -> None:
        listener = await channels.async_listen("ws://127.0.0.1:0/feed", max_line=32 * 1024 * 1024)
        async with listener:
            client = await channels.async_connect(listener.url, max_line=32 * 1024 * 1024)
            server_side = await listener.accept()
            sending = asyncio.ensure_future(client.send(big))
            assert await server_side.receive() == big
            await sending
            await server_side.send(big)
            assert await client.receive() == big
            await client.send("last")
            await client.close()
            await client.close()
            assert [m async for m in server_side] == ["last"]
            with pytest.raises(TransportClosed, match="1000"):
                await server_side.receive()
            with pytest.raises(TransportClosed):
                await client.send("after close")
            other = await channels.async_connect(listener.url)
            await other.send("hello")
            assert await listener.receive() == "hello"  # starts merging: `other` is merged
            await listener.send("bye")
            assert await other.receive() == "bye"
        with pytest.raises(TransportClosed, match="1001"):
            await other.receive()
        await other.close()

    run(main)


def test_async_bad_frames_over_size_token_and_origin() -> None:
    errors: list[DecodeError] = []

    async def main() -> None:
        async with await channels.async_listen(
            "ws://127.0.0.1:0/feed?token=s3cret", max_line=1000, on_error=errors.append
        ) as listener:
            with pytest.raises(ConnectError, match="wrong token"):
                await channels.async_connect(listener.url, token="nope")
            with pytest.raises(ConnectError, match="origin http://evil.example is not allowed"):
                await channels.async_connect(listener.url, token="s3cret", origin="http://evil.example")
            done = threading.Event()

            def send_raw() -> None:
                with bare_connect(listener.url + "?token=s3cret") as raw:
                    for frame in ("[1]", "{", b"\x01\x02", "[4]", "z" * 2000):
                        raw.send(frame)
                    done.wait(WAIT)

            sender = Background(send_raw)
            try:
                assert [await listener.receive(), await listener.receive()] == [[1], [4]]
                receiving = asyncio.ensure_future(listener.receive())
                for _ in range(100):
                    if len(errors) == 3:
                        break
                    await asyncio.sleep(0.02)
                assert [(type(e), e.line) for e in errors] == [
                    (DecodeError, 2),
                    (DecodeError, 3),
                    (FrameTooLarge, 5),
                ]
                assert not receiving.done()
                receiving.cancel()
            finally:
                done.set()
                await asyncio.to_thread(sender.result)

    run(main)


def test_async_reconnect_resumes_with_a_new_listener_on_the_same_port() -> None:
    async def main() -> None:
        listener = await channels.async_listen("ws://127.0.0.1:0/feed")
        url = listener.url
        client = await channels.async_connect(url, reconnect=True)
        async with client:
            await client.send("one")
            assert await listener.receive() == "one"
            await listener.close()  # the server goes away (1001)
            receiving = asyncio.ensure_future(client.receive())
            await asyncio.sleep(0.3)
            assert not receiving.done()
            async with await channels.async_listen(url) as again:
                await client.send("two")  # waits for the new connection
                assert await again.receive() == "two"
                await again.send("three")
                assert await receiving == "three"

    run(main)


def test_async_killed_server_gives_transport_closed() -> None:
    async def main() -> None:
        with peer_process("server", "ws://127.0.0.1:0/feed") as proc:
            url = await asyncio.to_thread(first_line, proc)
            async with await channels.async_connect(url) as client:
                await client.send("ping")
                assert await client.receive() == {"echo": "ping"}
                proc.kill()
                with pytest.raises(TransportClosed):
                    await client.receive()

    run(main)


def test_async_keepalive_drops_a_silent_peer() -> None:
    async def main() -> None:
        async with await channels.async_listen("ws://127.0.0.1:0/feed", ping_interval=0.2) as listener:
            sock = await asyncio.to_thread(handshake_by_hand, port_of(listener.url))
            with sock:
                server_side = await listener.accept()
                with pytest.raises(TransportClosed, match="keepalive"):
                    await server_side.receive()
                await server_side.close()

    run(main)


def test_reconnect_waits_for_a_listener_that_starts_a_moment_later() -> None:
    """With reconnect, the first dial is retried until ``timeout``; without, it fails at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"ws://127.0.0.1:{port}/feed"
    with pytest.raises(ConnectError):
        channels.connect(url)

    def start_later() -> None:
        time.sleep(0.3)
        with channels.listen(url) as listener:
            assert listener.receive() == "hello"

    later = Background(start_later)
    with channels.connect(url + "?reconnect=1&timeout=5") as client:
        client.send("hello")
    later.result()
    with pytest.raises(ConnectError):  # nothing comes within the timeout
        channels.connect(url + "?reconnect=1&timeout=0.5")


def test_close_says_so_when_the_peer_never_answers_the_close_handshake() -> None:
    """A server that completed the opening handshake and then never reads: close() waits for its
    close frame (the confirmation) ``timeout`` s, then raises TransportClosed naming the count."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        serving = Background(lambda: open_then_hold(server))
        url = f"ws://127.0.0.1:{server.getsockname()[1]}/feed"
        client = channels.connect(url, ping_interval=0, timeout=0.5)
        with serving.result():
            client.send({"a": 1})
            client.send({"a": 2})
            with pytest.raises(TransportClosed) as info:
                client.close()
            assert str(info.value) == (
                f"{url}: close: the peer did not confirm within 0.5 s that it read what we sent "
                "(2 messages on this connection); it may be lost"
            )


# --------------------------------------------------------------------------------------------
# Several messages per frame: send_many, and frames of NDJSON lines from any peer

MANY = [{"seq": i, "text": "é€😀"} for i in range(1000)]
# Frames a bare peer sends: good, bad and blank lines, CRLF, no final newline, a JSON text spread
# over two lines (two bad lines: a frame is NDJSON). Line numbers go on across frames.
FRAMES = ["1", '2\n{"oops": }\n\n \t\r\n3\r\n{"four": 4}', "5\n", "[6,\n7]", "\ufeff8\n9\n"]
FRAME_VALUES = [1, 2, 3, {"four": 4}, 5, 8, 9]
FRAME_ERRORS = [(3, 10, '{"oops": }'), (9, 4, "[6,"), (10, 2, "7]")]  # (line, column, excerpt)


def where(errors: list[DecodeError]) -> list[tuple[int, int, str]]:
    assert all(type(e) is DecodeError for e in errors), errors
    return [(e.line, e.column, e.excerpt) for e in errors]


@contextmanager
def frame_recorder(send: tuple[str, ...] = ()) -> Iterator[tuple[str, list[str | bytes], threading.Event]]:
    """A bare ``websockets`` server: sends ``send`` to each client, then records every frame it
    receives until the client closes. Yields its URL, the frames, and an event set at that end."""
    frames: list[str | bytes] = []
    ended = threading.Event()

    def handler(conn: Any) -> None:
        try:
            for frame in send:
                conn.send(frame)
            for frame in conn:
                frames.append(frame)
        finally:
            ended.set()

    with bare_serve(handler, "127.0.0.1", 0, compression=None) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}/", frames, ended
        finally:
            server.shutdown()
            thread.join(WAIT)


def test_batches_cut_lines_into_frames_only_beyond_the_limit() -> None:
    assert ws._batches([], 10) == []
    assert ws._batches(iter([]), 10) == []
    data = b"1\n22\n333\n4444\n"
    assert ws._batches([1, 22, 333, 4444], 100) == [(data, 4)]
    assert ws._batches((v for v in [1, 22]), 100) == [(b"1\n22\n", 2)]
    assert ws._batches([1, 22, 333, 4444], 14) == [(data, 4)]
    cut = [(bytes(frame), count) for frame, count in ws._batches([1, 22, 333, 4444], 7)]
    assert cut == [(b"1\n22", 2), (b"333", 1), (b"4444", 1)]
    cut = [(bytes(frame), count) for frame, count in ws._batches([1, 22, 333, 4444], 3)]
    assert cut == [(b"1", 1), (b"22", 1), (b"333", 1), (b"4444", 1)]  # 4444 alone, over it
    cut = [(bytes(frame), count) for frame, count in ws._batches(["é", "éé"], 6)]
    assert cut == [('"é"'.encode(), 1), ('"éé"'.encode(), 1)]  # bytes, not characters
    with pytest.raises(EncodeError):
        ws._batches([1, object()], 100)


def test_send_many_is_one_frame_of_ndjson_lines_on_the_wire() -> None:
    with frame_recorder() as (url, frames, ended):
        with channels.connect(url) as client:
            client.send_many(MANY)
            client.send_many([])  # nothing at all
            client.send_many(iter([{"last": True}]))
        assert ended.wait(WAIT)
    assert frames == [encode_many(MANY).decode(), '{"last":true}\n']
    with channels.listen("ws://127.0.0.1:0/feed") as listener, bare_connect(listener.url) as raw:
        raw.send('"hello"')
        assert listener.receive() == "hello"  # merged: it gets the broadcasts
        listener.send_many(MANY)
        listener.send_many([])
        listener.send({"one": 1})
        assert raw.recv(timeout=WAIT) == encode_many(MANY).decode()
        assert raw.recv(timeout=WAIT) == '{"one":1}'


def test_send_many_arrives_as_its_messages_in_order_both_ways() -> None:
    with pair() as (listener, client):
        sender = Background(lambda: [client.send_many(MANY[i : i + 100]) for i in range(0, 1000, 100)])
        assert take(listener, 1000) == MANY
        sender.result()
        client.send_many(MANY)
        assert [listener.receive() for _ in range(1000)] == MANY  # one at a time too
        sender = Background(lambda: listener.send_many(MANY))
        assert take(client, 1000) == MANY
        sender.result()


def test_send_many_beyond_max_line_goes_in_several_frames() -> None:
    values = [{"seq": i} for i in range(100)]  # 1,190 bytes of lines
    with frame_recorder() as (url, frames, ended):
        with channels.connect(url, max_line=200) as client:
            client.send_many(values)
        assert ended.wait(WAIT)
    assert 6 <= len(frames) <= 8 and all(len(frame) <= 200 for frame in frames)
    assert "\n".join(str(frame) for frame in frames) + "\n" == encode_many(values).decode()
    with pair(max_line=200) as (listener, client):
        server_side = listener.accept()
        client.send_many(values)
        assert take(server_side, 100) == values
        server_side.send_many(values)
        assert take(client, 100) == values
        server_side.close()


def test_frames_of_several_lines_are_split_by_every_receiver() -> None:
    errors: list[DecodeError] = []
    with channels.listen("ws://127.0.0.1:0/feed", on_error=errors.append) as listener:
        with bare_connect(listener.url) as raw:  # accepted: receive, one at a time
            for frame in FRAMES:
                raw.send(frame)
            with listener.accept() as server_side:
                assert [server_side.receive() for _ in range(7)] == FRAME_VALUES
        assert where(errors) == FRAME_ERRORS
        errors.clear()
        with bare_connect(listener.url) as raw:  # merged: receive_many
            for frame in FRAMES:
                raw.send(frame)
            assert take(listener, 7) == FRAME_VALUES
        assert where(errors) == FRAME_ERRORS
    errors.clear()
    with frame_recorder(send=tuple(FRAMES)) as (url, _, _):  # a client: receive_many
        with channels.connect(url, on_error=errors.append) as client:
            assert take(client, 7) == FRAME_VALUES
    assert where(errors) == FRAME_ERRORS


def test_strict_policy_raises_a_bad_line_in_its_turn_inside_a_frame() -> None:
    with channels.listen("ws://127.0.0.1:0/feed", on_error=_raise) as listener:
        with bare_connect(listener.url) as raw:
            raw.send("1\n[\n3\n")
            raw.send("{}\n\n]")
            with listener.accept() as server_side:
                assert server_side.receive() == 1
                with pytest.raises(DecodeError, match="line 2"):
                    server_side.receive()
                assert server_side.receive() == 3
                assert server_side.receive() == {}
                with pytest.raises(DecodeError, match="line 6"):
                    server_side.receive_many()
        with bare_connect(listener.url) as raw:
            raw.send("1\n{\n3")
            raw.send("4")
            assert listener.receive_many() == [1]
            with pytest.raises(DecodeError, match="line 2"):
                listener.receive_many()
            assert take(listener, 2) == [3, 4]
    with frame_recorder(send=("1\n{\n3",)) as (url, _, _):
        with channels.connect(url, on_error=_raise) as client:
            assert client.receive_many() == [1]
            with pytest.raises(DecodeError, match="line 2"):
                client.receive()
            assert client.receive_many() == [3]


def test_the_size_limit_applies_to_the_whole_frame() -> None:
    errors: list[DecodeError] = []
    with channels.listen("ws://127.0.0.1:0/feed", max_line=1000, on_error=errors.append) as listener:
        with channels.connect(listener.url) as client:  # its own limit is the default 16 MiB
            client.send("first")
            client.send_many([{"seq": i} for i in range(100)])  # 1,190 bytes in one frame
            with listener.accept() as server_side:
                assert server_side.receive() == "first"
                with pytest.raises(TransportClosed, match="1009"):
                    server_side.receive()
    assert [(type(e), e.line) for e in errors] == [(FrameTooLarge, 2)]


def test_async_send_many_is_one_frame_and_frames_are_split() -> None:
    errors: list[DecodeError] = []

    async def main() -> None:
        with frame_recorder(send=tuple(FRAMES)) as (url, frames, ended):
            async with await channels.async_connect(url, on_error=errors.append) as client:
                assert [await client.receive() for _ in range(7)] == FRAME_VALUES
                await client.send_many(MANY)
                await client.send_many([])
            assert await asyncio.to_thread(ended.wait, WAIT)
        assert frames == [encode_many(MANY).decode()]
        assert where(errors) == FRAME_ERRORS
        errors.clear()
        async with await channels.async_listen("ws://127.0.0.1:0/feed", on_error=errors.append) as listener:
            async with await channels.async_connect(listener.url) as client:
                await client.send_many(MANY)
                assert [await listener.receive() for _ in range(1000)] == MANY
                await listener.send_many(MANY)  # to the merged client
                assert [await client.receive() for _ in range(1000)] == MANY

                def send_raw() -> None:
                    with bare_connect(listener.url) as raw:
                        for frame in FRAMES:
                            raw.send(frame)
                        raw.send("1\n{\n3")

                await asyncio.to_thread(send_raw)
                assert [await listener.receive() for _ in range(7)] == FRAME_VALUES
                assert where(errors) == FRAME_ERRORS
                assert [await listener.receive() for _ in range(2)] == [1, 3]
                waiting = asyncio.ensure_future(listener.accept())  # merging: accept() first
                await asyncio.sleep(0.05)
                async with await channels.async_connect(listener.url) as third:
                    server_side = await waiting
                    await third.send_many(MANY[:10])
                    assert [await server_side.receive() for _ in range(10)] == MANY[:10]
                    await server_side.send_many(MANY[:10])
                    assert [await third.receive() for _ in range(10)] == MANY[:10]
                    await server_side.close()

    run(main)


def test_async_strict_policy_inside_a_frame() -> None:
    async def main() -> None:
        async with await channels.async_listen("ws://127.0.0.1:0/feed", on_error=_raise) as listener:

            def send_raw() -> None:
                with bare_connect(listener.url) as raw:
                    raw.send("1\n{\n3")

            await asyncio.to_thread(send_raw)
            assert await listener.receive() == 1
            with pytest.raises(DecodeError, match="line 2"):
                await listener.receive()
            assert await listener.receive() == 3

    run(main)
