"""The channel contract, for every scheme, across the real boundary in both directions.

Each test runs tests/fixtures/chan_peer.py and chan_peer.mjs (the same harness in each language)
as real processes: one listens (``listen(url)``), the other connects (``connect(url)``), and both
print what they saw. Python -> Node and Node -> Python for every scheme; the asyncio flavour of
Python takes a turn in the in-order test. ``mqtt`` goes through one Mosquitto for the module
(tests/broker.py), which wants a login: its peers give the right one unless a test says otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bothways import encode
from bothways.urls import parse

from ..broker import Broker
from ..conftest import FIXTURES, ROOT, UNIT, require_tool

SCHEMES = ["tcp", "ws", "fifo", "file", "mqtt"]
DIRECTIONS = [("py", "node"), ("node", "py")]  # (sender, receiver)
ASYNC_DIRECTIONS = [("py-async", "node"), ("node", "py-async")]
DUPLEX = ["tcp", "ws"]  # schemes where the receiver can close on the sender or answer it
TOKENS = ["tcp", "ws", "mqtt"]  # mqtt: the broker's password, not a ?token=
USER, PASSWORD = "contract", "right"  # the broker's one login
LOGIN = ("--username", USER, "--password", PASSWORD)


def command(who: str, *args: str) -> list[str]:
    if who == "node":
        return [require_tool("node"), str(FIXTURES / "chan_peer.mjs"), *args]
    extra = ["--async"] if who == "py-async" else []
    return [sys.executable, str(FIXTURES / "chan_peer.py"), *args, *extra]


class Peer:
    """A harness process whose stdout lines are JSON reports."""

    def __init__(self, who: str, *args: str) -> None:
        if parse(args[1]).scheme == "mqtt" and "--password" not in args:
            args = (*args, *LOGIN)  # the broker's login, unless the test gives one
        self.proc = subprocess.Popen(command(who, *args), stdout=subprocess.PIPE, cwd=ROOT)
        self.pending = b""

    def report(self, timeout: float = 60) -> dict[str, Any]:
        """The next line the process prints, as JSON; fails after ``timeout`` seconds."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout * UNIT
        while b"\n" not in self.pending:
            left = deadline - time.monotonic()
            ready = select.select([fd], [], [], max(left, 0))[0]
            chunk = os.read(fd, 1 << 20) if ready else b""
            if not chunk:
                state = "exited" if self.proc.poll() is not None else f"silent for {timeout * UNIT:.0f} s"
                pytest.fail(f"{self.proc.args[1:3]} {state} without a report (exit {self.proc.poll()})")
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        value: dict[str, Any] = json.loads(line)
        return value

    def finish(self, timeout: float = 60) -> dict[str, Any]:
        value = self.report(timeout)
        assert self.proc.wait(timeout * UNIT) == 0
        return value

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
def peers() -> Iterator[list[Peer]]:
    started: list[Peer] = []
    yield started
    for peer in started:
        peer.kill()
        if peer.proc.stdout:
            peer.proc.stdout.close()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    with Broker(tmp_path_factory.mktemp("broker"), users={USER: PASSWORD}) as started:
        yield started


@pytest.fixture
def url_for(tmp_path: Path, request: pytest.FixtureRequest) -> Callable[..., str]:
    """``url_for(scheme, query="")``: a URL for this test's channel (mqtt: a topic of its own on
    the module's broker, started by the first test that needs it)."""

    def make(scheme: str, query: str = "") -> str:
        if scheme == "mqtt":
            broker: Broker = request.getfixturevalue("broker")
            base = broker.url(f"contract/{tmp_path.name}")
        else:
            base = {
                "tcp": "tcp://127.0.0.1:0",
                "ws": "ws://127.0.0.1:0/contract",
                "fifo": f"fifo:{tmp_path / 'pipe'}",
                "file": f"file:{tmp_path / 'readings.ndjson'}",
            }[scheme]
        return base + (f"?{query}" if query else "")

    return make


def start_listener(peers: list[Peer], who: str, url: str, *args: str) -> tuple[Peer, str]:
    peer = Peer(who, "listen", url, *args)
    peers.append(peer)
    listening = peer.report(30)["listening"]
    assert isinstance(listening, str) and parse(listening).scheme == parse(url).scheme
    return peer, listening


