"""Appended NDJSON files (``file:/path``): writers append lines, a reader tails the file.

``connect(address)`` is a writer: it appends whole lines (O_APPEND, one write per ``send``, so a
reader never sees half a line from a live writer) and can rotate the file itself
(``max_bytes``/``keep``). ``listen(address)`` is the reader: it polls the file (``poll``
seconds, default 0.05), delivers complete lines only, survives truncation and rotation, and can
resume where it stopped. Mirrors ``js/src/transports/file.js`` name for name.

Strategy
--------
- ``Tail`` holds every decision and no I/O: which file to open on start, what to do on each
  poll (read, wait, start again after a truncation, look for the next file after a rotation),
  the decoder, and the position of each message. ``_Follower`` does the system calls it asks
  for; the blocking and asyncio readers only differ in how they wait between polls.
- A file is known by its inode. Each poll stats the path first, then fstats the open file: when
  the path names another inode, the writer finished the old file before renaming it, so the
  open descriptor is read to its end before the next file is taken. The next file is found by
  looking the old inode up among ``path``, ``path.1``, ``path.2``, ... (the writer's rotation
  scheme, logrotate's default): the file named one number lower comes next. A file deleted
  while being read (rotated out) is followed by the oldest file left; a file renamed out of
  the scheme (dateext) by ``path``, after a few polls. A file that shrank was truncated
  (copytruncate): it is read again from offset 0.
- Positions: ``reader.position`` is ``{"inode": "<st_ino>", "head": "<8 hex>", "offset": N}``
  for the end of the last message handed out (before any: where reading started), a small
  JSON value. ``head`` is a checksum (FNV-1a 32) of the file's first min(64, N) bytes, because
  ext4 reuses the inode numbers of deleted files at once: a position matches a file only when
  both agree. The device number is left out: every candidate is in one directory, and device
  numbers change across reboots. On start from a position, the file is looked up among
  ``path``, ``path.1``, ...; a file that is gone (rotated out) gives way, with a warning, to the
  oldest file left, from its start.
- Resuming, two ways. ``position=`` (a value read from ``.position``): exactly once, when the
  caller stores each message's position in the same atomic step as its effect. ``state=PATH``
  (also ``?state=`` in the URL): the reader saves its position there atomically (a temporary
  file, then rename), and only for what the caller has taken, i.e. what it was handed before
  it came back for more. It saves when the caller asks for more and the last save is at least
  ``save_every`` old (default 0.2 s; 0: at every request), when it has caught up (nothing left
  to hand out), and on ``close()``, which takes the last message handed out as done and saves
  exactly its end. At least once: after a crash, what comes again is at most the messages
  handed out in the ``save_every`` before the last request for more, plus the batch in hand
  (one message from ``receive`` or iteration, all of them from ``receive_many``). Saving at
  every request cost far more than reading (a write and a rename each: some 5,000 messages/s);
  a save per interval costs nothing measurable. Iteration reads in batches but hands out, and
  positions, one message at a time. ``position`` wins over ``state``. With neither, reading
  starts at the beginning of ``path``. There is no default state file: one next to the data
  would need a writable directory, and every reader of the file would share it, silently.
- Line numbers in error reports count from where reading started in the current file.
- Writers create the file with mode 0600 (``mode=`` to change it): a channel is between the
  user's own programs, and a reader of the same user needs no more; umask still applies.
- Rotation by the writer (``max_bytes=N``): before a write that would take the file past N
  bytes (and the file is not empty), ``path.(keep-1)`` .. ``path.1`` move one number up,
  ``path`` becomes ``path.1``, and a new ``path`` is created; ``path.keep`` is overwritten (the
  oldest is dropped). Meant for one writer per file; a reader ``keep`` files behind loses data.
- Limits: several writers may append to one file (each line is one O_APPEND write, which Linux
  keeps whole on local file systems), but only one may rotate it. With copytruncate, lines
  written between the copy and the truncation are lost, and a file that grows past the old
  offset before a poll sees it shrink is taken for unchanged: that is copytruncate's nature.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

from ..errors import DecodeError, TransportClosed, TransportError, TruncatedLine
from ..urls import Address
from ..wire import MAX_LINE, Binary, Decoder, Messages, decode, encode, encode_many
from .base import AsyncChannel, AsyncListener, Channel, ErrorHandler, Listener, log_error

__all__ = [
    "HEAD",
    "LOCATE",
    "POLL",
    "READ",
    "SAVE_EVERY",
    "TRUNCATED",
    "WAIT",
    "AsyncFileReader",
    "AsyncFileWriter",
    "FileReader",
    "FileWriter",
    "Tail",
    "async_connect",
    "async_listen",
    "connect",
    "fingerprint",
    "listen",
]

log = logging.getLogger("bothways")

HEAD = 64
"""Bytes at the start of a file that a position's ``head`` checksum covers."""

