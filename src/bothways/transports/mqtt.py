"""``mqtt://`` channels: a topic on an MQTT broker, through paho-mqtt 2 (js/src/transports/mqtt.js
does the same with mqtt.js; both take their decisions from ``plan`` and ``payload_value`` here,
mirrored name for name as ``plan`` and ``payloadValue`` there).

URLs (spec/PROTOCOL.md §7): ``mqtt://host:port/topic/levels``; ``mqtts:`` for TLS;
``mqtt+ws:``/``mqtt+wss:`` through the broker's WebSocket listener (``ws_path``, default
``/mqtt``). Options: ``qos`` (0, 1 or 2; default 1), ``client_id``, ``clean``, ``session``
(seconds), ``share`` (listen), ``protocol`` (``5``, the default, or ``3.1.1``), ``keepalive``
(seconds, default 60), ``timeout`` (seconds, default 10), ``max_line``; as keywords also
``username``, ``password`` (never in the URL) and ``tls`` (an ``ssl.SSLContext``).

Behaviour
---------
- ``connect(url)`` is the publishing end: ``send`` publishes one message per PUBLISH, its JSON
  text without the newline, to the topic (which may not hold a wildcard), at ``qos``, and returns
  once the broker has it (its acknowledgement at QoS 1 and 2; written, at 0). ``send_many``
  publishes them all, then waits once. ``receive`` raises TransportError.
- ``listen(url)`` is the subscribing end: it subscribes to the topic filter (``+`` and ``#``
  allowed; ``share=group`` subscribes ``$share/group/<topic>``, so that the group's listeners,
  in any process on any machine, split the messages: each goes to one of them) and delivers each
  payload decoded by the wire core. A payload that is not one JSON text goes to ``on_error`` as a
  DecodeError whose ``line`` is its number among the messages received (like a ws frame).
  Iteration ends at ``close()``. ``send`` raises TransportError.
- Sessions: with a ``client_id`` the session is persistent (clean start off, kept ``session``
  seconds by the broker, default a day), so a listener that was away gets, when it comes back,
  what was published to its subscription meanwhile (QoS 1 and 2). Without one, each channel gets
  a fresh random id and a clean session. ``clean=1`` forces a clean start.
- Reconnect is automatic (paho's delay: 1 s doubling to 5 s), and every connection subscribes
  again; a send while the broker is away waits for it (``timeout`` s at most, then
  TransportClosed).
- An unreachable broker, or one that refuses the login: ConnectError naming the URL (and the
  broker's reason), from ``connect``/``listen``, within ``timeout``.
- ``close()`` disconnects. A publisher's sends were all acknowledged already (each ``send``
  waited), so nothing it sent can be lost by closing.
The asyncio flavour runs the same client (paho's network thread) and awaits its answers: a thin
adapter over the blocking channel.

Calls through the broker (MQTT 5)
---------------------------------
``async_rpc_listen(url)`` and ``async_rpc_connect(url)`` give the two ends of a Peer on a service
topic: ``Peer(await async_rpc_listen("mqtt://broker:1883/services/stats?share=stats"))`` serves
functions; ``Peer(await async_rpc_connect("mqtt://broker:1883/services/stats"))`` calls them, from
any machine that reaches the broker (js/src/transports/mqtt.js has both too). A caller publishes
each request to the service topic with its own reply topic (``bothways/replies/<client id>``)
as the Response Topic and the request's id as Correlation Data; a server answers there. Servers
on the same ``share`` group split the calls, each call to one of them. A server renumbers the
requests it hands its Peer (callers number theirs alike) and puts each answer's id back
(``RpcRoutes``, sans-I/O); a cancel follows its request. Calls go one way, caller to server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from ..errors import ConnectError, DecodeError, FrameTooLarge, TransportClosed, TransportError, UrlError
from ..urls import MQTT, Address
from ..wire import MAX_LINE, decode, encode
from .base import AsyncListener, ErrorHandler, Listener, log_error

__all__ = [
    "AsyncMqttChannel",
    "MqttChannel",
    "Plan",
    "async_connect",
    "async_listen",
    "connect",
    "listen",
    "payload_value",
    "plan",
    "RpcRoutes",
    "async_rpc_connect",
    "async_rpc_listen",
]

TIMEOUT = 10.0
"""Default seconds to reach the broker, and for a send to be acknowledged."""
SESSION = 86400
"""Seconds a broker keeps a persistent session (one with a ``client_id``) by default."""
WS_PATH = "/mqtt"
MAX_INFLIGHT = 1000
"""QoS 1 and 2 messages sent and not acknowledged yet, at most (the broker may allow fewer)."""


# --------------------------------------------------------------------------------------------
# Sans-I/O: what a URL asks of the broker, and what a payload delivers


@dataclass(frozen=True)
class Plan:
    """What one end of an mqtt URL asks of the broker (from ``plan``; no I/O)."""

    url: str
    host: str
    port: int
    transport: str  # "tcp" or "websockets"
    tls: bool
    ws_path: str
    client_id: str
    clean: bool
    session: int  # seconds the broker keeps the session after we leave (MQTT 5)
    protocol: str  # "5" or "3.1.1"
    qos: int
    keepalive: int
    timeout: float
    publish: str | None  # the topic ``send`` publishes to (connect)
    subscribe: str | None  # the filter the channel subscribes to (listen)


def plan(address: Address, side: str, *, nonce: str, **options: Any) -> Plan:
    """The Plan of ``address`` for one end, ``"connect"`` or ``"listen"``; ``nonce`` makes the
    random client id of a channel without ``client_id``. Raises UrlError for a topic that end
    cannot use (a wildcard to publish to, ``share`` with a ``$share/`` topic)."""
    if address.scheme not in MQTT or address.host is None or address.port is None:
        raise UrlError(f"not an mqtt URL: {address.url}", url=address.url)
    topic = address.path
    share = options.get("share")
    if side == "connect":
        if topic.startswith("$share/") or any(level in ("+", "#") for level in topic.split("/")):
            raise UrlError(f"a topic to publish to has no wildcards, got {topic!r}", url=address.url)
        publish, subscribe = topic, None
    else:
        if share is not None and topic.startswith("$share/"):
            raise UrlError("share= and a $share/ topic: give one of them", url=address.url)
        publish, subscribe = None, (f"$share/{share}/{topic}" if share is not None else topic)
    given = options.get("client_id")
    clean = bool(options.get("clean", given is None))
    return Plan(
        url=address.url,
        host=address.host,
        port=address.port,
        transport="websockets" if address.scheme.startswith("mqtt+ws") else "tcp",
        tls=address.scheme in ("mqtts", "mqtt+wss"),
        ws_path=options.get("ws_path", WS_PATH),
        client_id=given if given is not None else f"bothways-{side}-{nonce}",
        clean=clean,
        session=int(options.get("session", 0 if clean else SESSION)),
        protocol=options.get("protocol", "5"),
        qos=int(options.get("qos", 1)),
        keepalive=int(options.get("keepalive", 60)),
        timeout=float(options.get("timeout", TIMEOUT)),
        publish=publish,
        subscribe=subscribe,
    )


def payload_value(payload: bytes, number: int, max_line: int) -> Any:
    """The message one PUBLISH payload delivers; raises DecodeError (``line`` = ``number``, the
    message's number among those received) when it is not one JSON text or is too long."""
    if len(payload) > max_line:
        reason = f"message is longer than the limit of {max_line} bytes (dropped)"
        raise FrameTooLarge(line=number, limit=max_line, reason=reason)
    try:
        return decode(payload)
    except DecodeError as exc:
        raise DecodeError(exc.reason, line=number, column=exc.column, excerpt=exc.excerpt) from None


_NO_CONN = 4  # paho's MQTT_ERR_NO_CONN: the broker is away (QoS 1, 2: kept, sent on reconnecting)
CALL_TIMEOUT = 30.0
"""Seconds a call through the broker waits for its answer by default."""
REPLIES = "bothways/replies/"
"""The prefix of a caller's reply topic: ``bothways/replies/<client id>``."""
CANCEL = "$/cancelRequest"


class RpcRoutes:
    """A call server's routes (sans-I/O): each request from a caller is given an id of our own
    before the Peer sees it, so that equal ids from two callers cannot meet; an answer goes back
    to its caller's reply topic with the caller's id and correlation data."""

    def __init__(self) -> None:
        self._next = 0
        self._routes: dict[int, tuple[Any, str, bytes | None]] = {}  # our id -> theirs, where
        self._ours: dict[tuple[str, bytes], int] = {}  # (reply topic, their id's JSON) -> our id

    def incoming(self, message: Any, reply_to: str | None, correlation: bytes | None) -> Any:
        """The message the Peer gets for one that arrived with this reply topic (None: none,
        for a cancel of a call this server does not hold: on a shared subscription another
        server may hold it)."""
        if isinstance(message, list):
            kept = [self.incoming(m, reply_to, correlation) for m in message]
            return [m for m in kept if m is not None]
        if not isinstance(message, dict) or reply_to is None:
            return message
        if "method" in message and "id" in message:  # a request
            self._next += 1
            ours = self._next
            self._routes[ours] = (message["id"], reply_to, correlation)
            self._ours[(reply_to, encode(message["id"]))] = ours
            return {**message, "id": ours}
        if message.get("method") == CANCEL:
            params = message.get("params")
            theirs = params.get("id") if isinstance(params, dict) else None
            ours_or_none = self._ours.get((reply_to, encode(theirs)))
            if ours_or_none is None:
                return None
            return {**message, "params": {**params, "id": ours_or_none}}  # type: ignore[dict-item]
        return message

    def outgoing(self, message: Any) -> list[tuple[str, bytes | None, Any]]:
        """Where an answer of the Peer goes: [(reply topic, correlation, the caller's message)];
        [] for what answers nothing we routed (it has nowhere to go)."""
        if isinstance(message, list):
            return [route for m in message for route in self.outgoing(m)]
        if not isinstance(message, dict) or "method" in message or message.get("id") not in self._routes:
            return []
        theirs, reply_to, correlation = self._routes.pop(message["id"])
        self._ours.pop((reply_to, encode(theirs)), None)
        return [(reply_to, correlation, {**message, "id": theirs})]

    @property
    def pending(self) -> int:
        return len(self._routes)


# --------------------------------------------------------------------------------------------
# The client (paho-mqtt's, its network thread), shared by both flavours


class _Client:
    """One paho client: connected (or refused) in ``open``, subscribed again on every
    connection, its acknowledgements and messages handed over under one condition."""

    def __init__(
        self,
        plan: Plan,
        *,
        max_line: int,
        on_error: ErrorHandler,
        username: str | None,
        password: str | None,
        tls: ssl.SSLContext | None,
    ) -> None:
        try:
            import paho.mqtt.client as paho
            from paho.mqtt.enums import CallbackAPIVersion
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties
        except ImportError:
            raise TransportError("mqtt:// needs paho-mqtt: pip install 'bothways[mqtt]'") from None
        self.plan = plan
        self.max_line = max_line
        self.on_error = on_error
        self.cond = threading.Condition()
        self.messages: deque[Any] = deque()
        self.count = 0  # messages received (numbers the bad ones)
        self.unacked: set[int] = set()  # message ids published, not yet acknowledged
        self.acked: set[int] = set()  # acknowledged before publish() could note them
        self.connected = False
        self.refused: str | None = None  # the broker's reason when it refused us (or our subscription)
        self.rejected: dict[int, str] = {}  # message id -> why the broker refused that message
        self.closed = False
        self.notify: Any = None  # called (in paho's thread) after messages arrive: asyncio's wake-up
        self.with_reply = False  # keep each message's Response Topic and Correlation Data (calls)
        v5 = plan.protocol == "5"
        self._properties = Properties
        self._publish_type = PacketTypes.PUBLISH
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=plan.client_id,
            clean_session=None if v5 else plan.clean,
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
            transport=plan.transport,  # type: ignore[arg-type]
        )
        if plan.transport == "websockets":
            self.client.ws_set_options(path=plan.ws_path)
        if plan.tls or tls is not None:
            self.client.tls_set_context(tls or ssl.create_default_context())
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(min_delay=1, max_delay=5)
        self.client.max_inflight_messages_set(MAX_INFLIGHT)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.properties = None
        if v5:
            self.properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            self.properties.SessionExpiryInterval = plan.session
        self.v5 = v5

    def open(self) -> None:
        """Connects (ConnectError: unreachable, refused, no answer in ``timeout``) and starts
        the network thread, which reconnects by itself from then on."""
        plan = self.plan
        self.client.connect_timeout = plan.timeout
        try:
            if self.v5:
                self.client.connect(
                    plan.host,
                    plan.port,
                    keepalive=plan.keepalive,
                    clean_start=plan.clean,
                    properties=self.properties,
                )
            else:
                self.client.connect(plan.host, plan.port, keepalive=plan.keepalive)
        except (OSError, ValueError) as exc:
            raise ConnectError(
                f"cannot reach the broker at {plan.host}:{plan.port}: {exc}", url=plan.url
            ) from None
        self.client.loop_start()
        deadline = time.monotonic() + plan.timeout
        with self.cond:
            while not self.connected and self.refused is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(min(left, 0.05))
        if not self.connected:
            self.client.loop_stop()
            self.client.disconnect()
            why = (
                f"refused by the broker: {self.refused}"
                if self.refused
                else (f"no answer from the broker at {plan.host}:{plan.port} within {plan.timeout:g} s")
            )
            raise ConnectError(why, url=plan.url)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        _no_delay(client)
        if reason.is_failure:
            with self.cond:
                self.refused = str(reason)
                self.cond.notify_all()
            client.disconnect()  # a refusal is not retried: receive and send raise it
            if self.notify is not None:
                self.notify()
            return
        if self.plan.subscribe is not None:  # (again on each connection): connected once subscribed
            client.subscribe(self.plan.subscribe, qos=self.plan.qos)
            return
        with self.cond:
            self.connected = True
            self.cond.notify_all()

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any, properties: Any) -> None:
        failed = [str(reason) for reason in reasons if reason.is_failure]
        with self.cond:
            if failed:
                self.refused = f"{failed[0]} (subscribing to {self.plan.subscribe})"
            else:
                self.connected = True
            self.cond.notify_all()
        if failed:
            client.disconnect()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        with self.cond:
            self.connected = False
            self.cond.notify_all()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        with self.cond:
            if reason.is_failure:
                self.rejected[mid] = str(reason)
            if mid in self.unacked:
                self.unacked.discard(mid)
            elif self.plan.publish is not None:
                self.acked.add(mid)  # before publish() noted it (QoS 0: on the write)
            self.cond.notify_all()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self.cond:
            self.count += 1
            number = self.count
        try:
            value = payload_value(message.payload, number, self.max_line)
        except DecodeError as error:
            try:
                self.on_error(error)
            except Exception as raised:  # noqa: BLE001 - on_error's verdict: raised from receive
                value = _Raised(raised)
            else:
                return
        if self.with_reply and not isinstance(value, _Raised):
            props = getattr(message, "properties", None)
            value = (value, getattr(props, "ResponseTopic", None), getattr(props, "CorrelationData", None))
        with self.cond:
            self.messages.append(value)
            self.cond.notify_all()
        if self.notify is not None:
            self.notify()

    def publish(self, payloads: list[bytes]) -> None:
        """Publishes in order to the plan's topic; returns once all are acknowledged
        (TransportClosed: not within ``timeout``, or closed)."""
        deadline = time.monotonic() + self.plan.timeout
        mids = []
        with self.cond:
            while not self.connected and not self.closed and time.monotonic() < deadline:
                self.cond.wait(min(deadline - time.monotonic(), 0.05))
        for payload in payloads:
            info = self.client.publish(self.plan.publish or "", payload, qos=self.plan.qos)
            with self.cond:  # (the acknowledgement may have come already: then it is in acked)
                if info.rc == _NO_CONN and self.plan.qos == 0:
                    raise TransportClosed(f"{self.plan.url}: the broker is away (QoS 0: not sent)")
                if info.rc not in (0, _NO_CONN):  # (QoS 1, 2 and no connection: paho keeps it)
                    raise TransportError(f"{self.plan.url}: cannot publish: {info.rc}")
                if info.mid not in self.acked:
                    self.unacked.add(info.mid)
                self.acked.discard(info.mid)
                mids.append(info.mid)
        with self.cond:
            while any(mid in self.unacked for mid in mids):
                if self.refused is not None:
                    raise self.refusal()
                left = deadline - time.monotonic()
                if self.closed or left <= 0:
                    waiting = sum(mid in self.unacked for mid in mids)
                    raise TransportClosed(
                        f"{self.plan.url}: the broker did not acknowledge {waiting} of {len(mids)} "
                        f"messages within {self.plan.timeout:g} s; they may be lost"
                    )
                self.cond.wait(min(left, 0.05))
            why = next((self.rejected.pop(mid) for mid in mids if mid in self.rejected), None)
        if why is not None:
            raise TransportError(f"{self.plan.url}: the broker refused a message: {why}")

    def refusal(self) -> ConnectError:
        """The error of a channel the broker refused while reconnecting: it has ended."""
        return ConnectError(f"refused by the broker: {self.refused}", url=self.plan.url)

    def publish_nowait(
        self, payload: bytes, topic: str, response_topic: str | None, correlation: bytes | None
    ) -> None:
        """Publishes one message with a Response Topic and Correlation Data (calls), without
        waiting: paho queues it while the broker is away and sends it in order."""
        if self.closed:
            raise TransportClosed(f"{self.plan.url}: the channel is closed")
        properties = self._properties(self._publish_type)  # type: ignore[no-untyped-call]
        if response_topic is not None:
            properties.ResponseTopic = response_topic
        if correlation is not None:
            properties.CorrelationData = correlation
        self.client.publish(topic, payload, qos=self.plan.qos, properties=properties)

    def take(self, block: bool) -> list[Any]:
        """The messages received so far (waiting for one when ``block``); TransportClosed after
        close()."""
        with self.cond:
            while not self.messages:
                if self.closed:
                    raise TransportClosed(f"{self.plan.url}: the channel is closed")
                if self.refused is not None:
                    raise self.refusal()
                if not block:
                    return []
                self.cond.wait()
            values = list(self.messages)
            self.messages.clear()
        for index, value in enumerate(values):
            if isinstance(value, _Raised):
                with self.cond:
                    self.messages.extendleft(reversed(values[index + 1 :]))
                if index:
                    return values[:index]
                raise value.error
        return values

    def close(self) -> None:
        with self.cond:
            if self.closed:
                return
            self.closed = True
            self.cond.notify_all()
        self.client.disconnect()
        self.client.loop_stop()
        # paho closes the socket pair that wakes its network thread only when the client is
        # collected, and our callbacks make a cycle of it: without this, two descriptors stay
        # open per closed channel until the next garbage collection (the soak saw them pile up).
        reset = getattr(self.client, "_reset_sockets", None)
        if reset is not None:
            reset(sockpair_only=True)
        if self.notify is not None:
            self.notify()


