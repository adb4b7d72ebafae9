"""WebSockets: ``ws://host:port/path``, blocking and asyncio, over the ``websockets`` package.

``connect(address)`` opens a client channel; ``listen(address)`` serves ``address.path`` on
``address.host:address.port`` (port 0: a free one, shown in ``listener.url``). Mirrored by
``js/src/transports/ws.js`` (Node, over ``ws``) and ``js/src/browser.js`` (the browser's native
WebSocket); any of them talks to any other.

The wire (normative; the three implementations agree on every point)
--------------------------------------------------------------------
- **Text frames of one message or of many**: ``send`` writes one JSON text, UTF-8, without the
  NDJSON newline; ``send_many(values)`` writes one frame of the values' NDJSON lines, each with
  its newline (``encode_many(values)``; nothing for no values; lines of more than ``max_line``
  bytes in all go in several frames, cut at line ends, each at most ``max_line`` bytes without
  its last newline). A receiver decodes a frame with no newline but possibly its last character
  as one message (trailing whitespace is fine, as in any JSON text), exactly as when every frame
  held one. Any other frame is NDJSON that ends with the frame: its final newline is optional,
  ``\r\n`` is accepted, blank lines (spaces, tabs, ``\r``) are skipped, a BOM at the frame's
  start is skipped, and each line is delivered as a message, in order, before the next frame's.
  A frame is complete on its own: a message never continues into the next frame (so a JSON text
  spread over several lines is not one message). No compression (permessage-deflate is neither
  offered nor accepted: it costs more than it saves on a local link).
- **Bad input is reported, the connection goes on**: lines are numbered per connection from 1,
  across frames: a one-message frame is one line, a frame of n lines (blank ones included; a
  final newline ends the last line, it starts no other) n lines. A text or a line that is not
  JSON, or a binary frame, is a ``DecodeError`` whose ``line`` is that number, given to
  ``on_error``; the other lines of its frame and the frames around it are delivered. (A text
  frame that is not UTF-8 breaks the WebSocket protocol itself: the libraries close the
  connection with 1007.)
- **Size limit**: ``max_line`` (default 16 MiB) is the largest frame accepted, in bytes, however
  many lines it holds (websockets' ``max_size``, ws' ``maxPayload``; the browser checks after
  receipt). A larger one is reported to ``on_error`` as ``FrameTooLarge`` (``line`` = the number
  of its first line) after every message before it has been delivered; the library then closes
  the connection with 1009
  (message too big; a browser, whose ``close()`` cannot send 1009, closes with 4009 "message too
  big"), so the next ``receive`` raises ``TransportClosed`` (and a reconnecting client
  reconnects). The sender sees that close as ``TransportClosed``.
- **Handshake gate**, before the upgrade, in this order: the request path must be the listener's
  path (else HTTP 404); the ``Origin`` header, when there is one, must be allowed (else 403):
  by default an origin whose host is ``localhost``, ``127.0.0.1`` or ``[::1]`` (http or https, any
  port); with ``origins=[...]``, exactly those (``"http://127.0.0.1:5000"``). A request without an
  Origin (not a browser) is always allowed. With a ``token``, the request URL must carry
  ``?token=<token>`` (percent-encoded; a query, because browsers cannot set headers), compared in
  constant time (else 403). The 403/404 body says why in one line (``wrong token``,
  ``missing token (add ?token=... to the URL)``, ``origin http://x is not allowed``,
  ``no WebSocket at /x (this listener serves /y)``); the client raises
  ``ConnectError("refused: wrong token (HTTP 403)")``. ``listener.url`` never shows the token.
- **Keepalive**: each side pings every ``ping_interval`` (20 s; ``None`` or 0 disables) and drops a
  peer that has not answered within the same interval (websockets closes with 1011; ws
  terminates). The survivor's ``receive`` raises ``TransportClosed``.
- **Closing**: ``close()`` sends close code 1000 (waiting at most 2 s for the peer's answer); a
  listener's ``close()`` closes its connections with 1001 (going away), accepted ones included.
  Either way the peer's iteration ends cleanly and its ``receive`` raises ``TransportClosed``.

Client options: ``token``, ``timeout`` (handshake, 10 s), ``reconnect`` (default False),
``ping_interval``, ``origin`` (an Origin header to send; browsers send their own), ``max_line``,
``on_error``. With ``reconnect``, a lost connection is dialled again after 0.05 s, doubling up to
5 s between tries, until it works or ``close()`` is called: ``receive`` goes on with the new
connection, ``send`` waits for it; messages in flight when the connection broke may be lost. A
handshake the server refuses (403, 404) is not retried: it is raised as ``ConnectError``. With
``reconnect`` the first connection is retried on the same schedule until ``timeout`` runs out (a
client started a moment before its listener waits for it); without, ``connect`` raises
``ConnectError`` at once when the listener cannot be reached.

A client's ``close()`` is confirmed: it returns once the listener has answered with its close
frame (it has received every message sent before ours), within ``timeout`` s; otherwise
it raises ``TransportClosed`` naming how many messages may be lost (the words of ws.js). A loss
that ``send`` or ``receive`` already reported is not reported again.

Listener options: ``token``, ``origins``, ``timeout`` (handshake), ``ping_interval``, ``max_line``,
``on_error``, ``backlog`` (default 4096, see ``base.BACKLOG``); ``reconnect`` is accepted and
ignored, so one URL serves both sides.

Which connection goes where is ``base.Router``'s rule, the same for tcp (spec/PROTOCOL.md
section 7): a new connection goes to an ``accept()`` that waits, else to the merged stream once
the listener merges (from its first ``receive()``/iteration or ``send()`` on), else it is held
until one of them takes it (at most 16 of its frames are read ahead meanwhile; control frames go
on being answered); a merged connection is never handed to ``accept()``. Merged connections
feed the merged ``receive`` and get the broadcast ``send``. A broadcast goes to each merged
connection in turn, waiting on a slow one (backpressure), and goes nowhere when none is
connected; a client whose handshake is completing
at that very moment may miss it (Python registers a connection just after answering its
handshake; Node, in the same tick).

Backpressure: ``send`` blocks (or awaits) while the socket's buffer is full; a connection is read
only as fast as its messages are taken (websockets stops reading after 16 queued frames; the
merged queue holds at most 64 batches of up to 1024 frames or 1 MiB), so a slow consumer holds
fast producers back.

The blocking flavour runs on ``websockets.sync`` (a thread per connection, inside websockets), the
asyncio flavour on ``websockets.asyncio``; both share the sans-I/O pieces below (``check_request``,
``_batches``, ``_Frames``, ``_Later``, the URL and error helpers; ``base.Router`` routes).
"""

