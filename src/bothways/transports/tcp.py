"""TCP: NDJSON both ways over ``tcp://host:port``; mirrored name for name in js/src/transports/tcp.js.

``connect(address)`` is the client, ``listen(address)`` the server; both are duplex. The blocking
flavour uses plain sockets, the asyncio flavour asyncio streams; the handshake, the routing of
connections and the queues are sans-I/O pieces (``ServerGate``, ``ClientHandshake``, ``backoff``,
``_Mailbox``, ``_Switchboard``) that both flavours share.

Wire (normative; the JavaScript side does the same byte for byte)
-----------------------------------------------------------------
- Both directions are NDJSON (spec/PROTOCOL.md §2), decoded by an Inbox: a malformed or
  over-long line goes to ``on_error`` with its line number, and the stream goes on.
- **No token on either side: no handshake at all.** Plain NDJSON, so ``nc`` and the tutorial's
  programs interoperate.
- **Hello.** A client given ``token`` sends as its first line
  ``{"bothways":"hello","token":"<token>"}`` and waits (up to ``timeout``) for the server's
  answer line. A server always looks at the first line of each connection (at most
  ``HELLO_LIMIT`` = 4096 bytes before its ``\\n``): if it is a JSON object whose ``"bothways"``
  member is ``"hello"``, the server answers ``{"bothways":"welcome"}`` when its own token is unset
  or equal (a constant-time comparison of the UTF-8 bytes), else
  ``{"bothways":"refused","reason":"wrong token"}`` and closes. The hello is never delivered, but
  it counts as line 1 of the stream, so line numbers in errors are those of the bytes sent.
- **Token required.** A server given a token answers any other first line - including one with
  no ``\\n`` within 4096 bytes, or a connection that sends nothing for ``timeout`` seconds - with
  ``{"bothways":"refused","reason":"token required"}`` and closes; nothing from that connection is
  delivered. A server without a token delivers such a first line as an ordinary message.
- **The client's side.** Lines that arrive before the welcome are messages (a server without a
  token may broadcast before it has read the hello): they are delivered, in order, after it. A
  ``refused`` line fails ``connect`` with ``ConnectError(url, "refused by the server: <reason>")``.
  A client without a token that gets a ``refused`` line as the server's first line raises the
  same ConnectError from ``receive`` (it talked to a server that wants a token), and also from
  its next ``send``/``send_many`` or ``close`` when it only sends: before each write it looks
  (a peek) at what the server sent first, and ``close`` reads the refusal where it waits for the
  server's FIN; the message adds "(nothing sent on this connection was delivered)", and
  ``close`` does not call the connection confirmed. Once raised, sends raise it again and
  ``close`` is quiet (``first_refusal``).
- The token never appears in a URL we print (``Listener.url``, error messages).

Behaviour
---------
- ``connect`` options: ``token``, ``timeout`` (connect + handshake, default 10 s), ``reconnect``
  (default False), ``max_line``, ``on_error``. Refused, unresolvable, timed out: ConnectError
  naming the URL. TCP_NODELAY is set; reads are 64 KiB; ``send_many`` is one write.
- Without ``reconnect``, a lost peer gives TransportClosed on ``send``/``receive`` (a clean close
  ends iteration after the last message). With ``reconnect``, a lost connection (closed, reset,
  or the server gone) is opened again with exponential back-off (``backoff``: 0.05 s doubling to
  5 s), with the handshake again; ``receive`` goes on with the new connection, ``send`` waits for
  it; only ``close()`` stops it. **What was sent is delivered at least once**: a reconnecting
  client keeps the newest ``RESEND`` (1 MiB) of what it wrote on its connection and writes it
  again, first, on the next one, since nothing says how much of it the peer had read; so
  messages from before a break arrive twice when the peer had read them (a seq or id in the
  message lets the application drop the copy). A ``refused`` answer while reconnecting is not
  retried: it is raised as ConnectError. With ``reconnect``, the first ``connect`` is retried
  on the same schedule until ``timeout`` runs out (a client started a moment before its server
  waits for it); without, it fails at once.
- ``listen`` options: ``token``, ``timeout`` (how long a connection may take to send its hello
  when a token is set), ``max_line``, ``on_error``, ``backlog`` (default ``BACKLOG`` = 4096, which
  the kernel caps at ``net.core.somaxconn``); ``reconnect`` is accepted and ignored, so one URL
  serves both sides. It returns once bound; ``url`` has the real port. Many clients at once.
- Which connection goes where is ``base.Router``'s rule, the same as ws's (spec/PROTOCOL.md
  section 7): a connection whose handshake is done goes to an ``accept()`` that waits, else to
  the merged stream once the listener merges (from its first ``receive``/iteration or ``send``
  on), else it is held - read ahead into its own queue, ``READ_AHEAD`` bytes at most - until
  one of them takes it. ``accept()`` takes the oldest held connection (one that connected before
  the call included), with everything it sent, as a ``TcpConnection`` (duplex; TransportClosed
  when its peer goes); a merged connection is never handed to ``accept()``. Merged connections
  feed ``receive`` and iteration in arrival order (one 64 KiB read at a time), and ``send``
  broadcasts to them (a connection that fails is dropped; with none, the message goes nowhere).
  A merged client that goes away just leaves, and the listener goes on; a held one that goes
  away with nothing sent is forgotten. Closing the listener closes every connection, accepted
  and held ones included.
- **Nothing is lost silently: a client's close is confirmed.** ``close()`` of a ``connect``
  channel sends a FIN after our data, then reads and drops what the peer still sends until the
  peer's FIN, which a bothways listener sends as soon as it has read everything up to ours (a
  merged connection is closed then; an accepted or held one is half-closed, still the application's).
  ``close()`` returns once that FIN came (one round trip when the peer reads); when it does not
  come within ``timeout`` s, or the connection is reset, it raises TransportClosed: ``<url>:
  close: the peer did not confirm within 10 s that it read what we sent (N bytes on this
  connection); it may be lost``. Both flavours wait for it; the words are tcp.js's. A channel
  that sent nothing lingers in the background instead (nothing to lose). A connection whose loss
  ``send`` or ``receive`` already reported is not reported again. A listener's own ``close()``
  (and an accepted connection's) still lingers, ``LINGER`` = 2 s at most, without reporting.
- Why the confirmation, and why the backlog: when the listener's accept queue is full, Linux
  (``tcp_abort_on_overflow`` = 0) drops the client's last handshake ACK and keeps the connection
  half-made on the server while the client believes it is open: the client's data and FIN go
  unanswered, its kernel retransmits, and once the server gives up (SYN-ACK retries, about a
  minute) the data is gone. The kernel counts it as ``TcpExtListenOverflows``. A close that only
  lingered resolved normally all the same: 1,000 clients x 100 messages into a blocking listener
  with a backlog of 128 delivered 67,500 of 100,000, with 1,871 overflows and every close
  "fine". With the backlog at 4096 all arrive; with the confirmation, a loss cannot be silent.
  With ``reconnect``, ``close()`` wants the FIN on the newest connection, and a FIN that was
  there before ours (the server went away) confirms nothing: the connection is opened again,
  what it kept is written again, and that one must confirm, within ``timeout``. Only bytes sent
  on a connection that broke when more than ``RESEND`` were unconfirmed cannot be sent again:
  ``close()`` then raises TransportClosed saying how many. 1,000 reconnecting clients whose
  server is restarted under them lose nothing (tests/cross/test_many_clients.py).
- Backpressure: ``send`` blocks while the peer does not read. A listener reads at most
  ``READ_AHEAD`` bytes ahead of its consumer per stream, then stops reading, so a slow consumer
  holds its clients back; a broadcast waits for the slowest merged reader.
- ``on_error`` runs in the thread (or task) that called ``receive``, in its place among the
  messages.

Why a thread per connection in the blocking listener (not ``selectors`` in the caller's thread):
the token handshake must be answered even while the application is not calling the listener
(a client and a server in one thread, or a server that only broadcasts), and a bounded queue
per stream gives TCP backpressure for free. Reader threads decode 64 KiB at a time and hand over
whole batches, so the hand-over costs one lock per read, not per message. It suits tens to
hundreds of clients: it held 10,000 at once without loss in bench/load.py, at a twentieth of the
asyncio listener's rate. For thousands, use ``async_listen`` (bench/RESULTS.md has the numbers).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from typing import Any

from ..errors import ConnectError, DecodeError, TransportClosed, TransportError
from ..urls import Address
from ..wire import MAX_LINE, decode, encode, encode_many
from .base import (
    BACKLOG,
    BACKOFF_CAP,
    BACKOFF_FIRST,
    AsyncChannel,
    AsyncListener,
    Channel,
    ErrorHandler,
    Inbox,
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
    "BACKLOG",
    "BACKOFF_CAP",
    "BACKOFF_FIRST",
    "HELLO_LIMIT",
    "LINGER",
    "TIMEOUT",
    "WELCOME",
    "AsyncTcpChannel",
    "AsyncTcpConnection",
    "AsyncTcpListener",
    "ClientHandshake",
    "Refused",
    "ServerGate",
    "TcpChannel",
    "TcpConnection",
    "TcpListener",
    "async_connect",
    "async_listen",
    "backoff",
    "connect",
    "first_refusal",
    "hello_line",
    "listen",
    "refusal",
    "refused_line",
]

CHUNK = 64 * 1024
HELLO_LIMIT = 4096
"""The longest first line a server reads when looking for a hello, in bytes before the newline."""
TIMEOUT = 10.0
"""Default seconds for connect + handshake (and, on a server with a token, for the hello)."""
READ_AHEAD = 1024 * 1024  # bytes a listener's stream holds before its readers stop reading
JOIN = 2.0  # seconds to wait for a thread when closing
LINGER = 2.0
"""Seconds a closed connection goes on reading (and dropping) what the peer still sends, waiting
for its FIN, so that the kernel does not answer it with a reset that would drop our last data."""

RESEND = 1024 * 1024
"""Bytes of what a reconnecting client sent on its connection that it keeps, newest first, to
send again on the next connection if this one breaks before the peer confirms them."""

WAITING, OPEN, REFUSED = "waiting", "open", "refused"


# --------------------------------------------------------------------------------------------
# Sans-I/O: the handshake, the back-off, the queues and the routing of connections


def hello_line(token: str) -> bytes:
    """The client's first line when it has a token."""
    return encode({"bothways": "hello", "token": token})


