"""tcp:// between Python and Python: the sans-I/O handshake, the blocking and asyncio flavours,
errors, limits, and real peers killed with SIGKILL (tests/fixtures/tcp_py_peer.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bothways import (
    ConnectError,
    DecodeError,
    FrameTooLarge,
    TransportClosed,
    TransportError,
    async_connect,
    async_listen,
    connect,
    decode,
    encode,
    listen,
)
from bothways.transports import tcp
from bothways.transports.base import log_error
from bothways.transports.tcp import (
    HELLO_LIMIT,
    WELCOME,
    ClientHandshake,
    Refused,
    ServerGate,
    TcpChannel,
    _Mailbox,
    _PeerState,
    _Switchboard,
    backoff,
)

from ..conftest import FIXTURES, UNIT

pytestmark = pytest.mark.timeout(30 * UNIT)

PEER = str(FIXTURES / "tcp_py_peer.py")


@pytest.fixture(autouse=True)
def no_threads_left() -> Iterator[None]:
    """Every reader and acceptor thread ends with its listener."""
    yield
    deadline = time.monotonic() + 5 * UNIT
    while time.monotonic() < deadline:
        left = [t.name for t in threading.enumerate() if t.name.startswith("tcp://")]
        if not left:
            return
        time.sleep(0.02)
    raise AssertionError(f"threads left behind: {left}")


def collect() -> tuple[list[DecodeError], Callable[[DecodeError], None]]:
    errors: list[DecodeError] = []
    return errors, errors.append


def take(channel: Any, count: int) -> list[Any]:
    got: list[Any] = []
    while len(got) < count:
        got.extend(channel.receive_many())
    assert len(got) == count
    return got


def in_thread(fn: Callable[[], Any]) -> threading.Thread:
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    return thread


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_until_eof(sock: socket.socket) -> bytes:
    sock.settimeout(5 * UNIT)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


class Peer:
    """A tcp_py_peer.py child: started, its status lines read, always killed and reaped."""

    def __init__(self, **spec: Any) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, PEER, json.dumps(spec)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )

    def status(self) -> Any:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, self.proc.stderr.read().decode() if self.proc.stderr else "no output"
        return json.loads(line)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10 * UNIT)

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.kill()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


# --------------------------------------------------------------------------------------------
# Sans-I/O: the gate, the client's handshake, the back-off


def test_gate_without_token_delivers_a_plain_first_line() -> None:
    gate = ServerGate(None)
    assert gate.feed(b'{"a"') == (b"", b"")
    assert gate.state == "waiting"
    assert gate.feed(b":1}\n2\n") == (b"", b'{"a":1}\n2\n')
    assert gate.state == "open"


def test_gate_welcomes_a_hello_and_counts_it_as_line_one() -> None:
    for token in (None, "s3cret"):
        gate = ServerGate(token)
        reply, rest = gate.feed(b'{"bothways":"hello","token":"s3cret"}\r\n{"x":1}\n')
        assert (reply, rest, gate.state) == (WELCOME, b'\n{"x":1}\n', "open")


def test_gate_hello_split_into_bytes() -> None:
    gate = ServerGate("t")
    line = encode({"bothways": "hello", "token": "t"})
    results = [gate.feed(line[i : i + 1]) for i in range(len(line))]
    assert results[:-1] == [(b"", b"")] * (len(line) - 1)
    assert results[-1] == (WELCOME, b"\n")
    assert gate.state == "open"


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        (b'{"bothways":"hello","token":"wrong"}\n', "wrong token"),
        (b'{"bothways":"hello"}\n', "token required"),
        (b'{"bothways":"hello","token":7}\n', "token required"),
        (b'{"sensor":"s1"}\n', "token required"),
        (b"{oops\n", "token required"),
        (b"x" * (HELLO_LIMIT + 1), "token required"),
    ],
)
def test_gate_with_token_refuses(first: bytes, reason: str) -> None:
    gate = ServerGate("right")
    reply, rest = gate.feed(first)
    assert gate.state == "refused"
    assert rest == b""
    assert decode(reply) == {"bothways": "refused", "reason": reason}


def test_gate_limits_the_first_line_to_4096_bytes() -> None:
    gate = ServerGate("t")
    assert gate.feed(b" " * HELLO_LIMIT) == (b"", b"")  # 4096 bytes: may still be a hello
    assert gate.state == "waiting"
    reply, _ = gate.feed(b" ")
    assert gate.state == "refused" and decode(reply)["reason"] == "token required"
    plain = ServerGate(None)
    assert plain.feed(b"y" * 5000) == (b"", b"y" * 5000)  # without a token: an ordinary line
    assert plain.state == "open"


def test_gate_at_end_of_stream() -> None:
    plain = ServerGate(None)
    plain.feed(b"42")
    assert plain.feed_eof() == b"42" and plain.state == "open"
    guarded = ServerGate("t")
    guarded.feed(b'{"bothways":"hel')
    assert guarded.feed_eof() == b"" and guarded.state == "refused"
    assert decode(guarded.timed_out())["reason"] == "token required"


def test_client_handshake_keeps_the_messages_around_the_welcome() -> None:
    handshake = ClientHandshake("t")
    assert decode(handshake.hello) == {"bothways": "hello", "token": "t"}
    assert not handshake.check([1, {"bothways": "x"}])
    assert handshake.check([2, {"bothways": "welcome"}, 3])
    assert handshake.early == [1, {"bothways": "x"}, 2, 3]
    with pytest.raises(Refused, match="wrong token"):
        ClientHandshake("t").check([{"bothways": "refused", "reason": "wrong token"}])


def test_backoff_doubles_from_50_ms_to_5_s() -> None:
    assert [backoff(n) for n in range(9)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    assert backoff(10_000) == 5.0


class FakePeer(_PeerState):
    def __init__(self, name: str) -> None:
        self.name = name
        self.box = _Mailbox()
        self.ended = False
        self.pending = 0
        self.reason = ""
        self.route = None


def test_switchboard_holds_until_accept_or_merging() -> None:
    board = _Switchboard()
    a, b, c = FakePeer("a"), FakePeer("b"), FakePeer("c")
    for peer in (a, b, c):
        board.arrive(peer)  # not merging yet: held, each reading into its own mailbox
    a.box.put(a, [[1]], 10)
    b.box.put(b, [[2], DecodeError("bad", line=2)], 20)
    a.box.put(a, [[3]], 30)
    assert board.members() == [] and board.reach() == 3 and not board.merged.items
    board.begin_accept()
    assert board.claim() is a  # the oldest, with everything it sent
    assert board.end_accept() == []  # not merging: the others stay held
    assert [item for item, _, _ in a.box.items] == [[1], [3]] and a.box.size == 40
    assert board.start_merging() == []  # b and c join the merged stream, none ended
    assert board.members() == [b, c] and b.box is board.merged and board.merged.size == 20
    errors, on_error = collect()
    assert board.take(on_error) == [2] and [e.line for e in errors] == [2]
    assert board.depart(b, [], "gone") is True  # merged: its socket may close now
    assert board.members() == [c]
    board.begin_accept()
    assert board.claim() is None  # a merged connection is never accepted
    d = FakePeer("d")
    board.arrive(d)  # merging, but an accept() waits: held for it
    assert board.claim() is d and board.end_accept() == []
    e = FakePeer("e")
    board.arrive(e)  # merging, no accept() waits: merged at once
    assert board.members() == [c, e] and e.route == "merged"


def test_switchboard_merging_waits_for_a_waiting_accept() -> None:
    board = _Switchboard()
    a, b = FakePeer("a"), FakePeer("b")
    board.begin_accept()
    board.arrive(a)
    board.arrive(b)
    assert board.start_merging() == []  # an accept() waits: it takes the next one
    assert board.claim() is a
    assert board.end_accept() == [] and board.members() == [b]  # the rest merged as it ends


def test_switchboard_keeps_an_ended_connection_until_its_messages_are_taken() -> None:
    board = _Switchboard()
    a, b = FakePeer("a"), FakePeer("b")
    board.arrive(a)
    board.arrive(b)
    a.box.put(a, [[1, 2]], 10)
    assert board.depart(a, [[3]], "the peer closed the connection") is False  # held, with messages
    assert board.depart(b, [], "gone") is True  # held with nothing: forgotten, closed now
    taken = board.claim()  # still there: it has messages
    assert taken is a and taken.box.ended and taken.box.reason == "the peer closed the connection"
    assert [item for item, _, _ in a.box.items] == [[1, 2], [3]]
    assert board.claim() is None
    c = FakePeer("c")
    board.arrive(c)
    c.box.put(c, [[4]], 10)
    board.depart(c, [], "gone")
    assert board.start_merging() == [c]  # ended: its socket may close once merged
    assert board.take(log_error) == [4] and board.members() == []


# --------------------------------------------------------------------------------------------
# Blocking: messages, sizes, closing


def test_ten_thousand_messages_in_order_both_ways() -> None:
    values = [{"i": i, "text": "é€𝄞\u2028" * (i % 5)} for i in range(10_000)]
    with listen("tcp://127.0.0.1:0") as server, connect(server.url) as client:
        for value in values:  # one write each: the listener reads while we send
            client.send(value)
        assert take(server, len(values)) == values
        sender = in_thread(lambda: server.send_many(values))
        assert take(client, len(values)) == values
        sender.join()


def test_accepted_connection_is_duplex() -> None:
    with listen("tcp://127.0.0.1:0") as server, connect(server.url) as client:
        with server.accept() as conn:
            assert conn.peer.startswith("127.0.0.1:")
            client.send_many([1, 2, 3])
            assert take(conn, 3) == [1, 2, 3]
            conn.send({"back": True})
            assert client.receive() == {"back": True}


def test_ten_megabyte_message_both_ways() -> None:
    big = {"blob": "x" * (10 * 1024 * 1024), "tail": [1, 2, 3]}
    with listen("tcp://127.0.0.1:0") as server, connect(server.url) as client:
        conn = server.accept()
        sender = in_thread(lambda: client.send(big))
        assert conn.receive() == big
        sender.join()
        sender = in_thread(lambda: conn.send(big))
        assert client.receive() == big
        sender.join()
        conn.close()


def test_ten_megabyte_messages_into_the_merged_stream() -> None:
    def big(n: int) -> dict[str, Any]:
        return {"n": n, "blob": "☃" * 3_500_000}  # 10.5 MB of UTF-8

    with listen("tcp://127.0.0.1:0") as server, connect(server.url) as client:
        sender = in_thread(lambda: [client.send(big(1)), client.send(big(2))])
        assert take(server, 2) == [big(1), big(2)]
        sender.join()


def test_client_close_ends_the_servers_iteration_cleanly() -> None:
    with listen("tcp://127.0.0.1:0") as server:
        client = connect(server.url)
        conn = server.accept()
        client.send_many(range(100))
        client.close()
        client.close()  # idempotent
        assert list(conn) == list(range(100))
        with pytest.raises(TransportClosed, match="closed the connection"):
            conn.receive()
        with pytest.raises(TransportClosed):
            client.send(1)
        conn.close()


def test_server_close_ends_the_clients_iteration_cleanly() -> None:
    with listen("tcp://127.0.0.1:0") as server, connect(server.url) as client:
        conn = server.accept()
        conn.send_many(range(50))
        conn.close()
        assert list(client) == list(range(50))
        with pytest.raises(TransportClosed, match="peer closed the connection"):
            client.receive()
        with pytest.raises(TransportClosed):  # the first writes may still be accepted by the kernel
            for _ in range(1000):
                client.send("x" * 1000)
                time.sleep(0.001)
        with pytest.raises(TransportClosed):
            conn.send(1)


def test_a_client_close_loses_nothing_even_with_input_unread() -> None:
    values = [{"i": i, "pad": "y" * 200} for i in range(20_000)]
    with listen("tcp://127.0.0.1:0") as server:
        client = connect(server.url)
        with server.accept() as conn:
            conn.send_many([{"unread": "x" * 100}] * 2000)  # the client never reads these
            got: list[Any] = []
            reader = in_thread(lambda: got.extend(conn))
            client.send_many(values)
            client.close()  # with unread input: a plain close() would reset, dropping our tail
            reader.join(10 * UNIT)
            assert got == values


def test_a_server_close_loses_nothing_even_with_input_unread() -> None:
    values = [{"i": i, "pad": "z" * 200} for i in range(20_000)]
    with listen("tcp://127.0.0.1:0") as server, connect(server.url) as client:
        conn = server.accept()

        def flood() -> None:  # the server's connection stops reading: input waits unread
            with contextlib.suppress(TransportClosed):
                while True:
                    client.send_many([{"unread": "x" * 1000}] * 100)

        flooder = in_thread(flood)
        time.sleep(0.2)
        sender = in_thread(lambda: (conn.send_many(values), conn.close()))
        assert take(client, len(values)) == values
        sender.join(10 * UNIT)
        flooder.join(10 * UNIT)
        assert not flooder.is_alive()


# What the peer sent before its FIN, the last line without its newline included: the values a
# reader still holds when the connection ends are delivered before the end, on all three paths.
# The listener's FIN (after it read to ours) is awaited first: the end is in before we take.
QUEUED = [{"i": i} for i in range(1000)]
QUEUED_BYTES = b"".join(encode(value) for value in QUEUED) + b'{"last":true}'  # no "\n": held
QUEUED_ALL = [*QUEUED, {"last": True}]


def test_the_values_queued_when_a_connection_ends_are_delivered() -> None:
    errors, on_error = collect()
    with listen("tcp://127.0.0.1:0", on_error=on_error) as server:
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as raw:  # accepted
            with server.accept() as conn:
                raw.sendall(QUEUED_BYTES)
                raw.shutdown(socket.SHUT_WR)
                assert read_until_eof(raw) == b""
                assert list(conn) == QUEUED_ALL
                with pytest.raises(TransportClosed, match="closed the connection"):
                    conn.receive()
        with socket.create_connection(("127.0.0.1", port)) as raw:  # held, then merged
            raw.sendall(QUEUED_BYTES)
            raw.shutdown(socket.SHUT_WR)
            assert read_until_eof(raw) == b""  # held: read to its end, confirmed
            assert take(server, len(QUEUED_ALL)) == QUEUED_ALL
    with socket.create_server(("127.0.0.1", 0)) as raw_server:  # a client's
        client = connect(f"tcp://127.0.0.1:{raw_server.getsockname()[1]}", on_error=on_error)
        with client:
            raw, _ = raw_server.accept()
            with raw:
                raw.sendall(QUEUED_BYTES)
            assert list(client) == QUEUED_ALL
            with pytest.raises(TransportClosed, match="peer closed the connection"):
                client.receive()
    assert [(e.code, e.line) for e in errors] == [("TRUNCATED_LINE", len(QUEUED_ALL))] * 3


def test_closing_the_listener_closes_its_connections() -> None:
    server = listen("tcp://127.0.0.1:0")
    accepted = connect(server.url)
    conn = server.accept()
    merged = connect(server.url)
    merged.send("hi")
    assert server.receive() == "hi"
    waiting = queue.Queue[Any]()
    in_thread(lambda: waiting.put(pytest.raises(TransportClosed, server.receive)))
    time.sleep(0.05)
    server.close()
    server.close()
    assert isinstance(waiting.get(timeout=5 * UNIT).value, TransportClosed)
    assert list(merged) == [] and list(accepted) == []
    with pytest.raises(TransportClosed, match="listener is closed"):
        server.send(1)
    with pytest.raises(TransportClosed):
        server.accept()
    with pytest.raises(TransportClosed):
        conn.receive()
    merged.close()
    accepted.close()
    conn.close()


# --------------------------------------------------------------------------------------------
# Bad input


def test_malformed_and_overlong_lines_are_reported_and_neighbours_kept() -> None:
    errors, on_error = collect()
    with listen("tcp://127.0.0.1:0", max_line=100, on_error=on_error) as server:
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as raw:
            raw.sendall(b'{"a":1}\n{oops\n' + b'"' + b"x" * 5000 + b'"\n{"b":2}\n' + b"[3]")
        assert take(server, 3) == [{"a": 1}, {"b": 2}, [3]]
    assert [(e.code, e.line) for e in errors] == [
        ("DECODE_ERROR", 2),
        ("FRAME_TOO_LARGE", 3),
        ("TRUNCATED_LINE", 5),  # [3] had no newline: delivered, and reported
    ]
    assert isinstance(errors[1], FrameTooLarge)


def test_line_numbers_count_the_hello() -> None:
    errors, on_error = collect()
    with listen("tcp://127.0.0.1:0", token="t", on_error=on_error) as server:
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as raw:
            raw.sendall(b'{"bothways":"hello","token":"t"}\n{oops\n{"c":3}\n')
            assert raw.recv(100) == WELCOME
            assert server.receive() == {"c": 3}
    assert [e.line for e in errors] == [2]


def test_the_client_reports_bad_lines_and_keeps_the_good_ones() -> None:
    errors, on_error = collect()
    with socket.create_server(("127.0.0.1", 0)) as raw_server:
        port = raw_server.getsockname()[1]
        with connect(f"tcp://127.0.0.1:{port}", on_error=on_error) as client:
            raw, _ = raw_server.accept()
            with raw:
                raw.sendall(b'1\n{"bad":}\n2\n')
                assert take(client, 2) == [1, 2]
    assert [(e.code, e.line) for e in errors] == [("DECODE_ERROR", 2)]


def test_raise_error_policy_stops_at_the_bad_line_in_order() -> None:
    from bothways.transports.base import raise_error

    with listen("tcp://127.0.0.1:0", on_error=raise_error) as server:
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as raw:
            raw.sendall(b"1\n2\n{x\n3\n")
            assert server.receive_many() == [1, 2]
            with pytest.raises(DecodeError) as info:
                server.receive()
            assert info.value.line == 3
            assert server.receive() == 3


# --------------------------------------------------------------------------------------------
# Tokens


def test_wrong_or_missing_token_is_refused_and_nothing_delivered() -> None:
    with listen("tcp://127.0.0.1:0", token="right") as server:
        assert "right" not in server.url
        with pytest.raises(ConnectError, match="refused by the server: wrong token") as info:
            connect(server.url, token="wrong")
        assert info.value.url == server.url
        assert "wrong" not in info.value.url
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as raw:  # a plain NDJSON client
            raw.sendall(b'{"sneaky":1}\n{"sneaky":2}\n')
            assert decode(read_until_eof(raw)) == {"bothways": "refused", "reason": "token required"}
        with connect(server.url) as tokenless:  # a bothways client that forgot the token
            tokenless.send({"sneaky": 3})
            with pytest.raises(ConnectError, match="token required"):
                tokenless.receive()
        with connect(server.url, token="right") as good:
            good.send({"ok": 1})
            assert server.receive_many() == [{"ok": 1}]  # the first and only message


def _until_refused(send: Callable[[], Any]) -> ConnectError:
    """Calls ``send`` until it raises (the refusal comes back one round trip after the first
    line); returns the ConnectError."""
    deadline = time.monotonic() + 10 * UNIT
    with pytest.raises(ConnectError) as info:
        while time.monotonic() < deadline:
            send()
            time.sleep(0.005)
    return info.value


@pytest.mark.parametrize("how", ["send", "send_many", "close"])
def test_a_tokenless_client_that_only_sends_learns_the_refusal(how: str) -> None:
    """It never receives, yet its next send / send_many / close raises the refusal in the
    server's words, and nothing it sent is delivered (nor said to be)."""
    with listen("tcp://127.0.0.1:0", token="right") as server:
        client = connect(server.url)
        client.send({"sneaky": 1})
        if how == "close":
            with pytest.raises(ConnectError, match="refused by the server: token required") as info:
                client.close()
            client.close()  # said once
        else:
            if how == "send":
                error = _until_refused(lambda: client.send({"sneaky": 2}))
            else:
                error = _until_refused(lambda: client.send_many([3, 4]))
            assert "refused by the server: token required" in str(error) and error.url == server.url
            with pytest.raises(ConnectError, match="token required"):
                client.send_many([5])  # and again: the connection is refused for good
            client.close()  # said already: quiet
        assert how != "close" or "nothing sent on this connection was delivered" in str(info.value)
        with connect(server.url, token="right") as good:
            good.send("ok")
            assert server.receive_many() == ["ok"]  # the first and only message