from __future__ import annotations

import asyncio
import hmac
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any
from urllib.parse import quote, unquote

import orjson
from websockets.asyncio.client import connect as _async_dial
from websockets.asyncio.connection import Connection as _AsyncConnection
from websockets.asyncio.server import ServerConnection as _AsyncServerConnection
from websockets.asyncio.server import serve as _async_serve
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.frames import CloseCode
from websockets.http11 import Request, Response
from websockets.sync.client import connect as _sync_dial
from websockets.sync.connection import Connection as _SyncConnection
from websockets.sync.server import ServerConnection as _SyncServerConnection
from websockets.sync.server import serve as _sync_serve
from websockets.version import version as _websockets_version

from ..errors import ConnectError, DecodeError, FrameTooLarge, TransportClosed, TransportError
from ..urls import Address
from ..wire import MAX_LINE, Binary, Decoder, Messages, decode, encode, encode_many
from .base import (
    BACKLOG,
    AsyncChannel,
    AsyncListener,
    Channel,
    ErrorHandler,
    Listener,
    Router,
    backoff,
    check_backlog,
    first_retry,
    log,
    log_error,
    small_reads,
)

__all__ = [
    "PING_INTERVAL",
    "TIMEOUT",
    "AsyncWsChannel",
    "AsyncWsListener",
    "WsChannel",
    "WsListener",
    "async_connect",
    "async_listen",
    "check_request",
    "connect",
    "listen",
]

PING_INTERVAL = 20.0
"""Seconds between keepalive pings; a peer silent for as long after a ping is dropped."""
TIMEOUT = 10.0
"""Seconds the opening handshake may take."""

CLOSE_TIMEOUT = 2.0  # seconds close() waits for the peer's close frame
TOO_BIG = 1009  # close code: message too big
_BATCH = 1024  # messages taken at once by receive_many() and by a merged connection's reader
_BATCH_SIZE = 1024 * 1024  # ...or as many as make this many characters (frames may hold many)
_COPY = 64 * 1024  # payloads up to this size are copied without their newline, larger ones viewed
_MAILBOX = 64  # batches the merged queue holds before the readers wait
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})
_SKIP = object()  # what _Frames.take returns for a bad message (reported, not delivered)
_VERSION = tuple(int(part) for part in _websockets_version.split(".")[:2] if part.isdigit())
# websockets >= 15 would use an HTTP(S)_PROXY from the environment; a local channel never should.
_DIRECT: dict[str, Any] = {"proxy": None} if _VERSION >= (15, 0) else {}
# websockets >= 17.1 wants its sync connect() in a `with` block, unless asked for the connection.
_SYNC_DIRECT: dict[str, Any] = {**_DIRECT, "legacy": True} if _VERSION >= (17, 1) else _DIRECT

# --------------------------------------------------------------------------------------------
# The sans-I/O core, shared by both flavours


def check_request(
    target: str, origin: str | None, *, path: str, token: str | None, origins: Sequence[str] | None
) -> tuple[int, str] | None:
    """The handshake gate, run before the upgrade: None to accept, else (HTTP status, reason).

    Args:
        target: the request target, path and query (``/feed?token=abc``).
        origin: the ``Origin`` header, None when absent.
        path: the path this listener serves.
        token: the token it requires, or None.
        origins: the exact origins allowed, or None for the local-host default.
    """
    got, _, query = target.partition("?")
    if got != path:
        return 404, f"no WebSocket at {got} (this listener serves {path})"
    if not _origin_allowed(origin, origins):
        return 403, f"origin {origin} is not allowed"
    if token is not None:
        given = _query_value(query, "token")
        if given is None:
            return 403, "missing token (add ?token=... to the URL)"
        if not hmac.compare_digest(given.encode(), token.encode()):
            return 403, "wrong token"
    return None


def _origin_allowed(origin: str | None, origins: Sequence[str] | None) -> bool:
    if origin is None:
        return True
    if origins is not None:
        return origin in origins
    scheme, sep, host = origin.lower().partition("://")
    if not sep or scheme not in ("http", "https"):
        return False
    host = host[: host.find("]") + 1] if host.startswith("[") else host.partition(":")[0]
    return host in _LOCAL_HOSTS


def _query_value(query: str, name: str) -> str | None:
    """A query parameter, percent-decoded (``+`` stays ``+``, as in the URL parser)."""
    for item in query.split("&"):
        key, _, value = item.partition("=")
        if unquote(key) == name:
            return unquote(value)
    return None


def _public_url(address: Address) -> str:
    """The address as shown: never with the token."""
    params = {k: v for k, v in address.params.items() if k != "token"}
    return Address(address.scheme, address.host, address.port, address.path, params).url


def _request_url(address: Address, token: str | None) -> str:
    host = address.host or "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    url = f"ws://{host}:{address.port}{address.path}"
    return url + "?token=" + quote(token, safe="") if token else url


def _payload(value: Any) -> bytes | memoryview:
    """The frame's text: the encoded line without its newline (a view when copying would cost)."""
    data = encode(value)
    return data[:-1] if len(data) <= _COPY else memoryview(data)[:-1]


def _batches(values: Iterable[Any], limit: int) -> list[tuple[bytes | memoryview, int]]:
    """``send_many``'s frames, each with how many messages it holds: one frame of the values'
    NDJSON lines (``encode_many``), or none for no values. Lines of more than ``limit`` bytes in
    all are cut into several frames at line ends, each at most ``limit`` bytes without its last
    newline (a line longer than that goes alone: the peer refuses it, as it would from ``send``).

    Raises:
        EncodeError: a value cannot be sent; then nothing is sent.
    """
    values = values if isinstance(values, list) else list(values)
    data = encode_many(values)
    if len(data) <= limit:
        return [(data, len(values))] if values else []
    view = memoryview(data)
    frames: list[tuple[bytes | memoryview, int]] = []
    start, end_of_data = 0, len(data) - 1  # (the index of the last newline)
    while start < end_of_data:
        if end_of_data - start <= limit:
            end = end_of_data
        else:
            end = data.rfind(b"\n", start, start + limit + 1)
            if end < 0:
                end = data.find(b"\n", start + limit)
        frames.append((view[start:end], data.count(b"\n", start, end) + 1))
        start = end + 1
    return frames