WELCOME = encode({"bothways": "welcome"})


def refused_line(reason: str) -> bytes:
    """The server's answer to a connection it does not take."""
    return encode({"bothways": "refused", "reason": reason})


def _control(value: Any) -> str | None:
    """``"hello"``, ``"welcome"``, ``"refused"`` for a handshake line's value, else None."""
    if type(value) is dict:
        kind = value.get("bothways")
        if kind in ("hello", "welcome", "refused"):
            return str(kind)
    return None


class ServerGate:
    """What a server does with the first line of a connection (sans-I/O).

    Feed it what the connection sends while ``state`` is ``"waiting"``; each call returns
    ``(reply, data)``: bytes to send back (the welcome or the refusal, else b"") and bytes for
    the connection's Inbox (everything after a hello, preceded by a newline so that the hello
    counts as line 1; or, without a hello, everything from the first byte). Once ``state`` is
    ``"refused"``, send the reply and close the connection.
    """

    __slots__ = ("_buf", "_token", "reason", "state")

    def __init__(self, token: str | None) -> None:
        self._token = None if token is None else token.encode("utf-8")
        self._buf = b""
        self.state = WAITING
        self.reason = ""

    def feed(self, data: bytes) -> tuple[bytes, bytes]:
        """Takes bytes received while waiting; see the class docstring for what comes back."""
        buf = self._buf + data if self._buf else data
        end = buf.find(b"\n", 0, HELLO_LIMIT + 1)
        if end < 0:
            if len(buf) <= HELLO_LIMIT:
                self._buf = buf
                return b"", b""
            self._buf = b""
            return self._not_hello(buf)
        self._buf = b""
        try:
            value = decode(buf[:end])
        except DecodeError:
            value = None
        if _control(value) != "hello":
            return self._not_hello(buf)
        token = value.get("token")
        if self._token is None or (
            isinstance(token, str) and hmac.compare_digest(token.encode("utf-8", "replace"), self._token)
        ):
            self.state = OPEN
            return WELCOME, b"\n" + buf[end + 1 :]
        return self._refuse("wrong token" if isinstance(token, str) else "token required"), b""

    def feed_eof(self) -> bytes:
        """The connection ended while waiting: the bytes for the Inbox (without a token)."""
        buf, self._buf = self._buf, b""
        if self.state != WAITING:
            return b""
        if self._token is not None:
            self.state = REFUSED
            self.reason = "token required"
            return b""
        self.state = OPEN
        return buf

    def timed_out(self) -> bytes:
        """No hello within the timeout (servers with a token): the refusal to send."""
        return self._refuse("token required")

    def _not_hello(self, buf: bytes) -> tuple[bytes, bytes]:
        if self._token is not None:
            return self._refuse("token required"), b""
        self.state = OPEN
        return b"", buf

    def _refuse(self, reason: str) -> bytes:
        self.state = REFUSED
        self.reason = reason
        return refused_line(reason)


class Refused(Exception):
    """The server answered the hello with a refusal (``str(error)`` is its reason)."""


class ClientHandshake:
    """The client's side of the token handshake (sans-I/O).

    Send ``hello``, then give ``check`` each batch of values decoded from the server (the whole
    stream goes through the connection's Inbox) until it returns True. Values before and after
    the welcome are kept in ``early``: deliver them first.

    Raises:
        Refused: from ``check``, when the server refused us.
    """

    __slots__ = ("early", "hello")

    def __init__(self, token: str) -> None:
        self.hello = hello_line(token)
        self.early: list[Any] = []

    def check(self, values: list[Any]) -> bool:
        """Looks for the server's answer among ``values``; True once welcomed."""
        for i, value in enumerate(values):
            kind = _control(value)
            if kind == "welcome":
                self.early.extend(values[:i])
                self.early.extend(values[i + 1 :])
                return True
            if kind == "refused":
                raise Refused(str(value.get("reason", "")))
        self.early.extend(values)
        return False


def refusal(values: list[Any]) -> str | None:
    """The reason, when the server's first message is a refusal (clients without a token)."""
    if values and _control(values[0]) == "refused":
        return str(values[0].get("reason", ""))
    return None


def first_refusal(data: bytes) -> str | None:
    """The reason, when ``data`` (the first bytes a server sent) starts with a whole refusal
    line; None otherwise (another line, or none whole yet). A client without a token looks
    there before it sends, and while it closes, since a server that wants a token answers its
    first line with a refusal that the client, sending only, would never read."""
    end = data.find(b"\n", 0, HELLO_LIMIT + 1)
    if end < 0:
        return None
    try:
        value = decode(data[:end])
    except DecodeError:
        return None
    return refusal([value])


Item = list[Any] | DecodeError


class _Collector:
    """An Inbox whose bad lines stay in their place among the values, to be handed to the
    thread or task that calls ``receive`` (where ``on_error`` runs)."""

    __slots__ = ("_items", "inbox")

    def __init__(self, max_line: int) -> None:
        self.inbox = Inbox(max_line=max_line, on_error=self._keep)
        self._items: list[Item] = []

    def _keep(self, error: DecodeError) -> None:
        values = self.inbox.pop_all()
        if values:
            self._items.append(values)
        self._items.append(error)

    def feed(self, data: bytes) -> list[Item]:
        self.inbox.feed(data)
        return self._drain()

    def feed_eof(self) -> list[Item]:
        self.inbox.feed_eof()
        return self._drain()

    def _drain(self) -> list[Item]:
        if len(self.inbox):
            self._items.append(self.inbox.pop_all())
        items, self._items = self._items, []
        return items


class _Mailbox:
    """Batches of values, and DecodeErrors in their place, each with the connection it came from
    and the bytes it was read in (for backpressure)."""

    __slots__ = ("ended", "items", "raised", "reason", "size")

    def __init__(self) -> None:
        self.items: deque[tuple[Item, int, _PeerState]] = deque()
        self.size = 0
        self.ended = False
        self.reason = ""
        self.raised: Exception | None = None  # what on_error raised, after values to hand out

    def put(self, peer: _PeerState, items: list[Item], size: int) -> None:
        last = len(items) - 1
        for i, item in enumerate(items):
            self.items.append((item, size if i == last else 0, peer))
        self.size += size
        peer.pending += len(items)

    def take(self, on_error: ErrorHandler) -> list[Any]:
        """Every value waiting, with each error given to ``on_error`` in its place. When the
        policy raises, the values before the error come back first and the exception is raised
        by the next call. Returns [] when only errors were waiting."""
        if self.raised is not None:
            error, self.raised = self.raised, None
            raise error
        out: list[Any] = []
        items = self.items
        while items:
            item, size, peer = items.popleft()
            self.size -= size
            peer.pending -= 1
            if type(item) is list:
                if out:
                    out.extend(item)
                else:
                    out = item
            elif not out:
                on_error(item)  # type: ignore[arg-type]
            else:
                try:
                    on_error(item)  # type: ignore[arg-type]
                except Exception as exc:
                    self.raised = exc
                    break
        return out


HELD, MERGED, TAKEN = "held", "merged", "taken"


class _PeerState:
    """What the switchboard knows of one server-side connection."""

    box: _Mailbox
    ended: bool
    name: str
    pending: int  # items of it in a mailbox
    reason: str  # why its stream ended
    route: str | None  # HELD, MERGED, TAKEN; None before its handshake is done


class _Switchboard:
    """Where the messages of a listener's connections go (sans-I/O, shared by both flavours):
    ``base.Router``'s rule, the same as ws's. A held connection reads into its own mailbox (at
    most ``READ_AHEAD`` bytes ahead); merging moves what it holds into the listener's mailbox
    (``merged``), and it goes on there; ``accept()`` takes a held one with its own. A merged
    connection that ended is forgotten once its last message has been taken; a held one that
    ended with nothing left, at once.

    ``start_merging``, ``end_accept`` and ``depart`` say which sockets may be closed now.
    """

    def __init__(self) -> None:
        self.merged = _Mailbox()
        self.router: Router[Any] = Router()
        self.joined: deque[Any] = deque()  # the merged connections, oldest first
        self.peers: set[Any] = set()  # every connection whose socket is open, for close()
        self.closed = False

    def arrive(self, peer: _PeerState) -> None:
        """A connection is ready (welcomed, or at once without a token): routed."""
        peer.route = HELD
        if self.router.arrive(peer):
            self._merge(peer)

    def start_merging(self) -> list[Any]:
        """The merged stream is used (receive, send): the held connections join it. Returns
        those of them that ended already: their sockets may be closed now."""
        return [peer for peer in self.router.start_merging() if self._merge(peer)]

    def begin_accept(self) -> None:
        self.router.begin_accept()

    def claim(self) -> Any:
        """The oldest held connection, now taken, with its own mailbox; None when none waits."""
        peer = self.router.take()
        if peer is not None:
            peer.route = TAKEN
        return peer

    def end_accept(self) -> list[Any]:
        """An accept() is over: as ``start_merging``, for the held ones merged now."""
        return [peer for peer in self.router.end_accept() if self._merge(peer)]

    def members(self) -> list[Any]:
        """The open merged connections: whom a broadcast reaches."""
        return [peer for peer in self.joined if not peer.ended]

    def reach(self) -> int:
        """The open connections not taken by accept(): merged, or held (a send merges them)."""
        return len(self.members()) + sum(not peer.ended for peer in self.router.held)

    def take(self, on_error: ErrorHandler) -> list[Any]:
        """The next values of the merged stream (see ``_Mailbox.take``)."""
        try:
            return self.merged.take(on_error)
        finally:
            self._prune()

    def depart(self, peer: _PeerState, items: list[Item], reason: str) -> bool:
        """The connection's stream ended; True when its socket may be closed now (merged, or
        held with nothing left to deliver)."""
        box = peer.box
        if items:
            box.put(peer, items, 0)
        peer.ended = True
        peer.reason = reason
        if peer.route == MERGED:
            self._prune()
            return True
        box.ended = True
        box.reason = reason
        if peer.route == HELD and not box.items:  # nothing for anyone: forgotten
            self.router.forget(peer)
            return True
        return False

    def _merge(self, peer: _PeerState) -> bool:
        """Moves a held connection into the merged stream; True when it ended already."""
        own, merged = peer.box, self.merged
        merged.items.extend(own.items)
        merged.size += own.size
        own.items.clear()
        own.size = 0
        peer.box = merged
        peer.route = MERGED
        self.joined.append(peer)
        self._prune()
        return peer.ended

    def _prune(self) -> None:
        if any(peer.ended and not peer.pending for peer in self.joined):
            self.joined = deque(peer for peer in self.joined if not (peer.ended and not peer.pending))