CHUNK = 1024 * 1024  # bytes per read
POLL = 0.05  # seconds between polls of an idle file
SAVE_EVERY = 0.2  # seconds: a reader with state= saves at most this often while busy
KEEP = 5  # rotated files kept by a writer with max_bytes
MODE = 0o600
START_TRIES = 3  # scans before a saved position is declared gone (a rotation may be under way)
RENAMED_TRIES = 3  # polls before a file renamed out of the scheme gives way to the path

READ = "read"
WAIT = "wait"
TRUNCATED = "truncated"
LOCATE = "locate"


def fingerprint(data: bytes) -> str:
    """FNV-1a (32 bits) of ``data`` as 8 hex digits: the ``head`` of a position."""
    h = 0x811C9DC5
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return f"{h:08x}"


def _check_position(position: Any) -> dict[str, Any]:
    if (
        isinstance(position, dict)
        and set(position) == {"inode", "head", "offset"}
        and isinstance(position["inode"], str)
        and isinstance(position["head"], str)
        and type(position["offset"]) is int
        and position["offset"] >= 0
    ):
        return position
    raise ValueError(
        f"position must be a value of reader.position ({{inode, head, offset}}), got {position!r}"
    )


class _Source:
    """A file being (or having been) read: its inode and its first HEAD bytes as far as known."""

    __slots__ = ("ino", "head", "_whole")

    def __init__(self, ino: str, head: bytes) -> None:
        self.ino = ino
        self.head = bytearray(head)
        self._whole: str | None = None  # the checksum of all HEAD bytes, once known

    def position(self, offset: int) -> dict[str, Any]:
        if offset >= HEAD and len(self.head) >= HEAD:
            if self._whole is None:
                self._whole = fingerprint(bytes(self.head[:HEAD]))
            head = self._whole
        else:
            head = fingerprint(bytes(self.head[:offset]))
        return {"inode": self.ino, "head": head, "offset": offset}


class _Batch:
    """Consecutive messages of one file with the end offset of each; or an error in its turn."""

    __slots__ = ("values", "ends", "source", "error")

    def __init__(
        self, values: list[Any], ends: list[int], source: _Source | None, error: BaseException | None = None
    ) -> None:
        self.values = values
        self.ends = ends
        self.source = source
        self.error = error


