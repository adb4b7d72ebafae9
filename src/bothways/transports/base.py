"""What every transport shares: the channel interfaces and the Inbox that turns bytes into values.

An adapter is a short loop: read bytes, ``inbox.feed(data)``, hand out ``inbox.pop()``; at end
of stream ``inbox.feed_eof()``. What to do with a malformed line is the inbox's ``on_error``
policy: by default it is logged (with its line number and excerpt) and the stream goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import stat
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Generic, TypeVar

from ..errors import DecodeError, TransportClosed, TransportError
from ..wire import MAX_LINE, Binary, Decoder, Messages, decode, encode

log = logging.getLogger("bothways")

ErrorHandler = Callable[[DecodeError], None]
MessagesHandler = Callable[[list[Any]], None]
"""Takes a batch of received messages, in order (push mode: ``AsyncChannel.deliver_to``)."""
EndHandler = Callable[[BaseException], None]
"""Takes why a channel's messages ended (what ``receive`` would raise), once."""


BACKOFF_FIRST = 0.05
"""Seconds before a client's first reconnection attempt (tcp, ws); doubled after each failure."""
BACKOFF_CAP = 5.0
"""The longest wait between two reconnection attempts, in seconds."""


BACKLOG = 4096
"""Connections the kernel holds for a tcp or ws listener before it accepts them (``backlog``);
the kernel caps it at ``net.core.somaxconn``. Past it, a client's handshake completes on its side
only, and what it sends waits for an accept that may never come (tcp.py says more)."""


def check_backlog(backlog: int) -> int:
    """``backlog`` when it is a whole number >= 1; ValueError otherwise."""
    if isinstance(backlog, bool) or not isinstance(backlog, int) or backlog < 1:
        raise ValueError(f"backlog must be a whole number >= 1, not {backlog!r}")
    return backlog


def backoff(attempt: int) -> float:
    """Seconds to wait before reconnection attempt ``attempt`` (from 0): 0.05 doubling to 5."""
    return float(min(BACKOFF_FIRST * 2.0 ** min(attempt, 30), BACKOFF_CAP))


def first_retry(reconnect: bool, attempt: int, left: float) -> float | None:
    """How long a client with ``reconnect`` waits before trying its first connection again
    (``backoff``), or None: no ``reconnect``, or no time left of its ``timeout`` (``left`` s)."""
    wait = backoff(attempt)
    return wait if reconnect and wait < left else None


def socket_wait(fd: int) -> Callable[[], object] | None:
    """What a blocking reader of ``fd`` calls before each read when ``fd`` is a socket that this
    side also writes to (a channel socket: one socketpair for both directions); None when ``fd``
    is not a socket.

    Linux wakes every task blocked in ``read`` on a Unix socket each time the other side reads
    what this side wrote (the "room to write" wake-up is not filtered for readers), so a reader
    that answers on the same socket is woken once per round trip for nothing: two context
    switches more. Waiting in ``poll`` for POLLIN first filters that wake-up out, for one cheap
    system call (measured: 1.4 context switches per call instead of 1.0 on the host's side).
    """
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            return None
    except OSError:
        return None
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return poller.poll


def log_error(error: DecodeError) -> None:
    """The default policy for bad input: log it and go on with the next line."""
    log.warning("%s: %s", error.code, error)


def raise_error(error: DecodeError) -> None:
    """The strict policy: the bad line ends the stream with its DecodeError."""
    raise error


