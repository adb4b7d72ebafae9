"""Named pipes (``fifo:/path``): one reader, any number of writers, NDJSON through a FIFO.

``listen(address)`` is the reader: it creates the FIFO (mode 0600) when it is missing and reads
it; ``connect(address)`` is a writer: it waits for the FIFO and for a reader, then writes lines.
Mirrors ``js/src/transports/fifo.js`` name for name.

Rules:
- The reader opens the FIFO with O_NONBLOCK (an ordinary open would block until a writer comes)
  and waits with poll(): Linux reports nothing on a FIFO that has had no writer since it was
  opened, so the reader sleeps until a writer arrives. It reads only when poll() says so: a
  non-blocking read with no writer returns 0, which is no end of stream.
- When the last writer closes (read() returns 0 after poll()), the messages so far are one
  stream: its unterminated last line, if any, is reported as truncated (TruncatedLine), never
  glued to the next writer's first line. With ``reopen=True`` (the default) the reader opens the
  FIFO again *before* closing the old descriptor - a writer arriving in between always finds a
  reader, and no byte it wrote is lost - and messages keep flowing from the next writer. With
  ``reopen=False`` the first writer's end ends iteration (``receive()`` raises TransportClosed).
- A writer opens with O_WRONLY|O_NONBLOCK, which fails with ENXIO while there is no reader (and
  ENOENT while the FIFO does not exist): it retries with a growing pause for up to ``timeout``
  seconds, then raises ConnectError naming the path.
- Each write is whole lines. Writes of at most PIPE_BUF (4096) bytes are atomic, so lines from
  several concurrent writers never mix as long as each line is at most 4096 bytes; a batch
  (``send_many``) is cut at line boundaries into writes of at most 4096 bytes. A longer line
  takes several writes and MAY INTERLEAVE with other writers' lines (one writer: no problem).
- Backpressure: the reader reads only when asked (``receive``/iteration), so a full pipe (64 KiB
  on Linux) blocks a blocking writer's ``send`` and makes an asyncio writer's ``send`` wait.
- The reader gone: a writer's next ``send`` raises TransportClosed (EPIPE). ``send`` on the
  reader and ``receive`` on a writer raise TransportError: a FIFO carries one direction.
- The FIFO the reader created is removed by its ``close()``; one it found is left in place.
- The blocking reader waits in poll(): close it from the thread that reads (a ``close()`` from
  another thread does not wake a waiting ``receive``); the asyncio reader's ``close()`` does.
"""

from __future__ import annotations

import asyncio
import errno
import os
import select
import stat
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

from ..errors import ConnectError, DecodeError, TransportClosed, TransportError
from ..urls import Address
from ..wire import MAX_LINE, encode, encode_many
from .base import AsyncChannel, AsyncListener, Channel, ErrorHandler, Inbox, Listener, log_error

__all__ = [
    "PIPE_BUF",
    "TIMEOUT",
    "AsyncFifoReader",
    "AsyncFifoWriter",
    "FifoReader",
    "FifoSessions",
    "FifoWriter",
    "async_connect",
    "async_listen",
    "connect",
    "listen",
    "pieces",
]

PIPE_BUF = 4096
"""The largest write POSIX keeps whole when several writers share a pipe (Linux: 4096)."""

CHUNK = 64 * 1024  # bytes per read: a Linux pipe's whole buffer
TIMEOUT = 10.0  # seconds a writer waits for the FIFO and a reader
FIRST_PAUSE = 0.005  # seconds between a writer's first attempts to open; doubled up to MAX_PAUSE
MAX_PAUSE = 0.1
IDLE_PAUSE = 0.05  # seconds before reopening after a writer that sent nothing (no busy loop)


# ----------------------------------------------------------------------------------------------
# The shared core: no I/O


class _Session:
    """One writer's stream: its Inbox, and the errors the policy raised, each in its turn."""

    __slots__ = ("inbox", "popped", "raised")

    def __init__(self) -> None:
        self.inbox: Inbox
        self.popped = 0  # values taken out so far
        self.raised: deque[tuple[int, Exception]] = deque()  # (values before it, what was raised)

    def __bool__(self) -> bool:
        return bool(len(self.inbox) or self.raised)


