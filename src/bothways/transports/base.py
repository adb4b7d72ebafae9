"""What every transport shares: the channel interfaces and the Inbox that turns bytes into values.

An adapter is a short loop: read bytes, ``inbox.feed(data)``, hand out ``inbox.pop()``; at end
of stream ``inbox.feed_eof()``. What to do with a malformed line is the inbox's ``on_error``
policy: by default it is logged (with its line number and excerpt) and the stream goes on.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from types import TracebackType
from typing import Any

from ..errors import DecodeError, TransportClosed, TransportError
from ..wire import MAX_LINE, Decoder, Messages, decode, encode

log = logging.getLogger("bothways")

ErrorHandler = Callable[[DecodeError], None]


BACKOFF_FIRST = 0.05
"""Seconds before a client's first reconnection attempt (tcp, ws); doubled after each failure."""
BACKOFF_CAP = 5.0
"""The longest wait between two reconnection attempts, in seconds."""


def backoff(attempt: int) -> float:
    """Seconds to wait before reconnection attempt ``attempt`` (from 0): 0.05 doubling to 5."""
    return float(min(BACKOFF_FIRST * 2.0 ** min(attempt, 30), BACKOFF_CAP))


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
    """

    __slots__ = ("_decoder", "_values", "_on_error")

    def __init__(self, *, max_line: int = MAX_LINE, on_error: ErrorHandler | None = None) -> None:
        self._decoder = Decoder(max_line=max_line)
        self._values: deque[Any] = deque()
        self._on_error = on_error or log_error

    def __len__(self) -> int:
        return len(self._values)

    def feed(self, data: bytes) -> None:
        """Feeds received bytes; the values they complete become available to ``pop``."""
        self._take(self._decoder.feed(data))

    def feed_eof(self) -> None:
        """Ends the stream (an unterminated last line is delivered or reported)."""
        self._take(self._decoder.feed_eof())

    def pop(self) -> Any:
        """The oldest undelivered value (check ``len(inbox)`` first)."""
        return self._values.popleft()

    def pop_all(self) -> list[Any]:
        """Every undelivered value, oldest first."""
        values = list(self._values)
        self._values.clear()
        return values

    def _take(self, events: list[Any]) -> None:
        for event in events:
            if type(event) is Messages:
                self._values.extend(event.values)
            else:  # Malformed, Truncated (delivered or not): reported through the policy
                self._on_error(event.error)


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