def test_a_refusal_is_told_in_the_servers_words() -> None:
    """The reason is the server's, whatever it is (here a plain server that refuses)."""
    with socket.create_server(("127.0.0.1", 0)) as raw_server:
        client = connect(f"tcp://127.0.0.1:{raw_server.getsockname()[1]}")
        raw, _ = raw_server.accept()
        with raw:
            client.send("hi")
            raw.sendall(b'{"bothways":"refused","reason":"closed for maintenance"}\n')
            error = _until_refused(lambda: client.send("again"))
            assert "closed for maintenance" in str(error)
            client.close()


def test_async_a_tokenless_client_that_only_sends_learns_the_refusal() -> None:
    async def body() -> None:
        async with await async_listen("tcp://127.0.0.1:0", token="right") as server:
            for how in ("send", "send_many", "close"):
                client = await async_connect(server.url)
                await client.send({"sneaky": 1})
                if how == "close":
                    with pytest.raises(ConnectError, match="refused by the server: token required"):
                        await client.close()
                    await client.close()  # said once
                    continue
                with pytest.raises(ConnectError, match="refused by the server: token required"):
                    for _ in range(2000):  # until the refusal has come back (a round trip)
                        await (client.send(2) if how == "send" else client.send_many([3, 4]))
                        await asyncio.sleep(0.005)
                with pytest.raises(ConnectError, match="token required"):
                    await client.send(5)
                await client.close()  # said already: quiet
            async with await async_connect(server.url, token="right") as good:
                await good.send("ok")
                assert await server.receive_many() == ["ok"]

    run(body)