class Inbox:
    """A Decoder plus the queue of values it has produced and the policy for bad lines.

    Args:
        max_line: the decoder's line limit.
        on_error: called with each DecodeError (malformed, too long, truncated); it may raise.
            A truncated final line that still parsed is delivered and also reported there.
        binary: the decoder takes binary frames; each is a ``Binary`` value among the others.
    """

    __slots__ = ("_decoder", "_values", "_on_error")

    def __init__(
        self, *, max_line: int = MAX_LINE, on_error: ErrorHandler | None = None, binary: bool = False
    ) -> None:
        self._decoder = Decoder(max_line=max_line, binary=binary)
        self._values: deque[Any] = deque()
        self._on_error = on_error or log_error

    def __len__(self) -> int:
        return len(self._values)

    def feed(self, data: bytes) -> int:
        """Feeds received bytes; the values they complete become available to ``pop``. Returns
        how many values wait (``len(inbox)``, without another call)."""
        events = self._decoder.feed(data)
        if len(events) == 1 and type(events[0]) is Messages:  # the usual case, in one step
            values = self._values
            values.extend(events[0].values)
            return len(values)
        return self._take(events)

    def feed_eof(self) -> int:
        """Ends the stream (an unterminated last line is delivered or reported). Returns how
        many values wait."""
        return self._take(self._decoder.feed_eof())

    def pop(self) -> Any:
        """The oldest undelivered value (check ``len(inbox)`` first)."""
        return self._values.popleft()

    def pop_all(self) -> list[Any]:
        """Every undelivered value, oldest first."""
        values = list(self._values)
        self._values.clear()
        return values

    def _take(self, events: list[Any]) -> int:
        values = self._values
        for event in events:
            if type(event) is Messages:
                values.extend(event.values)
            elif type(event) is Binary:  # a binary frame: a value among the others, in order
                values.append(event)
            else:  # Malformed, Truncated (delivered or not): reported through the policy
                self._on_error(event.error)
        return len(values)


READ_SIZE = 64 * 1024
"""Bytes asked for by each read of an asyncio transport (``small_reads``)."""


def small_reads(transport: asyncio.BaseTransport) -> None:
    """Makes an asyncio socket or pipe transport read ``READ_SIZE`` bytes at a time, not 256 KiB.

    asyncio's transports ask for 256 KiB per read (their ``max_size``), which glibc's malloc
    serves with ``mmap``: it is over its 128 KiB threshold, a threshold that only rises once such
    a block is freed whole, and a read's block is always shrunk first. Then every read, however
    small the message, costs an mmap, an mremap, a munmap and fresh page faults: measured at
    14 µs more per round trip of a small call (twice the system time). 64 KiB comes from the heap.
    """
    if hasattr(transport, "max_size"):
        transport.max_size = READ_SIZE


HIGH_WATER = 256 * 1024
"""Bytes an Intake holds unread before it pauses its transport (backpressure)."""