class FifoSessions:
    """The reader's messages, writer after writer; no I/O (shared by both flavours).

    Each writer's stream (from the FIFO's opening to the moment its last writer leaves) gets its
    own Inbox, so a truncated last line is reported at its end and never joined to the next
    writer's first line, and line numbers in error reports count from that writer's start.
    Messages come out in arrival order across sessions. What the ``on_error`` policy raises
    (``raise_error``) is raised by ``pop`` in its turn: after the messages before the bad line,
    and the messages after it stay available.
    """

    __slots__ = ("_sessions", "_max_line", "_on_error", "_reopen", "received", "ended")

    def __init__(
        self, *, max_line: int = MAX_LINE, on_error: ErrorHandler | None = None, reopen: bool = True
    ) -> None:
        self._max_line = max_line
        self._on_error = on_error or log_error
        self._reopen = reopen
        self._sessions = deque([self._session()])
        self.received = 0
        """Bytes received since the FIFO was (re)opened."""
        self.ended = False
        """True once the stream is over (a writer left and ``reopen`` is off)."""

    def _session(self) -> _Session:
        session = _Session()

        def policy(error: DecodeError) -> None:
            try:
                self._on_error(error)
            except Exception as exc:
                session.raised.append((session.popped + len(session.inbox), exc))

        session.inbox = Inbox(max_line=self._max_line, on_error=policy)
        return session

    def feed(self, data: bytes) -> None:
        """Takes bytes read from the FIFO."""
        self.received += len(data)
        self._sessions[-1].inbox.feed(data)

    def writer_left(self) -> bool:
        """The last writer closed (a read gave 0 bytes); returns whether to open the FIFO again.

        After it returns True, the caller opens the FIFO anew, waiting ``IDLE_PAUSE`` first when
        ``received`` was 0 (a writer that sent nothing; elsewhere than Linux, no writer at all),
        then calls ``reopened()``.
        """
        self._sessions[-1].inbox.feed_eof()
        if not self._reopen:
            self.ended = True
            return False
        self._sessions.append(self._session())
        return True

    def reopened(self) -> None:
        """The FIFO was opened again: counting starts over."""
        self.received = 0

    def ready(self) -> bool:
        """Whether a message (or an error to raise) waits; finished sessions are dropped here."""
        sessions = self._sessions
        while not sessions[0]:
            if len(sessions) == 1:
                return False
            sessions.popleft()
        return True

    def pop(self) -> Any:
        """The next message (call ``ready()`` first); raises what the policy raised, in turn."""
        session = self._sessions[0]
        if session.raised and session.raised[0][0] == session.popped:
            raise session.raised.popleft()[1]
        session.popped += 1
        return session.inbox.pop()

    def pop_all(self) -> list[Any]:
        """The messages of the oldest session that has some, up to the next error (``ready()`` first)."""
        session = self._sessions[0]
        if not session.raised:
            values = session.inbox.pop_all()
        elif session.raised[0][0] == session.popped:
            raise session.raised.popleft()[1]
        else:
            values = [session.inbox.pop() for _ in range(session.raised[0][0] - session.popped)]
        session.popped += len(values)
        return values


def pieces(data: bytes) -> Iterator[memoryview]:
    """Cuts NDJSON ``data`` at line boundaries into pieces of at most PIPE_BUF bytes each.

    A line longer than PIPE_BUF is one piece of its own (it cannot be atomic anyway).
    """
    view = memoryview(data)
    start = 0
    end = len(data)
    while start < end:
        if end - start <= PIPE_BUF:
            yield view[start:end]
            return
        cut = data.rfind(b"\n", start, start + PIPE_BUF)
        if cut < 0:  # one long line: up to its own newline
            cut = data.find(b"\n", start + PIPE_BUF)
            cut = end - 1 if cut < 0 else cut
        yield view[start : cut + 1]
        start = cut + 1


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a FIFO"


def _not_a_fifo(url: str, path: str, mode: int) -> TransportError:
    return TransportError(f"{url}: {path} exists and is not a FIFO (it is {_kind(mode)})")


def _os_error(url: str, what: str, exc: OSError) -> TransportError:
    return TransportError(f"{url}: cannot {what}: {exc.strerror or exc}")


def _ensure_fifo(path: str, url: str) -> bool:
    """Creates the FIFO (0600) unless it exists; returns whether we created it."""
    try:
        os.mkfifo(path, 0o600)
        return True
    except FileExistsError:
        pass
    except OSError as exc:
        raise _os_error(url, f"create the FIFO {path}", exc) from exc
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise _os_error(url, f"inspect {path}", exc) from exc
    if not stat.S_ISFIFO(mode):
        raise _not_a_fifo(url, path, mode)
    return False


def _open_reader(path: str, url: str) -> int:
    """Opens the FIFO for reading, without waiting for a writer (created again if it vanished)."""
    for _ in range(3):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            _ensure_fifo(path, url)
            continue
        except OSError as exc:
            raise _os_error(url, f"open {path} for reading", exc) from exc
        mode = os.fstat(fd).st_mode
        if not stat.S_ISFIFO(mode):
            os.close(fd)
            raise _not_a_fifo(url, path, mode)
        return fd
    raise TransportError(f"{url}: {path} keeps disappearing")