def test_a_token_client_talks_to_a_server_without_token() -> None:
    with listen("tcp://127.0.0.1:0") as server, connect(server.url, token="any") as client:
        client.send("hello there")
        assert server.receive() == "hello there"
        server.send("welcome back")
        assert client.receive() == "welcome back"


def test_messages_before_the_welcome_are_delivered_after_it() -> None:
    with socket.create_server(("127.0.0.1", 0)) as raw_server:
        port = raw_server.getsockname()[1]
        result: queue.Queue[Any] = queue.Queue()
        in_thread(lambda: result.put(connect(f"tcp://127.0.0.1:{port}", token="t")))
        raw, _ = raw_server.accept()
        with raw:
            raw.sendall(b'{"pre":1}\n')
            assert raw.recv(100) == b'{"bothways":"hello","token":"t"}\n'
            raw.sendall(WELCOME + b'{"post":2}\n')
            with result.get(timeout=5 * UNIT) as client:
                assert take(client, 2) == [{"pre": 1}, {"post": 2}]


def test_a_silent_connection_is_refused_after_the_timeout() -> None:
    with listen("tcp://127.0.0.1:0", token="t", timeout=0.2) as server:
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as raw:
            started = time.monotonic()
            assert decode(read_until_eof(raw)) == {"bothways": "refused", "reason": "token required"}
            assert time.monotonic() - started < 3 * UNIT