# --------------------------------------------------------------------------------------------
# Options and errors, shared by both flavours


def _check(
    token: str | None, timeout: float, max_line: int, on_error: ErrorHandler | None
) -> tuple[str | None, float, int, ErrorHandler]:
    if token is not None:
        if not isinstance(token, str) or not token:
            raise TypeError(f"token must be a non-empty string, not {token!r}")
        if len(hello_line(token)) > HELLO_LIMIT:
            raise ValueError(f"token is too long (the hello line must fit in {HELLO_LIMIT} bytes)")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ValueError(f"timeout must be a number of seconds > 0, not {timeout!r}")
    if isinstance(max_line, bool) or not isinstance(max_line, int) or max_line < 1:
        raise ValueError(f"max_line must be a whole number of bytes >= 1, not {max_line!r}")
    if on_error is not None and not callable(on_error):
        raise TypeError(f"on_error must be callable, not {on_error!r}")
    return token, float(timeout), max_line, on_error or log_error


def _target(address: Address) -> tuple[str, int, str]:
    if (
        not isinstance(address, Address)
        or address.scheme != "tcp"
        or address.host is None
        or address.port is None
    ):
        raise TypeError(f"expected a tcp:// Address (bothways.urls.parse), not {address!r}")
    return address.host, address.port, Address("tcp", address.host, address.port).url


def _connect_error(exc: OSError, host: str, timeout: float, url: str) -> ConnectError:
    if isinstance(exc, socket.gaierror):
        message = f"cannot resolve host {host!r} ({exc.strerror or exc})"
    elif isinstance(exc, TimeoutError):
        message = f"no connection within {timeout:g} s"
    elif isinstance(exc, ConnectionRefusedError):
        message = "connection refused (nothing listens there)"
    else:
        message = f"cannot connect: {exc.strerror or exc}"
    error = ConnectError(message, url=url)
    error.__cause__ = exc
    return error


def _lost(exc: BaseException | None) -> str:
    if exc is None:
        return "the peer closed the connection"
    if isinstance(exc, OSError) and exc.strerror:
        return f"connection lost: {exc.strerror.lower()}"
    return f"connection lost: {exc}"


def _bind(host: str, port: int, url: str, backlog: int = BACKLOG) -> socket.socket:
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise TransportError(f"{url}: cannot resolve host {host!r} to listen on ({exc.strerror})") from exc
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise TransportError(f"{url}: cannot listen: {exc.strerror or exc}") from exc
    return sock


def _bound_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return Address("tcp", host, port).url


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _linger(sock: socket.socket) -> None:
    """Closes ``sock`` without losing what we sent: a FIN after our data, then (in a daemon
    thread) what the peer still sends is read and dropped until its FIN, ``LINGER`` s at most,
    and only then the socket is closed. Closing with unread data would make the kernel send a
    reset, and a reset makes the peer's kernel drop what it has not handed out yet."""
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:  # not connected any more: nothing to protect
        sock.close()
        return
    threading.Thread(target=_drain, args=(sock,), name="bothways linger", daemon=True).start()


def _drain(sock: socket.socket) -> None:
    deadline = time.monotonic() + LINGER
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ)
            while (left := deadline - time.monotonic()) > 0 and selector.select(left):
                try:
                    if not sock.recv(CHUNK, socket.MSG_DONTWAIT):
                        break  # the peer's FIN: a clean close
                except BlockingIOError:  # a receiving thread took it
                    time.sleep(0.001)
    except (OSError, ValueError):
        pass
    finally:
        _shut(sock)  # wakes a thread still blocked in recv on it
        sock.close()


def _unconfirmed(url: str, timeout: float, sent: int, reset: bool) -> TransportClosed:
    """The error of a close the peer did not confirm (the same words as tcp.js)."""
    what = f"{sent} bytes on this connection"
    if reset:
        return TransportClosed(
            f"{url}: close: the connection was reset before the peer confirmed it read what we "
            f"sent ({what}); it may be lost"
        )
    return TransportClosed(
        f"{url}: close: the peer did not confirm within {timeout:g} s that it read what we sent "
        f"({what}); it may be lost"
    )


def _broken(url: str, sent: int, reconnects: int) -> TransportClosed:
    """The error of a reconnecting client's close when connections broke under more than it
    could send again (RESEND bytes)."""
    return TransportClosed(
        f"{url}: close: {sent} bytes were sent on connections that broke before the peer confirmed "
        f"them, more than the last {RESEND} bytes that were sent again (opened again {reconnects} "
        "times); they may be lost"
    )


_KEPT_BLOCK = 64 * 1024


class _Kept:
    """What a reconnecting client sent on its connection, the newest RESEND bytes of it (whole
    writes), to send again first on the next connection when this one breaks: the peer gets
    everything at least once (what it had read already, twice). Sans-I/O; both flavours."""

    __slots__ = ("chunks", "dropped", "size")

    def __init__(self) -> None:
        # Small writes are copied into blocks of up to _KEPT_BLOCK bytes: orjson (3.12+) returns
        # bytes that each hold a 4 KiB allocation, so keeping each write as it came held ~70 MB
        # for 1 MiB of small messages. A block holds whole writes: one is dropped whole.
        self.chunks: deque[bytes | bytearray] = deque()
        self.size = 0  # bytes in chunks
        self.dropped = 0  # bytes sent but no longer kept: beyond sending again

    def add(self, data: bytes) -> None:
        last = self.chunks[-1] if self.chunks else None
        if type(last) is bytearray and len(last) + len(data) <= _KEPT_BLOCK:
            last += data
        else:
            self.chunks.append(bytearray(data) if len(data) < _KEPT_BLOCK else data)
        self.size += len(data)
        while self.size > RESEND and len(self.chunks) > 1:
            old = self.chunks.popleft()
            self.size -= len(old)
            self.dropped += len(old)

    def take_dropped(self) -> int:
        dropped, self.dropped = self.dropped, 0
        return dropped

    def data(self) -> bytes:
        return b"".join(self.chunks)


def _confirm(link: _Link, url: str, timeout: float, strict: bool = False, wait: float | None = None) -> None:
    """Closes a client's connection and makes sure the peer read everything we sent on it: a FIN
    after our data, then what the peer still sends is read and dropped until its FIN, which a
    bothways listener (and any server that reads to the end and closes) sends only once it has
    read everything. No FIN within ``timeout`` s, or a reset: TransportClosed saying so. With
    nothing sent, nothing can be lost: the socket lingers in the background as ``_linger`` does.
    ``strict`` (a reconnecting client): a FIN already there before ours confirms nothing (the
    server went away, maybe before reading our last writes). ``wait``: seconds to wait, when
    less than ``timeout`` (which the error names) is left.
    """
    if not link.sent:
        _linger(link.sock)
        return
    sock = link.sock
    watch = link.fresh and not link.consumed and link.refused is None  # the refusal may come now
    head = b""
    if strict and (link.eof or _fin_waiting(sock)):
        _shut(sock)
        sock.close()
        raise _unconfirmed(url, timeout, link.sent, True)
    confirmed, reset = link.eof, False
    deadline = time.monotonic() + (timeout if wait is None else wait)
    try:
        sock.shutdown(socket.SHUT_WR)
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ)
            while not confirmed and (left := deadline - time.monotonic()) > 0:
                if selector.select(min(left, 0.05)):  # (a receiving thread may read the FIN)
                    try:
                        data = sock.recv(CHUNK, socket.MSG_DONTWAIT)
                    except BlockingIOError:  # a receiving thread took it
                        data = None
                    if data is not None:
                        confirmed = not data
                        if watch and len(head) <= HELLO_LIMIT:
                            head += data[: HELLO_LIMIT + 1 - len(head)]
                confirmed = confirmed or link.eof
    except OSError:  # reset, or not connected any more
        reset = not (confirmed or link.eof)
    finally:
        _shut(sock)  # wakes a thread still blocked in recv on it
        sock.close()
    if watch and link.refused is None:
        link.refused = first_refusal(head)
    if link.refused is not None:
        return  # close() says so, in the server's words
    if not (confirmed or link.eof):
        raise _unconfirmed(url, timeout, link.sent, reset)


_TCP_CLOSE_WAIT = 8  # (Linux's tcp_states.h) the peer's FIN came, ours not sent yet


def _fin_waiting(sock: socket.socket | None) -> bool:
    """Whether the peer closed its side already (its FIN came), read or not, even behind data
    not read yet: the kernel's TCP state, else a peek (which sees only a FIN read next)."""
    if sock is None:
        return False
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == _TCP_CLOSE_WAIT
    except (OSError, AttributeError):
        pass
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, OSError):
        return False


# --------------------------------------------------------------------------------------------
# Blocking client


class _Link:
    """One TCP connection of a client channel, with the Inbox of what it received."""

    __slots__ = (
        "consumed",
        "early",
        "eof",
        "fresh",
        "inbox",
        "kept",
        "peek_after",
        "refused",
        "sent",
        "sock",
        "told",
    )

    def __init__(self, sock: socket.socket, inbox: Inbox, early: list[Any], fresh: bool) -> None:
        self.sock = sock
        self.inbox = inbox
        self.early: deque[Any] = deque(early)
        self.eof = False
        self.fresh = fresh  # nothing received yet (a client without token checks for a refusal)
        self.sent = 0  # bytes of messages written on it (close() must see them confirmed)
        self.kept: _Kept | None = None  # a reconnecting client's: to send again if it breaks
        self.consumed = 0  # bytes the receiver read (a peek then no longer sees the first line)
        self.refused: str | None = None  # the server's refusal, once seen (clients without token)
        self.told = False  # the refusal was raised to the application already
        self.peek_after = 0.0  # (monotonic) sends look for a refusal at most every _PEEK_EVERY s