class Tail:
    """The decisions of a file tail, without I/O: feed it what the file system says.

    The adapter's loop, until ``ready()``:

    1. Nothing open: ``start(candidates)`` says which file to open at which offset, from
       ``[(inode, first HEAD bytes) or None for path, path.1, path.2, ...]``; then ``open(...)``.
    2. ``step(named, size)`` with ``named`` the inode ``path`` names now (stat it FIRST) and
       ``size`` the open file's size (fstat it AFTER): READ (``feed`` the bytes from
       ``offset``), WAIT (until the next poll), TRUNCATED (call ``truncated()``), or LOCATE:
       ``locate(inodes, deleted)`` gives the index of the next file (open it at 0) or None.

    Args:
        path: the file's path, for messages.
        max_line: the longest line accepted, in bytes.
        on_error: called with each DecodeError; what it raises is raised by ``pop`` in its turn.
        position: where to start (a value of ``position``), or None for the start of ``path``.
    """

    def __init__(
        self,
        path: str,
        *,
        max_line: int = MAX_LINE,
        on_error: ErrorHandler | None = None,
        position: dict[str, Any] | None = None,
    ) -> None:
        self.path = path
        self._max_line = max_line
        self._on_error = on_error or log_error
        self._start = None if position is None else _check_position(position)
        self._source: _Source | None = None
        self.offset = 0
        """Bytes of the current file read so far (the next read starts here)."""
        self._line_end = 0  # end of the last complete line read: a partial line starts there
        self._decoder = Decoder(max_line=max_line)
        self._queue: deque[_Batch] = deque()
        self._index = 0  # in the first batch
        self._taken: tuple[_Source, int] | None = None
        self._start_misses = 0
        self._misses = 0

    # -- what the reader hands out

    @property
    def position(self) -> dict[str, Any] | None:
        """Where the last message handed out ends (before any: where reading starts)."""
        if self._taken is not None:
            return self._taken[0].position(self._taken[1])
        return None if self._start is None else dict(self._start)

    @property
    def reading(self) -> str | None:
        """The inode of the file being read (None before ``open``)."""
        return None if self._source is None else self._source.ino

    @property
    def opened(self) -> bool:
        """Whether a file is open (``start`` has been followed by ``open``)."""
        return self._source is not None

    def ready(self) -> bool:
        """Whether a message (or an error raised by ``on_error``) waits to be popped."""
        return bool(self._queue)

    def pop(self) -> Any:
        """The next message (check ``ready()`` first); raises what ``on_error`` raised, in turn."""
        batch = self._queue[0]
        if batch.error is not None:
            self._queue.popleft()
            raise batch.error
        index = self._index
        value = batch.values[index]
        assert batch.source is not None
        self._taken = (batch.source, batch.ends[index])
        if index + 1 == len(batch.values):
            self._queue.popleft()
            self._index = 0
        else:
            self._index = index + 1
        return value

    def pop_all(self) -> list[Any]:
        """Every message up to the next queued error (at least one thing: check ``ready()``)."""
        queue = self._queue
        if queue[0].error is not None:
            return [self.pop()]  # raises it
        values: list[Any] = []
        while queue and queue[0].error is None:
            batch = queue.popleft()
            assert batch.source is not None
            values.extend(batch.values[self._index :] if self._index else batch.values)
            self._taken = (batch.source, batch.ends[-1])
            self._index = 0
        return values

    # -- what the adapter tells it

    def start(self, candidates: list[tuple[str, bytes] | None]) -> tuple[int, int] | None:
        """Where to begin: ``(index, offset)`` of the file to open (0: ``path``), or None (wait).

        ``candidates[i]`` is ``(inode, first HEAD bytes)`` of ``path`` (i = 0) or ``path.i``,
        None when missing. A saved position is looked for there; when it is not found after a
        few tries (a rotation may be moving the files), the oldest file there is read from 0.
        """
        position = self._start
        if position is None:
            if candidates and candidates[0] is not None:
                return 0, 0
            self._start_misses += 1
            return None
        offset: int = position["offset"]
        for index, candidate in enumerate(candidates):
            if candidate is not None and candidate[0] == position["inode"]:
                head = candidate[1][: min(HEAD, offset)]
                if len(head) == min(HEAD, offset) and fingerprint(head) == position["head"]:
                    return index, offset
        self._start_misses += 1
        if self._start_misses < START_TRIES:
            return None
        oldest = _last(candidates)
        if oldest is not None:
            log.warning(
                "%s: the file of the saved position (inode %s) is gone; reading from the start of %s",
                self.path,
                position["inode"],
                _name(self.path, oldest),
            )
        return None if oldest is None else (oldest, 0)

    @property
    def start_misses(self) -> int:
        """How many times ``start`` found nothing to open."""
        return self._start_misses

    def open(self, ino: str, offset: int, head: bytes) -> None:
        """A file was opened, to be read from ``offset``; ``head``: its first min(HEAD, offset) bytes.

        The file read before (if any) is finished: a partial last line of it is reported as
        truncated (not delivered) and dropped.
        """
        if self._source is not None:
            self._drop_partial(f"{self.path}: the file was rotated in the middle of a line")
        self._source = _Source(ino, head[:HEAD])
        if self._taken is None:
            self._taken = (self._source, offset)  # the position before any message
        self.offset = self._line_end = offset
        self._decoder = Decoder(max_line=self._max_line)
        self._misses = 0

    def step(self, named: str | None, size: int) -> str:
        """What to do now: READ, WAIT, TRUNCATED or LOCATE (see the class docstring).

        ``named`` must come from a stat of ``path`` taken before the fstat that gave ``size``:
        then, when ``path`` names another file, ``size`` is the old file's final size.
        """
        assert self._source is not None
        if size > self.offset:
            return READ
        if size < self.offset:
            return TRUNCATED
        if named == self._source.ino:
            self._misses = 0
            return WAIT
        return LOCATE

    def feed(self, data: bytes) -> None:
        """Takes the bytes read at ``offset``; complete lines become messages."""
        source = self._source
        assert source is not None
        start = self.offset
        if start < HEAD:
            source.head += data[: HEAD - start]
        self.offset = start + len(data)
        first = self._decoder.line + 1
        events = self._decoder.feed(data)
        last_nl = data.rfind(b"\n")
        if last_nl >= 0:
            self._line_end = start + last_nl + 1
        ends: list[int] | None = None
        for event in events:
            if isinstance(event, Messages):  # values[i] came from line event.line + i
                if ends is None:
                    ends = _line_ends(data, start)
                k = event.line - first
                self._queue.append(_Batch(event.values, ends[k : k + len(event.values)], source))
            elif not isinstance(event, Binary):  # (no binary frames on this channel)
                # Malformed (FrameTooLarge too); Truncated only comes from feed_eof, never called
                self._report(event.error)

    def truncated(self) -> None:
        """The file shrank below ``offset`` (copytruncate): read it again from its start."""
        assert self._source is not None
        log.warning("%s: the file was truncated; reading it again from its start", self.path)
        self._drop_partial(f"{self.path}: the file was truncated in the middle of a line")
        self._source = _Source(self._source.ino, b"")
        self.offset = self._line_end = 0
        self._decoder = Decoder(max_line=self._max_line)

    def locate(self, inodes: list[str | None], deleted: bool) -> int | None:
        """The index of the file after the current one (0: ``path``), or None: not yet.

        Args:
            inodes: the inodes of ``path``, ``path.1``, ... (None where a name is missing).
            deleted: the current file has no name left (fstat's ``st_nlink`` is 0).
        """
        assert self._source is not None
        ino = self._source.ino
        if ino in inodes:
            self._misses = 0
            index = inodes.index(ino)
            return index - 1 if index > 0 and inodes[index - 1] is not None else None
        if deleted:
            return _last(inodes)
        self._misses += 1  # renamed out of the scheme, or moving under our scan: wait and see
        if self._misses >= RENAMED_TRIES and inodes and inodes[0] is not None:
            return 0
        return None

    def finish(self) -> None:
        """The reading ends (``follow=False``): a partial last line is reported, not delivered."""
        self._drop_partial(f"{self.path}: the file ends in the middle of a line")

    def _drop_partial(self, reason: str) -> None:
        partial = self.offset - self._line_end
        if partial > 0 and self._decoder.buffered > 0:  # 0: an over-long line, already reported
            error = TruncatedLine(
                f"{reason} ({partial} bytes without a newline; not delivered)",
                line=self._decoder.line + 1,
                excerpt="",
                delivered=False,
            )
            self._report(error)

    def _report(self, error: DecodeError) -> None:
        try:
            self._on_error(error)
        except Exception as exc:  # the policy's verdict: raised by pop() in its turn
            self._queue.append(_Batch([], [], None, exc))