class Intake:
    """The receiving half of an asyncio stream: bytes from a protocol's callbacks go straight into
    an Inbox, no StreamReader in between. A reader awaits the values (pull: ``wait``, ``take``,
    ``take_all``), or a target takes each batch as soon as it is decoded, from the callback itself
    (push: ``deliver_to``; what the RPC Peer uses, one turn of the event loop less per message).

    In pull mode the transport is paused while more than ``high_water`` bytes wait unread, so a
    slow reader holds the sender back. What the Inbox's policy raises (``raise_error``) is kept
    and raised by the reader after the values before it; in push mode it ends the stream.
    """

    __slots__ = (
        "inbox",
        "transport",
        "ended",
        "error",
        "_high_water",
        "_unread",
        "_paused",
        "_waiter",
        "_target",
        "_on_end",
    )

    def __init__(self, inbox: Inbox, high_water: int = HIGH_WATER) -> None:
        self.inbox = inbox
        self.transport: asyncio.ReadTransport | None = None
        """Set by the protocol: paused and resumed for backpressure."""
        self.ended = False
        """True after the end of the stream."""
        self.error: BaseException | None = None
        """What the policy raised, until the reader takes it."""
        self._high_water = high_water
        self._unread = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._target: Callable[[list[Any]], None] | None = None
        self._on_end: Callable[[], None] | None = None

    # -- from the protocol ---------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Bytes received (``data_received``)."""
        try:
            self.inbox.feed(data)
        except Exception as exc:  # noqa: BLE001 - the policy raised: the reader gets it in turn
            self.error = exc
        if self._target is not None:
            self._deliver()
            return
        self._unread += len(data)
        if self._unread > self._high_water and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def feed_eof(self) -> None:
        """The end of the stream (``eof_received`` or ``connection_lost``; a second call is ignored)."""
        if self.ended:
            return
        self.ended = True
        try:
            self.inbox.feed_eof()
        except Exception as exc:  # noqa: BLE001 - as in feed
            self.error = self.error or exc
        if self._target is not None:
            self._deliver()
        else:
            self._wake()

    # -- pull -------------------------------------------------------------------------------------

    async def ready(self) -> bool:
        """Waits for a value (True) or the end with none left (False); raises the policy's error
        in its turn, after the values before it."""
        while not len(self.inbox):
            error = self.take_error()
            if error is not None:
                raise error
            if self.ended:
                return False
            await self.wait()
        return True

    async def wait(self) -> None:
        """Returns when a value, the policy's error or the end waits (at once if one does)."""
        while not len(self.inbox) and self.error is None and not self.ended:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def take(self) -> Any:
        """The oldest value (after ``wait`` saw one)."""
        value = self.inbox.pop()
        if not len(self.inbox):
            self._drained()
        return value

    def take_all(self) -> list[Any]:
        """Every value waiting, oldest first."""
        values = self.inbox.pop_all()
        self._drained()
        return values

    def take_error(self) -> BaseException | None:
        """The policy's error, once."""
        error, self.error = self.error, None
        return error

    # -- push -------------------------------------------------------------------------------------

    def deliver_to(self, target: Callable[[list[Any]], None], on_end: Callable[[], None]) -> None:
        """From now on each batch of values goes to ``target`` as soon as it is decoded (what
        waits already goes at the next turn of the loop); ``on_end`` is called once after the
        last batch, at the end of the stream or after the policy's error (``error`` says which)."""
        self._target = target
        self._on_end = on_end
        self._drained()
        if len(self.inbox) or self.error is not None or self.ended:
            asyncio.get_running_loop().call_soon(self._deliver)

    def _deliver(self) -> None:
        target = self._target
        if target is None:
            return
        if len(self.inbox):
            target(self.inbox.pop_all())
        if self.error is not None or self.ended:
            on_end, self._target, self._on_end = self._on_end, None, None
            if self.transport is not None and not self.ended:
                self.transport.pause_reading()  # the policy ended the stream: read no more
            if on_end is not None:
                on_end()

    def close(self) -> None:
        """We stop reading (our side closed): ``ended``, without a word about a cut last line;
        no more deliveries."""
        self.ended = True
        self._target = self._on_end = None
        self._wake()

    # --------------------------------------------------------------------------------------------

    def _drained(self) -> None:
        self._unread = 0
        if self._paused:
            self._paused = False
            if self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class IntakeProtocol(asyncio.Protocol):
    """An asyncio protocol for a stream channel: what it reads goes into an Intake; writes wait
    (``drain``) while the transport's buffer is full. Keeps the write half open after the other
    side's EOF (a socket's half-close: our answers still go)."""

    def __init__(self, intake: Intake) -> None:
        self.intake = intake
        self.transport: asyncio.Transport | None = None
        self._lost: BaseException | None = None
        self._closed = False
        self._drain: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.intake.transport = transport  # type: ignore[assignment]
        small_reads(transport)

    def data_received(self, data: bytes) -> None:
        self.intake.feed(data)

    def eof_received(self) -> bool:
        self.intake.feed_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._lost = exc
        self.intake.feed_eof()
        self.resume_writing()

    def pause_writing(self) -> None:
        if self._drain is None:
            self._drain = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    def is_closing(self) -> bool:
        return self._closed or self.transport is None or self.transport.is_closing()

    def write(self, data: bytes) -> None:
        """Writes ``data`` (buffered by the transport when the socket is full)."""
        if self.is_closing():
            raise ConnectionResetError("the connection is closed")
        assert self.transport is not None
        self.transport.write(data)

    def write_eof(self) -> None:
        """Half-closes: the other side reads the end; what it sends still comes."""
        if not self.is_closing():
            assert self.transport is not None
            self.transport.write_eof()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def drain(self) -> None:
        """Waits while the transport's write buffer is over its limit."""
        if self._drain is not None:
            await asyncio.shield(self._drain)
        if self._closed and self._lost is not None:
            raise ConnectionResetError(str(self._lost))