def _no_delay(client: Any) -> None:
    """TCP_NODELAY on the client's socket: an MQTT exchange is small packets answered at once,
    which Nagle's algorithm and delayed ACKs would hold back 40 ms each."""
    sock = client.socket()
    with contextlib.suppress(AttributeError, OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Raised:
    """An error that ``on_error`` raised for a payload, waiting for its turn among the messages."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _open(
    address: Address,
    side: str,
    *,
    max_line: int,
    on_error: ErrorHandler | None,
    username: str | None,
    password: str | None,
    tls: ssl.SSLContext | None,
    options: dict[str, Any],
    subscribe_replies: bool = False,
    with_reply: bool = False,
) -> _Client:
    if max_line < 1:
        raise ValueError(f"max_line must be >= 1, not {max_line!r}")
    the_plan = plan(address, side, nonce=os.urandom(6).hex(), **options)
    if subscribe_replies:  # a caller: publishes to the service topic, reads its reply topic
        the_plan = replace(the_plan, subscribe=REPLIES + the_plan.client_id)
    client = _Client(
        the_plan,
        max_line=max_line,
        on_error=on_error or log_error,
        username=username,
        password=password,
        tls=tls,
    )
    client.with_reply = with_reply  # (before connecting: a session may deliver at once)
    client.open()
    return client


def _open_with(address: Address, side: str, options: dict[str, Any], **how: bool) -> _Client:
    """``_open`` with the keywords of ``connect``/``listen`` taken out of ``options``."""
    own = {k: options.pop(k) for k in ("max_line", "on_error", "username", "password", "tls") if k in options}
    return _open(
        address,
        side,
        max_line=own.get("max_line", MAX_LINE),
        on_error=own.get("on_error"),
        username=own.get("username"),
        password=own.get("password"),
        tls=own.get("tls"),
        options=options,
        **how,
    )


# --------------------------------------------------------------------------------------------
# Blocking


class MqttChannel(Listener):
    """Either end of an mqtt URL: publishing (``connect``) or subscribing (``listen``)."""

    def __init__(self, client: _Client) -> None:
        self._client = client
        self.url = client.plan.url
        self._ready: deque[Any] = deque()  # received, not handed out yet (receive takes one)

    @property
    def client_id(self) -> str:
        return self._client.plan.client_id

    def send(self, value: Any) -> None:
        self.send_many([value])

    def send_many(self, values: Iterable[Any]) -> None:
        """Publishes each value (one PUBLISH each); returns once the broker has them all."""
        if self._client.plan.publish is None:
            raise TransportError(f"{self.url}: the subscribing end only receives (connect() to publish)")
        if self._client.closed:
            raise TransportClosed(f"{self.url}: the channel is closed")
        payloads = [encode(value)[:-1] for value in values]
        if payloads:
            self._client.publish(payloads)

    def receive(self) -> Any:
        if not self._ready:
            self._ready.extend(self.receive_many())
        return self._ready.popleft()

    def receive_many(self) -> list[Any]:
        if self._client.plan.subscribe is None:
            raise TransportError(f"{self.url}: the publishing end only sends (listen() to subscribe)")
        if self._ready:
            values = list(self._ready)
            self._ready.clear()
            return values
        return self._client.take(block=True)

    def close(self) -> None:
        """Disconnects; safe to call twice."""
        self._client.close()


def connect(address: Address, **options: Any) -> MqttChannel:
    """The publishing end of an mqtt URL: the URL's options, and as keywords ``max_line``,
    ``on_error``, ``username``, ``password``, ``tls`` (see the module docstring)."""
    return MqttChannel(_open_with(address, "connect", options))


def listen(address: Address, **options: Any) -> MqttChannel:
    """The subscribing end of an mqtt URL (the same options as ``connect``)."""
    return MqttChannel(_open_with(address, "listen", options))


# --------------------------------------------------------------------------------------------
# asyncio: the same client, awaited


class AsyncMqttChannel(AsyncListener):
    """The asyncio flavour of MqttChannel: paho's network thread does the I/O; this awaits it."""

    def __init__(self, channel: MqttChannel) -> None:
        self._channel = channel
        self.url = channel.url
        loop = asyncio.get_running_loop()
        self._arrived = asyncio.Event()
        channel._client.notify = lambda: loop.call_soon_threadsafe(self._arrived.set)

    @property
    def client_id(self) -> str:
        return self._channel.client_id

    async def send(self, value: Any) -> None:
        await self.send_many([value])

    async def send_many(self, values: Iterable[Any]) -> None:
        batch = list(values)
        await asyncio.get_running_loop().run_in_executor(None, self._channel.send_many, batch)

    async def receive(self) -> Any:
        ready = self._channel._ready
        if not ready:
            ready.extend(await self.receive_many())
        return ready.popleft()

    async def receive_many(self) -> list[Any]:
        ready = self._channel._ready
        if ready or self._channel._client.plan.subscribe is None:
            return self._channel.receive_many()  # (the publishing end: raises)
        while True:
            self._arrived.clear()
            values = self._channel._client.take(block=False)
            if values:
                return values
            await self._arrived.wait()

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._channel.close)