def _line_ends(data: bytes, start: int) -> list[int]:
    """The file offsets just past each newline in ``data`` (read at offset ``start``)."""
    ends = []
    find = data.find
    i = find(b"\n")
    while i >= 0:
        ends.append(start + i + 1)
        i = find(b"\n", i + 1)
    return ends


def _last(items: list[Any]) -> int | None:
    for index in range(len(items) - 1, -1, -1):
        if items[index] is not None:
            return index
    return None


def _name(path: str, index: int) -> str:
    return path if index == 0 else f"{path}.{index}"


# ----------------------------------------------------------------------------------------------
# The system calls, shared by the blocking and the asyncio reader


class _Follower:
    """Does what Tail asks, with ordinary (quick) calls on local files. ``close()`` may come from
    another thread than the reading one, at any moment, a switch to a rotated file's successor
    included: it raises ``closed`` at once, which the reading thread checks before every system
    call that reads or opens (so it reads nothing more and opens no new file), then waits for the
    step under way (one lock) before it closes the descriptor; the reading thread then gets
    TransportClosed, its only way out besides TransportError for a failing file system."""

    def __init__(self, url: str, path: str, tail: Tail) -> None:
        self.url = url
        self.path = path
        self.tail = tail
        self.fd: int | None = None
        self.closed = False
        self._fd_lock = threading.RLock()

    @property
    def lock(self) -> threading.RLock:
        """Held by each step of the reading thread: whoever holds it sees no step under way."""
        return self._fd_lock

    def advance(self) -> bool:
        """Reads until a message waits (True) or nothing more can be done now (False)."""
        with self._fd_lock:  # a close() from another thread waits for this (quick) step
            return self._advance()

    def _check(self) -> None:
        if self.closed:
            raise TransportClosed(f"{self.url}: closed")

    def _advance(self) -> bool:
        tail = self.tail
        try:
            while not tail.ready():
                self._check()
                fd = self.fd
                if fd is None:
                    if not self._start():
                        return False
                    continue
                named = self._stat(self.path)  # before the fstat: see Tail.step
                info = os.fstat(fd)
                action = tail.step(named, info.st_size)
                if action == READ:
                    self._check()
                    data = os.pread(fd, CHUNK, tail.offset)
                    if not data:
                        return False
                    tail.feed(data)
                elif action == TRUNCATED:
                    tail.truncated()
                elif action == WAIT:
                    return False
                else:
                    inodes = [c[0] if c else None for c in self._scan(heads=False)]
                    index = tail.locate(inodes, deleted=info.st_nlink == 0)  # the switch begins
                    if index is None or not self._open(index, 0, inodes[index]):
                        return False
            return True
        except TransportError:  # (an OSError too) TransportClosed: closed meanwhile
            raise
        except OSError as exc:
            raise TransportError(f"{self.url}: {exc.strerror or exc} ({exc.filename or self.path})") from exc

    def _start(self) -> bool:
        candidates = self._scan(heads=True)
        where = self.tail.start(candidates)
        if where is None:
            return False
        index, offset = where
        candidate = candidates[index]
        return self._open(index, offset, candidate[0] if candidate else None)

    def _open(self, index: int, offset: int, expected: str | None) -> bool:
        """Opens the next file and makes it the one read (the old descriptor is closed then).
        A close() that came meanwhile wins: nothing is opened, or what was is closed again."""
        self._check()
        try:
            fd = os.open(_name(self.path, index), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False  # moved meanwhile: the next poll looks again
        try:
            ino = str(os.fstat(fd).st_ino)
            if ino != expected:
                os.close(fd)
                return False
            head = os.pread(fd, min(HEAD, offset), 0) if offset else b""
            self._check()
        except BaseException:
            os.close(fd)  # never left open behind an error or a close()
            raise
        if self.fd is not None:
            os.close(self.fd)
        self.fd = fd
        self.tail.open(ino, offset, head)
        return True

    def _stat(self, name: str) -> str | None:
        try:
            return str(os.stat(name).st_ino)
        except FileNotFoundError:
            return None

    def _scan(self, *, heads: bool) -> list[tuple[str, bytes] | None]:
        """``path``, ``path.1``, ...: (inode, first HEAD bytes) or None, up to two missing in a row.

        Without ``heads``, the scan stops at the file being read (what follows it is not needed).
        """
        found: list[tuple[str, bytes] | None] = []
        missing = 0
        index = 0
        while missing < 2:
            name = _name(self.path, index)
            entry: tuple[str, bytes] | None = None
            try:
                if heads:
                    with open(name, "rb") as file:
                        entry = (str(os.fstat(file.fileno()).st_ino), file.read(HEAD))
                else:
                    entry = (str(os.stat(name).st_ino), b"")
            except FileNotFoundError:
                pass
            found.append(entry)
            if entry is not None and not heads and self.tail.reading == entry[0]:
                break
            missing = missing + 1 if entry is None and index > 0 else 0
            index += 1
        while len(found) > 1 and found[-1] is None:
            found.pop()
        return found

    def stop(self) -> None:
        """The first half of ``close()``, from any thread and without waiting: the reading thread
        reads nothing more and opens nothing new from its next check on."""
        self.closed = True

    def close(self) -> None:
        """Stops the reading thread (``stop``), waits for its step under way, closes the file."""
        self.closed = True
        with self._fd_lock:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None


def _load_state(state: str, url: str) -> dict[str, Any] | None:
    try:
        with open(state, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TransportError(f"{url}: cannot read the state file {state}: {exc.strerror or exc}") from exc
    try:
        return _check_position(decode(data))
    except ValueError as exc:
        raise TransportError(f"{url}: the state file {state} holds no position ({exc})") from exc


def _save_state(state: str, position: dict[str, Any], url: str) -> None:
    temporary = f"{state}.tmp"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, MODE)
        try:
            os.write(fd, encode(position))
        finally:
            os.close(fd)
        os.replace(temporary, state)  # atomic: the old position or the new one, never half
    except OSError as exc:
        raise TransportError(f"{url}: cannot save the position to {state}: {exc.strerror or exc}") from exc


class _ReaderCore:
    """What the blocking and asyncio readers share: options, state saving, the end."""

    def __init__(
        self,
        address: Address,
        *,
        max_line: int,
        on_error: ErrorHandler | None,
        state: str | None,
        poll: float,
        position: dict[str, Any] | None,
        follow: bool,
        save_every: float,
    ) -> None:
        if not poll > 0:
            raise ValueError(f"poll must be > 0 seconds, got {poll!r}")
        if not save_every >= 0:
            raise ValueError(f"save_every must be >= 0 seconds, got {save_every!r}")
        self.url = address.url
        self.path = address.path
        self.poll = poll
        self.follow = follow
        self.state = None if state is None else os.fspath(state)
        if position is None and self.state is not None:
            position = _load_state(self.state, self.url)
        self.tail = Tail(self.path, max_line=max_line, on_error=on_error, position=position)
        self.follower = _Follower(self.url, self.path, self.tail)
        self.save_every = save_every
        self.saved = self.tail.position
        self.saved_at = time.monotonic()
        self._save_lock = threading.Lock()  # close() may come from another thread
        self.wake = threading.Event()  # set by close(): a blocking reader's pause ends at once
        self.closed = False
        self.ended = False

    def taken(self) -> None:
        """The caller asks for more: what it was handed is done; saved when the last save is old."""
        if self.state is not None and time.monotonic() - self.saved_at >= self.save_every:
            self.save()

    def save(self) -> None:
        """Saves the position (state=) when it moved since the last save."""
        if self.state is not None:
            with self._save_lock:
                position = self.tail.position
                if position is not None and position != self.saved:
                    _save_state(self.state, position, self.url)
                    self.saved = position
                self.saved_at = time.monotonic()

    def idle(self) -> None:
        """Nothing to read now: saves the position, then raises TransportClosed when closed or
        (follow=False) at the end. The caller waits for more, so all it was handed is done."""
        self.save()
        if self.closed:
            raise TransportClosed(f"{self.url}: closed")
        if self.ended:
            raise TransportClosed(f"{self.url}: end of file")
        if not self.follow and (self.tail.opened or self.tail.start_misses >= START_TRIES):
            self.ended = True
            self.tail.finish()
            if not self.tail.ready():
                raise TransportClosed(f"{self.url}: end of file")

    def check_open(self) -> None:
        if self.closed:
            raise TransportClosed(f"{self.url}: closed")

    def close(self) -> None:
        """Ends the reading, from any thread: nothing more is read or handed out, a blocking
        reader's pause ends, the step under way (a read, a switch to the next file) finishes
        first; then the position is saved and the file closed."""
        if not self.closed:
            self.closed = True
            self.follower.stop()
            self.wake.set()
            with self.follower.lock:  # no step under way: the position holds still
                try:
                    self.save()
                finally:
                    self.follower.close()


# ----------------------------------------------------------------------------------------------
# Blocking flavour


class FileReader(Listener):
    """The reading end of a file; made by ``listen(address)``. Never ends unless follow=False."""

    def __init__(self, address: Address, **options: Any) -> None:
        self._core = _ReaderCore(address, **options)
        self.url = self._core.url
        self.path = self._core.path

    @property
    def position(self) -> dict[str, Any] | None:
        """Where the last message handed out ends: pass it as ``position=`` to resume after it."""
        return self._core.tail.position

    def send(self, value: Any) -> None:
        """Not possible: raises TransportError (the reader end only receives)."""
        raise TransportError(f"{self.url}: the reader end only receives")

    def send_many(self, values: Iterable[Any]) -> None:
        """Not possible: raises TransportError (the reader end only receives)."""
        raise TransportError(f"{self.url}: the reader end only receives")

    def _fill(self) -> None:
        core = self._core
        core.check_open()
        while not core.follower.advance():
            core.idle()
            if core.tail.ready():
                return
            core.wake.wait(core.poll)  # (close() ends the pause)
            core.check_open()

    def receive(self) -> Any:
        """The next message (waiting for it); the previous one is taken as done (state=)."""
        self._core.taken()
        self._fill()
        return self._core.tail.pop()

    def receive_many(self) -> list[Any]:
        """Every message read and waiting (at least one); see the module docstring on state."""
        self._core.taken()
        self._fill()
        return self._core.tail.pop_all()

    def __iter__(self) -> Iterator[Any]:
        """Yields the messages (read in batches); ``position`` follows each one."""
        core = self._core
        tail = core.tail
        while True:
            try:
                self._fill()
            except TransportClosed:
                return
            while tail.ready() and not core.closed:  # (closed amid a batch: no more)
                yield tail.pop()
                core.taken()  # the caller asked for the next one: the last one is done

    def close(self) -> None:
        """Saves the position (state=) and closes the file; safe to call twice."""
        self._core.close()


class _Appender:
    """The writer's file: appends, and rotates when asked to (shared by both flavours)."""

    def __init__(self, address: Address, *, max_bytes: int | None, keep: int, mode: int) -> None:
        if max_bytes is not None and not max_bytes >= 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes!r}")
        if keep < 0:
            raise ValueError(f"keep must be >= 0, got {keep!r}")
        self.url = address.url
        self.path = address.path
        self.max_bytes = max_bytes
        self.keep = keep
        self.mode = mode
        self.closed = False
        self.fd = self._open()

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, self.mode)
        except OSError as exc:
            raise TransportError(
                f"{self.url}: cannot open {self.path} for appending: {exc.strerror or exc}"
            ) from exc

    def write(self, data: bytes) -> None:
        if self.closed:
            raise TransportClosed(f"{self.url}: this writer is closed")
        try:
            if self.max_bytes is not None:
                size = os.fstat(self.fd).st_size
                if size > 0 and size + len(data) > self.max_bytes:
                    self._rotate()
            view = memoryview(data)
            while view:  # one write; more only if the kernel took part of it (disk full...)
                view = view[os.write(self.fd, view) :]
        except OSError as exc:
            raise TransportError(f"{self.url}: cannot write to {self.path}: {exc.strerror or exc}") from exc

    def _rotate(self) -> None:
        path = self.path
        if self.keep == 0:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        else:
            for index in range(self.keep - 1, 0, -1):
                try:
                    os.replace(f"{path}.{index}", f"{path}.{index + 1}")
                except FileNotFoundError:
                    pass
            try:
                os.replace(path, f"{path}.1")
            except FileNotFoundError:  # removed by someone else: a new file is all we need
                pass
        old = self.fd
        self.fd = self._open()
        os.close(old)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)