HELLO_START = b'{"bothways":"hello","token":"'  # 29 bytes: 2.9 s at one byte every 0.1 s


def test_the_hello_timeout_counts_for_the_whole_first_line() -> None:
    async def body() -> None:
        async with await async_listen("tcp://127.0.0.1:0", token="t", timeout=0.5) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", int(server.url.rsplit(":", 1)[1]))
            started = asyncio.get_running_loop().time()
            answer = b""
            for byte in HELLO_START:  # one byte every 0.1 s: each read is quick, the line is not
                writer.write(bytes([byte]))
                try:
                    answer = await asyncio.wait_for(reader.read(1000), 0.1)
                    break
                except asyncio.TimeoutError:
                    continue
            assert decode(answer) == {"bothways": "refused", "reason": "token required"}
            assert asyncio.get_running_loop().time() - started < 2 * UNIT
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    with listen("tcp://127.0.0.1:0", token="t", timeout=0.5) as server:
        with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1]))) as raw:
            started = time.monotonic()
            raw.settimeout(0.1)
            answer = b""
            for byte in HELLO_START:
                raw.send(bytes([byte]))
                try:
                    answer = raw.recv(1000)
                    break
                except TimeoutError:
                    continue
            assert decode(answer)["reason"] == "token required"
            assert time.monotonic() - started < 2 * UNIT
    asyncio.run(asyncio.wait_for(body(), 10 * UNIT))