async def async_connect(address: Address, **options: Any) -> AsyncMqttChannel:
    """The asyncio ``connect``: the same options, an AsyncMqttChannel."""
    channel = await asyncio.get_running_loop().run_in_executor(None, lambda: connect(address, **options))
    return AsyncMqttChannel(channel)


async def async_listen(address: Address, **options: Any) -> AsyncMqttChannel:
    """The asyncio ``listen``: the same options, an AsyncMqttChannel."""
    channel = await asyncio.get_running_loop().run_in_executor(None, lambda: listen(address, **options))
    return AsyncMqttChannel(channel)


# --------------------------------------------------------------------------------------------
# Calls through the broker: the two ends of a Peer


class _AsyncRpcEnd(AsyncListener):
    """What both ends share: an asyncio face on a client that keeps reply topics."""

    def __init__(self, client: _Client) -> None:
        self._client = client
        self.url = client.plan.url
        loop = asyncio.get_running_loop()
        self._arrived = asyncio.Event()
        client.with_reply = True
        self._ready: deque[Any] = deque()
        client.notify = lambda: loop.call_soon_threadsafe(self._arrived.set)

    async def _take(self) -> list[tuple[Any, str | None, bytes | None]]:
        while True:
            self._arrived.clear()
            items = self._client.take(block=False)
            if items:
                return items
            await self._arrived.wait()

    async def receive(self) -> Any:
        if not self._ready:
            self._ready.extend(await self.receive_many())
        return self._ready.popleft()

    async def receive_many(self) -> list[Any]:
        raise NotImplementedError

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._client.close)