class FileWriter(Channel):
    """An appending end of a file; made by ``connect(address)``."""

    def __init__(self, appender: _Appender) -> None:
        self._appender = appender
        self.url = appender.url
        self.path = appender.path

    def send(self, value: Any) -> None:
        """Appends one message: one line, in one write."""
        self._appender.write(encode(value))

    def send_many(self, values: Iterable[Any]) -> None:
        """Appends several messages in one write (rotation, if any, happens before, not amid)."""
        self._appender.write(encode_many(values))

    def send_bytes(self, data: bytes) -> None:
        """Appends encoded NDJSON lines as they are, in one write."""
        self._appender.write(data)

    def receive(self) -> Any:
        """Not possible: raises TransportError (the writer end only sends)."""
        raise TransportError(f"{self.url}: the writer end only sends")

    def close(self) -> None:
        """Closes the file; safe to call twice."""
        self._appender.close()


def listen(
    address: Address,
    *,
    max_line: int = MAX_LINE,
    on_error: ErrorHandler | None = None,
    state: str | os.PathLike[str] | None = None,
    poll: float = POLL,
    position: dict[str, Any] | None = None,
    follow: bool = True,
    save_every: float = SAVE_EVERY,
) -> FileReader:
    """Tails the file of ``address`` (waiting for it to appear when it does not exist yet).

    Args:
        address: a parsed ``file:/path``.
        max_line: the longest line accepted, in bytes (default 16 MiB).
        on_error: what to do with a malformed, too long or truncated line (default: log it).
        state: a file where the position is kept (see the module docstring); default none.
        poll: seconds between looks at an idle file (default 0.05).
        position: where to resume (a value of ``reader.position``); wins over ``state``.
        follow: keep waiting for more at the end (default); False: end there.
        save_every: with ``state``, the least seconds between two saves while messages are
            handed out (default 0.2; 0: at every request); see the module docstring.

    Raises:
        ValueError: a bad ``position``, ``poll`` or ``save_every``.
        TransportError: the state file cannot be read.
    """
    return FileReader(
        address,
        max_line=max_line,
        on_error=on_error,
        state=None if state is None else os.fspath(state),
        poll=poll,
        position=position,
        follow=follow,
        save_every=save_every,
    )