_PEEK_EVERY = 0.01
"""Seconds between two looks for a refusal from a client's sends: a look is a system call, and
a client without a token that only sends would make one per message. A refusal comes after the
server has read our first line, so a send a few ms later (or close()) tells it."""


def _peek_refusal(link: _Link, now: float | None = None) -> None:
    """Sets ``link.refused`` when the first line the server sent, still unread, is a refusal (a
    peek: the receiver still reads it). With ``now`` (a send), at most every _PEEK_EVERY s."""
    if link.refused is None and link.fresh and not link.consumed:
        if now is not None:
            if now < link.peek_after:
                return
            link.peek_after = now + _PEEK_EVERY
        try:
            first = link.sock.recv(HELLO_LIMIT + 1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            link.refused = first_refusal(first)
        except OSError:  # nothing there yet (BlockingIOError), or the connection failed
            pass


def _open(host: str, port: int, url: str, token: str | None, timeout: float, inbox: Inbox) -> _Link:
    """Connects and shakes hands; raises ConnectError, or Refused when the server refused us."""
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise _connect_error(exc, host, timeout, url) from None
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        early: list[Any] = []
        if token is not None:
            handshake = ClientHandshake(token)
            sock.sendall(handshake.hello)
            while True:
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                data = sock.recv(CHUNK)
                if not data:
                    inbox.feed_eof()
                    if handshake.check(inbox.pop_all()):
                        break
                    raise ConnectError("the server closed the connection during the handshake", url=url)
                inbox.feed(data)
                if handshake.check(inbox.pop_all()):
                    break
            early = handshake.early
        sock.settimeout(None)
        return _Link(sock, inbox, early, fresh=token is None)
    except ConnectError:
        sock.close()
        raise
    except TimeoutError:
        sock.close()
        raise ConnectError(
            f"no answer to the hello within {timeout:g} s (is it a bothways server?)", url=url
        ) from None
    except OSError as exc:
        sock.close()
        raise ConnectError(f"connection lost during the handshake: {_lost(exc)}", url=url) from exc
    except BaseException:
        sock.close()
        raise


class TcpChannel(Channel):
    """The client's side of a TCP connection (made by ``connect``): duplex, thread-safe for one
    sender and one receiver at a time."""

    def __init__(
        self,
        link: _Link,
        *,
        url: str,
        host: str,
        port: int,
        token: str | None,
        timeout: float,
        reconnect: bool,
        max_line: int,
        on_error: ErrorHandler,
    ) -> None:
        self.url = url
        self._host = host
        self._port = port
        self._token = token
        self._timeout = timeout
        self._reconnect = reconnect
        self._max_line = max_line
        self._on_error = on_error
        self._link = link  # the newest connection (senders use it)
        self._rlink = link  # the one the receiver drains (an old one until it is empty)
        self._ready: deque[Any] = deque()
        self._closed = False
        self._stop = threading.Event()
        self._state_lock = threading.Lock()
        self._relink_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._broken_sent = 0  # bytes sent on connections that broke, beyond what was resent
        self._refused_loss = False  # a refusal closed us with that still to report at close()
        self.reconnects = 0
        """How many times the connection was opened again."""
        if reconnect:
            link.kept = _Kept()

    def send(self, value: Any) -> None:
        """Sends one message; blocks while the peer does not read (and, with ``reconnect``,
        while the connection is down)."""
        self.send_bytes(encode(value))

    def send_many(self, values: Iterable[Any]) -> None:
        """Sends several messages in one write."""
        self.send_bytes(encode_many(values))

    def send_bytes(self, data: bytes) -> None:
        """Writes encoded NDJSON lines as they are.

        Raises:
            TransportClosed: the peer went away (without ``reconnect``), or we closed.
            ConnectError: reconnecting, the server refused us.
        """
        with self._send_lock:
            link = self._link
            while True:
                if self._closed:
                    raise TransportClosed(f"{self.url}: the channel is closed")
                self._check_refused(link, time.monotonic())
                try:
                    link.sock.sendall(data)
                    link.sent += len(data)
                    if link.kept is not None:
                        link.kept.add(data)
                    return
                except OSError as exc:
                    self._check_refused(link)  # (a server that refused us, then went)
                    link = self._relink(link, exc)

    def _check_refused(self, link: _Link, now: float | None = None) -> None:
        """Raises the ConnectError of a refusal on ``link``: one seen already, or one waiting
        unread as the first line the server sent (a client without a token that only sends
        never reads it otherwise). A peek: what the receiver reads stays there. ``now``: from a
        send that went well so far (then the peek is rationed)."""
        _peek_refusal(link, now)
        if link.refused is not None:
            link.told = True
            raise self._refusal(link)

    def _refusal(self, link: _Link) -> ConnectError:
        """What a refused client raises: nothing it sent was delivered."""
        return ConnectError(
            f"refused by the server: {link.refused} (nothing sent on this connection was delivered)",
            url=self.url,
        )

    def receive(self) -> Any:
        """The next message; TransportClosed when the peer closed (without ``reconnect``)."""
        if not self._ready:
            self._ready.extend(self._take())
        return self._ready.popleft()

    def receive_many(self) -> list[Any]:
        """Every message already received (at least one; waits for it)."""
        if self._ready:
            values = list(self._ready)
            self._ready.clear()
            return values
        return self._take()

    def _take(self) -> list[Any]:
        link = self._rlink
        while True:
            if self._closed:
                raise TransportClosed(f"{self.url}: the channel is closed")
            if link.early:
                values = list(link.early)
                link.early.clear()
                return values
            if len(link.inbox):
                values = link.inbox.pop_all()
                if link.fresh:
                    link.fresh = False
                    reason = refusal(values)
                    if reason is not None:
                        link.refused, link.told = reason, True
                        raise ConnectError(f"refused by the server: {reason}", url=self.url)
                return values
            if link.eof:
                link = self._rlink = self._relink(link, None)
                continue
            try:
                data = link.sock.recv(CHUNK)
            except OSError as exc:
                if self._closed:
                    continue
                link.eof = True
                link.inbox.feed_eof()
                link = self._rlink = self._relink(link, exc)
                continue
            if data:
                link.consumed += len(data)
                link.inbox.feed(data)
            else:
                link.eof = True
                link.inbox.feed_eof()

    def _relink(self, link: _Link, exc: BaseException | None) -> _Link:
        """The connection ``link`` failed: the next one, or TransportClosed."""
        with self._relink_lock:
            if self._closed:
                raise TransportClosed(f"{self.url}: the channel is closed")
            if self._link is not link:
                return self._link  # someone else reconnected already
            _shut(link.sock)
            link.sent = 0  # beyond confirming now: this error, or close(), says so
            if link.kept is None:
                raise TransportClosed(f"{self.url}: {_lost(exc)}") from exc
            self._broken_sent += link.kept.take_dropped()  # nobody is told now: close() says it
            attempt = 0
            while True:
                if self._stop.wait(backoff(attempt)):
                    raise TransportClosed(f"{self.url}: the channel is closed")
                attempt += 1
                try:
                    new = self._reopen(link.kept)
                except ConnectError:
                    continue
                except Refused as refused:
                    self._end_refused()
                    raise ConnectError(f"refused by the server: {refused}", url=self.url) from None
                with self._state_lock:
                    if self._closed:
                        new.sock.close()
                        raise TransportClosed(f"{self.url}: the channel is closed")
                    self._link = new
                link.sock.close()
                self.reconnects += 1
                return new

    def _reopen(self, kept: _Kept) -> _Link:
        """A new connection, with what the broken one may not have delivered sent first."""
        inbox = Inbox(max_line=self._max_line, on_error=self._on_error)
        new = _open(self._host, self._port, self.url, self._token, self._timeout, inbox)
        new.kept = kept
        if kept.size:
            try:
                new.sock.settimeout(self._timeout)  # (a server that does not read: not forever)
                new.sock.sendall(kept.data())
                new.sock.settimeout(None)
            except OSError as exc:
                new.sock.close()
                raise ConnectError(
                    f"connection lost while sending again: {_lost(exc)}", url=self.url
                ) from exc
            new.sent = kept.size
        return new

    def _end_refused(self) -> None:
        """The server refused us while reconnecting: closed, with nothing left to confirm;
        ``close()`` still reports what went on connections that broke."""
        with self._state_lock:
            self._closed = True
            self._broken_sent += self._link.kept.size if self._link.kept else 0  # never sent again
            self._refused_loss = self._broken_sent > 0
            links = {self._link, self._rlink}
        self._stop.set()
        for link in links:
            _linger(link.sock)

    def close(self) -> None:
        """Closes the connection and stops reconnecting; safe to call twice.

        Returns once the server has confirmed that it read everything sent (its FIN after ours:
        quick when it reads).

        Raises:
            TransportClosed: it did not confirm within ``timeout`` s, or reset the connection:
                what was sent may be lost (the message says how many bytes were at stake).
        """
        with self._state_lock:
            if self._closed:
                if self._refused_loss:  # the refusal ended it; what broke before is still to say
                    self._refused_loss = False
                    raise _broken(self.url, self._broken_sent, self.reconnects)
                return
            self._closed = True
            links = {self._link, self._rlink}
        self._stop.set()
        if self._close_refused(links):
            return
        if self._reconnect:
            self._close_reconnecting(links)
            return
        failures = []
        for link in links:  # (a send blocked on it fails: the channel is closed)
            try:
                _confirm(link, self.url, self._timeout)
            except TransportClosed as exc:
                failures.append(exc)
        self._close_refused(links)
        if failures:
            raise failures[0]

    def _close_refused(self, links: set[_Link]) -> bool:
        """close(): True when the server refused us (its refusal seen now, or before); the
        ConnectError is raised unless send or receive raised it already. Nothing to confirm:
        the server delivered nothing of ours."""
        for link in links:
            _peek_refusal(link)
        refused = [link for link in links if link.refused is not None]
        if not refused:
            return False
        for link in links:
            _shut(link.sock)
            link.sock.close()
        untold = [link for link in refused if not link.told]
        for link in refused:
            link.told = True
        if untold:
            raise self._refusal(untold[0])
        return True

    def _close_reconnecting(self, links: set[_Link]) -> None:
        """close() with ``reconnect``: the newest connection must confirm what it kept; when it
        does not, it is opened again (what it kept sent first) until ``timeout`` runs out."""
        link = self._link
        for other in links - {link}:  # an old one the receiver drained: its data was sent again
            _linger(other.sock)
        deadline = time.monotonic() + self._timeout
        attempt = 0
        while True:
            kept = link.kept
            assert kept is not None
            try:
                if kept.size and not link.sent:  # it broke before what it kept went out again
                    _shut(link.sock)
                    link.sock.close()
                    raise _unconfirmed(self.url, self._timeout, kept.size, True)
                _confirm(
                    link, self.url, self._timeout, strict=True, wait=max(deadline - time.monotonic(), 0.001)
                )
                break
            except TransportClosed as failure:
                self._broken_sent += kept.take_dropped()
                while True:
                    wait = first_retry(True, attempt, deadline - time.monotonic())
                    if wait is None:
                        raise failure from None
                    time.sleep(wait)
                    attempt += 1
                    try:
                        link = self._reopen(kept)
                    except (ConnectError, Refused):
                        continue
                    self.reconnects += 1
                    break
        if self._broken_sent:
            raise _broken(self.url, self._broken_sent, self.reconnects)


def connect(
    address: Address,
    *,
    token: str | None = None,
    timeout: float = TIMEOUT,
    reconnect: bool = False,
    max_line: int = MAX_LINE,
    on_error: ErrorHandler | None = None,
) -> TcpChannel:
    """Connects to a ``tcp://host:port`` server (see the module docstring for the options).

    Raises:
        ConnectError: refused, unresolvable host, timed out, or the server refused the token.
    """
    token, timeout, max_line, handler = _check(token, timeout, max_line, on_error)
    host, port, url = _target(address)
    deadline = time.monotonic() + timeout
    attempt = 0
    while True:  # with reconnect, a server not up yet is waited for, ``timeout`` s at most
        inbox = Inbox(max_line=max_line, on_error=handler)
        try:
            left = timeout if attempt == 0 else max(deadline - time.monotonic(), 0.001)
            link = _open(host, port, url, token, left, inbox)
            break
        except Refused as refused:
            raise ConnectError(f"refused by the server: {refused}", url=url) from None
        except ConnectError:
            wait = first_retry(reconnect, attempt, deadline - time.monotonic())
            if wait is None:
                raise
            time.sleep(wait)
            attempt += 1
    return TcpChannel(
        link,
        url=url,
        host=host,
        port=port,
        token=token,
        timeout=timeout,
        reconnect=bool(reconnect),
        max_line=max_line,
        on_error=handler,
    )


# --------------------------------------------------------------------------------------------
# Blocking listener


class _Peer(_PeerState):
    """One connection of a blocking listener, read by its own thread."""

    def __init__(self, sock: socket.socket, token: str | None, max_line: int) -> None:
        self.sock = sock
        try:
            host, port = sock.getpeername()[:2]
            self.name = f"{host}:{port}"
        except OSError:
            self.name = "a client"
        self.gate = ServerGate(token)
        self.collector = _Collector(max_line)
        self.box = _Mailbox()
        self.ended = False
        self.pending = 0
        self.reason = ""
        self.route: str | None = None
        self.closed = False  # by us: no more reading for the application
        self.lingering = False
        self.write_lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def write(self, data: bytes) -> None:
        with self.write_lock:
            self.sock.sendall(data)

    def discard(self) -> None:
        self.closed = True
        _shut(self.sock)
        self.sock.close()


class TcpListener(Listener):
    """A TCP server (made by ``listen``): merged messages, broadcast, ``accept()``."""

    def __init__(
        self, sock: socket.socket, *, token: str | None, timeout: float, max_line: int, on_error: ErrorHandler
    ) -> None:
        self.url = _bound_url(sock)
        self._sock = sock
        self._token = token
        self._timeout = timeout
        self._max_line = max_line
        self._on_error = on_error
        self._board = _Switchboard()
        self._cond = threading.Condition()
        self._ready: deque[Any] = deque()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        sock.setblocking(False)
        self._selector.register(sock, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._acceptor = threading.Thread(target=self._accept_loop, name=f"{self.url} accept", daemon=True)
        self._acceptor.start()

    @property
    def peers(self) -> int:
        """How many open connections ``accept()`` has not taken: the ones a ``send`` reaches
        (merged, or held: a send merges them)."""
        with self._cond:
            return self._board.reach()

    # -- the threads

    def _accept_loop(self) -> None:
        while True:
            events = self._selector.select()
            if self._board.closed:
                return
            for key, _ in events:
                if key.fileobj is not self._sock:
                    return
                while True:  # every connection waiting, before the next select
                    try:
                        sock, _ = self._sock.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError as exc:  # EMFILE and friends: say so, breathe, go on
                        if self._board.closed:
                            return
                        log.warning("%s: accept failed: %s", self.url, exc)
                        time.sleep(0.1)
                        break
                    self._start(sock)

    def _start(self, sock: socket.socket) -> None:
        sock.setblocking(True)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = _Peer(sock, self._token, self._max_line)
        peer.thread = threading.Thread(
            target=self._serve, args=(peer,), name=f"{self.url} {peer.name}", daemon=True
        )
        with self._cond:
            if self._board.closed:
                sock.close()
                return
            self._board.peers.add(peer)
            if self._token is None:
                self._board.arrive(peer)
                self._cond.notify_all()
            peer.thread.start()  # under the lock: accept() may take it, close it, and join it

    def _serve(self, peer: _Peer) -> None:
        """The reader thread of one connection: the gate, then 64 KiB reads into its mailbox."""
        sock = peer.sock
        gate = peer.gate
        error: BaseException | None = None
        deadline = time.monotonic() + self._timeout  # for the whole first line, not each read
        try:
            while gate.state == WAITING:
                try:
                    if self._token is not None:
                        sock.settimeout(max(deadline - time.monotonic(), 0.001))
                    data = sock.recv(CHUNK)
                except TimeoutError:
                    peer.write(gate.timed_out())
                    break
                if not data:
                    rest = gate.feed_eof()
                    if rest:
                        self._deliver(peer, peer.collector.feed(rest), len(rest))
                    return
                reply, rest = gate.feed(data)
                if reply:
                    peer.write(reply)
                if gate.state == OPEN:
                    sock.settimeout(None)
                    if self._token is not None:
                        with self._cond:
                            self._board.arrive(peer)
                            self._cond.notify_all()
                    if rest:
                        self._deliver(peer, peer.collector.feed(rest), len(rest))
            if gate.state != OPEN:
                return
            while not peer.closed:
                data = sock.recv(CHUNK)
                if not data:
                    break
                self._deliver(peer, peer.collector.feed(data), len(data))
        except OSError as exc:
            error = exc
        except Exception:  # a bug: say so, end this connection, keep the listener going
            log.exception("%s: the reader of %s failed", self.url, peer.name)
        finally:
            self._end(peer, error)

    def _deliver(self, peer: _Peer, items: list[Item], size: int) -> None:
        if not items:
            return
        with self._cond:
            box = peer.box
            box.put(peer, items, size)
            self._cond.notify_all()
            while box.size >= READ_AHEAD and not (self._board.closed or peer.closed):
                self._cond.wait()
                box = peer.box

    def _end(self, peer: _Peer, error: BaseException | None) -> None:
        items = peer.collector.feed_eof() if peer.gate.state == OPEN and not peer.closed else []
        refused = peer.gate.state != OPEN
        with self._cond:
            close_now = True if refused else self._board.depart(peer, items, _lost(error))
            if close_now:
                self._board.peers.discard(peer)
            linger = refused and not peer.lingering
            close_now = close_now and not peer.lingering and not refused  # lingering: not ours
            peer.lingering = peer.lingering or linger
            self._cond.notify_all()
        if linger:  # the refusal must reach a client that may still be sending
            peer.closed = True
            _linger(peer.sock)
        elif close_now:
            peer.discard()
        elif error is None and not refused:
            # An accepted one, whose client sent its FIN after everything it sent, all read now:
            # our FIN confirms that to the client's close() (see _confirm); the app still owns it.
            with contextlib.suppress(OSError):
                peer.sock.shutdown(socket.SHUT_WR)

    # -- the channel

    def send(self, value: Any) -> None:
        """Sends one message to every merged connection."""
        self.send_bytes(encode(value))

    def send_many(self, values: Iterable[Any]) -> None:
        """Sends several messages to every merged connection, one write each."""
        self.send_bytes(encode_many(values))

    def send_bytes(self, data: bytes) -> None:
        """Writes encoded lines to every merged connection (blocks on the slowest); a connection
        that fails is dropped."""
        with self._cond:
            if self._board.closed:
                raise TransportClosed(f"{self.url}: the listener is closed")
            ended = self._merge()
            members = self._board.members()
        self._discard(ended)
        for peer in members:
            try:
                peer.write(data)
            except OSError:
                _shut(peer.sock)  # its reader thread sees the end and cleans up

    def _merge(self) -> list[_Peer]:
        """(Under the lock) the merged stream is used: the held connections join it (Router's
        rule); returns those that ended already, to ``_discard``."""
        if self._board.router.merging:
            return []
        ended = self._board.start_merging()
        self._cond.notify_all()  # their readers may wait for room in their own mailbox
        return self._forget(ended)

    def _forget(self, ended: list[_Peer]) -> list[_Peer]:
        """(Under the lock) merged connections that ended: no longer the listener's to close."""
        for peer in ended:
            self._board.peers.discard(peer)
        return [peer for peer in ended if not peer.lingering]

    @staticmethod
    def _discard(ended: list[_Peer]) -> None:
        for peer in ended:
            peer.discard()

    def receive(self) -> Any:
        """The next message from any merged connection."""
        if not self._ready:
            self._ready.extend(self._take())
        return self._ready.popleft()

    def receive_many(self) -> list[Any]:
        """Every message already received from the merged connections (waits for one)."""
        if self._ready:
            values = list(self._ready)
            self._ready.clear()
            return values
        return self._take()

    def _take(self) -> list[Any]:
        ended: list[_Peer] = []
        try:
            with self._cond:
                ended = self._merge()
                return self._next()
        finally:
            self._discard(ended)

    def _next(self) -> list[Any]:
        """(Under the lock) the next values of the merged stream; waits for them."""
        board = self._board
        while True:
            if board.closed:
                raise TransportClosed(f"{self.url}: the listener is closed")
            if board.merged.items or board.merged.raised is not None:
                values = board.take(self._on_error)
                self._cond.notify_all()
                if values:
                    return values
                continue
            self._cond.wait()

    def accept(self) -> TcpConnection:
        """The oldest held connection (one that arrived before the call included; never a
        merged one), else the next to come, as its own channel (see ``base.Router``)."""
        ended: list[_Peer] = []
        with self._cond:
            board = self._board
            board.begin_accept()
            try:
                while True:
                    if board.closed:
                        raise TransportClosed(f"{self.url}: the listener is closed")
                    peer = board.claim()
                    if peer is not None:
                        break
                    self._cond.wait()
            finally:
                ended = self._forget(board.end_accept())
                self._cond.notify_all()
        self._discard(ended)
        return TcpConnection(self, peer)

    def _release(self, peer: _Peer) -> None:
        """An accepted connection was closed by its owner."""
        with self._cond:
            peer.closed = True
            self._board.peers.discard(peer)
            linger = not peer.lingering
            peer.lingering = True
            self._cond.notify_all()
        if linger:
            _linger(peer.sock)

    def close(self) -> None:
        """Stops listening and closes every connection; safe to call twice."""
        with self._cond:
            if self._board.closed:
                return
            self._board.closed = True
            self._board.router.close()  # (the held ones are among the peers, closed below)
            peers = [peer for peer in self._board.peers if not peer.lingering]
            self._board.peers.clear()
            for peer in peers:
                peer.closed = True
                peer.lingering = True
            self._cond.notify_all()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        self._acceptor.join(JOIN)
        self._selector.close()
        for sock in (self._sock, self._wake_r, self._wake_w):
            sock.close()
        for peer in peers:  # their reader threads end with the lingering
            _linger(peer.sock)


class TcpConnection(Channel):
    """One connection taken by ``TcpListener.accept()``: duplex, its own stream."""

    def __init__(self, listener: TcpListener, peer: _Peer) -> None:
        self._listener = listener
        self._peer = peer
        self._cond = listener._cond
        self._on_error = listener._on_error
        self._ready: deque[Any] = deque()
        self.url = listener.url
        self.peer = peer.name
        """The client's address, ``host:port``."""

    def send(self, value: Any) -> None:
        self.send_bytes(encode(value))

    def send_many(self, values: Iterable[Any]) -> None:
        self.send_bytes(encode_many(values))

    def send_bytes(self, data: bytes) -> None:
        """Writes encoded lines; TransportClosed when the client went away or we closed."""
        if self._peer.closed:
            raise TransportClosed(f"{self.url}: the connection from {self.peer} is closed")
        try:
            self._peer.write(data)
        except OSError as exc:
            raise TransportClosed(f"{self.url}: connection from {self.peer}: {_lost(exc)}") from exc

    def receive(self) -> Any:
        if not self._ready:
            self._ready.extend(self._take())
        return self._ready.popleft()

    def receive_many(self) -> list[Any]:
        if self._ready:
            values = list(self._ready)
            self._ready.clear()
            return values
        return self._take()

    def _take(self) -> list[Any]:
        peer = self._peer
        with self._cond:
            while True:
                if peer.closed:
                    raise TransportClosed(f"{self.url}: the connection from {self.peer} is closed")
                box = peer.box
                if box.items or box.raised is not None:
                    values = box.take(self._on_error)
                    self._cond.notify_all()
                    if values:
                        return values
                    continue
                if box.ended:
                    raise TransportClosed(f"{self.url}: {self.peer}: {box.reason}")
                self._cond.wait()

    def close(self) -> None:
        """Closes this connection (what was sent still arrives); safe to call twice."""
        self._listener._release(self._peer)


def listen(
    address: Address,
    *,
    token: str | None = None,
    timeout: float = TIMEOUT,
    reconnect: bool = False,
    max_line: int = MAX_LINE,
    on_error: ErrorHandler | None = None,
    backlog: int = BACKLOG,
) -> TcpListener:
    """Listens on ``tcp://host:port`` (port 0: a free one; ``url`` tells which).

    ``backlog``: connections the kernel holds until they are accepted (see BACKLOG).

    Raises:
        TransportError: the address cannot be bound (in use, not ours...).
    """
    del reconnect  # a client option; accepted so that one URL serves both sides
    token, timeout, max_line, handler = _check(token, timeout, max_line, on_error)
    host, port, url = _target(address)
    sock = _bind(host, port, url, check_backlog(backlog))
    return TcpListener(sock, token=token, timeout=timeout, max_line=max_line, on_error=handler)


# --------------------------------------------------------------------------------------------
# asyncio flavour


class _Wakeup:
    """Wakes every task waiting on it (a condition variable for one event loop)."""

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] = []

    async def wait(self) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future
        finally:
            if not future.done():
                future.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(future)

    def notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(None)


async def _close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, RuntimeError):
        await writer.wait_closed()