# --------------------------------------------------------------------------------------------
# Cannot connect


def test_connection_refused_names_the_url() -> None:
    port = free_port()
    with pytest.raises(ConnectError, match="connection refused") as info:
        connect(f"tcp://127.0.0.1:{port}?token=secret")
    assert info.value.url == f"tcp://127.0.0.1:{port}"
    assert str(info.value).startswith(f"tcp://127.0.0.1:{port}: ")
    assert info.value.code == "CONNECT_ERROR"


def test_unknown_host_is_a_connect_error() -> None:
    with pytest.raises(ConnectError, match="cannot resolve host 'nohost.invalid'"):
        connect("tcp://nohost.invalid:9", timeout=5)


def test_a_server_that_never_answers_the_hello() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(ConnectError, match="no answer to the hello within 0.3 s"):
            connect(f"tcp://127.0.0.1:{port}", token="t", timeout=0.3)
        assert time.monotonic() - started < 3 * UNIT


def test_options_are_checked() -> None:
    with pytest.raises(TypeError):
        connect("tcp://127.0.0.1:9?token=x", retries=3)
    with pytest.raises(TypeError):
        listen("tcp://127.0.0.1:0", colour="blue")
    with pytest.raises(TypeError, match="token"):
        listen("tcp://127.0.0.1:0", token="")
    with pytest.raises(ValueError, match="too long"):
        listen("tcp://127.0.0.1:0", token="t" * HELLO_LIMIT)
    with pytest.raises(ValueError, match="timeout"):
        connect("tcp://127.0.0.1:9", timeout=0)
    from bothways.transports import tcp

    with pytest.raises(TypeError, match="Address"):
        tcp.connect("tcp://127.0.0.1:9")  # type: ignore[arg-type]


def test_a_port_in_use_is_a_transport_error() -> None:
    with listen("tcp://127.0.0.1:0") as first:
        with pytest.raises(TransportError, match="cannot listen") as info:
            listen(first.url)
        assert first.url in str(info.value)


def test_one_url_serves_both_sides() -> None:
    with listen("tcp://127.0.0.1:0?reconnect=1&timeout=5") as server:
        with connect(server.url + "?reconnect=1&timeout=5") as client:
            client.send(1)
            assert server.receive() == 1


# --------------------------------------------------------------------------------------------
# Many clients, accept, broadcast, plain peers


def test_many_clients_are_merged_each_in_order() -> None:
    with listen("tcp://127.0.0.1:0") as server:
        clients = [connect(server.url) for _ in range(8)]
        threads = [
            in_thread(lambda c=c, k=k: c.send_many({"c": k, "i": i} for i in range(2000)))  # type: ignore[misc]
            for k, c in enumerate(clients)
        ]
        got = take(server, 8 * 2000)
        for thread in threads:
            thread.join()
        for k in range(8):
            assert [m["i"] for m in got if m["c"] == k] == list(range(2000))
        for client in clients:
            client.close()


def test_broadcast_reaches_every_merged_client() -> None:
    with listen("tcp://127.0.0.1:0") as server:
        clients = [connect(server.url) for _ in range(3)]
        deadline = time.monotonic() + 5 * UNIT
        while server.peers < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.send({"all": 1})
        server.send_many([2, 3])
        for client in clients:
            assert take(client, 3) == [{"all": 1}, 2, 3]
        clients[0].close()
        time.sleep(0.1)
        server.send("still")  # a client that left is dropped, the others still get it
        for client in clients[1:]:
            assert client.receive() == "still"
            client.close()


def test_accept_takes_a_waiting_connection_and_the_rest_is_merged() -> None:
    with listen("tcp://127.0.0.1:0") as server:
        first = connect(server.url)
        first.send("first")
        conn = server.accept()  # connected before accept() was called: still ours
        second = connect(server.url)
        second.send("second")
        assert server.receive() == "second"  # merged; the accepted one is not
        assert conn.receive() == "first"
        for channel in (conn, first, second):
            channel.close()


def test_a_merged_connection_is_never_accepted() -> None:
    with listen("tcp://127.0.0.1:0") as server, connect(server.url) as first:
        first.send("one")
        assert server.receive() == "one"  # merging: first is merged, for good
        accepting = queue.Queue[Any]()
        in_thread(lambda: accepting.put(server.accept()))
        first.send("two")
        assert server.receive() == "two"  # still merged: accept() waits for the next one
        assert accepting.empty()
        with connect(server.url) as second, accepting.get(timeout=10 * UNIT) as conn:
            second.send("three")
            assert conn.receive() == "three"  # it went to the waiting accept()
            conn.send("yours")
            assert second.receive() == "yours"