class AsyncRpcServer(_AsyncRpcEnd):
    """The serving end of calls on a service topic: give it to a Peer and expose functions."""

    def __init__(self, client: _Client) -> None:
        super().__init__(client)
        self.routes = RpcRoutes()

    async def receive_many(self) -> list[Any]:
        while True:  # (a batch of only cancels for calls held elsewhere: nothing to hand out)
            routed = [self.routes.incoming(value, reply, corr) for value, reply, corr in await self._take()]
            messages = [message for message in routed if message is not None]
            if messages:
                return messages

    async def send(self, value: Any) -> None:
        for reply_to, correlation, message in self.routes.outgoing(value):
            self._client.publish_nowait(encode(message)[:-1], reply_to, None, correlation)


class AsyncRpcCaller(_AsyncRpcEnd):
    """The calling end: requests to the service topic, answers on our own reply topic. Nothing
    tells a caller that the server which took its call died: a Peer's calls on it time out
    after ``call_timeout`` s (CallTimeout) unless given a ``timeout`` of their own."""

    def __init__(self, client: _Client, call_timeout: float | None) -> None:
        super().__init__(client)
        self.call_timeout = call_timeout

    async def receive_many(self) -> list[Any]:
        return [value for value, _, _ in await self._take()]

    async def send(self, value: Any) -> None:
        call_id = value.get("id") if isinstance(value, dict) else None
        correlation = None if call_id is None else encode(call_id)[:-1]
        plan = self._client.plan
        self._client.publish_nowait(
            encode(value)[:-1], plan.publish or "", REPLIES + plan.client_id, correlation
        )