def connect(
    address: Address,
    *,
    max_line: int = MAX_LINE,
    on_error: ErrorHandler | None = None,
    state: str | os.PathLike[str] | None = None,
    poll: float | None = None,
    max_bytes: int | None = None,
    keep: int = KEEP,
    mode: int = MODE,
) -> FileWriter:
    """Opens the file of ``address`` for appending (created with ``mode``, default 0600).

    Args:
        address: a parsed ``file:/path``.
        max_bytes: rotate before a write would take the file past this size (default: never).
        keep: rotated files kept (``path.1`` .. ``path.keep``; default 5).
        mode: permissions of a file created (default 0600; umask applies).
        max_line, on_error, state, poll: the reader's options, accepted and ignored so that one
            URL serves both ends.

    Raises:
        TransportError: the file cannot be opened.
    """
    return FileWriter(_Appender(address, max_bytes=max_bytes, keep=keep, mode=mode))


# ----------------------------------------------------------------------------------------------
# asyncio flavour


class AsyncFileReader(AsyncListener):
    """The asyncio flavour of FileReader: the same core, waiting with ``asyncio.sleep``."""

    def __init__(self, address: Address, **options: Any) -> None:
        self._core = _ReaderCore(address, **options)
        self.url = self._core.url
        self.path = self._core.path

    @property
    def position(self) -> dict[str, Any] | None:
        """Where the last message handed out ends: pass it as ``position=`` to resume after it."""
        return self._core.tail.position

    async def send(self, value: Any) -> None:
        """Not possible: raises TransportError (the reader end only receives)."""
        raise TransportError(f"{self.url}: the reader end only receives")

    async def _fill(self) -> None:
        core = self._core
        core.check_open()
        while not core.follower.advance():
            core.idle()
            if core.tail.ready():
                return
            await asyncio.sleep(core.poll)
            core.check_open()

    async def receive(self) -> Any:
        """The next message (waiting for it); the previous one is taken as done (state=)."""
        self._core.taken()
        await self._fill()
        return self._core.tail.pop()

    async def receive_many(self) -> list[Any]:
        """Every message read and waiting (at least one); see the module docstring on state."""
        self._core.taken()
        await self._fill()
        return self._core.tail.pop_all()

    async def __aiter__(self) -> AsyncIterator[Any]:
        """Yields the messages (read in batches); ``position`` follows each one."""
        core = self._core
        tail = core.tail
        while True:
            try:
                await self._fill()
            except TransportClosed:
                return
            while tail.ready() and not core.closed:  # (closed amid a batch: no more)
                yield tail.pop()
                core.taken()  # the caller asked for the next one: the last one is done

    async def close(self) -> None:
        """Saves the position (state=) and closes the file; safe to call twice."""
        self._core.close()