def test_plain_ndjson_peers_interoperate() -> None:
    with listen("tcp://127.0.0.1:0") as server:
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as raw:
            raw.sendall(b"21.5\n-3.25\n")  # the tutorial's sensor
            assert take(server, 2) == [21.5, -3.25]
    with socket.create_server(("127.0.0.1", 0)) as raw_server:
        port = raw_server.getsockname()[1]
        got: list[bytes] = []

        def serve() -> None:  # a plain server: reads to the end, then closes (its FIN confirms)
            raw, _ = raw_server.accept()
            with raw:
                got.append(read_until_eof(raw))

        server_thread = in_thread(serve)
        with connect(f"tcp://127.0.0.1:{port}") as client:
            client.send({"a": 1})
            client.close()  # returns once the server has read it all and closed
        server_thread.join(5 * UNIT)
        assert got == [b'{"a":1}\n']


def test_send_blocks_while_the_listener_does_not_read() -> None:
    chunk = [{"pad": "x" * 1000}] * 1000  # ~1 MB per send_many
    with listen("tcp://127.0.0.1:0") as server, connect(server.url) as client:
        sent = []
        sender = in_thread(lambda: [sent.append(client.send_many(chunk)) for _ in range(64)])
        time.sleep(1 * UNIT)
        assert sender.is_alive()  # held back: the listener reads ahead only a little
        assert len(sent) < 16
        take(server, 64 * 1000)
        sender.join(10 * UNIT)
        assert not sender.is_alive()


# --------------------------------------------------------------------------------------------
# Killed peers and reconnection (real processes)


def test_a_killed_server_gives_transport_closed() -> None:
    with Peer(mode="echo-server", url="tcp://127.0.0.1:0") as peer:
        url = peer.status()["url"]
        with connect(url) as client:
            client.send({"n": 1})
            assert client.receive() == {"n": 1}
            peer.kill()
            with pytest.raises(TransportClosed):
                client.receive()
            with pytest.raises(TransportClosed):
                for _ in range(1000):
                    client.send({"n": 2})
                    time.sleep(0.001)


def test_a_killed_client_gives_transport_closed_to_its_connection() -> None:
    with listen("tcp://127.0.0.1:0", token="t") as server:
        with Peer(mode="sender", url=server.url, token="t", count=100) as peer:
            with server.accept() as conn:
                assert peer.status() == {"sent": 100}
                assert take(conn, 100) == [{"i": i} for i in range(100)]
                peer.kill()
                with pytest.raises(TransportClosed):
                    conn.receive()
        # merged: a killed client leaves, the listener goes on
        with Peer(mode="sender", url=server.url, token="t", count=10) as peer:
            assert take(server, 10) == [{"i": i} for i in range(10)]
            peer.kill()
        with connect(server.url, token="t") as client:
            client.send("after")
            assert server.receive() == "after"


def test_reconnect_resumes_with_a_new_server_on_the_same_port() -> None:
    with Peer(mode="echo-server", url="tcp://127.0.0.1:0", token="t") as first:
        url = first.status()["url"]
        with connect(url, token="t", reconnect=True) as client:
            echoes: queue.Queue[Any] = queue.Queue()
            reader = in_thread(lambda: [echoes.put(m) for m in client])
            client.send({"n": 0})
            assert echoes.get(timeout=5 * UNIT) == {"n": 0}
            first.kill()
            time.sleep(0.2)
            with Peer(mode="echo-server", url=url, token="t") as second:
                assert second.status()["url"] == url
                # Sent while the connection is down or half-dead: sent again on the next one,
                # with what the first connection kept (RESEND bytes): at least once, in order.
                deadline = time.monotonic() + 15 * UNIT
                seen: list[int] = []
                n = 1
                while not any(k >= 1 for k in seen) and time.monotonic() < deadline:
                    client.send({"n": n})
                    n += 1
                    with contextlib.suppress(queue.Empty):
                        while True:
                            seen.append(echoes.get(timeout=0.5)["n"])
                assert client.reconnects >= 1
                assert seen[0] == 0, seen  # the first connection's message, sent again first
                assert sorted(set(seen)) == list(range(max(seen) + 1)), seen
                client.close()  # the new server confirmed everything: nothing may be lost
        reader.join(5 * UNIT)
        assert not reader.is_alive()  # close() ends the iteration


def test_reconnect_stops_on_close_while_waiting() -> None:
    with listen("tcp://127.0.0.1:0") as server:
        url = server.url
        client = connect(url, reconnect=True)
        assert isinstance(client, TcpChannel)
    # the server is gone: the client's receive keeps trying until close()
    outcome: queue.Queue[Any] = queue.Queue()
    in_thread(lambda: outcome.put(pytest.raises(TransportClosed, client.receive)))
    time.sleep(0.5)
    client.close()
    assert isinstance(outcome.get(timeout=5 * UNIT).value, TransportClosed)


# --------------------------------------------------------------------------------------------
# asyncio


def run(body: Callable[[], Any]) -> None:
    asyncio.run(asyncio.wait_for(body(), 20 * UNIT))


async def async_take(channel: Any, count: int) -> list[Any]:
    got: list[Any] = []
    while len(got) < count:
        got.extend(await channel.receive_many())
    return got


def test_async_ten_thousand_messages_accept_and_broadcast() -> None:
    values = [{"i": i} for i in range(10_000)]

    async def body() -> None:
        async with await async_listen("tcp://127.0.0.1:0", token="t") as server:
            async with await async_connect(server.url, token="t") as client:
                for value in values:
                    await client.send(value)
                assert await async_take(server, len(values)) == values
                await server.send_many(values)
                assert await async_take(client, len(values)) == values
        async with await async_listen("tcp://127.0.0.1:0", token="t") as server:
            accepting = asyncio.ensure_future(server.accept())
            async with await async_connect(server.url, token="t") as other:
                async with await accepting as conn:
                    await other.send("mine")
                    assert await conn.receive() == "mine"
                    await conn.send("yours")
                    assert await other.receive() == "yours"
                assert [m async for m in other] == []  # closed by the server: clean end

    run(body)


