"""The telemetry listener (``bothways listen SOURCE...``): readings from many sources into SQLite.

A source is a channel URL to listen on (``tcp://127.0.0.1:9000``, ``ws://127.0.0.1:8765/x``,
``fifo:/path``, ``file:/path?state=/path.state``, ``stdio:`` for our own stdin) or, when it is
not a URL, a command to spawn whose stdout is the stream (split with ``shlex.split``, never a
shell; started with bothways' ``spawn``: its own process group, killed if we die, reaped).

How it runs (``Ingest``):
- Each source is read in a thread of its own with the blocking API (``receive_many``: a batch
  per read). The thread turns the batch into readings at once - ``readings_of``: a tight loop
  that takes the usual ``{"sensor", "seq", "t", "celsius"}`` object as it is and hands anything
  else to ``to_reading(value, source=<the source as given>, now=..., seqs=...)``, the one
  definition of a reading - and hands them over. An invalid reading or a line that is not JSON
  is reported on stderr (source and reason; five a second per source at most, the rest
  counted) and counted, never stored, never fatal.
- One writer (the caller's thread) stores them with ``Store.add``, one transaction per batch:
  what arrived within ``BATCH_TIME`` (50 ms) or ``BATCH_ROWS`` (5,000) readings, whichever comes
  first. Sources wait while ``MAX_WAITING`` readings wait to be stored: a slow disk holds the
  senders back (tcp and ws backpressure) instead of filling memory.
- A kill -9 loses only what was not committed yet, and SQLite (WAL) stays whole: a ``file:``
  source resumes from its ``state`` file, and a sensor sends again what it sent lately (see
  sensor.py); a reading stored twice is stored once (the store is idempotent on sensor and seq).
- ``file:...?state=PATH`` is handled here, not by the file transport: the position is loaded
  from PATH, given to the reader as ``position=``, and written back (atomically: a temporary
  file, then rename; the transport's format) only once the readings before it are committed.
  The transport's own ``state`` saves a batch's end as soon as the next batch is asked for,
  which would run ahead of the store. A kill between a commit and the save reads the batch
  again: harmless for readings with a seq, but bare numbers (numbered on arrival) would be
  stored twice; only then.
- On a terminal, one status line (readings a second per source, totals, errors) is redrawn in
  place; otherwise, plain lines: one per source event, and a summary every ``SUMMARY_EVERY``
  seconds when something changed.
- ``run(stop)`` returns when ``stop`` is set (Ctrl-C, SIGTERM: the CLI sets it) or every source
  has ended: listeners are closed, children get SIGTERM (a bothways sensor then sends what it
  holds and exits), their threads are given ``GRACE`` seconds, the last readings committed, the
  positions saved, and every child reaped.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import sqlite3
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from ..channels import TRANSPORTS, listen
from ..errors import BothwaysError, ChildExited, DecodeError, TransportClosed
from ..transports.base import Channel
from ..transports.stdio import Child, spawn
from ..urls import Address, parse
from ..wire import decode, encode
from .readings import MAX_SEQ, InvalidReading, to_reading
from .store import PostgresStore, Store, open_store

__all__ = [
    "BATCH_ROWS",
    "BATCH_TIME",
    "DEFAULT_DATA",
    "DB_NAME",
    "Console",
    "Ingest",
    "Source",
    "add_arguments",
    "database",
    "is_url",
    "readings_of",
    "run",
]

BATCH_ROWS = 5_000
"""Readings in one transaction at most."""
BATCH_TIME = 0.05
"""Seconds a reading waits at most before its transaction starts."""
MAX_WAITING = 50_000  # readings handed over and not stored yet, before the sources wait
STORE_RETRY = 1.0  # seconds between tries when the database fails
GRACE = 3.0  # seconds a source's thread is given to finish after the stop
BLOCKED = 0.2  # the same for a fifo or stdin reader, which closing does not wake (see _shutdown)
CHILD_GRACE = 1.0  # seconds between a child's SIGTERM and its SIGKILL, when closing it
STATUS_EVERY = 0.5  # seconds between redraws of the status line
SUMMARY_EVERY = 5.0  # seconds between summary lines, when not on a terminal
REPORTS_PER_SECOND = 5  # invalid readings shown per source and second; the rest are counted
LABEL = 48  # characters of a command shown in the status line
DEFAULT_DATA = Path("bothways-data")
DB_NAME = "readings.db"

_INF = float("inf")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_TOKEN = re.compile(r"(?<=[?&]token=)[^&#]*")


def database(db: str | os.PathLike[str] | None, data: str | os.PathLike[str] | None) -> Path | str:
    """The database: ``db`` when given (a ``postgresql://`` URL as it is, else a file), else
    ``readings.db`` in ``data`` (default ``./bothways-data``)."""
    if db is not None:
        if isinstance(db, str) and db.startswith(("postgresql://", "postgres://")):
            return db
        return Path(db)
    return Path(data if data is not None else DEFAULT_DATA) / DB_NAME


def shown(db: str | os.PathLike[str]) -> str:
    """A database's name as printed: a URL's password hidden."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", os.fspath(db))