class AsyncFileWriter(AsyncChannel):
    """The asyncio flavour of FileWriter (appending to a local file does not wait on a peer)."""

    def __init__(self, appender: _Appender) -> None:
        self._appender = appender
        self.url = appender.url
        self.path = appender.path

    async def send(self, value: Any) -> None:
        """Appends one message: one line, in one write."""
        self._appender.write(encode(value))

    async def send_many(self, values: Iterable[Any]) -> None:
        """Appends several messages in one write."""
        self._appender.write(encode_many(values))

    async def send_bytes(self, data: bytes) -> None:
        """Appends encoded NDJSON lines as they are, in one write."""
        self._appender.write(data)

    async def receive(self) -> Any:
        """Not possible: raises TransportError (the writer end only sends)."""
        raise TransportError(f"{self.url}: the writer end only sends")

    async def close(self) -> None:
        """Closes the file; safe to call twice."""
        self._appender.close()


async def async_listen(
    address: Address,
    *,
    max_line: int = MAX_LINE,
    on_error: ErrorHandler | None = None,
    state: str | os.PathLike[str] | None = None,
    poll: float = POLL,
    position: dict[str, Any] | None = None,
    follow: bool = True,
    save_every: float = SAVE_EVERY,
) -> AsyncFileReader:
    """The asyncio ``listen``: the same arguments, an AsyncFileReader."""
    return AsyncFileReader(
        address,
        max_line=max_line,
        on_error=on_error,
        state=None if state is None else os.fspath(state),
        poll=poll,
        position=position,
        follow=follow,
        save_every=save_every,
    )


async def async_connect(
    address: Address,
    *,
    max_line: int = MAX_LINE,
    on_error: ErrorHandler | None = None,
    state: str | os.PathLike[str] | None = None,
    poll: float | None = None,
    max_bytes: int | None = None,
    keep: int = KEEP,
    mode: int = MODE,
) -> AsyncFileWriter:
    """The asyncio ``connect``: the same arguments, an AsyncFileWriter."""
    return AsyncFileWriter(_Appender(address, max_bytes=max_bytes, keep=keep, mode=mode))