async def _async_linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """``_linger`` for asyncio streams, awaited (asyncio closes wait for the connection, as
    ``wait_closed`` does): EOF after our data, then what the peer still sends is read and dropped
    until its EOF, ``LINGER`` s at most; then the connection is closed."""
    if writer.is_closing():
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LINGER
    try:
        writer.write_eof()
        while (left := deadline - loop.time()) > 0:
            try:
                if not await asyncio.wait_for(reader.read(CHUNK), left):
                    break  # the peer's EOF: a clean close
            except RuntimeError:  # another task is reading it: it stops at its next wake-up
                await asyncio.sleep(0.01)
    except (asyncio.TimeoutError, OSError, RuntimeError):
        pass
    finally:
        await _close_writer(writer)


class _AsyncLink:
    __slots__ = (
        "consumed",
        "early",
        "eof",
        "fresh",
        "inbox",
        "kept",
        "reader",
        "refused",
        "sent",
        "told",
        "writer",
    )

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        inbox: Inbox,
        early: list[Any],
        fresh: bool,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.inbox = inbox
        self.early: deque[Any] = deque(early)
        self.eof = False
        self.fresh = fresh
        self.sent = 0  # bytes of messages written on it (close() must see them confirmed)
        self.kept: _Kept | None = None  # a reconnecting client's: to send again if it breaks
        self.consumed = 0  # bytes the receiver read (see _Link)
        self.refused: str | None = None
        self.told = False