def _too_large(number: int, limit: int) -> FrameTooLarge:
    error = FrameTooLarge(line=number, limit=limit)
    # FrameTooLarge's own text is about stream lines ("skipped up to the next newline").
    error.reason = f"message is larger than the limit of {limit} bytes; the connection was closed"
    error.message = f"line {number}: {error.reason}"
    error.args = (error.message,)
    return error


def _was_too_big(exc: ConnectionClosed) -> bool:
    """Whether we closed the connection because the peer's message was over the limit."""
    return exc.sent is not None and exc.sent.code == TOO_BIG and exc.rcvd is None


def _closed(url: str, exc: ConnectionClosed | None) -> TransportClosed:
    if exc is None:
        return TransportClosed(f"{url}: closed")
    return TransportClosed(f"{url}: connection closed ({exc})")


def _connect_error(url: str, exc: BaseException, timeout: float | None) -> ConnectError:
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        body = exc.response.body.decode("utf-8", "replace").strip() if exc.response.body else ""
        return ConnectError(
            f"refused: {body} (HTTP {status})" if body else f"refused (HTTP {status})", url=url
        )
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return ConnectError(f"no WebSocket handshake within {timeout} s", url=url)
    if isinstance(exc, ConnectionRefusedError):
        return ConnectError("connection refused (is the listener running?)", url=url)
    if isinstance(exc, OSError):
        return ConnectError(f"cannot connect: {exc.strerror or exc}", url=url)
    return ConnectError(f"WebSocket handshake failed: {exc}", url=url)


def _refused(exc: ConnectError) -> bool:
    """Whether the server answered the handshake with a refusal (not worth retrying)."""
    return isinstance(exc.__cause__, InvalidStatus)