def _try_open_writer(path: str, url: str) -> int | None:
    """One attempt to open the FIFO for writing: the descriptor, or None to try again later."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConnectError(f"cannot inspect {path}: {exc.strerror or exc}", url=url) from exc
    if not stat.S_ISFIFO(mode):
        raise ConnectError(f"{path} exists and is not a FIFO (it is {_kind(mode)})", url=url)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ENXIO, errno.ENOENT):  # no reader yet / removed meanwhile
            return None
        raise ConnectError(f"cannot open {path} for writing: {exc.strerror or exc}", url=url) from exc
    mode = os.fstat(fd).st_mode
    if not stat.S_ISFIFO(mode):  # replaced between stat and open
        os.close(fd)
        raise ConnectError(f"{path} exists and is not a FIFO (it is {_kind(mode)})", url=url)
    return fd


def _gave_up(path: str, url: str, timeout: float) -> ConnectError:
    if os.path.exists(path):
        return ConnectError(f"no reader opened the FIFO {path} within {timeout:g} s", url=url)
    return ConnectError(f"no FIFO at {path} within {timeout:g} s (is the reader running?)", url=url)


def _check_timeout(timeout: float) -> None:
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")


# ----------------------------------------------------------------------------------------------
# Blocking flavour


class FifoReader(Listener):
    """The reading end of a FIFO; made by ``listen(address)``.

    Iterate it (or call ``receive``) for the messages of every writer, in arrival order.
    """

    def __init__(
        self,
        address: Address,
        *,
        max_line: int = MAX_LINE,
        on_error: ErrorHandler | None = None,
        reopen: bool = True,
    ) -> None:
        self.url = address.url
        self.path = address.path
        self._sessions = FifoSessions(max_line=max_line, on_error=on_error, reopen=reopen)
        self._created = _ensure_fifo(self.path, self.url)
        try:
            self._fd = _open_reader(self.path, self.url)
        except BaseException:
            if self._created:
                _remove(self.path)
            raise
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLIN)
        self._closed = False
        self._fd_lock = threading.Lock()  # close() may come from another thread than a reopen

    def send(self, value: Any) -> None:
        """Not possible: raises TransportError (a FIFO carries one direction)."""
        raise TransportError(f"{self.url}: the reader end only receives")

    def send_many(self, values: Iterable[Any]) -> None:
        """Not possible: raises TransportError (a FIFO carries one direction)."""
        raise TransportError(f"{self.url}: the reader end only receives")

    def _fill(self) -> None:
        sessions = self._sessions
        while not sessions.ready():
            if self._closed:
                raise TransportClosed(f"{self.url}: closed")
            if sessions.ended:
                raise TransportClosed(f"{self.url}: the writer closed the FIFO")
            self._poll.poll()  # until data, or the last writer's hangup
            try:
                data = os.read(self._fd, CHUNK)
            except BlockingIOError:
                continue
            except OSError as exc:
                raise _os_error(self.url, f"read {self.path}", exc) from exc
            if data:
                sessions.feed(data)
            elif sessions.writer_left():
                if sessions.received == 0:
                    time.sleep(IDLE_PAUSE)
                self._reopen()

    def _reopen(self) -> None:
        fd = _open_reader(self.path, self.url)  # before the old one closes: never without reader
        with self._fd_lock:
            if self._closed:  # closed meanwhile (from another thread): the old fd is gone
                os.close(fd)
                raise TransportClosed(f"{self.url}: closed")
            self._poll.unregister(self._fd)
            os.close(self._fd)
            self._fd = fd
            self._poll.register(fd, select.POLLIN)
        self._sessions.reopened()

    def receive(self) -> Any:
        """The next message; TransportClosed once closed (or, with reopen=False, at the end)."""
        self._fill()
        return self._sessions.pop()

    def receive_many(self) -> list[Any]:
        """Every message already read (at least one); raises as ``receive`` does."""
        self._fill()
        return self._sessions.pop_all()

    def close(self) -> None:
        """Closes the FIFO (a writer's next send gets TransportClosed); removes it if we made it."""
        with self._fd_lock:
            if self._closed:
                return
            self._closed = True
            os.close(self._fd)
        if self._created:
            _remove(self.path)


def _remove(path: str) -> None:
    try:
        if stat.S_ISFIFO(os.stat(path).st_mode):
            os.unlink(path)
    except OSError:
        pass


class FifoWriter(Channel):
    """A writing end of a FIFO; made by ``connect(address)``. ``send`` blocks while it is full."""

    def __init__(self, address: Address, fd: int) -> None:
        self.url = address.url
        self.path = address.path
        self._fd = fd
        os.set_blocking(fd, True)  # writes wait for room: backpressure, PIPE_BUF writes whole
        self._closed = False

    def send(self, value: Any) -> None:
        """Writes one message (one write when it is at most PIPE_BUF bytes)."""
        self.send_bytes(encode(value))

    def send_many(self, values: Iterable[Any]) -> None:
        """Writes several messages, in writes of at most PIPE_BUF bytes cut between lines."""
        self.send_bytes(encode_many(values))

    def send_bytes(self, data: bytes) -> None:
        """Writes encoded NDJSON lines as they are, completely.

        Raises:
            TransportClosed: the reader closed the FIFO (EPIPE), or this writer is closed.
        """
        if self._closed:
            raise TransportClosed(f"{self.url}: this writer is closed")
        try:
            for piece in pieces(data):
                while piece:
                    piece = piece[os.write(self._fd, piece) :]
        except BrokenPipeError as exc:
            raise TransportClosed(f"{self.url}: the reader closed the FIFO") from exc
        except OSError as exc:
            raise _os_error(self.url, f"write to {self.path}", exc) from exc

    def receive(self) -> Any:
        """Not possible: raises TransportError (a FIFO carries one direction)."""
        raise TransportError(f"{self.url}: the writer end only sends")

    def close(self) -> None:
        """Closes this writer; the reader sees the end once every writer has closed."""
        if not self._closed:
            self._closed = True
            os.close(self._fd)


def listen(
    address: Address, *, max_line: int = MAX_LINE, on_error: ErrorHandler | None = None, reopen: bool = True
) -> FifoReader:
    """Opens the reading end of ``address`` (creating the FIFO, mode 0600, when missing).

    Args:
        address: a parsed ``fifo:/path``.
        max_line: the longest line accepted, in bytes (default 16 MiB).
        on_error: what to do with a malformed, too long or truncated line (default: log it).
        reopen: keep reading after the last writer closed, from the next writer (default); with
            False, the first writer's end ends iteration.

    Raises:
        TransportError: the path exists and is not a FIFO, or cannot be created or opened.
    """
    return FifoReader(address, max_line=max_line, on_error=on_error, reopen=reopen)


def connect(
    address: Address,
    *,
    max_line: int = MAX_LINE,
    on_error: ErrorHandler | None = None,
    timeout: float = TIMEOUT,
) -> FifoWriter:
    """Opens a writing end of ``address``, waiting up to ``timeout`` s for the FIFO and a reader.

    ``max_line`` and ``on_error`` are accepted for symmetry (a writer receives nothing).

    Raises:
        ConnectError: no reader within ``timeout``, or the path is not a FIFO.
    """
    _check_timeout(timeout)
    deadline = time.monotonic() + timeout
    pause = FIRST_PAUSE
    while (fd := _try_open_writer(address.path, address.url)) is None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _gave_up(address.path, address.url, timeout)
        time.sleep(min(pause, left))
        pause = min(pause * 2, MAX_PAUSE)
    return FifoWriter(address, fd)


# ----------------------------------------------------------------------------------------------
# asyncio flavour


class _FdWait:
    """Waits for one descriptor's readiness in the running loop; ``interrupt`` ends the wait.

    ``close()`` calls ``interrupt`` before it closes the descriptor, so the loop never watches a
    closed (or reused) descriptor number, and the waiting task wakes up to find it closed.
    """

    __slots__ = ("_future", "_fd", "_write")

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None
        self._fd = -1
        self._write = False

    async def wait(self, fd: int, *, write: bool) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._future, self._fd, self._write = future, fd, write
        (loop.add_writer if write else loop.add_reader)(fd, _wake, future)
        try:
            await future
        finally:
            if self._future is future:  # not interrupted: still ours to unwatch
                self._unwatch()

    def interrupt(self) -> None:
        future = self._future
        if future is not None:
            self._unwatch()
            if not future.done():
                future.set_result(None)

    def _unwatch(self) -> None:
        future, self._future = self._future, None
        if future is not None:
            loop = future.get_loop()
            (loop.remove_writer if self._write else loop.remove_reader)(self._fd)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class AsyncFifoReader(AsyncListener):
    """The asyncio flavour of FifoReader; made by ``await async_listen(address)``."""

    def __init__(self, reader: FifoReader) -> None:
        self._reader = reader  # the same state and descriptor; only the waiting differs
        self.url = reader.url
        self.path = reader.path
        self._wait = _FdWait()

    async def send(self, value: Any) -> None:
        """Not possible: raises TransportError (a FIFO carries one direction)."""
        self._reader.send(value)

    async def _fill(self) -> None:
        reader = self._reader
        sessions = reader._sessions
        while not sessions.ready():
            if reader._closed:
                raise TransportClosed(f"{self.url}: closed")
            if sessions.ended:
                raise TransportClosed(f"{self.url}: the writer closed the FIFO")
            await self._wait.wait(reader._fd, write=False)
            if reader._closed:
                continue
            try:
                data = os.read(reader._fd, CHUNK)
            except BlockingIOError:
                continue
            except OSError as exc:
                raise _os_error(self.url, f"read {self.path}", exc) from exc
            if data:
                sessions.feed(data)
            elif sessions.writer_left():
                if sessions.received == 0:
                    await asyncio.sleep(IDLE_PAUSE)
                if not reader._closed:
                    reader._reopen()

    async def receive(self) -> Any:
        """The next message; TransportClosed once closed (or, with reopen=False, at the end)."""
        await self._fill()
        return self._reader._sessions.pop()

    async def receive_many(self) -> list[Any]:
        """Every message already read (at least one); raises as ``receive`` does."""
        await self._fill()
        return self._reader._sessions.pop_all()

    async def __aiter__(self) -> AsyncIterator[Any]:
        while True:
            try:
                batch = await self.receive_many()
            except TransportClosed:
                return
            for value in batch:
                yield value

    async def close(self) -> None:
        """Closes the FIFO; a ``receive`` waiting meanwhile raises TransportClosed."""
        self._wait.interrupt()
        self._reader.close()


class AsyncFifoWriter(AsyncChannel):
    """The asyncio flavour of FifoWriter; ``send`` waits while the FIFO is full."""

    def __init__(self, address: Address, fd: int) -> None:
        self.url = address.url
        self.path = address.path
        self._fd = fd  # non-blocking: a full pipe gives BlockingIOError, and we wait
        self._closed = False
        self._lock = asyncio.Lock()  # one send at a time: a long line is never cut by another
        self._wait = _FdWait()

    async def send(self, value: Any) -> None:
        """Writes one message (one write when it is at most PIPE_BUF bytes)."""
        await self.send_bytes(encode(value))

    async def send_many(self, values: Iterable[Any]) -> None:
        """Writes several messages, in writes of at most PIPE_BUF bytes cut between lines."""
        await self.send_bytes(encode_many(values))

    async def send_bytes(self, data: bytes) -> None:
        """Writes encoded NDJSON lines as they are, completely; see FifoWriter.send_bytes."""
        async with self._lock:
            for piece in pieces(data):
                while piece:
                    if self._closed:
                        raise TransportClosed(f"{self.url}: this writer is closed")
                    try:
                        piece = piece[os.write(self._fd, piece) :]
                    except BlockingIOError:
                        await self._wait.wait(self._fd, write=True)
                    except BrokenPipeError as exc:
                        raise TransportClosed(f"{self.url}: the reader closed the FIFO") from exc
                    except OSError as exc:
                        raise _os_error(self.url, f"write to {self.path}", exc) from exc

    async def receive(self) -> Any:
        """Not possible: raises TransportError (a FIFO carries one direction)."""
        raise TransportError(f"{self.url}: the writer end only sends")

    async def close(self) -> None:
        """Closes this writer; a ``send`` waiting for room meanwhile raises TransportClosed."""
        if not self._closed:
            self._closed = True
            self._wait.interrupt()
            os.close(self._fd)


async def async_listen(
    address: Address, *, max_line: int = MAX_LINE, on_error: ErrorHandler | None = None, reopen: bool = True
) -> AsyncFifoReader:
    """The asyncio ``listen``: the same arguments, an AsyncFifoReader."""
    return AsyncFifoReader(FifoReader(address, max_line=max_line, on_error=on_error, reopen=reopen))


async def async_connect(
    address: Address,
    *,
    max_line: int = MAX_LINE,
    on_error: ErrorHandler | None = None,
    timeout: float = TIMEOUT,
) -> AsyncFifoWriter:
    """The asyncio ``connect``: the same arguments, an AsyncFifoWriter."""
    _check_timeout(timeout)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pause = FIRST_PAUSE
    while (fd := _try_open_writer(address.path, address.url)) is None:
        left = deadline - loop.time()
        if left <= 0:
            raise _gave_up(address.path, address.url, timeout)
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 2, MAX_PAUSE)
    return AsyncFifoWriter(address, fd)
