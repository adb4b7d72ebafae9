"""tcp:// across the language boundary: a Python listener with Node clients and a Node listener
with Python clients (tests/fixtures/tcp_node_peer.mjs), with tokens, both ways."""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import signal
import subprocess
import threading
import time
from typing import Any

import pytest

from bothways import ConnectError, TransportClosed, async_connect, async_listen, connect, listen

from ..conftest import FIXTURES, ROOT, UNIT, require_tool

pytestmark = pytest.mark.timeout(30 * UNIT)

VALUES = [{"i": i, "text": "é€𝄞\u2028" * (i % 4), "big": 2**53 - 1, "t": 0.1 * i} for i in range(2000)]


class NodePeer:
    """A tcp_node_peer.mjs child: its status lines read, always killed and reaped."""

    def __init__(self, **spec: Any) -> None:
        self.proc = subprocess.Popen(
            [require_tool("node"), str(FIXTURES / "tcp_node_peer.mjs"), json.dumps(spec)],
            stdout=subprocess.PIPE,
            cwd=ROOT,
        )

    def status(self) -> Any:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, f"node ended without a status line (exit {self.proc.wait(5)})"
        return json.loads(line)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10 * UNIT)

    def __enter__(self) -> NodePeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def test_the_modules_export_the_same_names() -> None:
    from bothways.transports import tcp

    script = (
        "const m = await import('./js/src/transports/tcp.js');console.log(JSON.stringify(Object.keys(m)));"
    )
    out = subprocess.run(
        [require_tool("node"), "--input-type=module", "-e", script], cwd=ROOT, capture_output=True, check=True
    )

    def camel(name: str) -> str:
        head, *rest = name.split("_")
        return name if name.isupper() else head + "".join(part.title() for part in rest)

    python = {camel(n) for n in tcp.__all__ if not n.startswith(("async_", "Async"))}
    assert python == set(json.loads(out.stdout))


def take(channel: Any, count: int) -> list[Any]:
    got: list[Any] = []
    while len(got) < count:
        got.extend(channel.receive_many())
    return got


def test_python_listener_node_client_both_ways_with_a_token() -> None:
    with listen("tcp://127.0.0.1:0", token="s3cret") as server:
        with NodePeer(mode="echo-client", url=server.url, token="s3cret") as node:
            assert node.status() == {"ready": True}
            with server.accept() as conn:
                sender = threading.Thread(target=conn.send_many, args=(VALUES,))
                sender.start()
                assert take(conn, len(VALUES)) == VALUES  # Python -> Node -> Python
                sender.join()
            assert node.proc.wait(10 * UNIT) == 0  # we closed: its iteration ended cleanly


def test_python_asyncio_listener_node_client_merged() -> None:
    async def body() -> None:
        async with await async_listen("tcp://127.0.0.1:0", token="s3cret") as server:
            with NodePeer(mode="echo-client", url=server.url, token="s3cret") as node:
                loop = asyncio.get_running_loop()
                assert await loop.run_in_executor(None, node.status) == {"ready": True}
                for _ in range(1000):  # until the client is merged (a count: no event to wait on)
                    if server.peers:
                        break
                    await asyncio.sleep(0.01)
                await server.send_many(VALUES)  # a broadcast; the echoes come back merged
                got: list[Any] = []
                while len(got) < len(VALUES):
                    got.extend(await server.receive_many())
                assert got == VALUES

    asyncio.run(asyncio.wait_for(body(), 20 * UNIT))


def test_node_listener_python_clients_both_ways_with_a_token() -> None:
    with NodePeer(mode="echo-server", url="tcp://127.0.0.1:0", token="s3cret") as node:
        url = node.status()["url"]
        with connect(url, token="s3cret") as client:
            sender = threading.Thread(target=client.send_many, args=(VALUES,))
            sender.start()
            assert take(client, len(VALUES)) == VALUES  # Python -> Node -> Python
            sender.join()

        async def body() -> None:
            async with await async_connect(url, token="s3cret") as client:
                await client.send_many(VALUES[:100])
                got: list[Any] = []
                while len(got) < 100:
                    got.extend(await client.receive_many())
                assert got == VALUES[:100]

        asyncio.run(asyncio.wait_for(body(), 20 * UNIT))


def test_wrong_and_missing_tokens_across_languages() -> None:
    with listen("tcp://127.0.0.1:0", token="right", timeout=0.5) as server:
        with NodePeer(mode="echo-client", url=server.url, token="wrong") as node:
            status = node.status()
            assert status["error"] == "CONNECT_ERROR"
            assert status["message"] == f"{server.url}: refused by the server: wrong token"
            assert node.proc.wait(10 * UNIT) == 3
        # no token, and it sends nothing: refused when the hello's timeout ends, seen on receive
        with NodePeer(mode="echo-client", url=server.url) as node:
            assert node.status() == {"ready": True}
            status = node.status()
            assert status["error"] == "CONNECT_ERROR" and "token required" in status["message"]
    with NodePeer(mode="echo-server", url="tcp://127.0.0.1:0", token="right") as node:
        url = node.status()["url"]
        with pytest.raises(ConnectError, match="refused by the server: wrong token"):
            connect(url, token="wrong")
        with connect(url) as tokenless:
            tokenless.send("sneaky")
            with pytest.raises(ConnectError, match="token required"):
                tokenless.receive()