class Channel(ABC):
    """A blocking message channel."""

    @abstractmethod
    def send(self, value: Any) -> None:
        """Sends one message; blocks while the peer is not reading (backpressure)."""

    @abstractmethod
    def receive(self) -> Any:
        """The next message; raises TransportClosed when the peer has finished cleanly."""

    @abstractmethod
    def close(self) -> None:
        """Releases the channel; safe to call twice."""

    def send_many(self, values: Iterable[Any]) -> None:
        """Sends several messages; stream channels write them together, in one system call."""
        for value in values:
            self.send(value)

    def receive_many(self) -> list[Any]:
        """Every message already received, at least one (waits for it); TransportClosed at end."""
        return [self.receive()]

    def __iter__(self) -> Iterator[Any]:
        """Yields the messages until the peer finishes cleanly (in batches: fast)."""
        while True:
            try:
                batch = self.receive_many()
            except TransportClosed:
                return
            yield from batch

    def __enter__(self) -> Channel:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class StreamChannel(Channel):
    """A Channel reading a byte stream into an Inbox: subclasses give ``_inbox`` and ``_fill``."""

    _inbox: Inbox

    @abstractmethod
    def _fill(self) -> None:
        """Reads until at least one message waits in ``_inbox``; raises at the end of the stream."""

    def receive(self) -> Any:
        """The next message; raises TransportClosed (or why the stream ended) at the end."""
        self._fill()
        return self._inbox.pop()

    def receive_many(self) -> list[Any]:
        """Every message already read (at least one); raises as ``receive`` does at the end."""
        self._fill()
        return self._inbox.pop_all()


class AsyncChannel(ABC):
    """An asyncio message channel: the same names as Channel, awaited."""

    @abstractmethod
    async def send(self, value: Any) -> None:
        """Sends one message; waits while the peer is not reading (backpressure)."""

    @abstractmethod
    async def receive(self) -> Any:
        """The next message; raises TransportClosed when the peer has finished cleanly."""

    @abstractmethod
    async def close(self) -> None:
        """Releases the channel; safe to call twice."""

    async def send_many(self, values: Iterable[Any]) -> None:
        """Sends several messages in order; stream and ws channels send them in one write."""
        for value in values:
            await self.send(value)

    async def deliver_to(self, on_messages: MessagesHandler, on_end: EndHandler) -> bool:
        """Push mode, for a consumer that reacts to each message at once (the RPC Peer): from now
        on every batch of messages goes to ``on_messages`` as soon as it is decoded, straight from
        the protocol's callback, and ``on_end`` gets what ``receive`` would have raised at the
        end, once. Do not call ``receive`` after this. Returns False (and does nothing) when the
        channel does not support it: the caller then reads with ``receive``."""
        return False

    async def __aiter__(self) -> AsyncIterator[Any]:
        while True:
            try:
                yield await self.receive()
            except TransportClosed:
                return

    async def __aenter__(self) -> AsyncChannel:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


C = TypeVar("C")


