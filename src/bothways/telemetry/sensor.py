"""The telemetry sensor (``bothways sensor``): temperature readings sent to any channel.

By default it is the tutorial's sensor (examples/tutorial/sensor.py) made a telemetry source: a
temperature uniform in -5..15 °C every 0-5 s (random), forever, one line per reading on stdout,
each written at once. A line is a reading, ``{"sensor": ID, "seq": n, "t": epoch seconds,
"celsius": x}``; ``--bare`` writes the tutorial's bare numbers instead (with ``--seed`` the
very same numbers as the tutorial's sensor). ``--to URL`` sends to any bothways channel
(``tcp://``, ``ws://``, ``fifo:``, ``file:``, ``stdio:``) or POSTs NDJSON batches to an HTTP URL
(``http://host:port/api/readings``, with urllib). ``--rate R`` sends R readings a second, in
batches (``send_many``).

Numbering: ``seq`` starts at the start time in microseconds and goes up by one per reading, so a
restarted sensor (same ``--id``) numbers its readings above the old ones, and a reading sent
twice is stored once (the store is idempotent on sensor and seq).

Keeping readings (``Outbox``, sans-I/O; ``Sender``, its send loop in a thread; both mirrored in
js/src/telemetry.js): every reading goes into a bounded buffer (``--buffer``, 10,000) and the
Sender sends what it holds. When the channel is lost (a refused connection, a reset, a full
disk, an HTTP 5xx or no answer) the readings stay in the buffer, the Sender connects again with
back-off (0.05 s doubling to 5 s) and sends them when the channel is back; a tcp or ws
connection is watched (read), so a listener that goes is noticed at once. When the buffer is
full the oldest readings are dropped, and counted in a warning on stderr. A refusal (an HTTP
4xx, a listener that wants a token) is final: the sensor stops and exits 1. It runs on
``connect()`` without the transports' own ``reconnect``: the buffer and the resending are the
sensor's, the same on every channel, and independent of what a transport keeps.

Which readings count as delivered: a file write, or an HTTP answer 2xx, confirms a batch at
once. TCP, WebSocket and FIFO carry no acknowledgement: a listener that stops or dies drops what
it had received but not stored yet (in its buffers and the kernel's). So on those channels a
sent reading is kept for ``RESEND_WINDOW`` seconds (10, or three intervals when that is longer;
within the buffer's bound) and sent again after a reconnection: the listener gets every
reading at least once, the store keeps it once. At the end (``--count``) the channel is closed,
which on tcp and ws confirms that the listener read everything; the sensor waits up to
``--wait`` seconds (10) to deliver what it holds, and exits 1 if it could not.
Ctrl-C or SIGTERM stops it: what is held is sent within ``STOP_WAIT`` seconds, then it exits 0.
On stdout (the default) there is nothing to reconnect: a closed pipe ends the sensor quietly.
Bare numbers are never sent twice (a listener numbers them on arrival: a copy would be stored
twice).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from itertools import islice
from typing import Any, TextIO

from ..channels import connect
from ..errors import BothwaysError, ConnectError, EncodeError, TransportError, UrlError
from ..transports.base import Channel, backoff
from ..urls import parse
from ..wire import encode_many

__all__ = [
    "DEFAULT_BUFFER",
    "RESEND_WINDOW",
    "HttpPoster",
    "Outbox",
    "Rejected",
    "Sender",
    "Sensor",
    "add_arguments",
    "default_id",
    "open_channel",
    "run",
]

LOW, HIGH = -5.0, 15.0  # °C, the tutorial's range
MAX_PAUSE = 5.0  # the tutorial's longest random pause, seconds
DEFAULT_BUFFER = 10_000
"""Readings a sensor keeps at most while its channel is down (``--buffer``)."""
RESEND_WINDOW = 10.0
"""Seconds a reading sent on a channel without acknowledgement (tcp, ws, fifo) is kept, to be
sent again if the connection turns out lost (at least three intervals)."""
SEND_BATCH = 5_000  # readings per send_many at most
HTTP_BATCH = 1_000  # readings per POST
FINAL_WAIT = 10.0  # seconds to deliver what is held at the end (--wait)
STOP_WAIT = 2.0  # seconds to deliver what is held after Ctrl-C / SIGTERM
HTTP_TIMEOUT = 10.0
TICK = 0.005  # seconds between batches at a --rate
CONFIRMING = ("file", "http", "https")  # a successful write is a delivery


def default_id() -> str:
    """``py-<hostname>-<pid>``: unique enough on one network."""
    return f"py-{socket.gethostname()}-{os.getpid()}"


# --------------------------------------------------------------------------------------------
# Sans-I/O: what the sensor holds


class Outbox:
    """The readings a sensor holds, oldest first: those sent but not confirmed, then the ones
    not sent yet. Bounded: adding past ``capacity`` drops the oldest (counted in ``dropped``
    when they were never sent). Not thread-safe: the Sensor guards it with its lock.

    Args:
        capacity: readings held at most.
        window: seconds a sent, unconfirmed reading is kept (``expire``), to be sent again
            after ``lost``.
    """

    __slots__ = ("capacity", "window", "dropped", "_items", "_sent_at")

    def __init__(self, capacity: int = DEFAULT_BUFFER, window: float = RESEND_WINDOW) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, not {capacity}")
        self.capacity = capacity
        self.window = window
        self.dropped = 0
        """Readings dropped before they were ever sent (the buffer was full)."""
        self._items: deque[Any] = deque()
        self._sent_at: deque[float] = deque()  # one per unconfirmed reading, at the front of _items

    def __len__(self) -> int:
        return len(self._items)

    @property
    def pending(self) -> int:
        """Readings not sent yet (or to be sent again)."""
        return len(self._items) - len(self._sent_at)

    @property
    def unconfirmed(self) -> int:
        """Readings sent but kept, in case the connection turns out lost."""
        return len(self._sent_at)

    def add(self, values: Iterable[Any]) -> int:
        """Adds readings; returns how many never-sent readings were dropped to make room."""
        items = self._items
        items.extend(values)
        dropped = 0
        while len(items) > self.capacity:
            items.popleft()
            if self._sent_at:
                self._sent_at.popleft()  # sent already: most likely delivered
            else:
                dropped += 1
        self.dropped += dropped
        return dropped

    def take(self, limit: int) -> list[Any]:
        """The oldest pending readings, ``limit`` at most (they stay until ``sent``)."""
        start = len(self._sent_at)
        return list(islice(self._items, start, start + limit))

    def sent(self, count: int, now: float, *, confirmed: bool) -> None:
        """The ``count`` readings that ``take`` gave were sent at ``now``; ``confirmed``: they
        are delivered (dropped from here), else kept for the window."""
        if confirmed:
            for _ in range(count):
                self._items.popleft()
        else:
            self._sent_at.extend([now] * count)

    def expire(self, now: float) -> None:
        """Forgets sent readings older than the window."""
        sent_at, items, oldest = self._sent_at, self._items, now - self.window
        while sent_at and sent_at[0] < oldest:
            sent_at.popleft()
            items.popleft()

    def confirm(self) -> None:
        """Every sent reading is delivered (a confirmed close)."""
        for _ in range(len(self._sent_at)):
            self._items.popleft()
        self._sent_at.clear()

    def lost(self) -> int:
        """The connection was lost: the sent, unconfirmed readings are pending again; returns
        how many."""
        again = len(self._sent_at)
        self._sent_at.clear()
        return again


# --------------------------------------------------------------------------------------------
# HTTP: POST NDJSON batches


class Rejected(BothwaysError):
    """The HTTP server refused a batch for good (a 4xx answer): sending it again cannot help,
    so the sensor stops (exit 1), as the Node.js sensor does."""

    code = "REJECTED"


class HttpPoster(Channel):
    """A sending-only channel that POSTs each ``send_many`` as one ``application/x-ndjson``
    body (urllib; proxies from the environment apply). An answer 2xx delivers the batch; 4xx
    (except 408 and 429) raises Rejected; anything else (no answer, 5xx) TransportError."""

    def __init__(self, url: str, *, timeout: float = HTTP_TIMEOUT) -> None:
        self.url = url
        self.timeout = timeout

    def send(self, value: Any) -> None:
        self.send_many([value])

    def send_many(self, values: Iterable[Any]) -> None:
        import urllib.error  # here: a sensor that does not POST starts without them
        import urllib.request

        body = encode_many(values)
        request = urllib.request.Request(
            self.url, data=body, method="POST", headers={"Content-Type": "application/x-ndjson"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                answer.read()
        except urllib.error.HTTPError as exc:
            detail = _http_detail(exc)
            exc.close()
            if 400 <= exc.code < 500 and exc.code not in (408, 429):
                raise Rejected(f"{self.url}: HTTP {exc.code}: {detail}") from None
            raise TransportError(f"{self.url}: HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TransportError(f"{self.url}: {reason}") from None

    def receive(self) -> Any:
        raise TransportError(f"{self.url}: an HTTP sensor only sends")

    def close(self) -> None:
        pass


def _http_detail(exc: Any) -> str:  # an urllib.error.HTTPError
    try:
        text = exc.read(300).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text.replace("\n", " ") or str(exc.reason)


def _is_http(url: str) -> bool:
    return url.lower().startswith(("http://", "https://"))


def open_channel(url: str, **options: Any) -> Channel:
    """The sending side of ``url``: ``connect(url, **options)``, or an HttpPoster for http(s)."""
    if _is_http(url):
        return HttpPoster(url)
    return connect(url, **options)


_REFUSED = re.compile(r": refused( by the server)?[:( ]")


def _is_final(exc: BaseException) -> bool:
    """Whether trying again cannot help: a Rejected batch, a listener that refused us (a
    token, a path), a bad URL or a value that cannot be sent."""
    if isinstance(exc, (Rejected, UrlError, EncodeError)):
        return True
    return isinstance(exc, ConnectError) and _REFUSED.search(str(exc)) is not None


def _reason(exc: BaseException) -> str:
    """An error's message without the channel URL it starts with (the caller names it)."""
    return re.sub(r"^[a-z][a-z0-9+.-]*:\S*: ", "", str(exc), flags=re.IGNORECASE)