class _Raised:
    """An error that ``on_error`` raised for a line of a frame of several lines."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


class _Later:
    """The values of frames of several lines, not handed out yet: a receiver's own queue, which
    ``receive`` empties before it reads the next frame (for a listener: of any connection).
    An error that ``on_error`` raised for one of the lines waits among them for its turn."""

    __slots__ = ("items", "raised")

    def __init__(self) -> None:
        self.items: deque[Any] = deque()
        self.raised = 0  # _Raised items among them

    def __len__(self) -> int:
        return len(self.items)

    def pop(self) -> Any:
        """The oldest value; raises the error if that comes first."""
        item = self.items.popleft()
        if type(item) is _Raised:
            self.raised -= 1
            raise item.error
        return item

    def clear(self) -> None:
        self.items.clear()
        self.raised = 0

    def drain(self, values: list[Any]) -> Exception | None:
        """Moves the values to ``values``, up to the first error, which is returned (the rest
        waits); None when there was none."""
        items = self.items
        if not self.raised:
            values.extend(items)
            items.clear()
            return None
        while items:
            item = items.popleft()
            if type(item) is _Raised:
                self.raised -= 1
                return item.error
            values.append(item)
        return None


class _Frames:
    """Numbers one connection's lines and decodes them; bad ones go to ``on_error``.

    A frame is one or more lines: one with no newline but at its end is one message, decoded as
    such; one with more goes through a fresh wire Decoder, and its values to a ``_Later``. The
    lines are numbered per connection from 1, across frames (a one-message frame is one line).
    """

    __slots__ = ("count", "limit", "on_error")

    def __init__(self, limit: int, on_error: ErrorHandler | None) -> None:
        self.count = 0
        self.limit = limit
        self.on_error = on_error or log_error

    def take(self, raw: str | bytes, later: _Later) -> Any:
        """The frame's message, or ``_SKIP`` after reporting it (``on_error`` may raise); for a
        frame of several lines, ``_SKIP``, its values (and errors) having gone to ``later``."""
        if type(raw) is str:
            newline = raw.find("\n")
            if 0 <= newline < len(raw) - 1:
                self._lines(raw, later)
                return _SKIP
            self.count += 1
            try:
                return orjson.loads(raw)  # the hot path: what wire.decode does, minus the BOM
            except orjson.JSONDecodeError:
                pass
            try:
                return decode(raw)
            except DecodeError as exc:
                error = DecodeError(exc.reason, line=self.count, column=exc.column, excerpt=exc.excerpt)
        else:
            self.count += 1
            error = DecodeError(
                f"a binary frame of {len(raw)} bytes (messages are JSON in text frames)", line=self.count
            )
        self.on_error(error)
        return _SKIP

    def _lines(self, raw: str, later: _Later) -> None:
        """A frame of several lines, decoded as NDJSON whose last newline is optional. (No line
        can pass the limit: the library refuses a frame that does.)"""
        decoder = Decoder(max_line=self.limit)
        events = decoder.feed(raw.encode())
        if decoder.buffered:
            events += decoder.feed(b"\n")
        before = self.count
        self.count += decoder.line
        for event in events:
            if isinstance(event, Messages):
                later.items.extend(event.values)
                continue
            assert not isinstance(event, Binary)  # (no binary frames on this channel)
            error = event.error
            try:
                self.on_error(
                    DecodeError(
                        error.reason, line=before + error.line, column=error.column, excerpt=error.excerpt
                    )
                )
            except Exception as exc:  # its turn comes after the values before it
                later.items.append(_Raised(exc))
                later.raised += 1

    def too_large(self) -> None:
        """Reports the message that made the library close the connection with 1009."""
        self.on_error(_too_large(self.count + 1, self.limit))


_MERGED, _ACCEPTED, _CLOSED = "merged", "accepted", "closed"


def _check_options(max_line: int, timeout: float | None, token: str | None) -> None:
    if not isinstance(max_line, int) or max_line < 1:
        raise ValueError(f"max_line must be a whole number of bytes >= 1, got {max_line!r}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    if token is not None and (not isinstance(token, str) or not token):
        raise ValueError("token must be a non-empty string")


# --------------------------------------------------------------------------------------------
# Blocking flavour (websockets.sync)


class WsChannel(Channel):
    """One WebSocket connection, blocking: what ``connect`` returns and ``accept`` hands out.

    ``send`` writes one text frame (blocking while the socket is full), ``send_many`` one frame of
    many messages; ``receive``/iteration give the peer's messages; ``close`` closes with 1000.
    Safe to send from one thread while another receives.
    """

    def __init__(
        self,
        conn: _SyncConnection,
        *,
        url: str,
        max_line: int = MAX_LINE,
        on_error: ErrorHandler | None = None,
        redial: Callable[[], _SyncConnection] | None = None,
        confirm_within: float = CLOSE_TIMEOUT,
    ) -> None:
        self.url = url
        self._conn = conn
        self._frames = _Frames(max_line, on_error)
        self._later = _Later()
        self._redial = redial
        self._closed = False
        self._closing = threading.Event()
        self._lock = threading.Lock()  # one reconnection at a time
        self._failure: BaseException | None = None  # raised by on_error in receive_many, kept for later
        self._refusal: ConnectError | None = None  # the server refused to take us back: final
        self._sent = 0  # messages sent on this connection (close() must see them confirmed)
        self._broken_sent = 0  # messages sent on connections that broke (reconnect): unconfirmed
        self._confirm_within = confirm_within  # how long close() waits for the peer's close frame

    def send(self, value: Any) -> None:
        """Sends one message; blocks while the peer does not read (and, reconnecting, while away)."""
        self._send(_payload(value), 1)

    def send_many(self, values: Iterable[Any]) -> None:
        """Sends the messages in one text frame of NDJSON lines (several when they pass
        ``max_line``; none for no values); blocks as ``send`` does."""
        for payload, count in _batches(values, self._frames.limit):
            self._send(payload, count)

    def _send(self, payload: bytes | memoryview, count: int) -> None:
        conn = self._conn
        try:
            conn.send(payload, text=True)  # the hot path: nothing more than websockets' own send
            self._sent += count
        except ConnectionClosed as exc:
            self._resend(payload, count, conn, exc)

    def _resend(
        self, payload: bytes | memoryview, count: int, conn: _SyncConnection, exc: ConnectionClosed
    ) -> None:
        while True:
            if self._closed or self._redial is None:
                self._sent = 0  # its loss is reported by this error
                raise _closed(self.url, None if self._closed else exc) from exc
            self._reconnect(conn)
            conn = self._conn
            try:
                conn.send(payload, text=True)
                self._sent += count
                return
            except ConnectionClosed as again:
                exc = again

    def receive(self) -> Any:
        """The next message; raises TransportClosed when the connection is closed."""
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        later = self._later
        while True:
            if self._closed:
                raise _closed(self.url, None)
            if later:
                return later.pop()
            conn = self._conn
            try:
                raw = conn.recv()
            except ConnectionClosed as exc:
                self._lost(conn, exc)
                continue
            value = self._frames.take(raw, later)
            if value is not _SKIP:
                return value

    def receive_many(self) -> list[Any]:
        """The next message and every one already received (up to 1024, or a whole frame)."""
        values = [self.receive()]
        later = self._later
        failure = later.drain(values)
        conn = self._conn
        take = self._frames.take
        try:
            while failure is None and len(values) < _BATCH:
                value = take(conn.recv(0), later)
                if value is not _SKIP:
                    values.append(value)
                elif later:
                    failure = later.drain(values)
        except (TimeoutError, ConnectionClosed):
            pass  # nothing more for now; a closed connection shows at the next receive
        except Exception as exc:  # on_error raised: its turn comes after these values
            failure = exc
        self._failure = failure
        return values

    def _lost(self, conn: _SyncConnection, exc: ConnectionClosed) -> None:
        if self._closed:
            raise _closed(self.url, None) from None
        if conn is self._conn and _was_too_big(exc):
            self._frames.too_large()
        if self._redial is None:
            self._sent = 0  # its loss is reported by this error
            raise _closed(self.url, exc) from exc
        self._reconnect(conn)

    def _reconnect(self, broken: _SyncConnection) -> None:
        with self._lock:
            if self._refusal is not None:
                raise self._refusal
            if self._conn is not broken:
                return  # another thread has reconnected already
            attempt = 0
            while True:
                if self._closing.wait(backoff(attempt)):
                    raise _closed(self.url, None)
                assert self._redial is not None
                try:
                    fresh = self._redial()
                except ConnectError as exc:
                    if _refused(exc):
                        self._refusal = exc
                        raise
                    attempt += 1
                    log.info("%s; trying again in %.2f s", exc, backoff(attempt))
                    continue
                self._frames = _Frames(self._frames.limit, self._frames.on_error)
                self._conn = fresh
                if broken.protocol.close_rcvd is None:  # no close frame: what it carried is unconfirmed
                    self._broken_sent += self._sent  # and nobody was told: close() says it
                self._sent = 0
                if self._closed:  # close() ran meanwhile and may have closed the old one only
                    fresh.close()
                    raise _closed(self.url, None)
                log.info("%s: reconnected", self.url)
                return

    def close(self) -> None:
        """Closes the connection (code 1000) and stops any reconnection; idempotent.

        Returns once the peer has answered with its close frame: it has received every message
        sent before ours (the WebSocket close handshake is the confirmation).

        Raises:
            TransportClosed: no close frame came within the close timeout (the connect
                ``timeout``): what was sent may be lost (the message says how many messages).
        """
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        conn = self._conn
        conn.close_timeout = self._confirm_within  # (not set at dial: a failed keepalive closes sooner)
        conn.close()
        _confirmed(conn, self.url, self._sent, self._broken_sent)


def _confirmed(conn: _SyncConnection | _AsyncConnection, url: str, sent: int, broken_sent: int = 0) -> None:
    """After our close: raises TransportClosed when messages were sent on ``conn`` and the peer's
    close frame never came, or when ``broken_sent`` messages went on connections that broke
    (with reconnect: nothing is sent twice); the same words as ws.js."""
    if sent and conn.protocol.close_rcvd is None:
        what = f"what we sent ({sent} messages on this connection); it may be lost"
        if conn.protocol.close_sent is None:  # the connection failed before our close frame left
            raise TransportClosed(
                f"{url}: close: the connection was reset before the peer confirmed it read {what}"
            )
        raise TransportClosed(
            f"{url}: close: the peer did not confirm within {conn.close_timeout:g} s that it read {what}"
        )
    if broken_sent:
        raise TransportClosed(
            f"{url}: close: {broken_sent} messages were sent on connections that broke before the peer "
            "confirmed them (nothing is sent twice); they may be lost"
        )


def _dial(
    request_url: str,
    url: str,
    *,
    timeout: float | None,
    max_line: int,
    ping_interval: float | None,
    origin: str | None,
) -> _SyncConnection:
    try:
        return _sync_dial(
            request_url,
            open_timeout=timeout,
            max_size=max_line,
            compression=None,
            ping_interval=ping_interval,
            ping_timeout=ping_interval,
            close_timeout=CLOSE_TIMEOUT,  # (close() waits this long for the confirmation)
            origin=origin,  # type: ignore[arg-type]
            **_SYNC_DIRECT,
        )
    except (OSError, WebSocketException) as exc:
        raise _connect_error(url, exc, timeout) from exc


def connect(
    address: Address,
    *,
    token: str | None = None,
    timeout: float = TIMEOUT,
    reconnect: bool = False,
    max_line: int = MAX_LINE,
    on_error: ErrorHandler | None = None,
    ping_interval: float | None = PING_INTERVAL,
    origin: str | None = None,
) -> WsChannel:
    """Connects to the WebSocket listener at ``address``.

    Args:
        address: ``ws://host:port/path``.
        token: the listener's token (sent as ``?token=``).
        timeout: seconds the opening handshake may take.
        reconnect: dial again, with back-off, whenever the connection is lost; the first dial
            too, until ``timeout`` runs out (a listener not up yet is waited for).
        max_line: the largest message accepted, in bytes.
        on_error: called with each DecodeError (bad message, binary frame, FrameTooLarge).
        ping_interval: seconds between keepalive pings (None or 0: none).
        origin: an Origin header to send (browsers send their own; others usually none).

    Raises:
        ConnectError: the listener cannot be reached or refused the handshake.
    """
    _check_options(max_line, timeout, token)
    url = _public_url(address)
    request_url = _request_url(address, token)

    def dial() -> _SyncConnection:
        return _dial(
            request_url,
            url,
            timeout=timeout,
            max_line=max_line,
            ping_interval=ping_interval or None,
            origin=origin,
        )

    deadline = time.monotonic() + timeout
    attempt = 0
    while True:  # with reconnect, a listener not up yet is waited for, ``timeout`` s at most
        try:
            first = dial()
            break
        except ConnectError as exc:
            wait = None if _refused(exc) else first_retry(reconnect, attempt, deadline - time.monotonic())
            if wait is None:
                raise
            time.sleep(wait)
            attempt += 1
    return WsChannel(
        first,
        url=url,
        max_line=max_line,
        on_error=on_error,
        redial=dial if reconnect else None,
        confirm_within=timeout,  # the server reads everything before our close frame: give it time
    )


class _Slot:
    """A listener's connection and what became of it."""

    __slots__ = ("conn", "frames", "mode", "claimed")

    def __init__(self, conn: Any, frames: _Frames, claimed: Any) -> None:
        self.conn = conn
        self.frames = frames
        self.mode: str | None = None
        self.claimed = claimed  # threading.Event or asyncio.Event: set once mode is decided