def _database_errors() -> tuple[type[Exception], ...]:
    """What a failing store raises: sqlite3's errors, and psycopg's when it is in use."""
    psycopg = sys.modules.get("psycopg")
    return (sqlite3.Error, psycopg.Error) if psycopg is not None else (sqlite3.Error,)


def is_url(text: str) -> bool:
    """Whether a source is a channel URL (its scheme is a transport's, or http) rather than a
    command. A command that starts like ``name:`` with another scheme is still a command."""
    match = _SCHEME.match(text)
    return match is not None and match.group(1).lower() in (*TRANSPORTS, "http", "https", "mqtt")


def readings_of(
    values: list[Any],
    source: str,
    now: float,
    seqs: dict[str, int],
    on_invalid: Callable[[InvalidReading], None],
) -> list[dict[str, Any]]:
    """The readings among ``values`` (decoded messages from ``source``, received at ``now``).

    An object with exactly the four fields, of the usual types, is taken as it is (its integral
    ``t`` or ``celsius`` made floats), which is what ``to_reading`` would return for it; any
    other value goes through ``to_reading``, and what that refuses goes to ``on_invalid``.
    """
    readings: list[dict[str, Any]] = []
    keep = readings.append
    for value in values:
        if type(value) is dict and len(value) == 4:
            sensor = value.get("sensor")
            seq = value.get("seq")
            t = value.get("t")
            celsius = value.get("celsius")
            if (
                type(sensor) is str
                and sensor
                and type(seq) is int
                and 0 <= seq <= MAX_SEQ
                and (type(t) is float or type(t) is int)
                and -_INF < t < _INF
                and (type(celsius) is float or type(celsius) is int)
                and -_INF < celsius < _INF
            ):
                if type(t) is int:
                    value["t"] = float(t)
                if type(celsius) is int:
                    value["celsius"] = float(celsius)
                keep(value)
                continue
        try:
            keep(to_reading(value, source=source, now=now, seqs=seqs))
        except InvalidReading as invalid:
            on_invalid(invalid)
    return readings


# --------------------------------------------------------------------------------------------
# Output