# --------------------------------------------------------------------------------------------
# Delivering: the Sender


class _Link:
    """An open channel, and why it broke when its watcher saw it break."""

    __slots__ = ("channel", "broken")

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.broken: BaseException | None = None


class Sender:
    """Delivers what an Outbox holds to ``to`` (a channel URL, ``stdio:`` for our stdout, or
    ``http(s)://``), in batches, from a thread of its own, from the moment it is made until
    ``finish()``. Mirrors js/src/telemetry.js's Sender.

    - When the channel cannot be reached or is lost, the readings stay in the outbox; the Sender
      connects again with back-off (``backoff``: 0.05 s doubling to 5 s, back to the start once
      a batch went through) and sends them once the channel is back. A tcp or ws connection is
      watched (what the listener sends is read and dropped), so its loss is noticed at once.
    - On channels without acknowledgement (all but file and http) a sent reading is kept for the
      outbox's window and sent again after a reconnection: every reading arrives at least once.
    - Final: a Rejected batch (HTTP 4xx) or a refusal (``failed`` says which); stdout closed
      (``gone``): nothing to wait for.
    - ``finish(wait)`` sends what is left and closes the channel (on tcp and ws, confirmed by
      the listener; an unconfirmed close sends the held readings again), ``wait`` s at most.

    Args:
        to: where to deliver.
        outbox: what to deliver (default: a new Outbox).
        say: gets each warning (default: printed on stderr).
        options: for ``connect`` (tcp and ws get ``reconnect=False``: the Sender reconnects by
            itself, and knows then what to send again).
    """

    def __init__(
        self,
        to: str,
        *,
        outbox: Outbox | None = None,
        say: Callable[[str], None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.to = to
        self.kind = to.split(":", 1)[0].lower() if _is_http(to) else parse(to).scheme  # a bad URL fails here
        self.outbox = outbox if outbox is not None else Outbox()
        self._say = say or _stderr
        self._options = dict(options or {})
        if self.kind in ("tcp", "ws"):
            self._options["reconnect"] = False
        self._confirming = self.kind in CONFIRMING
        self._batch = HTTP_BATCH if self.kind.startswith("http") else SEND_BATCH
        self._cond = threading.Condition()
        self._deadline: float | None = None  # once finishing: when the time to deliver runs out
        self._link: _Link | None = None
        self._warned_drops = 0
        self._last_drop_warning = -float("inf")
        self.delivered = 0
        """Readings handed to the channel (resends counted)."""
        self.failed: BaseException | None = None
        """Why it stopped for good (a Rejected batch, a refusal), else None."""
        self.gone = False
        """The reader of stdout went away: nothing more to do."""
        self.done = threading.Event()
        """Set when the send loop has ended (finished, failed or gone)."""
        self._thread = threading.Thread(target=self._run, name=f"bothways sender {to}", daemon=True)
        self._thread.start()

    def add(self, values: Iterable[Any]) -> int:
        """Adds readings and wakes the sender; says (once a second at most) when the buffer is
        full and the oldest were dropped. Returns how many never-sent readings were dropped."""
        with self._cond:
            dropped = self.outbox.add(values)
            self._cond.notify_all()
            if dropped and time.monotonic() - self._last_drop_warning >= 1.0:
                self._last_drop_warning = time.monotonic()
                self._say_drops(f"buffer full ({self.outbox.capacity} readings): dropped the", "oldest")
        return dropped

    def _say_drops(self, before: str, after: str) -> None:
        total = self.outbox.dropped
        self._say(f"{before} {total - self._warned_drops} {after} ({total} in all)")
        self._warned_drops = total

    def finish(self, wait: float = FINAL_WAIT) -> int:
        """Delivers what is left, then closes the channel; ``wait`` s at most (called again, the
        earlier deadline holds). Returns how many readings could not be delivered (0: all)."""
        with self._cond:
            deadline = time.monotonic() + max(wait, 0.0)
            self._deadline = deadline if self._deadline is None else min(self._deadline, deadline)
            self._cond.notify_all()
        # A send, a dial or a close in progress may outlast the deadline: then it is left behind
        # (the thread is a daemon) and what it held counts as not delivered.
        self._thread.join(max(self._deadline - time.monotonic(), 0.0) + 0.1)
        cut = self._thread.is_alive()
        with self._cond:
            if self.outbox.dropped > self._warned_drops:
                self._warned_drops = self.outbox.dropped
                self._say(f"dropped {self.outbox.dropped} readings in all: the buffer was full")
            return len(self.outbox) if cut else self.outbox.pending

    def _watch(self, link: _Link) -> None:
        """Reads (and drops) what a tcp or ws listener sends, until the connection ends."""
        try:
            while True:
                link.channel.receive_many()
        except BaseException as exc:  # noqa: BLE001 - any end is the end of this connection
            with self._cond:
                link.broken = exc
                self._cond.notify_all()

    def _run(self) -> None:  # noqa: C901 - the one loop that touches the channel
        """The send loop."""
        outbox, cond = self.outbox, self._cond
        attempt = 0  # failed tries since a batch last went through
        retry_at = 0.0
        down: float | None = None  # since when the channel is down
        try:
            while True:
                with cond:
                    now = time.monotonic()
                    outbox.expire(now)
                    link = self._link
                    broken = link.broken if link is not None else None
                    deadline = self._deadline
                    ending = deadline is not None and (not outbox.pending or now >= deadline)
                    waiting = not outbox.pending or (link is None and now < retry_at)
                    if broken is None and not ending and waiting:
                        until = retry_at if outbox.pending else now + 1.0
                        if deadline is not None:
                            until = min(until, deadline)
                        cond.wait(max(until - now, 0.001))
                        continue
                    batch = outbox.take(self._batch) if not ending and broken is None else []
                if link is not None and broken is not None:
                    if self.kind == "stdio":
                        self.gone = True
                        return
                    if _is_final(broken):  # a tcp listener that wants a token says so first
                        return self._fail(broken)
                    self._drop()
                    with cond:
                        again = outbox.lost()
                    retry_at = time.monotonic() + backoff(attempt)
                    attempt += 1
                    if down is None:  # said once an outage (a server answering 503 would repeat it)
                        down = time.monotonic()
                        self._say(
                            f"lost {self.to} ({_reason(broken)}); keeping readings ({again} sent lately "
                            "will go again), reconnecting"
                        )
                    continue
                if ending:
                    if link is None or outbox.pending:
                        return
                    self._link = None
                    try:
                        link.channel.close()  # on tcp and ws: the listener confirms it read everything
                    except (BothwaysError, OSError) as exc:
                        with cond:
                            again = outbox.lost()
                        if again:
                            self._say(f"{self.to}: {_reason(exc)}; sending {again} readings again")
                        retry_at = time.monotonic() + backoff(attempt)
                        attempt += 1
                        continue
                    with cond:
                        outbox.confirm()
                    return
                if link is None:
                    try:
                        link = self._link = _Link(open_channel(self.to, **self._options))
                    except (BothwaysError, OSError, ValueError) as exc:
                        if self.kind == "stdio":
                            self.gone = True
                            return
                        if _is_final(exc):
                            return self._fail(exc)
                        if down is None:
                            down = time.monotonic()
                            self._say(
                                f"cannot reach {self.to} ({_reason(exc)}); keeping readings, trying again"
                            )
                        retry_at = time.monotonic() + backoff(attempt)
                        attempt += 1
                        continue
                    if self.kind in ("tcp", "ws"):
                        threading.Thread(target=self._watch, args=(link,), daemon=True).start()
                try:
                    link.channel.send_many(batch)
                except (BothwaysError, OSError, ValueError) as exc:
                    if self.kind == "stdio":
                        self.gone = True
                        return
                    if _is_final(exc):
                        return self._fail(exc)
                    with cond:
                        link.broken = link.broken or exc  # (dealt with at the top of the loop)
                    continue
                with cond:
                    outbox.sent(len(batch), time.monotonic(), confirmed=self._confirming)
                self.delivered += len(batch)
                attempt = 0
                if down is not None:
                    rest = f"; sending the {outbox.pending} readings held" if outbox.pending else ""
                    self._say(f"reached {self.to} again after {time.monotonic() - down:.1f} s{rest}")
                    down = None
        except Exception as exc:  # a bug: said, and the sender stops
            self.failed = exc
            self._say(f"{self.to}: {exc!r}")
        finally:
            self._drop()
            self.done.set()

    def _drop(self) -> None:
        """Closes the current channel, if any (a tcp or ws close waits for its confirmation,
        ``timeout`` s at most)."""
        link, self._link = self._link, None
        if link is not None:
            try:
                link.channel.close()
            except (BothwaysError, OSError):
                pass

    def _fail(self, exc: BaseException) -> None:
        self.failed = exc
        self._say(f"{exc}; stopping")


def _stderr(text: str) -> None:
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


# --------------------------------------------------------------------------------------------
# The sensor


class Sensor:
    """Makes readings and hands them to a Sender for ``to`` (None: stdout) until ``count`` is
    reached or ``stop`` is set: ``run(stop)`` makes them in the calling thread, on time whatever
    the channel does, while the Sender delivers them (see the module docstring)."""

    def __init__(
        self,
        to: str | None = None,
        *,
        sensor_id: str | None = None,
        interval: float | None = None,
        rate: float | None = None,
        count: int | None = None,
        seed: int | None = None,
        bare: bool = False,
        buffer: int = DEFAULT_BUFFER,
        wait: float = FINAL_WAIT,
        log: TextIO | None = None,
    ) -> None:
        if interval is not None and interval < 0:
            raise ValueError(f"--interval must be >= 0 seconds, not {interval}")
        if rate is not None and not rate > 0:
            raise ValueError(f"--rate must be > 0 readings a second, not {rate}")
        if count is not None and count < 0:
            raise ValueError(f"--count must be >= 0, not {count}")
        if buffer < 1:
            raise ValueError(f"--buffer must be >= 1 reading, not {buffer}")
        self.to = to or "stdio:"
        if not _is_http(self.to):
            parse(self.to)  # a bad URL fails here, before anything runs
        self.sensor_id = sensor_id or default_id()
        self.interval = interval
        self.rate = rate
        self.count = count
        self.bare = bare
        self.wait = wait
        self._log = log if log is not None else sys.stderr
        self._rng = random.Random(seed)
        self.seq = int(time.time() * 1_000_000)
        """The next reading's number (the start time in microseconds, then one more each)."""
        # Bare numbers are numbered on arrival: resending one would store it twice.
        window = 0.0 if bare else max(RESEND_WINDOW, 3 * (interval if interval is not None else MAX_PAUSE))
        self.outbox = Outbox(buffer, window)
        self.made = 0

    def _reading(self, now: float) -> Any:
        celsius = round(self._rng.uniform(LOW, HIGH), 2)
        if self.bare:
            return celsius
        reading = {"sensor": self.sensor_id, "seq": self.seq, "t": now, "celsius": celsius}
        self.seq += 1
        return reading

    def run(self, stop: threading.Event | None = None) -> int:
        """Makes and delivers readings until ``count`` is reached or ``stop`` is set; returns
        the exit code: 0; 1 when the receiver refused them, or (at ``count``) when some could
        not be delivered within ``wait`` seconds."""
        stop = stop or threading.Event()
        sender = Sender(self.to, outbox=self.outbox, say=self.say)
        halt = _Either(stop, sender.done)  # stdout gone, or a refusal: no point going on
        if self.rate is not None:
            self._produce_at_rate(sender, halt, self.rate)
        else:
            self._produce_at_intervals(sender, halt)
        stopped = stop.is_set()
        left = sender.finish(min(self.wait, STOP_WAIT) if stopped else self.wait)
        if sender.failed is not None:
            return 1
        if left and not sender.gone:
            self.say(f"{left} readings could not be delivered to {self.to}")
            return 0 if stopped else 1
        return 0

    def _produce_at_intervals(self, sender: Sender, halt: _Either) -> None:
        count, rng = self.count, self._rng
        due = time.monotonic()
        while count is None or self.made < count:
            if halt.is_set():
                return
            sender.add([self._reading(time.time())])
            self.made += 1
            if count is not None and self.made >= count:
                return
            due += self.interval if self.interval is not None else rng.uniform(0, MAX_PAUSE)
            halt.wait(due - time.monotonic())

    def _produce_at_rate(self, sender: Sender, halt: _Either, rate: float) -> None:
        count, outbox = self.count, self.outbox
        start = time.monotonic()
        while not halt.is_set():
            elapsed = time.monotonic() - start
            due = int(elapsed * rate) + 1 - self.made
            if count is not None:
                due = min(due, count - self.made)
            if due > 0:
                now = time.time()
                make = self._reading
                batch = [make(now) for _ in range(min(due, SEND_BATCH))]
                sender.add(batch)
                self.made += len(batch)
                if count is not None and self.made >= count:
                    return
                if outbox.pending > outbox.capacity // 2:
                    halt.wait(TICK)  # the sender lags: let it catch up (the buffer bounds memory)
                continue
            halt.wait(max(self.made / rate - elapsed, TICK))  # the next reading's time, or a tick

    def say(self, text: str) -> None:
        """A warning on stderr, prefixed with the sensor's name."""
        try:
            print(f"bothways sensor {self.sensor_id}: {text}", file=self._log, flush=True)
        except (OSError, ValueError):
            pass


class _Either:
    """Two events seen as one: set when either is; ``wait`` returns as soon as one is set."""

    def __init__(self, first: threading.Event, second: threading.Event) -> None:
        self._events = (first, second)

    def is_set(self) -> bool:
        return any(event.is_set() for event in self._events)

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + max(timeout, 0.0)
        first, second = self._events
        while not self.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            first.wait(min(left, 0.05) if not second.is_set() else 0)


# --------------------------------------------------------------------------------------------
# The command line (bothways sensor)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the sensor's flags to ``parser`` (``bothways sensor``)."""
    parser.add_argument(
        "--id", dest="sensor_id", metavar="ID", help="the sensor's name (default: py-<hostname>-<pid>)"
    )
    parser.add_argument(
        "--interval", metavar="S", type=float, help="seconds between readings (default: random 0-5)"
    )
    parser.add_argument(
        "--rate", metavar="R", type=float, help="readings per second, sent in batches (overrides --interval)"
    )
    parser.add_argument("--count", metavar="N", type=int, help="stop after N readings (default: never)")
    parser.add_argument("--seed", metavar="N", type=int, help="seed the generator, for a repeatable series")
    parser.add_argument(
        "--to",
        metavar="URL",
        help="where to send: tcp://, ws://, fifo:, file:, stdio:, or http://host:port/api/readings "
        "(POSTed in NDJSON batches); default: stdout",
    )
    parser.add_argument("--bare", action="store_true", help="send bare numbers, as the tutorial's sensor")
    parser.add_argument(
        "--buffer",
        metavar="N",
        type=int,
        default=DEFAULT_BUFFER,
        help=f"readings kept while the channel is down; the oldest go first (default: {DEFAULT_BUFFER})",
    )
    parser.add_argument(
        "--wait",
        metavar="S",
        type=float,
        default=FINAL_WAIT,
        help=f"at the end, seconds to go on trying to deliver what is held (default: {FINAL_WAIT:g})",
    )


def run(args: argparse.Namespace, stop: threading.Event | None = None, log: TextIO | None = None) -> int:
    """Runs ``bothways sensor`` with parsed ``args``; returns the exit code."""
    try:
        sensor = Sensor(
            args.to,
            sensor_id=args.sensor_id,
            interval=args.interval,
            rate=args.rate,
            count=args.count,
            seed=args.seed,
            bare=args.bare,
            buffer=args.buffer,
            wait=args.wait,
            log=log,
        )
    except (ValueError, BothwaysError) as exc:
        print(f"bothways sensor: {exc}", file=log or sys.stderr)
        return 2
    return sensor.run(stop)