def _async_peek_refusal(link: _AsyncLink) -> None:
    """``_peek_refusal`` for asyncio streams: the StreamReader has read what came, so the peek
    is at its buffer (no public API shows it; without one, close() still finds the refusal)."""
    if link.refused is None and link.fresh and not link.consumed:
        buffered = getattr(link.reader, "_buffer", None)
        if isinstance(buffered, bytes | bytearray):
            link.refused = first_refusal(bytes(buffered[: HELLO_LIMIT + 1]))


async def _async_confirm(
    link: _AsyncLink, url: str, timeout: float, strict: bool = False, wait: float | None = None
) -> None:
    """``_confirm`` for asyncio streams: a FIN after our data, then the peer's FIN within
    ``timeout`` s, else TransportClosed (with nothing sent: ``_async_linger``)."""
    if not link.sent:
        await _async_linger(link.reader, link.writer)
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + (timeout if wait is None else wait)
    if strict and (link.eof or link.reader.at_eof() or _fin_waiting(link.writer.get_extra_info("socket"))):
        await _close_writer(link.writer)
        raise _unconfirmed(url, timeout, link.sent, True)
    watch = link.fresh and not link.consumed and link.refused is None  # the refusal may come now
    head = b""
    confirmed, reset = link.eof, False
    try:
        if not link.writer.is_closing():
            link.writer.write_eof()
        while not (confirmed or link.eof) and (left := deadline - loop.time()) > 0:
            try:
                data = await asyncio.wait_for(link.reader.read(CHUNK), min(left, 0.05))
                confirmed = not data
                if watch and len(head) <= HELLO_LIMIT:
                    head += data[: HELLO_LIMIT + 1 - len(head)]
            except asyncio.TimeoutError:
                pass
            except RuntimeError:  # another task is reading it: it sees the FIN (link.eof)
                await asyncio.sleep(0.01)
    except OSError:
        reset = True
    finally:
        await _close_writer(link.writer)
    if watch and link.refused is None:
        link.refused = first_refusal(head)
    if link.refused is not None:
        return  # close() says so, in the server's words
    if not (confirmed or link.eof):
        raise _unconfirmed(url, timeout, link.sent, reset)


async def _async_open(
    host: str, port: int, url: str, token: str | None, timeout: float, inbox: Inbox
) -> _AsyncLink:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, limit=CHUNK), timeout)
    except asyncio.TimeoutError as exc:
        raise _connect_error(TimeoutError(), host, timeout, url) from exc
    except OSError as exc:
        raise _connect_error(exc, host, timeout, url) from None
    small_reads(writer.transport)
    try:
        raw = writer.get_extra_info("socket")
        if raw is not None:
            with contextlib.suppress(OSError):
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        early: list[Any] = []
        if token is not None:
            handshake = ClientHandshake(token)
            writer.write(handshake.hello)
            await writer.drain()
            while True:
                data = await asyncio.wait_for(reader.read(CHUNK), max(deadline - loop.time(), 0.001))
                if not data:
                    inbox.feed_eof()
                    if handshake.check(inbox.pop_all()):
                        break
                    raise ConnectError("the server closed the connection during the handshake", url=url)
                inbox.feed(data)
                if handshake.check(inbox.pop_all()):
                    break
            early = handshake.early
        return _AsyncLink(reader, writer, inbox, early, fresh=token is None)
    except ConnectError:
        await _close_writer(writer)
        raise
    except asyncio.TimeoutError:
        await _close_writer(writer)
        raise ConnectError(
            f"no answer to the hello within {timeout:g} s (is it a bothways server?)", url=url
        ) from None
    except OSError as exc:
        await _close_writer(writer)
        raise ConnectError(f"connection lost during the handshake: {_lost(exc)}", url=url) from exc
    except BaseException:
        await _close_writer(writer)
        raise