class Console:
    """Where the listener speaks: lines on ``out`` (events, summaries) and ``err`` (problems),
    and, on a terminal, one status line redrawn in place (``\\r``, erase to the end of line)."""

    def __init__(
        self, out: TextIO | None = None, err: TextIO | None = None, *, tty: bool | None = None
    ) -> None:
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else sys.stderr
        self.tty = _isatty(self.out) if tty is None else tty
        self._lock = threading.Lock()
        self._status = ""

    def line(self, text: str, *, error: bool = False) -> None:
        """Prints one line (above the status line, which is drawn again after it)."""
        with self._lock:
            try:
                if self._status:
                    self.out.write("\r\x1b[K")
                    self.out.flush()
                stream = self.err if error else self.out
                stream.write(text + "\n")
                stream.flush()
                if self._status:
                    self.out.write(self._status)
                    self.out.flush()
            except (OSError, ValueError):
                pass

    def status(self, text: str) -> None:
        """Redraws the status line (on a terminal only)."""
        if not self.tty:
            return
        width = shutil.get_terminal_size((100, 24)).columns
        text = text if len(text) < width else text[: max(width - 2, 1)] + "…"
        with self._lock:
            self._status = text
            try:
                self.out.write("\r" + text + "\x1b[K")
                self.out.flush()
            except (OSError, ValueError):
                pass

    def end_status(self) -> None:
        """Leaves the status line as it is and moves below it."""
        with self._lock:
            if self._status:
                self._status = ""
                try:
                    self.out.write("\n")
                    self.out.flush()
                except (OSError, ValueError):
                    pass


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _count(n: int) -> str:
    return f"{n:,}"


# --------------------------------------------------------------------------------------------
# Sources