def test_a_killed_node_client_and_a_killed_node_server() -> None:
    with listen("tcp://127.0.0.1:0") as server:
        with NodePeer(mode="sender", url=server.url, count=100) as node:
            conn = server.accept()
            assert node.status() == {"sent": 100}
            assert take(conn, 100) == [{"i": i} for i in range(100)]
            node.kill()
            with pytest.raises(TransportClosed):
                conn.receive()
            conn.close()
    with NodePeer(mode="echo-server", url="tcp://127.0.0.1:0") as node:
        with connect(node.status()["url"]) as client:
            client.send(1)
            assert client.receive() == 1
            node.kill()
            with pytest.raises(TransportClosed):
                client.receive()


def test_python_client_reconnects_to_a_restarted_node_server() -> None:
    with NodePeer(mode="echo-server", url="tcp://127.0.0.1:0", token="t") as first:
        url = first.status()["url"]
        with connect(url, token="t", reconnect=True) as client:
            echoes: queue.Queue[Any] = queue.Queue()
            threading.Thread(target=lambda: [echoes.put(m) for m in client], daemon=True).start()
            client.send({"n": 0})
            assert echoes.get(timeout=5 * UNIT) == {"n": 0}
            first.kill()
            time.sleep(0.2)
            with NodePeer(mode="echo-server", url=url, token="t") as second:
                assert second.status()["url"] == url
                # Sent while the link is down or half-dead: sent again on the next one, with
                # what the first connection kept: at least once, in order.
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


def test_node_client_reconnects_to_a_restarted_python_server() -> None:
    """The mirror of the test above: a reconnecting Node client (tcp_resend_sender.mjs) sends
    {"n": 0..99}, 20 ms apart, into a Python listener that falls behind and is closed after 20
    messages, then opened again on the same port. What the first one had not read is sent again
    first on the next connection: every message arrives at least once, and close() resolves."""
    count = 100
    first = listen("tcp://127.0.0.1:0", token="t")
    url = first.url
    seen: list[int] = []

    def read(listener: Any, lag: float) -> None:
        for message in listener:
            seen.append(message["n"])
            time.sleep(lag)  # the first one falls behind: what it has not read when it closes is lost

    sender = subprocess.Popen(
        [
            require_tool("node"),
            str(FIXTURES / "tcp_resend_sender.mjs"),
            url + "?reconnect=1&token=t",
            str(count),
            "0.02",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        reader = threading.Thread(target=read, args=(first, 0.04), daemon=True)
        reader.start()
        deadline = time.monotonic() + 10 * UNIT
        while len(seen) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        first.close()
        reader.join(5 * UNIT)
        before = list(seen)
        time.sleep(0.3)
        with listen(url, token="t") as second:
            threading.Thread(target=read, args=(second, 0.0), daemon=True).start()
            out, _ = sender.communicate(timeout=20 * UNIT)
            deadline = time.monotonic() + 5 * UNIT
            while set(seen) != set(range(count)) and time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        first.close()
        if sender.poll() is None:
            sender.kill()
            sender.wait()
    status = json.loads(out)
    assert status["closed"] is True and status["reconnects"] >= 1, status
    assert 20 <= len(before) < count // 2, before  # the restart came in the middle
    assert sorted(set(seen)) == list(range(count)), sorted(set(range(count)) - set(seen))
    # everything kept (less than RESEND here) is sent again first, from the first message on
    assert seen[len(before)] == 0, seen[len(before) : len(before) + 5]


ONLY_SENDS = """
import { connect } from './js/src/channels.js';
const [url, how] = process.argv.slice(1);
const client = await connect(url);
await client.send({ sneaky: 1 });
let outcome = { error: null };
try {
  if (how === 'close') {
    await client.close();
  } else {
    for (let i = 0; i < 2000; i++) {  // until the refusal has come back (a round trip)
      await (how === 'send' ? client.send(2) : client.sendMany([3, 4]));
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }
} catch (error) {
  outcome = { error: error.code, message: error.message };
}
await client.close();
console.log(JSON.stringify(outcome));
"""


@pytest.mark.parametrize("how", ["send", "send_many", "close"])
def test_a_tokenless_python_client_that_only_sends_learns_a_node_servers_refusal(how: str) -> None:
    with NodePeer(mode="echo-server", url="tcp://127.0.0.1:0", token="right") as node:
        url = node.status()["url"]
        client = connect(url)
        client.send({"sneaky": 1})
        with pytest.raises(ConnectError, match="refused by the server: token required") as info:
            if how == "close":
                client.close()
            for _ in range(2000):  # until the refusal has come back (a round trip)
                client.send(2) if how == "send" else client.send_many([3, 4])
                time.sleep(0.005)
        assert "nothing sent on this connection was delivered" in str(info.value)
        client.close()  # said once


@pytest.mark.parametrize("how", ["send", "sendMany", "close"])
def test_a_tokenless_node_client_that_only_sends_learns_a_python_servers_refusal(how: str) -> None:
    with listen("tcp://127.0.0.1:0", token="right") as server:
        out = subprocess.run(
            [require_tool("node"), "--input-type=module", "-e", ONLY_SENDS, server.url, how],
            cwd=ROOT,
            capture_output=True,
            timeout=30 * UNIT,
            check=True,
        )
        outcome = json.loads(out.stdout)
        assert outcome["error"] == "CONNECT_ERROR", outcome
        assert "refused by the server: token required" in outcome["message"]
        with connect(server.url, token="right") as good:  # nothing of the tokenless one arrived
            good.send("ok")
            assert server.receive_many() == ["ok"]