class _AsyncBatched(AsyncChannel):
    """``receive`` from ``_take`` batches, and iteration by batch (fast)."""

    _ready: deque[Any]

    async def _take(self) -> list[Any]:
        raise NotImplementedError

    async def receive(self) -> Any:
        """The next message; TransportClosed at the end."""
        if not self._ready:
            self._ready.extend(await self._take())
        return self._ready.popleft()

    async def receive_many(self) -> list[Any]:
        """Every message already received (at least one; waits for it)."""
        if self._ready:
            values = list(self._ready)
            self._ready.clear()
            return values
        return await self._take()

    async def __aiter__(self) -> AsyncIterator[Any]:
        while True:
            try:
                batch = await self.receive_many()
            except TransportClosed:
                return
            for value in batch:
                yield value


class AsyncTcpChannel(_AsyncBatched):
    """The asyncio flavour of TcpChannel (made by ``async_connect``)."""

    def __init__(
        self,
        link: _AsyncLink,
        *,
        url: str,
        host: str,
        port: int,
        token: str | None,
        timeout: float,
        reconnect: bool,
        max_line: int,
        on_error: ErrorHandler,
    ) -> None:
        self.url = url
        self._host = host
        self._port = port
        self._token = token
        self._timeout = timeout
        self._reconnect = reconnect
        self._max_line = max_line
        self._on_error = on_error
        self._link = link
        self._rlink = link
        self._ready = deque()
        self._closed = False
        self._stop = asyncio.Event()
        self._relink_lock = asyncio.Lock()
        self._broken_sent = 0  # bytes sent on connections that broke, beyond what was resent
        self._refused_loss = False  # a refusal closed us with that still to report at close()
        self.reconnects = 0
        if reconnect:
            link.kept = _Kept()

    async def send(self, value: Any) -> None:
        await self.send_bytes(encode(value))

    async def send_many(self, values: Iterable[Any]) -> None:
        await self.send_bytes(encode_many(values))

    async def send_bytes(self, data: bytes) -> None:
        """Writes encoded lines; waits while the peer does not read (``drain``)."""
        link = self._link
        while True:
            if self._closed:
                raise TransportClosed(f"{self.url}: the channel is closed")
            self._check_refused(link)
            writer = link.writer
            try:
                if writer.is_closing():
                    raise ConnectionResetError("the connection is closed")
                writer.write(data)
                await writer.drain()
                link.sent += len(data)
                if link.kept is not None:
                    link.kept.add(data)
                return
            except OSError as exc:
                self._check_refused(link)  # (a server that refused us, then went)
                link = await self._relink(link, exc)

    def _check_refused(self, link: _AsyncLink) -> None:
        """As TcpChannel's: a refusal seen, or waiting unread first, is raised."""
        _async_peek_refusal(link)
        if link.refused is not None:
            link.told = True
            raise self._refusal(link)

    def _refusal(self, link: _AsyncLink) -> ConnectError:
        return ConnectError(
            f"refused by the server: {link.refused} (nothing sent on this connection was delivered)",
            url=self.url,
        )

    async def _close_refused(self, links: set[_AsyncLink]) -> bool:
        """As TcpChannel's: close() when the server refused us."""
        for link in links:
            _async_peek_refusal(link)
        refused = [link for link in links if link.refused is not None]
        if not refused:
            return False
        for link in links:
            await _close_writer(link.writer)
        untold = [link for link in refused if not link.told]
        for link in refused:
            link.told = True
        if untold:
            raise self._refusal(untold[0])
        return True

    async def _take(self) -> list[Any]:
        link = self._rlink
        while True:
            if self._closed:
                raise TransportClosed(f"{self.url}: the channel is closed")
            if link.early:
                values = list(link.early)
                link.early.clear()
                return values
            if len(link.inbox):
                values = link.inbox.pop_all()
                if link.fresh:
                    link.fresh = False
                    reason = refusal(values)
                    if reason is not None:
                        link.refused, link.told = reason, True
                        raise ConnectError(f"refused by the server: {reason}", url=self.url)
                return values
            if link.eof:
                link = self._rlink = await self._relink(link, None)
                continue
            try:
                data = await link.reader.read(CHUNK)
            except OSError as exc:
                link.eof = True
                link.inbox.feed_eof()
                link = self._rlink = await self._relink(link, exc)
                continue
            if data:
                link.consumed += len(data)
                link.inbox.feed(data)
            else:
                link.eof = True
                link.inbox.feed_eof()

    async def _relink(self, link: _AsyncLink, exc: BaseException | None) -> _AsyncLink:
        async with self._relink_lock:
            if self._closed:
                raise TransportClosed(f"{self.url}: the channel is closed")
            if self._link is not link:
                return self._link
            link.writer.close()
            link.sent = 0  # beyond confirming now: this error, or close(), says so
            if link.kept is None:
                raise TransportClosed(f"{self.url}: {_lost(exc)}") from exc
            self._broken_sent += link.kept.take_dropped()  # nobody is told now: close() says it
            attempt = 0
            while True:
                try:
                    await asyncio.wait_for(self._stop.wait(), backoff(attempt))
                    raise TransportClosed(f"{self.url}: the channel is closed")
                except asyncio.TimeoutError:
                    pass
                attempt += 1
                try:
                    new = await self._reopen(link.kept)
                except ConnectError:
                    continue
                except Refused as refused:
                    self._end_refused()
                    raise ConnectError(f"refused by the server: {refused}", url=self.url) from None
                if self._closed:
                    await _close_writer(new.writer)
                    raise TransportClosed(f"{self.url}: the channel is closed")
                self._link = new
                await _close_writer(link.writer)
                self.reconnects += 1
                return new

    async def _reopen(self, kept: _Kept) -> _AsyncLink:
        """A new connection, with what the broken one may not have delivered sent first."""
        inbox = Inbox(max_line=self._max_line, on_error=self._on_error)
        new = await _async_open(self._host, self._port, self.url, self._token, self._timeout, inbox)
        new.kept = kept
        if kept.size:
            try:
                new.writer.write(kept.data())
                await new.writer.drain()
            except OSError as exc:
                await _close_writer(new.writer)
                raise ConnectError(
                    f"connection lost while sending again: {_lost(exc)}", url=self.url
                ) from exc
            new.sent = kept.size
        return new

    def _end_refused(self) -> None:
        """The server refused us while reconnecting: closed, with nothing left to confirm;
        ``close()`` still reports what went on connections that broke."""
        self._closed = True
        self._broken_sent += self._link.kept.size if self._link.kept else 0  # never sent again
        self._refused_loss = self._broken_sent > 0
        self._stop.set()
        for link in {self._link, self._rlink}:
            link.writer.close()

    async def close(self) -> None:
        """Closes the connection and stops reconnecting; safe to call twice.

        Returns once the server has confirmed that it read everything sent (its FIN after ours).

        Raises:
            TransportClosed: it did not confirm within ``timeout`` s, or reset the connection:
                what was sent may be lost (the message says how many bytes were at stake).
        """
        if self._closed:
            if self._refused_loss:  # the refusal ended it; what broke before is still to say
                self._refused_loss = False
                raise _broken(self.url, self._broken_sent, self.reconnects)
            return
        self._closed = True
        self._stop.set()
        links = {self._link, self._rlink}
        if await self._close_refused(links):
            return
        if self._reconnect:
            await self._close_reconnecting(links)
            return
        results = await asyncio.gather(
            *(_async_confirm(link, self.url, self._timeout) for link in links), return_exceptions=True
        )
        await self._close_refused(links)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _close_reconnecting(self, links: set[_AsyncLink]) -> None:
        """close() with ``reconnect``: the newest connection must confirm what it kept; when it
        does not, it is opened again (what it kept sent first) until ``timeout`` runs out."""
        link = self._link
        for other in links - {link}:  # an old one the receiver drained: its data was sent again
            await _close_writer(other.writer)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        attempt = 0
        while True:
            kept = link.kept
            assert kept is not None
            try:
                if kept.size and not link.sent:  # it broke before what it kept went out again
                    await _close_writer(link.writer)
                    raise _unconfirmed(self.url, self._timeout, kept.size, True)
                await _async_confirm(
                    link, self.url, self._timeout, strict=True, wait=max(deadline - loop.time(), 0.001)
                )
                break
            except TransportClosed as failure:
                self._broken_sent += kept.take_dropped()
                while True:
                    wait = first_retry(True, attempt, deadline - loop.time())
                    if wait is None:
                        raise failure from None
                    await asyncio.sleep(wait)
                    attempt += 1
                    try:
                        link = await self._reopen(kept)
                    except (ConnectError, Refused):
                        continue
                    self.reconnects += 1
                    break
        if self._broken_sent:
            raise _broken(self.url, self._broken_sent, self.reconnects)


async def async_connect(
    address: Address,
    *,
    token: str | None = None,
    timeout: float = TIMEOUT,
    reconnect: bool = False,
    max_line: int = MAX_LINE,
    on_error: ErrorHandler | None = None,
) -> AsyncTcpChannel:
    """The asyncio ``connect``: the same options, an AsyncTcpChannel."""
    token, timeout, max_line, handler = _check(token, timeout, max_line, on_error)
    host, port, url = _target(address)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    attempt = 0
    while True:  # with reconnect, a server not up yet is waited for, ``timeout`` s at most
        inbox = Inbox(max_line=max_line, on_error=handler)
        try:
            left = timeout if attempt == 0 else max(deadline - loop.time(), 0.001)
            link = await _async_open(host, port, url, token, left, inbox)
            break
        except Refused as refused:
            raise ConnectError(f"refused by the server: {refused}", url=url) from None
        except ConnectError:
            wait = first_retry(reconnect, attempt, deadline - loop.time())
            if wait is None:
                raise
            await asyncio.sleep(wait)
            attempt += 1
    return AsyncTcpChannel(
        link,
        url=url,
        host=host,
        port=port,
        token=token,
        timeout=timeout,
        reconnect=bool(reconnect),
        max_line=max_line,
        on_error=handler,
    )


