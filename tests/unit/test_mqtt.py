"""mqtt:// channels: the sans-I/O plan, and both flavours against a real Mosquitto of the test's
own (tests/broker.py): round trips, wildcards, shared subscriptions, persistent sessions, broker
restarts, refusals and bad payloads."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import bothways
from bothways import (
    CallTimeout,
    ConnectError,
    DecodeError,
    FrameTooLarge,
    RemoteError,
    TransportError,
    UrlError,
)
from bothways.peer import Peer
from bothways.transports.mqtt import RpcRoutes, async_rpc_connect, async_rpc_listen, payload_value, plan
from bothways.urls import parse

from ..broker import Broker, free_port
from ..conftest import UNIT


@pytest.fixture
def broker(tmp_path: Path) -> Any:
    with Broker(tmp_path / "broker") as b:
        yield b


def take(channel: Any, count: int, timeout: float = 10.0) -> list[Any]:
    """``count`` messages from a blocking channel (in a thread, so that a shortfall fails)."""
    got: list[Any] = []

    def read() -> None:
        while len(got) < count:
            got.extend(channel.receive_many())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout * UNIT)
    return got


# The plan (no I/O)


def test_plan_of_each_end() -> None:
    address = parse("mqtt://127.0.0.1:1883/sensors/kitchen?qos=2")
    out = plan(address, "connect", nonce="n1", **address.params_for("connect"))
    assert (out.publish, out.subscribe, out.qos, out.client_id, out.clean, out.session) == (
        "sensors/kitchen",
        None,
        2,
        "bothways-connect-n1",
        True,
        0,
    )
    shared = parse("mqtt://h:1/sensors/#?client_id=ingest&share=g")
    inbox = plan(shared, "listen", nonce="x", **shared.params_for("listen"))
    assert (inbox.subscribe, inbox.client_id, inbox.clean, inbox.session) == (
        "$share/g/sensors/#",
        "ingest",
        False,
        86400,
    )
    ws = plan(parse("mqtt+wss://h/t?ws_path=/x"), "listen", nonce="x", ws_path="/x")
    assert (ws.transport, ws.tls, ws.ws_path, ws.port) == ("websockets", True, "/x", 443)
    forced = plan(parse("mqtt://h:1/t"), "listen", nonce="x", client_id="c", clean=True)
    assert (forced.clean, forced.session) == (True, 0)


@pytest.mark.parametrize("topic", ["sensors/#", "a/+/b", "$share/g/a"])
def test_publishing_to_a_filter_is_refused(topic: str) -> None:
    with pytest.raises(UrlError, match="a topic to publish to has no wildcards"):
        plan(parse(f"mqtt://h:1/{topic}"), "connect", nonce="x")


def test_share_twice_is_refused() -> None:
    with pytest.raises(UrlError, match=r"share= and a \$share/ topic"):
        plan(parse("mqtt://h:1/$share/g/a"), "listen", nonce="x", share="g")


def test_payload_value() -> None:
    assert payload_value(b'{"a": 1}', 1, 100) == {"a": 1}
    with pytest.raises(DecodeError) as info:
        payload_value(b"[1,]", 7, 100)
    assert (info.value.line, info.value.column, info.value.reason) == (7, 3, "trailing comma before ']'")
    with pytest.raises(FrameTooLarge, match=r"longer than the limit of 3 bytes \(dropped\)"):
        payload_value(b"1234", 2, 3)


# Against a broker


@pytest.mark.parametrize("scheme", ["mqtt", "mqtt+ws"])
def test_round_trip_in_order(broker: Broker, scheme: str) -> None:
    with bothways.listen(broker.url("sensors/#", scheme)) as inbox:
        with bothways.connect(broker.url("sensors/kitchen", scheme)) as out:
            out.send({"celsius": 21.5})
            out.send_many(range(2000))
            out.send_many([])
        got = take(inbox, 2001)
    assert got == [{"celsius": 21.5}, *range(2000)]


def test_closed_channels_leave_no_descriptor_open(broker: Broker) -> None:
    """Every descriptor a channel opened is closed by close(), not later by the collector."""

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    gc.disable()  # (what close() leaves behind must not be tidied up by a collection meanwhile)
    try:
        with bothways.listen(broker.url("fds")), bothways.connect(broker.url("fds")):
            pass  # (the first channels import and set up what every later one shares)
        before = open_fds()
        for _ in range(5):
            with bothways.listen(broker.url("fds")) as inbox, bothways.connect(broker.url("fds")) as out:
                out.send(1)
                assert inbox.receive() == 1
        assert open_fds() == before
    finally:
        gc.enable()


def test_each_end_does_its_own_job(broker: Broker) -> None:
    with bothways.listen(broker.url("t")) as inbox, bothways.connect(broker.url("t")) as out:
        with pytest.raises(TransportError, match="the publishing end only sends"):
            out.receive()
        with pytest.raises(TransportError, match="the subscribing end only receives"):
            inbox.send(1)


def test_a_shared_subscription_splits_the_messages(broker: Broker) -> None:
    listeners = [bothways.listen(broker.url("jobs") + "?share=workers") for _ in range(2)]
    try:
        with bothways.connect(broker.url("jobs")) as out:
            out.send_many(range(400))
        seen: list[list[Any]] = [[], []]
        deadline = time.monotonic() + 10 * UNIT
        while sum(map(len, seen)) < 400 and time.monotonic() < deadline:
            for index, listener in enumerate(listeners):
                seen[index].extend(listener._client.take(block=False))  # type: ignore[attr-defined]
            time.sleep(0.01)
    finally:
        for listener in listeners:
            listener.close()
    assert sorted(seen[0] + seen[1]) == list(range(400))  # each once
    assert seen[0] and seen[1]  # both had a share


def test_a_persistent_listener_gets_what_it_missed(broker: Broker) -> None:
    url = broker.url("readings") + "?client_id=ingest-1"
    bothways.listen(url).close()  # the session, and its subscription, stay with the broker
    with bothways.connect(broker.url("readings")) as out:
        out.send_many({"seq": n} for n in range(50))
    with bothways.listen(url) as again:
        assert take(again, 50) == [{"seq": n} for n in range(50)]


def test_both_ends_come_back_after_a_broker_restart(broker: Broker) -> None:
    with bothways.listen(broker.url("r") + "?client_id=keeper") as inbox:
        with bothways.connect(broker.url("r") + "?timeout=20") as out:
            out.send(1)
            assert take(inbox, 1) == [1]
            broker.stop()
            broker.start()
            out.send(2)  # waits for the broker, then for its acknowledgement
            assert take(inbox, 1, timeout=20) == [2]


def test_an_unreachable_broker_is_a_connect_error() -> None:
    url = f"mqtt://127.0.0.1:{free_port()}/t"
    started = time.monotonic()
    with pytest.raises(ConnectError, match="cannot reach the broker"):
        bothways.connect(url)
    assert time.monotonic() - started < 5


def test_a_refused_login_is_a_connect_error(tmp_path: Path) -> None:
    with Broker(tmp_path / "b", users={"ann": "right"}) as broker:
        with pytest.raises(ConnectError, match="refused by the broker: Not authorized|Bad user name"):
            bothways.listen(broker.url("t"), username="ann", password="wrong")
        with bothways.listen(broker.url("t"), username="ann", password="right") as inbox:
            with bothways.connect(broker.url("t"), username="ann", password="right") as out:
                out.send("in")
            assert take(inbox, 1) == ["in"]


def test_bad_payloads_go_to_on_error_with_their_number(broker: Broker) -> None:
    errors: list[DecodeError] = []
    with bothways.listen(broker.url("raw"), on_error=errors.append) as inbox:
        import paho.mqtt.publish as publish

        for payload in (b"1", b"{oops", b"3"):
            publish.single("raw", payload, qos=1, hostname="127.0.0.1", port=broker.port)
        assert take(inbox, 2) == [1, 3]
    assert [(e.line, e.column, e.reason) for e in errors] == [(2, 2, "expected a string key")]


def test_asyncio_flavour(broker: Broker) -> None:
    async def body() -> list[Any]:
        async with await bothways.async_listen(broker.url("a/#")) as inbox:
            async with await bothways.async_connect(broker.url("a/b")) as out:
                await out.send_many(range(100))
                await out.send("end")
            got: list[Any] = []
            while len(got) < 101:
                got += await asyncio.wait_for(inbox.receive_many(), 10 * UNIT)  # type: ignore[attr-defined]
            return got

    assert asyncio.run(body()) == [*range(100), "end"]


# Calls through the broker


def test_rpc_routes_renumber_and_route_back() -> None:
    routes = RpcRoutes()
    a = routes.incoming({"jsonrpc": "2.0", "id": 1, "method": "f", "params": []}, "r/a", b"1")
    b = routes.incoming({"jsonrpc": "2.0", "id": 1, "method": "f", "params": []}, "r/b", b"1")
    assert (a["id"], b["id"]) == (1, 2)  # two callers' id 1 no longer meet
    cancel = routes.incoming(
        {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 1}}, "r/b", None
    )
    assert cancel["params"] == {"id": 2}
    assert routes.incoming({"jsonrpc": "2.0", "method": "note"}, "r/a", None) == {
        "jsonrpc": "2.0",
        "method": "note",
    }
    assert routes.outgoing({"jsonrpc": "2.0", "id": 2, "result": "B"}) == [
        ("r/b", b"1", {"jsonrpc": "2.0", "id": 1, "result": "B"})
    ]
    assert routes.outgoing(
        [{"jsonrpc": "2.0", "id": 1, "result": "A"}, {"jsonrpc": "2.0", "id": 9, "result": 0}]
    ) == [("r/a", b"1", {"jsonrpc": "2.0", "id": 1, "result": "A"})]
    assert routes.pending == 0
    assert routes.outgoing({"jsonrpc": "2.0", "id": 1, "result": "again"}) == []  # answered once
    # a cancel of a call this server does not hold (another server of the group may): dropped
    assert (
        routes.incoming({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 7}}, "r/a", None)
        is None
    )
    # any JSON id, even one JSON-RPC frowns on, is routed back as it came
    odd = routes.incoming({"jsonrpc": "2.0", "id": [1, {"a": 2}], "method": "f"}, "r/c", None)
    assert routes.outgoing({"jsonrpc": "2.0", "id": odd["id"], "result": 0}) == [
        ("r/c", None, {"jsonrpc": "2.0", "id": [1, {"a": 2}], "result": 0})
    ]


def test_calls_through_the_broker_shared_by_two_servers(broker: Broker) -> None:
    async def body() -> tuple[list[Any], list[str], str]:
        served: list[str] = []

        def server_peer(name: str) -> Any:
            async def who(x: int) -> str:
                served.append(name)
                await asyncio.sleep(0.001)
                return f"{name}:{x * 2}"

            return who

        servers = []
        for name in ("s1", "s2"):
            peer = Peer(await async_rpc_listen(broker.url("services/double") + "?share=double"))
            peer.expose(server_peer(name), name="double")
            servers.append(await peer.start())
        async with Peer(await async_rpc_connect(broker.url("services/double"))) as caller:
            results = await asyncio.wait_for(
                asyncio.gather(*(caller.call("double", i) for i in range(200))), 20 * UNIT
            )
            with pytest.raises(RemoteError) as info:
                await asyncio.wait_for(caller.call("nope"), 10 * UNIT)
        for peer in servers:
            await peer.close()
        return list(results), served, str(info.value)

    results, served, error = asyncio.run(body())
    assert [int(r.split(":")[1]) for r in results] == [2 * i for i in range(200)]
    assert len(served) == 200 and set(served) == {"s1", "s2"}  # each call once, both served
    assert "nope" in error


def test_a_server_killed_mid_call_times_the_call_out(broker: Broker, tmp_path: Path) -> None:
    """The server process dies while it holds a call: the caller gets CallTimeout, never hangs;
    a server started again answers the next call."""
    code = (
        "import asyncio, sys\n"
        "from bothways.peer import Peer\n"
        "from bothways.transports.mqtt import async_rpc_listen\n"
        "async def main():\n"
        "    peer = Peer(await async_rpc_listen(sys.argv[1]))\n"
        "    async def slow(x):\n"
        "        print('got', x, flush=True)\n"
        "        await asyncio.sleep(60)\n"
        "    async def quick(x):\n"
        "        return x + 1\n"
        "    peer.expose(slow); peer.expose(quick)\n"
        "    print('ready', flush=True)\n"
        "    await peer.run()\n"
        "asyncio.run(main())\n"
    )
    url = broker.url("services/slow")

    def server() -> subprocess.Popen[str]:
        process = subprocess.Popen([sys.executable, "-c", code, url], stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        return process

    first = server()

    async def body() -> Any:
        async with Peer(await async_rpc_connect(url, call_timeout=2 * UNIT)) as caller:
            slow = caller.call("slow", 1)
            assert first.stdout is not None
            await asyncio.get_running_loop().run_in_executor(None, first.stdout.readline)  # "got 1"
            first.kill()
            first.wait()
            first.stdout.close()
            started = time.monotonic()
            with pytest.raises(CallTimeout):
                await slow
            waited = time.monotonic() - started
            second = server()
            try:
                return waited, await caller.call("quick", 41, timeout=10 * UNIT)
            finally:
                second.kill()
                second.wait()
                assert second.stdout is not None
                second.stdout.close()

    waited, answer = asyncio.run(body())
    assert waited < 5 * UNIT and answer == 42


def test_receive_takes_one_and_keeps_the_rest(broker: Broker) -> None:
    with bothways.listen(broker.url("one")) as inbox:
        with bothways.connect(broker.url("one")) as out:
            out.send_many(range(10))
        time.sleep(0.3)  # all ten arrived: one batch
        assert [inbox.receive() for _ in range(3)] == [0, 1, 2]
        assert take(inbox, 7) == [3, 4, 5, 6, 7, 8, 9]