class _Mailbox:
    """The merged connections' batches of raw messages: bounded, closable."""

    def __init__(self, size: int) -> None:
        self._items: deque[tuple[_Slot, list[Any] | None]] = deque()
        self._size = size
        self._cond = threading.Condition()
        self._closed = False

    def put(self, item: tuple[_Slot, list[Any] | None]) -> bool:
        """Waits for room; False once closed."""
        with self._cond:
            while len(self._items) >= self._size and not self._closed:
                self._cond.wait()
            if self._closed:
                return False
            self._items.append(item)
            self._cond.notify_all()
            return True

    def get(self, block: bool = True) -> tuple[_Slot, list[Any] | None] | None:
        """The oldest batch; None if empty and not ``block``; raises TransportClosed once closed."""
        with self._cond:
            while not self._items:
                if self._closed:
                    raise TransportClosed("closed")
                if not block:
                    return None
                self._cond.wait()
            if self._closed:
                raise TransportClosed("closed")
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._items.clear()
            self._cond.notify_all()


class WsListener(Listener):
    """A WebSocket server, blocking: made by ``listen``. See the module docs for the rules."""

    def __init__(
        self,
        address: Address,
        *,
        token: str | None,
        origins: Sequence[str] | None,
        timeout: float | None,
        max_line: int,
        on_error: ErrorHandler | None,
        ping_interval: float | None,
        backlog: int = BACKLOG,
    ) -> None:
        self._path = address.path
        self._token = token
        self._origins = tuple(origins) if origins is not None else None
        self._max_line = max_line
        self._on_error = on_error
        self._router: Router[_Slot] = Router()
        self._cond = threading.Condition()
        self._mailbox = _Mailbox(_MAILBOX)
        self._ready: deque[tuple[_Frames, Any]] = deque()  # raw messages taken from the mailbox
        self._later = _Later()  # values of a frame of several lines, not handed out yet
        self._merged: set[_SyncServerConnection] = set()
        self._open: set[_SyncServerConnection] = set()  # every connection, merged or accepted
        self._failure: BaseException | None = None
        self._closed = False
        try:
            self._server = _sync_serve(
                self._handle,
                address.host,
                address.port,
                process_request=self._gate,
                compression=None,
                max_size=max_line,
                open_timeout=timeout,
                ping_interval=ping_interval or None,
                ping_timeout=ping_interval or None,
                close_timeout=CLOSE_TIMEOUT,
                backlog=backlog,  # (to socket.create_server)
            )
        except OSError as exc:
            raise TransportError(f"{_public_url(address)}: cannot listen: {exc.strerror or exc}") from exc
        self.url = _public_url(address.with_port(self._server.socket.getsockname()[1]))
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"bothways {self.url}", daemon=True
        )
        self._thread.start()

    def _gate(self, connection: _SyncServerConnection, request: Request) -> Response | None:
        refusal = _gate(request, self._path, self._token, self._origins)
        return None if refusal is None else connection.respond(*refusal)

    def _handle(self, conn: _SyncServerConnection) -> None:
        """Runs in websockets' thread for this connection, for as long as it is open."""
        slot = _Slot(conn, _Frames(self._max_line, self._on_error), threading.Event())
        with self._cond:
            if self._closed:
                return
            self._open.add(conn)
            if self._router.arrive(slot):
                self._claim(slot, _MERGED)
            else:
                self._cond.notify_all()  # an accept() may be waiting
        try:
            slot.claimed.wait()
            if slot.mode is _MERGED:
                self._pump(slot)
            elif slot.mode is _ACCEPTED:
                conn.recv_events_thread.join()  # until the connection ends; the channel reads it
        finally:
            with self._cond:
                self._open.discard(conn)

    def _claim(self, slot: _Slot, mode: str) -> None:
        slot.mode = mode
        if mode is _MERGED:
            self._merged.add(slot.conn)
        slot.claimed.set()

    def _pump(self, slot: _Slot) -> None:
        """Reads a merged connection into the mailbox, a batch at a time."""
        conn = slot.conn
        try:
            while True:
                batch: list[Any] = []
                lost: ConnectionClosed | None = None
                try:
                    batch.append(conn.recv())
                    size = len(batch[0])
                    while len(batch) < _BATCH and size < _BATCH_SIZE:
                        batch.append(conn.recv(0))
                        size += len(batch[-1])
                except TimeoutError:
                    pass
                except ConnectionClosed as exc:
                    lost = exc
                if batch and not self._mailbox.put((slot, batch)):
                    return
                if lost is not None:
                    if _was_too_big(lost):
                        self._mailbox.put((slot, None))
                    return
        finally:
            with self._cond:
                self._merged.discard(conn)

    def _merge(self) -> None:
        with self._cond:
            if self._closed:
                raise _closed(self.url, None)
            for slot in self._router.start_merging():
                self._claim(slot, _MERGED)

    def receive(self) -> Any:
        """The next message from any merged connection, in arrival order."""
        if not self._router.merging:
            self._merge()
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure
        ready = self._ready
        later = self._later
        while True:
            if later:
                return later.pop()
            if not ready and not self._refill(block=True):
                continue
            frames, raw = ready.popleft()
            if raw is None:
                frames.too_large()
                continue
            value = frames.take(raw, later)
            if value is not _SKIP:
                return value

    def receive_many(self) -> list[Any]:
        """The next message and every one already received."""
        values = [self.receive()]
        ready = self._ready
        later = self._later
        failure = later.drain(values)
        try:
            while failure is None and len(values) < _BATCH and (ready or self._refill(block=False)):
                frames, raw = ready.popleft()
                if raw is None:
                    frames.too_large()
                    continue
                value = frames.take(raw, later)
                if value is not _SKIP:
                    values.append(value)
                elif later:
                    failure = later.drain(values)
        except Exception as exc:  # on_error raised, or closed: after these values
            failure = exc
        self._failure = failure
        return values

    def _refill(self, *, block: bool) -> bool:
        try:
            item = self._mailbox.get(block)
        except TransportClosed:
            raise _closed(self.url, None) from None
        if item is None:
            return False
        slot, batch = item
        if batch is None:
            self._ready.append((slot.frames, None))
        else:
            frames = slot.frames
            self._ready.extend([(frames, raw) for raw in batch])
        return True

    def send(self, value: Any) -> None:
        """Sends one message to every merged connection (none connected: it goes nowhere)."""
        self._broadcast([_payload(value)])

    def send_many(self, values: Iterable[Any]) -> None:
        """Sends the messages to every merged connection, in one frame as ``WsChannel.send_many``."""
        self._broadcast([payload for payload, _ in _batches(values, self._max_line)])

    def _broadcast(self, payloads: list[bytes | memoryview]) -> None:
        if not self._router.merging:
            self._merge()
        if self._closed:
            raise _closed(self.url, None)
        with self._cond:
            peers = list(self._merged)
        for conn in peers:
            try:
                for payload in payloads:
                    conn.send(payload, text=True)
            except ConnectionClosed:
                pass  # it went away: nothing to deliver to

    def accept(self) -> WsChannel:
        """The next connection as its own duplex channel (waits for one)."""
        with self._cond:
            self._router.begin_accept()
            try:
                while True:
                    if self._closed:
                        raise _closed(self.url, None)
                    slot = self._router.take()
                    if slot is not None:
                        break
                    self._cond.wait()
            finally:
                for other in self._router.end_accept():
                    self._claim(other, _MERGED)
            self._claim(slot, _ACCEPTED)
        return WsChannel(slot.conn, url=self.url, max_line=self._max_line, on_error=self._on_error)

    def close(self) -> None:
        """Stops listening and closes every connection (1001); idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            held = self._router.close()
            open_now = list(self._open)
            self._cond.notify_all()
        for slot in held:
            self._claim(slot, _CLOSED)
        self._mailbox.close()
        self._server.shutdown()
        # websockets 17's shutdown() closes the connections too, but 16 (the last for Python
        # 3.10) only stops accepting: close them here, so that every version says 1001.
        for conn in open_now:
            conn.close(CloseCode.GOING_AWAY)
        self._thread.join()


def _gate(
    request: Request, path: str, token: str | None, origins: Sequence[str] | None
) -> tuple[int, str] | None:
    found = request.headers.get_all("Origin")
    if len(found) > 1:
        return 403, "several Origin headers"
    refusal = check_request(
        request.path, found[0] if found else None, path=path, token=token, origins=origins
    )
    return None if refusal is None else (refusal[0], refusal[1] + "\n")


def listen(
    address: Address,
    *,
    token: str | None = None,
    origins: Sequence[str] | None = None,
    timeout: float = TIMEOUT,
    max_line: int = MAX_LINE,
    on_error: ErrorHandler | None = None,
    ping_interval: float | None = PING_INTERVAL,
    reconnect: bool = False,
    backlog: int = BACKLOG,
) -> WsListener:
    """Serves WebSocket connections on ``address`` (port 0: a free port, see ``.url``).

    Args:
        address: ``ws://host:port/path``; only ``path`` is served (404 elsewhere).
        token: require ``?token=<token>`` in the request URL (403 otherwise).
        origins: the browser origins allowed (default: pages on localhost/127.0.0.1/[::1]).
        timeout: seconds a client's opening handshake may take.
        max_line: the largest message accepted, in bytes.
        on_error: called with each DecodeError (bad message, binary frame, FrameTooLarge).
        ping_interval: seconds between keepalive pings (None or 0: none).
        reconnect: a client option, ignored here.
        backlog: connections the kernel holds until they are accepted (see base.BACKLOG).

    Raises:
        TransportError: the address cannot be listened on (in use, not local...).
    """
    del reconnect
    _check_options(max_line, timeout, token)
    return WsListener(
        address,
        token=token,
        origins=origins,
        timeout=timeout,
        max_line=max_line,
        on_error=on_error,
        ping_interval=ping_interval,
        backlog=check_backlog(backlog),
    )


# --------------------------------------------------------------------------------------------
# asyncio flavour (websockets.asyncio)


class AsyncWsChannel(AsyncChannel):
    """One WebSocket connection, asyncio: what ``async_connect`` returns and ``accept`` hands out."""

    def __init__(
        self,
        conn: _AsyncConnection,
        *,
        url: str,
        max_line: int = MAX_LINE,
        on_error: ErrorHandler | None = None,
        redial: Callable[[], Awaitable[_AsyncConnection]] | None = None,
        confirm_within: float = CLOSE_TIMEOUT,
    ) -> None:
        self.url = url
        self._conn = conn
        self._frames = _Frames(max_line, on_error)
        self._later = _Later()
        self._redial = redial
        self._closed = False
        self._closing = asyncio.Event()
        self._lock = asyncio.Lock()
        self._refusal: ConnectError | None = None  # the server refused to take us back: final
        self._sent = 0  # messages sent on this connection (close() must see them confirmed)
        self._broken_sent = 0  # messages sent on connections that broke (reconnect): unconfirmed
        self._confirm_within = confirm_within  # how long close() waits for the peer's close frame

    async def send(self, value: Any) -> None:
        """Sends one message; waits while the peer does not read (and, reconnecting, while away)."""
        await self._send(_payload(value), 1)

    async def send_many(self, values: Iterable[Any]) -> None:
        """Sends the messages in one text frame, as ``WsChannel.send_many``."""
        for payload, count in _batches(values, self._frames.limit):
            await self._send(payload, count)

    async def _send(self, payload: bytes | memoryview, count: int) -> None:
        conn = self._conn
        try:
            await conn.send(payload, text=True)
            self._sent += count
        except ConnectionClosed as exc:
            while True:
                if self._closed or self._redial is None:
                    self._sent = 0  # its loss is reported by this error
                    raise _closed(self.url, None if self._closed else exc) from exc
                await self._reconnect(conn)
                conn = self._conn
                try:
                    await conn.send(payload, text=True)
                    self._sent += count
                    return
                except ConnectionClosed as again:
                    exc = again

    async def receive(self) -> Any:
        """The next message; raises TransportClosed when the connection is closed."""
        later = self._later
        while True:
            if self._closed:
                raise _closed(self.url, None)
            if later:
                return later.pop()
            conn = self._conn
            try:
                raw = await conn.recv()
            except ConnectionClosed as exc:
                if self._closed:
                    raise _closed(self.url, None) from None
                if conn is self._conn and _was_too_big(exc):
                    self._frames.too_large()
                if self._redial is None:
                    self._sent = 0  # its loss is reported by this error
                    raise _closed(self.url, exc) from exc
                await self._reconnect(conn)
                continue
            value = self._frames.take(raw, later)
            if value is not _SKIP:
                return value

    async def _reconnect(self, broken: _AsyncConnection) -> None:
        async with self._lock:
            if self._refusal is not None:
                raise self._refusal
            if self._conn is not broken:
                return
            attempt = 0
            while True:
                try:
                    await asyncio.wait_for(self._closing.wait(), backoff(attempt))
                    raise _closed(self.url, None)
                except asyncio.TimeoutError:
                    pass
                assert self._redial is not None
                try:
                    fresh = await self._redial()
                except ConnectError as exc:
                    if _refused(exc):
                        self._refusal = exc
                        raise
                    attempt += 1
                    log.info("%s; trying again in %.2f s", exc, backoff(attempt))
                    continue
                self._frames = _Frames(self._frames.limit, self._frames.on_error)
                self._conn = fresh
                if broken.protocol.close_rcvd is None:  # no close frame: what it carried is unconfirmed
                    self._broken_sent += self._sent  # and nobody was told: close() says it
                self._sent = 0
                if self._closed:
                    await fresh.close()
                    raise _closed(self.url, None)
                log.info("%s: reconnected", self.url)
                return

    async def close(self) -> None:
        """Closes the connection (code 1000) and stops any reconnection; idempotent. Returns
        once the peer has answered with its close frame; else raises TransportClosed, as
        ``WsChannel.close`` does."""
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        conn = self._conn
        conn.close_timeout = self._confirm_within  # (not set at dial: a failed keepalive closes sooner)
        await conn.close()
        _confirmed(conn, self.url, self._sent, self._broken_sent)


async def async_connect(
    address: Address,
    *,
    token: str | None = None,
    timeout: float = TIMEOUT,
    reconnect: bool = False,
    max_line: int = MAX_LINE,
    on_error: ErrorHandler | None = None,
    ping_interval: float | None = PING_INTERVAL,
    origin: str | None = None,
) -> AsyncWsChannel:
    """The asyncio ``connect``: the same options, an AsyncWsChannel."""
    _check_options(max_line, timeout, token)
    url = _public_url(address)
    request_url = _request_url(address, token)
    interval = ping_interval or None

    async def dial() -> _AsyncConnection:
        try:
            conn = await _async_dial(
                request_url,
                open_timeout=timeout,
                max_size=max_line,
                compression=None,
                ping_interval=interval,
                ping_timeout=interval,
                close_timeout=CLOSE_TIMEOUT,  # (close() waits this long for the confirmation)
                origin=origin,  # type: ignore[arg-type]
                **_DIRECT,
            )
        except (OSError, asyncio.TimeoutError, WebSocketException) as exc:
            raise _connect_error(url, exc, timeout) from exc
        small_reads(conn.transport)
        return conn

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    attempt = 0
    while True:  # with reconnect, a listener not up yet is waited for, ``timeout`` s at most
        try:
            first = await dial()
            break
        except ConnectError as exc:
            wait = None if _refused(exc) else first_retry(reconnect, attempt, deadline - loop.time())
            if wait is None:
                raise
            await asyncio.sleep(wait)
            attempt += 1
    return AsyncWsChannel(
        first,
        url=url,
        max_line=max_line,
        on_error=on_error,
        redial=dial if reconnect else None,
        confirm_within=timeout,  # the server reads everything before our close frame: give it time
    )


class _AsyncMailbox:
    """The asyncio _Mailbox: one raw message per item (no batching: asyncio reads are cheap)."""

    def __init__(self, size: int) -> None:
        self._items: deque[tuple[_Slot, Any]] = deque()
        self._size = size
        self._closed = False
        self._getters: deque[asyncio.Future[None]] = deque()
        self._putters: deque[asyncio.Future[None]] = deque()

    @staticmethod
    def _wake(waiters: deque[asyncio.Future[None]]) -> None:
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        waiters.clear()

    @staticmethod
    def _wake_one(waiters: deque[asyncio.Future[None]]) -> None:
        """Wakes the longest waiting one (not all: with a thousand connections waiting to put,
        waking all for each free place made every message cost a thousand task switches)."""
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    @classmethod
    async def _wait(cls, waiters: deque[asyncio.Future[None]]) -> None:
        waiter = asyncio.get_running_loop().create_future()
        waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                cls._wake_one(waiters)  # it was our turn: pass it on
            raise

    async def put(self, item: tuple[_Slot, Any]) -> bool:
        while len(self._items) >= self._size and not self._closed:
            await self._wait(self._putters)
        if self._closed:
            return False
        self._items.append(item)
        self._wake_one(self._getters)
        if len(self._items) < self._size:
            self._wake_one(self._putters)  # room for more: the next putter need not wait for a get
        return True

    async def get(self) -> tuple[_Slot, Any]:
        while not self._items:
            if self._closed:
                raise TransportClosed("closed")
            await self._wait(self._getters)
        if self._closed:
            raise TransportClosed("closed")
        item = self._items.popleft()
        self._wake_one(self._putters)
        if self._items:
            self._wake_one(self._getters)
        return item

    def close(self) -> None:
        self._closed = True
        self._items.clear()
        self._wake(self._getters)
        self._wake(self._putters)


_TOO_BIG_MARK = object()  # in the async mailbox: the connection was closed for a too-large message


class AsyncWsListener(AsyncListener):
    """A WebSocket server, asyncio: made by ``await async_listen(...)``."""

    def __init__(
        self,
        address: Address,
        *,
        token: str | None,
        origins: Sequence[str] | None,
        max_line: int,
        on_error: ErrorHandler | None,
    ) -> None:
        self._address = address
        self._path = address.path
        self._token = token
        self._origins = tuple(origins) if origins is not None else None
        self._max_line = max_line
        self._on_error = on_error
        self._router: Router[_Slot] = Router()
        self._arrivals = asyncio.Condition()
        self._mailbox = _AsyncMailbox(_MAILBOX * 16)
        self._later = _Later()  # values of a frame of several lines, not handed out yet
        self._merged: set[_AsyncServerConnection] = set()
        self._closed = False
        self.url = _public_url(address)

    async def _start(
        self, timeout: float | None, ping_interval: float | None, backlog: int = BACKLOG
    ) -> None:
        address = self._address
        try:
            self._server = await _async_serve(
                self._handle,
                address.host,
                address.port,
                process_request=self._gate,
                compression=None,
                max_size=self._max_line,
                open_timeout=timeout,
                ping_interval=ping_interval or None,
                ping_timeout=ping_interval or None,
                close_timeout=CLOSE_TIMEOUT,
                backlog=backlog,  # (to loop.create_server)
            )
        except OSError as exc:
            raise TransportError(f"{self.url}: cannot listen: {exc.strerror or exc}") from exc
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.url = _public_url(address.with_port(port))

    def _gate(self, connection: _AsyncServerConnection, request: Request) -> Response | None:
        refusal = _gate(request, self._path, self._token, self._origins)
        return None if refusal is None else connection.respond(*refusal)

    async def _handle(self, conn: _AsyncServerConnection) -> None:
        small_reads(conn.transport)
        slot = _Slot(conn, _Frames(self._max_line, self._on_error), asyncio.Event())
        if self._closed:
            return
        if self._router.arrive(slot):
            self._claim(slot, _MERGED)
        else:
            async with self._arrivals:
                self._arrivals.notify_all()
        await slot.claimed.wait()
        if slot.mode is _MERGED:
            await self._pump(slot)
        elif slot.mode is _ACCEPTED:
            await conn.wait_closed()

    def _claim(self, slot: _Slot, mode: str) -> None:
        slot.mode = mode
        if mode is _MERGED:
            self._merged.add(slot.conn)
        slot.claimed.set()

    async def _pump(self, slot: _Slot) -> None:
        conn = slot.conn
        put = self._mailbox.put
        try:
            while True:
                try:
                    raw = await conn.recv()
                except ConnectionClosed as exc:
                    if _was_too_big(exc):
                        await put((slot, _TOO_BIG_MARK))
                    return
                if not await put((slot, raw)):
                    return
        finally:
            self._merged.discard(conn)

    def _merge(self) -> None:
        if self._closed:
            raise _closed(self.url, None)
        for slot in self._router.start_merging():
            self._claim(slot, _MERGED)

    async def receive(self) -> Any:
        """The next message from any merged connection, in arrival order."""
        if not self._router.merging:
            self._merge()
        later = self._later
        while True:
            if later:
                return later.pop()
            try:
                slot, raw = await self._mailbox.get()
            except TransportClosed:
                raise _closed(self.url, None) from None
            if raw is _TOO_BIG_MARK:
                slot.frames.too_large()
                continue
            value = slot.frames.take(raw, later)
            if value is not _SKIP:
                return value

    async def send(self, value: Any) -> None:
        """Sends one message to every merged connection (none connected: it goes nowhere)."""
        await self._broadcast([_payload(value)])

    async def send_many(self, values: Iterable[Any]) -> None:
        """Sends the messages to every merged connection, in one frame as ``WsChannel.send_many``."""
        await self._broadcast([payload for payload, _ in _batches(values, self._max_line)])

    async def _broadcast(self, payloads: list[bytes | memoryview]) -> None:
        if not self._router.merging:
            self._merge()
        if self._closed:
            raise _closed(self.url, None)
        for conn in list(self._merged):
            try:
                for payload in payloads:
                    await conn.send(payload, text=True)
            except ConnectionClosed:
                pass

    async def accept(self) -> AsyncWsChannel:
        """The next connection as its own duplex channel (waits for one)."""
        self._router.begin_accept()
        try:
            async with self._arrivals:
                while True:
                    if self._closed:
                        raise _closed(self.url, None)
                    slot = self._router.take()
                    if slot is not None:
                        break
                    await self._arrivals.wait()
        finally:
            for other in self._router.end_accept():
                self._claim(other, _MERGED)
        self._claim(slot, _ACCEPTED)
        return AsyncWsChannel(slot.conn, url=self.url, max_line=self._max_line, on_error=self._on_error)

    async def close(self) -> None:
        """Stops listening and closes every connection (1001); idempotent."""
        if self._closed:
            return
        self._closed = True
        held = self._router.close()
        for slot in held:
            self._claim(slot, _CLOSED)
        self._mailbox.close()
        self._later.clear()  # (as the mailbox: nothing more is handed out)
        async with self._arrivals:
            self._arrivals.notify_all()
        if hasattr(self, "_server"):
            self._server.close()
            await self._server.wait_closed()


async def async_listen(
    address: Address,
    *,
    token: str | None = None,
    origins: Sequence[str] | None = None,
    timeout: float = TIMEOUT,
    max_line: int = MAX_LINE,
    on_error: ErrorHandler | None = None,
    ping_interval: float | None = PING_INTERVAL,
    reconnect: bool = False,
    backlog: int = BACKLOG,
) -> AsyncWsListener:
    """The asyncio ``listen``: the same options, an AsyncWsListener."""
    del reconnect
    _check_options(max_line, timeout, token)
    listener = AsyncWsListener(address, token=token, origins=origins, max_line=max_line, on_error=on_error)
    await listener._start(timeout, ping_interval, check_backlog(backlog))
    return listener