class Source:
    """One source of readings: a channel URL listened on, or a command spawned."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.is_url = is_url(text)
        self.name = _TOKEN.sub("***", text) if self.is_url else text
        """The source as given (a token's value hidden): printed, and the sensor of its bare
        numbers."""
        self.label = self.name
        """A short name for the status line: a command's program without its folder."""
        self.channel: Channel | None = None
        self.thread: threading.Thread | None = None
        self.state: str | None = None  # a file source's state file (saved after each commit)
        self.position: dict[str, Any] | None = None  # the newest committed position
        self.saved: dict[str, Any] | None = None
        self.received = 0  # messages
        self.stored = 0  # readings committed (new or not)
        self.invalid = 0
        self.bad_lines = 0
        self.ended = False
        self.failed: str | None = None
        self.seqs: dict[str, int] = {}
        self._reported_second = 0
        self._reported = 0
        self._argv: list[str] = []
        self._address: Address | None = None
        if not self.is_url:
            self._argv = shlex.split(text)
            if not self._argv:
                raise ValueError("an empty command")
            label = shlex.join([Path(self._argv[0]).name, *self._argv[1:]])
            self.label = label if len(label) <= LABEL else label[: LABEL - 1] + "…"
            return
        scheme = text.split(":", 1)[0].lower()
        if scheme in ("http", "https"):
            raise ValueError(f"{self.name}: HTTP is the web app's: POST readings to `bothways serve` instead")
        if scheme not in TRANSPORTS:
            raise ValueError(f"{self.name}: cannot listen on {scheme}: URLs")
        self._address = parse(text)

    @property
    def child(self) -> Child | None:
        return self.channel if isinstance(self.channel, Child) else None

    def open(self, on_bad_line: Callable[[DecodeError], None], on_stderr: Callable[[str], None]) -> str:
        """Listens or spawns; returns what to say about it (``listening on tcp://...``).

        Raises:
            BothwaysError, OSError, ValueError: it cannot be opened.
        """
        if not self.is_url:
            child = spawn(self._argv, stderr=on_stderr, on_error=on_bad_line, grace=CHILD_GRACE)
            self.channel = child
            return f"started (pid {child.pid})"
        address = self._address
        assert address is not None
        options: dict[str, Any] = {"on_error": on_bad_line}
        if address.scheme == "file" and "state" in address.params:
            params = dict(address.params)
            self.state = str(params.pop("state"))
            address = Address(address.scheme, address.host, address.port, address.path, params)
            self.position = self.saved = _load_position(self.state)
            options["position"] = self.position
        channel = listen(address, **options)
        self.channel = channel
        url = getattr(channel, "url", address.url)
        if address.scheme in ("tcp", "ws"):
            return f"listening on {url}"
        if address.scheme == "file":
            where = "from the start" if self.position is None else f"from offset {self.position['offset']}"
            follow = "following" if address.params.get("follow", True) else "reading"
            return f"{follow} {address.path} {where}"
        if address.scheme == "fifo":
            return f"reading the FIFO {address.path}"
        if address.scheme.startswith("mqtt"):
            return f"subscribed to {address.path} at {address.host}:{address.port}"
        return "reading stdin"

    def interrupt(self) -> None:
        """Asks the source's thread to finish: a child gets SIGTERM (it may send what it holds
        and exit: its thread reads to the end), a listener is closed."""
        channel = self.channel
        if channel is None:
            return
        if isinstance(channel, Child):
            if channel.returncode is None:
                try:
                    os.killpg(channel.pid, signal.SIGTERM)
                except (ProcessLookupError, PermissionError):
                    pass
            return
        try:
            channel.close()
        except (BothwaysError, OSError):
            pass

    def close(self) -> None:
        """Closes the channel (a child: SIGTERM, SIGKILL, reaped); safe to call twice."""
        if self.channel is not None:
            try:
                self.channel.close()
            except (BothwaysError, OSError):
                pass

    def may_report(self) -> bool:
        """Whether to show one more problem now (REPORTS_PER_SECOND at most)."""
        second = int(time.monotonic())
        if second != self._reported_second:
            self._reported_second, self._reported = second, 0
        self._reported += 1
        return self._reported <= REPORTS_PER_SECOND

    def save_position(self) -> None:
        """Writes the committed position to the state file (when it moved)."""
        if self.state is not None and self.position is not None and self.position != self.saved:
            _save_position(self.state, self.position)
            self.saved = self.position


def _load_position(state: str) -> dict[str, Any] | None:
    try:
        data = Path(state).read_bytes()
    except FileNotFoundError:
        return None
    position = decode(data)
    if not isinstance(position, dict):
        raise ValueError(f"the state file {state} holds no position")
    return position


def _save_position(state: str, position: dict[str, Any]) -> None:
    temporary = f"{state}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, encode(position))
    finally:
        os.close(fd)
    os.replace(temporary, state)  # the old position or the new one, never half of one


# --------------------------------------------------------------------------------------------
# The listener


class _Handed:
    """Readings a source handed over, and its position after them (file sources)."""

    __slots__ = ("source", "readings", "position", "at")

    def __init__(
        self, source: Source, readings: list[dict[str, Any]], position: dict[str, Any] | None, at: float
    ) -> None:
        self.source = source
        self.readings = readings
        self.position = position
        self.at = at  # when (monotonic)


class Ingest:
    """Reads every source in its own thread and stores the readings in ``store``, batched.

    ``open()`` starts the sources (listening, spawning) and says where each listens;
    ``run(stop)`` stores until ``stop`` is set or every source ended, then stops them all.
    """

    def __init__(
        self,
        sources: Sequence[str | Source],
        store: Store | PostgresStore,
        *,
        console: Console | None = None,
        batch_rows: int = BATCH_ROWS,
        batch_time: float = BATCH_TIME,
    ) -> None:
        self.sources = [s if isinstance(s, Source) else Source(s) for s in sources]
        self.store = store
        self.console = console or Console()
        self.batch_rows = batch_rows
        self.batch_time = batch_time
        self.stored = 0  # readings committed
        self.new = 0  # of which not stored before
        self.commits = 0
        self.unstored = 0  # readings the database refused at the end
        self._last_store_error = -float("inf")
        self._cond = threading.Condition()
        self._queue: list[_Handed] = []
        self._waiting = 0  # readings in the queue
        self._stopping = False
        self._running = 0  # source threads still reading

    # -- output

    def say(self, text: str, *, error: bool = False) -> None:
        self.console.line(f"bothways listen: {text}", error=error)

    # -- starting

    def open(self) -> int:
        """Opens every source (a failure is reported, the others go on); returns how many opened."""
        opened = 0
        for source in self.sources:
            try:
                said = source.open(self._bad_line_handler(source), self._stderr_handler(source))
            except (BothwaysError, OSError, ValueError) as exc:
                source.failed = str(exc)
                source.ended = True
                self.say(f"{source.name}: cannot open: {exc}", error=True)
                continue
            self.say(f"{source.name}: {said}")
            opened += 1
        return opened

    def _bad_line_handler(self, source: Source) -> Callable[[DecodeError], None]:
        def bad_line(error: DecodeError) -> None:
            source.bad_lines += 1
            if source.may_report():
                self.say(f"{source.name}: {error.code}: {error}", error=True)

        return bad_line

    def _stderr_handler(self, source: Source) -> Callable[[str], None]:
        def stderr(line: str) -> None:
            child = source.child
            name = child.name if child is not None else source.name
            self.console.line(f"[{name}] {line}", error=True)

        return stderr

    def _invalid_handler(self, source: Source) -> Callable[[InvalidReading], None]:
        def invalid(error: InvalidReading) -> None:
            source.invalid += 1
            if source.may_report():
                self.say(f"invalid reading from {source.name}: {error.reason}", error=True)

        return invalid

    # -- the source threads

    def _read(self, source: Source) -> None:
        channel = source.channel
        assert channel is not None
        positioned = source.state is not None  # a file reader: its position after each batch
        on_invalid = self._invalid_handler(source)
        seqs = source.seqs
        name = source.name
        reason = "ended"
        try:
            while True:
                values = channel.receive_many()
                readings = readings_of(values, name, time.time(), seqs, on_invalid)
                source.received += len(values)
                position = getattr(channel, "position", None) if positioned else None
                if readings or position is not None:
                    self._hand(source, readings, position)
        except TransportClosed as exc:
            reason = f"ended ({exc})" if not self._stopping else "stopped"
        except ChildExited as exc:
            if self._stopping:
                reason = "stopped"
            else:
                source.failed = str(exc)
                tail = exc.stderr_tail.strip().splitlines()[-1:] if exc.stderr_tail else []
                reason = f"failed: {exc}" + (f" ({tail[0]})" if tail else "")
        except (BothwaysError, OSError, ValueError) as exc:
            if self._stopping:
                reason = "stopped"
            else:
                source.failed = str(exc)
                reason = f"failed: {exc}"
        except Exception as exc:  # a bug: say so, end this source, keep the others going
            source.failed = repr(exc)
            reason = f"failed: {exc!r}"
            traceback.print_exc()
        finally:
            source.close()
            source.ended = True
            with self._cond:
                self._running -= 1
                self._cond.notify_all()
        self.say(f"{source.name}: {reason}", error=source.failed is not None)

    def _hand(self, source: Source, readings: list[dict[str, Any]], position: dict[str, Any] | None) -> None:
        """Hands readings over to the writer, in pieces of ``batch_rows`` at most (the position,
        if any, with the last); waits while too many wait to be stored."""
        rows = self.batch_rows
        pieces = [readings[i : i + rows] for i in range(0, len(readings), rows)] or [[]]
        with self._cond:
            for index, piece in enumerate(pieces):
                while self._waiting >= MAX_WAITING and not self._stopping:
                    self._cond.wait(0.5)
                first = not self._queue
                last = index == len(pieces) - 1
                self._queue.append(_Handed(source, piece, position if last else None, time.monotonic()))
                self._waiting += len(piece)
                if first or self._waiting >= rows:
                    self._cond.notify_all()  # the writer: a batch to time, or one full

    # -- the writer

    def _take(self) -> list[_Handed]:
        """The next transaction's pieces (under the lock): whole pieces up to ``batch_rows``."""
        queue = self._queue
        taken, rows = 0, 0
        while taken < len(queue) and (taken == 0 or rows + len(queue[taken].readings) <= self.batch_rows):
            rows += len(queue[taken].readings)
            taken += 1
        items = queue[:taken]
        del queue[:taken]
        self._waiting -= rows
        self._cond.notify_all()  # sources waiting for room
        return items

    def _commit(self, items: list[_Handed]) -> bool:
        """Stores the pieces in one transaction, then saves the positions they reached. When
        the database fails (full disk, locked too long), the pieces go back to the head of the
        queue, to be tried again (the sources wait meanwhile), and False is returned."""
        readings: list[dict[str, Any]] = []
        for item in items:
            readings.extend(item.readings)
        if readings:
            try:
                self.new += self.store.add(readings)
            except _database_errors() as exc:
                now = time.monotonic()
                if now - self._last_store_error >= STORE_RETRY * 5:
                    self._last_store_error = now
                    self.say(
                        f"cannot store {len(readings)} readings in {shown(self.store.path)}: {exc}",
                        error=True,
                    )
                with self._cond:
                    self._queue[:0] = items
                    self._waiting += len(readings)
                return False
            self.stored += len(readings)
            self.commits += 1
        moved: dict[int, Source] = {}
        for item in items:
            item.source.stored += len(item.readings)
            if item.position is not None:
                item.source.position = item.position
                moved[id(item.source)] = item.source
        for source in moved.values():
            try:
                source.save_position()
            except OSError as exc:
                self.say(f"{source.name}: cannot save the position to {source.state}: {exc}", error=True)
        return True

    def run(self, stop: threading.Event | None = None) -> int:
        """Stores readings until ``stop`` is set or every source has ended; then stops the
        sources and commits the rest. Returns 0, or 1 when a source failed (or none opened)
        and we were not stopped."""
        stop = stop or threading.Event()
        started = [s for s in self.sources if s.channel is not None and not s.ended]
        with self._cond:
            self._running = len(started)
        for source in started:
            source.thread = threading.Thread(
                target=self._read, args=(source,), name=f"bothways listen {source.name}", daemon=True
            )
            source.thread.start()
        status = _Status(self)
        try:
            while not stop.is_set():
                with self._cond:
                    items = self._take() if self._due() else []
                    if not items:
                        if not self._queue and self._running == 0:
                            break  # every source ended, everything stored
                        wait = STATUS_EVERY
                        if self._queue:
                            wait = min(wait, self._queue[0].at + self.batch_time - time.monotonic())
                        self._cond.wait(max(wait, 0.001))
                        items = self._take() if self._due() else []
                if items and not self._commit(items):
                    stop.wait(STORE_RETRY)
                status.tick()
        finally:
            self._shutdown()
            status.tick(final="stopped" if stop.is_set() else "every source ended")
        if self.unstored:
            self.say(f"{self.unstored} readings could not be stored", error=True)
            return 1
        failed = [s for s in self.sources if s.failed is not None]
        return 0 if stop.is_set() or not failed else 1

    def _due(self) -> bool:
        """Whether a transaction is due: a full batch waits, or the oldest waited long enough."""
        queue = self._queue
        return self._waiting >= self.batch_rows or (
            bool(queue) and time.monotonic() >= queue[0].at + self.batch_time
        )

    def _shutdown(self) -> None:
        """Stops every source, gives their threads GRACE seconds, commits what they handed over."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for source in self.sources:
            if not source.ended:
                source.interrupt()
        # A FIFO's or stdin's reader blocked in a read is not woken by close() from another
        # thread (FifoReader polls its fd without a wake-up): its thread is a daemon, left
        # behind after a short wait; what it had handed over is committed all the same.
        started = time.monotonic()
        for source in self.sources:
            if source.thread is not None:
                grace = BLOCKED if source.text.lower().startswith(("fifo:", "stdio:")) else GRACE
                while source.thread.is_alive() and time.monotonic() < started + grace:
                    self._drain()
                    source.thread.join(0.05)
        for source in self.sources:
            source.close()  # what did not end in time: killed (children reaped)
        self._drain(final=True)

    def _drain(self, *, final: bool = False) -> None:
        """Commits everything handed over. When the database fails: later (not ``final``), or
        once more after STORE_RETRY seconds, then what is left is counted in ``unstored``."""
        tries = 2 if final else 1
        while True:
            with self._cond:
                if not self._queue:
                    return
                items = self._take()
            if not self._commit(items):
                tries -= 1
                if tries > 0:
                    time.sleep(STORE_RETRY)
                    continue
                if final:
                    with self._cond:
                        self.unstored = self._waiting
                        self._queue.clear()
                        self._waiting = 0
                return


class _Status:
    """The status line (terminal) or the summary lines (otherwise)."""

    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest
        self.console = ingest.console
        self.start = self.last = time.monotonic()
        self.before = {id(s): 0 for s in ingest.sources}
        self.stored_before = 0
        self.errors_before = 0
        self.every = STATUS_EVERY if self.console.tty else SUMMARY_EVERY

    def tick(self, *, final: str = "") -> None:
        """Redraws the status line, or prints a summary, when it is time; ``final``: the last
        words (why it ends), at once."""
        now = time.monotonic()
        if not final and now - self.last < self.every:
            return
        ingest = self.ingest
        elapsed = max(now - self.last, 1e-9)
        parts = []
        for source in ingest.sources:
            delta = source.received - self.before[id(source)]
            self.before[id(source)] = source.received
            rate = delta / elapsed
            parts.append(f"{source.label} {rate:,.0f}/s")
        invalid = sum(s.invalid for s in ingest.sources)
        bad = sum(s.bad_lines for s in ingest.sources)
        errors = invalid + bad
        totals = (
            f"{_count(ingest.stored)} stored ({_count(ingest.new)} new), {_count(invalid)} invalid, "
            f"{_count(bad)} bad lines"
        )
        changed = ingest.stored != self.stored_before or errors != self.errors_before
        rate = (ingest.stored - self.stored_before) / elapsed
        self.stored_before, self.errors_before, self.last = ingest.stored, errors, now
        if final:
            self.console.end_status()
            ingest.say(f"{final}: {totals} in {shown(ingest.store.path)}")
        elif self.console.tty:
            self.console.status(f"{totals} · {rate:,.0f}/s · " + " · ".join(parts))
        elif changed:
            ingest.say(f"{totals}; {rate:,.0f}/s over {elapsed:.0f} s: " + ", ".join(parts))


# --------------------------------------------------------------------------------------------
# The command line (bothways listen)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the listener's arguments to ``parser`` (``bothways listen``)."""
    parser.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="a URL to listen on (tcp://127.0.0.1:9000, ws://127.0.0.1:8765/path, fifo:/path, "
        "file:/path?state=/path.state, stdio:) or a command whose stdout is read (quote it: "
        "'python3 sensor.py --interval 1')",
    )
    parser.add_argument(
        "--db",
        metavar="PATH",
        help=f"the SQLite file, or a postgresql:// URL (PostgresStore) (default: DIR/{DB_NAME})",
    )
    parser.add_argument(
        "--data", type=Path, metavar="DIR", help=f"the data folder (default: ./{DEFAULT_DATA})"
    )


def run(args: argparse.Namespace, stop: threading.Event | None = None, console: Console | None = None) -> int:
    """Runs ``bothways listen`` with parsed ``args``; returns the exit code."""
    console = console or Console()
    try:  # a bad URL or an unbalanced quote fails before anything starts
        sources = [Source(text) for text in args.sources]
    except (ValueError, BothwaysError) as exc:
        console.line(f"bothways listen: {exc}", error=True)
        return 2
    path = database(args.db, args.data)
    try:
        store = open_store(path)
    except Exception as exc:  # sqlite3.Error, OSError, psycopg's: it cannot be used
        console.line(f"bothways listen: cannot open the database {shown(path)}: {exc}", error=True)
        return 1
    with store:
        ingest = Ingest(sources, store, console=console)
        ingest.say(f"storing readings in {shown(path)}")
        if not ingest.open():
            ingest.say("no source could be opened", error=True)
            return 1
        return ingest.run(stop)