def expected_digest(count: int, size: int) -> str:
    text = "temperature ° ☃ 🌡 "
    s = (text * (size // len(text) + 1))[:size]
    digest = hashlib.sha256()
    for i in range(count):
        digest.update(encode({"i": i, "s": s}))
    return digest.hexdigest()


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(("sender", "receiver"), DIRECTIONS + ASYNC_DIRECTIONS)
def test_ten_thousand_messages_arrive_in_order_and_equal(
    scheme: str, sender: str, receiver: str, url_for: Callable[..., str], peers: list[Peer]
) -> None:
    listener, url = start_listener(peers, receiver, url_for(scheme), "--count", "10000")
    writer = Peer(sender, "send", url, "--count", "10000", "--size", "40")
    peers.append(writer)
    sent = writer.finish()
    got = listener.finish()
    assert sent == {"sent": 10_000, "digest": expected_digest(10_000, 40), "error": None}
    assert got == {
        "count": 10_000,
        "digest": sent["digest"],
        "in_order": True,
        "last": 9_999,
        "errors": [],
    }


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(("sender", "receiver"), DIRECTIONS)
def test_a_ten_megabyte_message(
    scheme: str, sender: str, receiver: str, url_for: Callable[..., str], peers: list[Peer]
) -> None:
    size = 7_500_000  # characters: about 10 MB of UTF-8 (Mosquitto takes up to 256 MB)
    listener, url = start_listener(peers, receiver, url_for(scheme), "--count", "2")
    writer = Peer(sender, "send", url, "--count", "2", "--size", str(size))
    peers.append(writer)
    sent = writer.finish()
    got = listener.finish()
    assert sent["error"] is None and sent["digest"] == expected_digest(2, size)
    assert got["digest"] == sent["digest"] and got["in_order"] and got["errors"] == []
    assert len(encode({"i": 0, "s": "x"}).decode()) < 20 < size  # the message really is big


@pytest.mark.parametrize("how", ["closes", "is killed"])
@pytest.mark.parametrize(
    "scheme",
    [
        "tcp",
        "ws",
        "fifo",
        # (not mqtt: the broker stands between the ends; a publisher is never told that a
        # subscriber went: the broker acknowledges each message, then keeps or drops it)
    ],
)
@pytest.mark.parametrize(("sender", "receiver"), DIRECTIONS)
def test_when_the_receiver_goes_the_sender_gets_a_clear_error(
    how: str, scheme: str, sender: str, receiver: str, url_for: Callable[..., str], peers: list[Peer]
) -> None:
    count = "100" if how == "closes" else "1000000000"
    listener, url = start_listener(peers, receiver, url_for(scheme), "--count", count)
    writer = Peer(sender, "send", url, "--forever", "--size", "200")
    peers.append(writer)
    if how == "closes":
        got = listener.finish()
        assert got["count"] == 100 and got["in_order"]
    else:
        time.sleep(1.0 * UNIT)
        listener.kill()
    sent = writer.finish(timeout=30)
    assert sent["error"] == "TRANSPORT_CLOSED", sent
    assert sent["sent"] >= (100 if how == "closes" else 1)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(("sender", "receiver"), DIRECTIONS)
def test_a_sender_killed_mid_stream_leaves_what_arrived_in_order(
    scheme: str, sender: str, receiver: str, url_for: Callable[..., str], peers: list[Peer]
) -> None:
    listener, url = start_listener(peers, receiver, url_for(scheme), "--idle", "2")
    writer = Peer(sender, "send", url, "--forever", "--size", "3000")
    peers.append(writer)
    time.sleep(1.0 * UNIT)
    writer.kill()
    got = listener.finish()
    assert got["count"] > 0 and got["in_order"], got
    assert set(got["errors"]) <= {"TRUNCATED_LINE"}  # a line cut by the kill, at most


BAD_LINES = [b'{"i":0}', b'{"i": 1 oops', b'{"i":1}', b'"' + b"x" * 2000 + b'"', b'{"i":2}']


def inject(scheme: str, url: str) -> None:
    """Writes BAD_LINES raw, below the library: what a broken peer would send."""
    address = parse(url)
    if scheme == "ws":
        from websockets.exceptions import ConnectionClosed
        from websockets.sync.client import connect

        where = f"ws://{address.host}:{address.port}{address.path}"
        with connect(where) as ws:  # good, malformed, over-long: the server then closes (1009)
            for line in (BAD_LINES[0], BAD_LINES[1], BAD_LINES[3]):
                ws.send(line.decode())
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=10 * UNIT)
        with connect(where) as ws:  # the next good message, on a new connection
            ws.send(BAD_LINES[2].decode())
        return
    if scheme == "mqtt":  # one PUBLISH per payload, from a bare paho client
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        assert address.host is not None and address.port is not None
        client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        client.username_pw_set(USER, PASSWORD)
        client.connect(address.host, address.port)
        client.loop_start()
        try:
            for line in BAD_LINES:
                client.publish(address.path, line, qos=1).wait_for_publish(10 * UNIT)
        finally:
            client.disconnect()
            client.loop_stop()
        return
    data = b"".join(line + b"\n" for line in BAD_LINES)
    if scheme == "tcp":
        assert address.host is not None and address.port is not None
        with socket.create_connection((address.host, address.port), timeout=10) as sock:
            sock.sendall(data)
    else:
        with open(address.path, "ab") as f:
            f.write(data)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("receiver", ["py", "node"])
def test_bad_input_is_reported_and_the_good_messages_around_it_kept(
    scheme: str, receiver: str, url_for: Callable[..., str], peers: list[Peer]
) -> None:
    expected = 2 if scheme == "ws" else 3
    url = url_for(scheme, "max_line=1000")
    listener, url = start_listener(peers, receiver, url, "--count", str(expected), "--idle", "10")
    inject(scheme, url)
    got = listener.finish()
    assert got["count"] == expected and got["in_order"], got
    assert got["errors"] == ["DECODE_ERROR", "FRAME_TOO_LARGE"]


def with_token(url: str, token: str) -> str:
    address = parse(url)
    return replace(address, params={**address.params, "token": token}).url


def with_secret(scheme: str, url: str, secret: str) -> tuple[str, ...]:
    """A sender's URL and flags with ``secret``: the ``?token=`` of tcp and ws, the password of
    the broker's login on mqtt."""
    if scheme == "mqtt":
        return (url, "--username", USER, "--password", secret)
    return (with_token(url, secret),)


@pytest.mark.parametrize("scheme", TOKENS)
@pytest.mark.parametrize(("sender", "receiver"), DIRECTIONS)
def test_a_wrong_token_is_refused_and_the_right_one_let_in(
    scheme: str, sender: str, receiver: str, url_for: Callable[..., str], peers: list[Peer]
) -> None:
    query = "" if scheme == "mqtt" else "token=right"  # (mqtt: the listener logs in as USER)
    listener, url = start_listener(peers, receiver, url_for(scheme, query), "--count", "3", "--idle", "10")
    wrong = Peer(sender, "send", *with_secret(scheme, url, "wrong"), "--count", "3")
    peers.append(wrong)
    assert wrong.finish() == {"sent": 0, "digest": hashlib.sha256().hexdigest(), "error": "CONNECT_ERROR"}
    right = Peer(sender, "send", *with_secret(scheme, url, PASSWORD), "--count", "3")
    peers.append(right)
    assert right.finish()["error"] is None
    got = listener.finish()
    assert got["count"] == 3 and got["in_order"] and got["errors"] == []


@pytest.mark.parametrize(
    "scheme",
    [
        *DUPLEX,
        # (not mqtt: each end goes one way, connect publishes and listen subscribes; calls
        # through the broker are async_rpc_connect/async_rpc_listen's, not a channel's)
    ],
)
@pytest.mark.parametrize(("client", "server"), DIRECTIONS + ASYNC_DIRECTIONS)
def test_both_ways_on_one_connection(
    scheme: str, client: str, server: str, url_for: Callable[..., str], peers: list[Peer]
) -> None:
    echo = Peer(server, "echo", url_for(scheme))
    peers.append(echo)
    url = echo.report(30)["listening"]
    caller = Peer(client, "call", url, "--count", "1000", "--size", "30")
    peers.append(caller)
    assert caller.finish() == {"answered": 1000, "equal": True}
    assert echo.proc.wait(30 * UNIT) == 0  # the echo ends when the client closes


@pytest.mark.parametrize("child", ["py", "py-async", "node"])
def test_stdio_url_in_a_spawned_child(child: str) -> None:
    """``listen("stdio:")`` in a child is its own stdin and stdout, as ``stdio()`` gives them."""
    from bothways.transports import spawn

    values = [{"i": i, "s": "é" * (i % 50)} for i in range(2000)]
    with spawn(command(child, "echo", "stdio:")) as proc:

        def feed() -> None:  # while we read the answers: both pipes hold only 64 KiB
            proc.send_many(values)
            proc.close_stdin()

        feeder = threading.Thread(target=feed)
        feeder.start()
        assert list(proc) == values
        feeder.join(10)
    assert proc.returncode == 0