def test_async_ten_megabyte_message_and_bad_lines() -> None:
    big = {"blob": "y" * (10 * 1024 * 1024)}
    errors, on_error = collect()

    async def body() -> None:
        async with await async_listen(
            "tcp://127.0.0.1:0", max_line=20 * 1024 * 1024, on_error=on_error
        ) as server:
            async with await async_connect(server.url) as client:
                sending = asyncio.ensure_future(client.send(big))
                assert await server.receive() == big
                await sending
                reader, writer = await asyncio.open_connection("127.0.0.1", int(server.url.rsplit(":", 1)[1]))
                writer.write(b"1\n{nope\n2\n")
                await writer.drain()
                assert await async_take(server, 2) == [1, 2]
                writer.close()
                await writer.wait_closed()

    run(body)
    assert [(e.code, e.line) for e in errors] == [("DECODE_ERROR", 2)]


def test_async_tokens_and_refusals() -> None:
    async def body() -> None:
        async with await async_listen("tcp://127.0.0.1:0", token="right") as server:
            with pytest.raises(ConnectError, match="wrong token"):
                await async_connect(server.url, token="wrong")
            async with await async_connect(server.url) as tokenless:
                await tokenless.send("sneaky")
                with pytest.raises(ConnectError, match="token required"):
                    await tokenless.receive()
            async with await async_connect(server.url, token="right") as good:
                await good.send("ok")
                assert await server.receive_many() == ["ok"]
        with pytest.raises(ConnectError, match="connection refused"):
            await async_connect(f"tcp://127.0.0.1:{free_port()}")
        with pytest.raises(ConnectError, match="cannot resolve host"):
            await async_connect("tcp://nohost.invalid:9")

    run(body)


def test_async_close_from_either_side() -> None:
    async def body() -> None:
        async with await async_listen("tcp://127.0.0.1:0") as server:
            client = await async_connect(server.url)
            conn = await server.accept()
            await client.send_many(range(10))
            await client.close()
            await client.close()
            assert [m async for m in conn] == list(range(10))
            with pytest.raises(TransportClosed):
                await conn.receive()
            await conn.close()
            client = await async_connect(server.url)
            await client.send("x")
            assert await server.receive() == "x"
        assert [m async for m in client] == []  # the listener closed: a clean end
        with pytest.raises(TransportClosed):
            await client.receive()
        await client.close()

    run(body)


def test_async_close_loses_nothing_even_with_input_unread() -> None:
    values = [{"i": i, "pad": "y" * 200} for i in range(20_000)]

    async def body() -> None:
        async with await async_listen("tcp://127.0.0.1:0") as server:
            client = await async_connect(server.url)
            async with await server.accept() as conn:
                await conn.send_many([{"unread": "x" * 100}] * 2000)  # the client never reads these
                reading = asyncio.ensure_future(async_take(conn, len(values)))
                await client.send_many(values)
                await client.close()
                assert await reading == values
                # and the other way: the server's side closes with the client's input unread
                client = await async_connect(server.url)
            async with await server.accept() as conn:
                await client.send_many([{"unread": "x" * 100}] * 2000)
                await asyncio.sleep(0.1)
                reading = asyncio.ensure_future(async_take(client, len(values)))
                await conn.send_many(values)
                await conn.close()
                assert await reading == values
            await client.close()

    run(body)