class Router(Generic[C]):
    """Where a network listener's connections go, between ``accept()`` and the merged stream:
    one rule for tcp and ws, in Python and JavaScript (spec/PROTOCOL.md section 7). Sans-I/O:
    the transport calls it under its lock (threads) or from its event loop, and does the moving.

    A connection, once ready (its handshake done), goes to the first of:

    1. an ``accept()`` that is waiting: it is held for it (``arrive`` returns False; wake it);
    2. the merged stream, once the listener merges (``arrive`` returns True): it does from the
       first ``receive``, iteration or ``send`` on it (``start_merging``), for good;
    3. the queue of held connections, oldest first (read ahead a bounded amount, answered,
       not delivered): the next ``accept()`` takes the oldest; ``start_merging``, or the last
       waiting ``accept()`` giving up while the listener merges, hands all of them over.

    A merged connection stays merged: ``accept()`` only ever takes held ones, so each
    connection's messages go to one consumer, decided once.
    """

    __slots__ = ("accepting", "held", "merging")

    def __init__(self) -> None:
        self.held: deque[C] = deque()
        """Connections waiting for an ``accept()`` or for merging, oldest first."""
        self.merging = False
        """Whether the merged stream has been used (``start_merging``)."""
        self.accepting = 0
        """How many ``accept()`` calls are under way."""

    def arrive(self, conn: C) -> bool:
        """A connection is ready: True, merge it now; False, it is held (wake ``accept()``)."""
        if self.merging and not self.accepting:
            return True
        self.held.append(conn)
        return False

    def begin_accept(self) -> None:
        """An ``accept()`` starts: until ``end_accept``, new connections are held for it."""
        self.accepting += 1

    def take(self) -> C | None:
        """The oldest held connection, for ``accept()``; None when none waits."""
        return self.held.popleft() if self.held else None

    def end_accept(self) -> list[C]:
        """An ``accept()`` is over (it took one, gave up or failed): the held connections to
        merge now (those no other ``accept()`` waits for, when the listener merges)."""
        self.accepting -= 1
        return self._flush()

    def start_merging(self) -> list[C]:
        """The merged stream is used (``receive``, iteration, ``send``): the held connections
        to merge now (none while an ``accept()`` waits: it takes the next one)."""
        self.merging = True
        return self._flush()

    def forget(self, conn: C) -> None:
        """A held connection went away before anyone took it."""
        with contextlib.suppress(ValueError):
            self.held.remove(conn)

    def close(self) -> list[C]:
        """The listener closes: the held connections, for it to close."""
        held = list(self.held)
        self.held.clear()
        return held

    def _flush(self) -> list[C]:
        if not self.merging or self.accepting:
            return []
        return self.close()


class Listener(Channel):
    """The receiving end of a URL (``listen(url)``).

    ``receive``/iteration give the messages of every sender, merged in arrival order; ``send``
    goes to every connected peer (network schemes). ``accept`` hands out the next connection as
    its own duplex Channel instead (a connection taken by ``accept`` is no longer merged).
    """

    url: str
    """The URL that reaches this listener (with the real port when it was given as 0)."""

    def accept(self) -> Channel:
        """The next connection as its own channel (network schemes only)."""
        raise TransportError(f"{self.url}: this kind of listener has no connections to accept")


class AsyncListener(AsyncChannel):
    """The asyncio flavour of Listener: the same names, awaited."""

    url: str

    async def accept(self) -> AsyncChannel:
        """The next connection as its own channel (network schemes only)."""
        raise TransportError(f"{self.url}: this kind of listener has no connections to accept")


class MemoryChannel(AsyncChannel):
    """One end of ``memory_pair()``: messages go through encode/decode, as on a real wire."""

    def __init__(self, inbox: asyncio.Queue[bytes | None], outbox: asyncio.Queue[bytes | None]) -> None:
        self._inbox = inbox
        self._outbox = outbox
        self._closed = False

    async def send(self, value: Any) -> None:
        if self._closed:
            raise TransportClosed("this end of the memory pair is closed")
        await self._outbox.put(encode(value))

    async def receive(self) -> Any:
        if self._closed:
            raise TransportClosed("this end of the memory pair is closed")
        line = await self._inbox.get()
        if line is None:
            self._inbox.put_nowait(None)  # stay closed for the next receive
            raise TransportClosed("the other end closed")
        return decode(line)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._outbox.put_nowait(None)


def memory_pair() -> tuple[MemoryChannel, MemoryChannel]:
    """Two connected in-memory async channels, for testing RPC and app code without sockets."""
    a: asyncio.Queue[bytes | None] = asyncio.Queue()
    b: asyncio.Queue[bytes | None] = asyncio.Queue()
    return MemoryChannel(a, b), MemoryChannel(b, a)