def _rpc_client(address: Address, side: str, options: dict[str, Any]) -> _Client:
    """A v5 client for one end of calls: a server subscribes to the service topic (shared when
    ``share`` is given), a caller to its reply topic."""
    if options.get("protocol", "5") != "5":
        raise UrlError("calls through the broker need MQTT 5 (protocol=5)", url=address.url)
    if side == "connect":
        nonce = os.urandom(6).hex()
        options.setdefault("client_id", f"bothways-caller-{nonce}")
        options.setdefault("clean", True)
    return _open_with(address, side, options, subscribe_replies=side == "connect", with_reply=True)


async def async_rpc_listen(address: Address | str, **options: Any) -> AsyncRpcServer:
    """The serving end of calls on the service topic of ``address`` (``share=group`` to split
    the calls among several servers): ``Peer(await async_rpc_listen(url))``."""
    address = _address(address, options, "listen")
    client = await asyncio.get_running_loop().run_in_executor(None, _rpc_client, address, "listen", options)
    return AsyncRpcServer(client)


async def async_rpc_connect(
    address: Address | str, *, call_timeout: float | None = CALL_TIMEOUT, **options: Any
) -> AsyncRpcCaller:
    """The calling end for the service topic of ``address``: ``Peer(await async_rpc_connect(url))``;
    its calls time out after ``call_timeout`` s by default (None: never)."""
    address = _address(address, options, "connect")
    client = await asyncio.get_running_loop().run_in_executor(None, _rpc_client, address, "connect", options)
    return AsyncRpcCaller(client, call_timeout)


def _address(address: Address | str, options: dict[str, Any], side: str) -> Address:
    """``address`` parsed, its query's options for ``side`` merged under the keywords."""
    from ..urls import parse

    parsed = parse(address) if isinstance(address, str) else address
    for key, value in parsed.params_for(side).items():
        options.setdefault(key, value)
    return parsed