class _AsyncPeer(_PeerState):
    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, token: str | None, max_line: int
    ) -> None:
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.name = f"{peer[0]}:{peer[1]}" if peer else "a client"
        self.gate = ServerGate(token)
        self.collector = _Collector(max_line)
        self.box = _Mailbox()
        self.ended = False
        self.pending = 0
        self.reason = ""
        self.route: str | None = None
        self.closed = False  # by us: no more reading for the application
        self.lingering = False
        self.backstop: asyncio.TimerHandle | None = None
        self.done = asyncio.Event()  # its reader task has ended
        self.write_lock = asyncio.Lock()

    async def write(self, data: bytes) -> None:
        async with self.write_lock:
            if self.writer.is_closing():
                raise ConnectionResetError("the connection is closed")
            self.writer.write(data)
            await self.writer.drain()

    def discard(self) -> None:
        self.closed = True
        self.writer.close()


class AsyncTcpListener(AsyncListener, _AsyncBatched):
    """The asyncio flavour of TcpListener (made by ``async_listen``)."""

    def __init__(self, *, token: str | None, timeout: float, max_line: int, on_error: ErrorHandler) -> None:
        self.url = ""
        self._token = token
        self._timeout = timeout
        self._max_line = max_line
        self._on_error = on_error
        self._board = _Switchboard()
        self._wake = _Wakeup()
        self._ready = deque()
        self._server: asyncio.Server | None = None

    async def _start(self, sock: socket.socket, backlog: int) -> None:
        self.url = _bound_url(sock)
        self._server = await asyncio.start_server(self._serve, sock=sock, limit=CHUNK, backlog=backlog)

    @property
    def peers(self) -> int:
        """How many open connections ``accept()`` has not taken: the ones a ``send`` reaches
        (merged, or held: a send merges them)."""
        return self._board.reach()

    def _merge(self) -> None:
        """The merged stream is used: the held connections join it (Router's rule)."""
        if not self._board.router.merging:
            self._settle(self._board.start_merging())
            self._wake.notify()  # their readers may wait for room in their own mailbox

    def _settle(self, ended: list[_AsyncPeer]) -> None:
        """Merged connections that ended: closed now, no longer the listener's."""
        for peer in ended:
            self._board.peers.discard(peer)
            if not peer.lingering:
                peer.discard()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        small_reads(writer.transport)
        peer = _AsyncPeer(reader, writer, self._token, self._max_line)
        if self._board.closed:
            writer.close()
            return
        self._board.peers.add(peer)
        gate = peer.gate
        error: BaseException | None = None
        try:
            if self._token is None:
                self._board.arrive(peer)
                self._wake.notify()
            deadline = asyncio.get_running_loop().time() + self._timeout  # for the whole first line
            while gate.state == WAITING:
                try:
                    if self._token is not None:
                        left = max(deadline - asyncio.get_running_loop().time(), 0.001)
                        data = await asyncio.wait_for(reader.read(CHUNK), left)
                    else:
                        data = await reader.read(CHUNK)
                except asyncio.TimeoutError:
                    await peer.write(gate.timed_out())
                    break
                if not data:
                    rest = gate.feed_eof()
                    if rest:
                        await self._deliver(peer, peer.collector.feed(rest), len(rest))
                    return
                reply, rest = gate.feed(data)
                if reply:
                    await peer.write(reply)
                if gate.state == REFUSED:
                    break
                if gate.state == OPEN:
                    if self._token is not None:
                        self._board.arrive(peer)
                        self._wake.notify()
                    if rest:
                        await self._deliver(peer, peer.collector.feed(rest), len(rest))
            if gate.state == REFUSED:  # the refusal must reach a client that may still send
                self._linger(peer)
            while True:  # once closed by us (lingering): dropped, until its EOF or the backstop
                data = await reader.read(CHUNK)
                if not data:
                    break
                if not peer.closed:
                    await self._deliver(peer, peer.collector.feed(data), len(data))
        except OSError as exc:
            error = exc
        except Exception:
            log.exception("%s: the reader of %s failed", self.url, peer.name)
        finally:
            self._end(peer, error)
            peer.done.set()

    def _linger(self, peer: _AsyncPeer) -> None:
        """Closes a connection cleanly: EOF after our data; its reader task drops what it still
        sends until its EOF, and the connection is closed then, or after ``LINGER`` s."""
        if peer.lingering:
            return
        peer.closed = peer.lingering = True
        self._board.peers.discard(peer)
        try:
            peer.writer.write_eof()
        except (OSError, RuntimeError):
            peer.writer.close()
        peer.backstop = asyncio.get_running_loop().call_later(LINGER, peer.writer.close)

    async def _deliver(self, peer: _AsyncPeer, items: list[Item], size: int) -> None:
        if not items:
            return
        box = peer.box
        box.put(peer, items, size)
        self._wake.notify()
        while box.size >= READ_AHEAD and not (self._board.closed or peer.closed):
            await self._wake.wait()
            box = peer.box

    def _end(self, peer: _AsyncPeer, error: BaseException | None) -> None:
        items = peer.collector.feed_eof() if peer.gate.state == OPEN and not peer.closed else []
        close_now = peer.gate.state != OPEN or self._board.depart(peer, items, _lost(error))
        if peer.backstop is not None:
            peer.backstop.cancel()
        if close_now or peer.lingering:
            self._board.peers.discard(peer)
            peer.discard()
        elif error is None and not peer.writer.is_closing():
            # An accepted one, whose client sent its FIN after everything it sent, all read now:
            # our FIN confirms that to the client's close() (see _confirm); the app still owns it.
            with contextlib.suppress(OSError, RuntimeError):
                peer.writer.write_eof()
        self._wake.notify()

    async def send(self, value: Any) -> None:
        await self.send_bytes(encode(value))

    async def send_many(self, values: Iterable[Any]) -> None:
        await self.send_bytes(encode_many(values))

    async def send_bytes(self, data: bytes) -> None:
        """Writes encoded lines to every merged connection (waits for the slowest)."""
        if self._board.closed:
            raise TransportClosed(f"{self.url}: the listener is closed")
        self._merge()
        members = self._board.members()

        async def one(peer: _AsyncPeer) -> None:
            try:
                await peer.write(data)
            except OSError:
                peer.writer.close()  # its reader task sees the end and cleans up

        await asyncio.gather(*(one(peer) for peer in members))

    async def _take(self) -> list[Any]:
        board = self._board
        if not board.closed:
            self._merge()
        while True:
            if board.closed:
                raise TransportClosed(f"{self.url}: the listener is closed")
            if board.merged.items or board.merged.raised is not None:
                values = board.take(self._on_error)
                self._wake.notify()
                if values:
                    return values
                continue
            await self._wake.wait()

    async def accept(self) -> AsyncTcpConnection:
        """The oldest held connection (one that arrived before the call included; never a
        merged one), else the next to come, as its own channel (see ``base.Router``)."""
        board = self._board
        board.begin_accept()
        try:
            while True:
                if board.closed:
                    raise TransportClosed(f"{self.url}: the listener is closed")
                peer = board.claim()
                if peer is not None:
                    break
                await self._wake.wait()
        finally:
            self._settle(board.end_accept())
            self._wake.notify()
        return AsyncTcpConnection(self, peer)

    async def _release(self, peer: _AsyncPeer) -> None:
        if peer.done.is_set():  # its stream ended already
            peer.closed = peer.lingering = True
            self._board.peers.discard(peer)
            await _close_writer(peer.writer)
        else:
            self._linger(peer)
            await peer.done.wait()
        self._wake.notify()

    async def close(self) -> None:
        """Stops listening and closes every connection; safe to call twice."""
        board = self._board
        if board.closed:
            return
        board.closed = True
        board.router.close()  # (the held ones are among the peers, closed below)
        peers = list(board.peers)
        if self._server is not None:
            self._server.close()
        for peer in peers:
            if peer.done.is_set():
                peer.closed = peer.lingering = True
                peer.discard()
            else:
                self._linger(peer)
        self._wake.notify()
        # Wait for the reader tasks (LINGER s at most): they end as the clients answer our EOF.
        await asyncio.gather(*(peer.done.wait() for peer in peers))
        board.peers.clear()
        if self._server is not None:
            await self._server.wait_closed()


class AsyncTcpConnection(_AsyncBatched):
    """One connection taken by ``AsyncTcpListener.accept()``."""

    def __init__(self, listener: AsyncTcpListener, peer: _AsyncPeer) -> None:
        self._listener = listener
        self._peer = peer
        self._on_error = listener._on_error
        self._ready = deque()
        self.url = listener.url
        self.peer = peer.name

    async def send(self, value: Any) -> None:
        await self.send_bytes(encode(value))

    async def send_many(self, values: Iterable[Any]) -> None:
        await self.send_bytes(encode_many(values))

    async def send_bytes(self, data: bytes) -> None:
        if self._peer.closed:
            raise TransportClosed(f"{self.url}: the connection from {self.peer} is closed")
        try:
            await self._peer.write(data)
        except OSError as exc:
            raise TransportClosed(f"{self.url}: connection from {self.peer}: {_lost(exc)}") from exc

    async def _take(self) -> list[Any]:
        peer = self._peer
        while True:
            if peer.closed:
                raise TransportClosed(f"{self.url}: the connection from {self.peer} is closed")
            box = peer.box
            if box.items or box.raised is not None:
                values = box.take(self._on_error)
                self._listener._wake.notify()
                if values:
                    return values
                continue
            if box.ended:
                raise TransportClosed(f"{self.url}: {self.peer}: {box.reason}")
            await self._listener._wake.wait()

    async def close(self) -> None:
        """Closes this connection (what was sent still arrives); safe to call twice."""
        await self._listener._release(self._peer)


async def async_listen(
    address: Address,
    *,
    token: str | None = None,
    timeout: float = TIMEOUT,
    reconnect: bool = False,
    max_line: int = MAX_LINE,
    on_error: ErrorHandler | None = None,
    backlog: int = BACKLOG,
) -> AsyncTcpListener:
    """The asyncio ``listen``: the same options, an AsyncTcpListener."""
    del reconnect
    token, timeout, max_line, handler = _check(token, timeout, max_line, on_error)
    host, port, url = _target(address)
    backlog = check_backlog(backlog)
    sock = _bind(host, port, url, backlog)
    listener = AsyncTcpListener(token=token, timeout=timeout, max_line=max_line, on_error=handler)
    try:
        await listener._start(sock, backlog)
    except BaseException:
        sock.close()
        raise
    return listener