def test_async_the_values_queued_when_a_connection_ends_are_delivered() -> None:
    errors, on_error = collect()

    async def send_and_end(writer: asyncio.StreamWriter) -> None:
        writer.write(QUEUED_BYTES)
        writer.write_eof()
        await writer.drain()

    async def body() -> None:
        async with await async_listen("tcp://127.0.0.1:0", on_error=on_error) as server:
            port = int(server.url.rsplit(":", 1)[1])
            reader, writer = await asyncio.open_connection("127.0.0.1", port)  # accepted
            async with await server.accept() as conn:
                await send_and_end(writer)
                assert await reader.read() == b""
                assert [m async for m in conn] == QUEUED_ALL
                with pytest.raises(TransportClosed, match="closed the connection"):
                    await conn.receive()
            writer.close()
            await writer.wait_closed()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)  # held, then merged
            await send_and_end(writer)
            assert await reader.read() == b""  # until the listener's FIN
            assert await async_take(server, len(QUEUED_ALL)) == QUEUED_ALL
            writer.close()
            await writer.wait_closed()

        async def serve(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await send_and_end(writer)
            writer.close()

        raw_server = await asyncio.start_server(serve, "127.0.0.1", 0)  # a client's
        async with raw_server:
            port = raw_server.sockets[0].getsockname()[1]
            async with await async_connect(f"tcp://127.0.0.1:{port}", on_error=on_error) as client:
                assert [m async for m in client] == QUEUED_ALL
                with pytest.raises(TransportClosed, match="peer closed the connection"):
                    await client.receive()

    run(body)
    assert [(e.code, e.line) for e in errors] == [("TRUNCATED_LINE", len(QUEUED_ALL))] * 3


def test_async_reconnect_to_a_new_listener_on_the_same_port() -> None:
    async def body() -> None:
        server = await async_listen("tcp://127.0.0.1:0", token="t")
        url = server.url
        async with await async_connect(url, token="t", reconnect=True) as client:
            await client.send(1)
            assert await server.receive() == 1
            await server.close()
            receiving = asyncio.ensure_future(client.receive())
            await asyncio.sleep(0.2)
            async with await async_listen(url, token="t") as again:
                assert again.url == url
                await asyncio.wait_for(_until_peers(again, 1), 10 * UNIT)
                await again.send("back")
                assert await asyncio.wait_for(receiving, 10 * UNIT) == "back"
                await client.send(2)
                # the first connection's "1\n" was never confirmed: sent again, first
                assert [await again.receive(), await again.receive()] == [1, 2]
                assert client.reconnects == 1
                await client.close()  # confirmed by the new listener: nothing may be lost

    run(body)


async def _until_peers(listener: Any, count: int) -> None:
    for _ in range(2000):  # a count: no event to wait on
        if listener.peers >= count:
            return
        await asyncio.sleep(0.01)


def test_async_and_blocking_talk_to_each_other() -> None:
    with listen("tcp://127.0.0.1:0", token="t") as server:

        async def body() -> None:
            async with await async_connect(server.url, token="t") as client:
                await client.send_many(range(1000))
                got = await asyncio.get_running_loop().run_in_executor(None, take, server, 1000)
                assert got == list(range(1000))

        run(body)


def test_reconnect_waits_for_a_server_that_starts_a_moment_later() -> None:
    """With reconnect, the first connect is retried until ``timeout``; without, it fails at once."""
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    with pytest.raises(ConnectError):
        connect(url)  # nothing listens, no reconnect: at once
    started = time.monotonic()
    with pytest.raises(ConnectError):
        connect(url + "?reconnect=1&timeout=0.5")  # nothing comes: gives up after ~0.5 s
    assert 0.3 <= time.monotonic() - started < 3 * UNIT

    closed = threading.Event()  # the server stays until the client's close() (which it confirms)

    def start_later() -> None:
        time.sleep(0.3)
        with listen(url) as server:
            assert server.receive() == "hello"
            closed.wait(5 * UNIT)

    later = in_thread(start_later)
    with connect(url + "?reconnect=1&timeout=5") as client:
        client.send("hello")
    closed.set()
    later.join(5 * UNIT)
    assert not later.is_alive()

    async def main() -> None:
        closed.clear()
        later = in_thread(start_later)
        client = await async_connect(url + "?reconnect=1&timeout=5")
        await client.send("hello")
        await client.close()
        closed.set()
        await asyncio.to_thread(later.join, 5 * UNIT)

    asyncio.run(main())


def test_close_says_so_when_the_peer_never_confirms_and_returns_when_it_does() -> None:
    """A server that takes the connection but never reads to the end nor closes: close() raises
    TransportClosed naming the bytes at stake, after ``timeout``; against one that reads and
    closes, close() returns. Both flavours, the same words as tcp.js."""
    with socket.create_server(("127.0.0.1", 0)) as raw_server:
        port = raw_server.getsockname()[1]
        url = f"tcp://127.0.0.1:{port}"
        client = connect(url + "?timeout=0.5")
        held, _ = raw_server.accept()  # accepted, never read, never closed
        with held:
            client.send({"a": 1})  # 8 bytes
            started = time.monotonic()
            with pytest.raises(TransportClosed) as info:
                client.close()
            assert time.monotonic() - started < 3 * UNIT
            assert str(info.value) == (
                f"{url}: close: the peer did not confirm within 0.5 s that it read what we sent "
                "(8 bytes on this connection); it may be lost"
            )
            client.close()  # once is enough

        async def main() -> None:
            client = await async_connect(url + "?timeout=0.5")
            held, _ = await asyncio.to_thread(raw_server.accept)
            with held:
                await client.send_many([1, 2, 3])  # 6 bytes
                with pytest.raises(TransportClosed, match=r"within 0\.5 s .* \(6 bytes on this connection\)"):
                    await client.close()

        asyncio.run(main())
        quiet = connect(url + "?timeout=0.5")  # sent nothing: nothing to lose, nothing to say
        held, _ = raw_server.accept()
        with held:
            quiet.close()


def test_a_server_reset_before_the_confirmation_is_reported() -> None:
    with socket.create_server(("127.0.0.1", 0)) as raw_server:
        url = f"tcp://127.0.0.1:{raw_server.getsockname()[1]}"
        client = connect(url + "?timeout=5")
        held, _ = raw_server.accept()
        client.send("x" * 100)
        time.sleep(0.1)
        held.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        held.close()  # with unread input and linger 0: a reset
        with pytest.raises(
            TransportClosed, match="close: the connection was reset before the peer confirmed"
        ):
            client.close()


def test_close_while_reconnecting_still_delivers_what_was_kept() -> None:
    """The server goes away; close() is called while the client is still trying to reconnect:
    it keeps trying (within timeout), writes again what the lost connection may not have
    delivered, and returns only once a server confirmed it."""
    first = listen("tcp://127.0.0.1:0")
    url = first.url
    client = connect(url + "?reconnect=1&timeout=10")
    client.send({"n": 1})
    assert first.receive() == {"n": 1}
    first.close()

    def send_more() -> None:  # writes go through while the old socket lingers (2 s), then one fails
        with contextlib.suppress(TransportClosed):
            for n in range(2, 100):
                client.send({"n": n})
                time.sleep(0.05)

    sending = in_thread(send_more)  # ends up waiting for the server, reconnecting
    deadline = time.monotonic() + 10 * UNIT
    while client.reconnects == 0 and client._link.sent and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.05)
    assert client._link.sent == 0  # type: ignore[attr-defined]  # the break is being handled
    closing = in_thread(client.close)
    time.sleep(0.5)
    with listen(url) as second:
        assert second.receive() == {"n": 1}  # written again by close()
        closing.join(10 * UNIT)
        assert not closing.is_alive()
    sending.join(5 * UNIT)


def test_what_a_reconnecting_client_keeps_costs_about_what_it_holds() -> None:
    """The resend window holds the newest RESEND bytes of whole writes, in order, and costs about
    that much memory, however small the writes (orjson's bytes carry 4 KiB each)."""
    kept = tcp._Kept()
    count = 60_000
    tracemalloc.start()
    try:
        for i in range(count):
            kept.add(encode({"sensor": "kitchen", "seq": i}))  # (as a send does: then let go)
        used, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    lines = [encode({"sensor": "kitchen", "seq": i}) for i in range(count)]
    data = kept.data()
    assert tcp.RESEND - 64 * 1024 <= len(data) <= tcp.RESEND
    assert data.endswith(b"".join(lines[-100:])) and data.startswith(b'{"sensor"')  # whole writes
    assert kept.take_dropped() == sum(map(len, lines)) - len(data)
    assert used < 2 * tcp.RESEND, f"{used:,} bytes held for {len(data):,} kept"
