"""The books: what every sender said it sent, what every receiver said it got, the faults, and
the verdict on each missing or repeated message against its channel's promise (streams.py).

Messages are ``{"i": incarnation, "n": seq}``: ``i`` names one life of one sender (a restarted
sender is a new incarnation), ``n`` counts from 1 with no gap. So "sent" is a number per
incarnation, and receipts fit in a byte per seq (a count) plus the time and receiver of the
first receipt: half an hour at a few thousand messages a second stays in tens of megabytes.
"""

from __future__ import annotations

import bisect
import threading
from array import array
from collections import Counter
from dataclasses import dataclass, field

from .streams import Promise

# Why a missing message is not a loss, or why a repeated one is not a bug (the report's words).
UNCONFIRMED = "unconfirmed"
TRUNCATED = "truncated away (documented: copytruncate)"
IN_FLIGHT = "in flight when its receiver went (documented)"
REPORTED = "reported by close() (TransportClosed: 'may be lost')"
RESENT_APP = "sent again by the application after send() raised"
RESENT_BREAK = "sent again after a break (at-least-once)"
REPLAYED = "replayed after a reader kill (state= window)"

SLACK = 1.0  # seconds of clock slack between a fault and the reports around it
SAMPLES = 10  # examples kept per kind of failure


@dataclass
class SenderLife:
    """One incarnation of one sender."""

    name: str
    stream: str
    started: float
    progress_t: list[float] = field(default_factory=list)
    progress_upto: list[int] = field(default_factory=list)
    checkpoints: list[tuple[float, int, bool, str]] = field(default_factory=list)
    send_errors: dict[int, str] = field(default_factory=dict)
    ended: float | None = None
    end_kind: str | None = None  # "stopped", "killed", "died"
    counts: bytearray = field(default_factory=bytearray)
    first_t: array = field(default_factory=lambda: array("f"))  # type: ignore[type-arg]
    first_by: array = field(default_factory=lambda: array("i"))  # type: ignore[type-arg]
    max_received: int = 0
    received: int = 0  # distinct seqs

    def progress(self, t: float, upto: int) -> None:
        if not self.progress_upto or upto > self.progress_upto[-1]:
            self.progress_t.append(t)
            self.progress_upto.append(upto)

    @property
    def reported(self) -> int:
        """The highest seq the sender said it sent (its send returned)."""
        best = self.progress_upto[-1] if self.progress_upto else 0
        return max([best] + [upto for _, upto, _, _ in self.checkpoints])

    @property
    def sent(self) -> int:
        return max(self.reported, self.max_received)

    def grow(self, seq: int) -> None:
        if seq >= len(self.counts):
            more = max(seq + 1, 2 * len(self.counts), 1024) - len(self.counts)
            self.counts.extend(bytes(more))
            self.first_t.extend([0.0] * more)
            self.first_by.extend([-1] * more)

    def sent_between(self, seq: int) -> tuple[float, float]:
        """When ``seq`` was sent, as bounds from the progress reports around it."""
        index = bisect.bisect_left(self.progress_upto, seq)
        lo = self.progress_t[index - 1] if index > 0 else self.started
        hi = self.progress_t[index] if index < len(self.progress_t) else (self.ended or float("inf"))
        return lo, hi

    def confirmed(self, promise: Promise) -> int:
        """The highest seq whose arrival the channel promised (everything at or below it)."""
        ok = [upto for _, upto, good, _ in self.checkpoints if good]
        best = max(ok, default=0)
        if promise.durable_send:
            best = max(best, self.reported)
        elif self.end_kind == "stopped" and self.checkpoints and self.checkpoints[-1][2]:
            best = max(best, self.checkpoints[-1][1])
        if not promise.durable_send:
            best = max(best, self.max_received)  # ordered: what came later proves what came before
        return best


@dataclass
class ReceiverLife:
    """One incarnation of one receiver."""

    name: str
    index: int
    stream: str
    started: float
    ended: float | None = None
    end_kind: str | None = None
    last_by_sender: dict[str, int] = field(default_factory=dict)
    taken: int = 0


@dataclass
class Break:
    """A receiver that went (killed or restarted), or the broker restarting under it."""

    t: float
    kind: str
    receiver: ReceiverLife


@dataclass
class Fault:
    t: float
    stream: str
    kind: str
    detail: str


@dataclass
class Garbage:
    tag: str
    stream: str
    t: float
    seen: int = 0


@dataclass
class StreamResult:
    name: str
    sent: int = 0
    received: int = 0  # distinct messages
    deliveries: int = 0  # every receipt, duplicates included
    lost: int = 0
    unconfirmed: int = 0
    explained: Counter[str] = field(default_factory=Counter)
    dup_explained: Counter[str] = field(default_factory=Counter)
    dup_unexplained: int = 0
    lost_samples: list[str] = field(default_factory=list)
    dup_samples: list[str] = field(default_factory=list)
    in_flight: int = 0  # (progress lines) sent too recently to judge


@dataclass
class CallBook:
    name: str
    stats: dict[str, dict[str, int]] = field(default_factory=dict)  # caller life -> its last counters
    failures: list[tuple[float, str, str, str]] = field(default_factory=list)  # t, type, phase, text
    host_kills: list[float] = field(default_factory=list)
    caller_kills: list[float] = field(default_factory=list)

    def total(self, key: str) -> int:
        return sum(stats.get(key, 0) for stats in self.stats.values())


class Ledger:
    """Thread-safe: agent readers, the fault thread and the main thread all write to it."""

    def __init__(self, promises: dict[str, Promise]) -> None:
        self.lock = threading.RLock()
        self.promises = promises  # stream -> promise
        self.senders: dict[str, SenderLife] = {}
        self.receivers: list[ReceiverLife] = []
        self.breaks: dict[str, list[Break]] = {name: [] for name in promises}
        self.faults: list[Fault] = []
        self.truncated: dict[str, set[int]] = {}  # sender life -> seqs a truncation destroyed
        self.garbage: dict[str, Garbage] = {}
        self.bad_lines: list[tuple[float, str, str, str]] = []  # t, stream, kind, text (unexplained)
        self.strays: list[tuple[str, str]] = []
        self.dups: list[tuple[str, int, float, int, float, int]] = []
        self.failures: list[str] = []  # anything that fails the run outright
        self.notes: list[str] = []  # things worth reading that do not fail it
        self.calls: dict[str, CallBook] = {}
        self.connect_retries: Counter[str] = Counter()
        self.checkpoints: Counter[str] = Counter()

    # ------------------------------------------------------------------------------------
    # Writing

    def fail(self, text: str) -> None:
        with self.lock:
            self.failures.append(text)

    def note(self, text: str) -> None:
        with self.lock:
            self.notes.append(text)

    def fault(self, t: float, stream: str, kind: str, detail: str = "") -> None:
        with self.lock:
            self.faults.append(Fault(t, stream, kind, detail))

    def sender(self, name: str, stream: str, t: float) -> SenderLife:
        with self.lock:
            return self._sender(name, stream, t)

    def _sender(self, name: str, stream: str, t: float) -> SenderLife:
        life = self.senders.get(name)
        if life is None:
            life = self.senders[name] = SenderLife(name, stream, t)
        return life

    def end_sender(self, name: str, t: float, kind: str) -> None:
        with self.lock:
            life = self.senders.get(name)
            if life is not None and life.ended is None:
                life.ended, life.end_kind = t, kind

    def receiver(self, name: str, stream: str, t: float) -> ReceiverLife:
        with self.lock:
            life = ReceiverLife(name, len(self.receivers), stream, t)
            self.receivers.append(life)
            return life

    def end_receiver(self, life: ReceiverLife, t: float, kind: str) -> None:
        with self.lock:
            if life.ended is None:
                life.ended, life.end_kind = t, kind

    def brk(self, stream: str, t: float, kind: str, receiver: ReceiverLife) -> None:
        with self.lock:
            self.breaks[stream].append(Break(t, kind, receiver))

    def progress(self, stream: str, sender: str, t: float, upto: int) -> None:
        with self.lock:
            self._sender(sender, stream, t).progress(t, upto)

    def checkpoint(self, stream: str, sender: str, t: float, upto: int, ok: bool, error: str) -> None:
        with self.lock:
            life = self._sender(sender, stream, t)
            life.checkpoints.append((t, upto, ok, error))
            life.progress(t, upto)
            self.checkpoints[stream] += 1
            if not ok:
                self.notes.append(f"{stream}: {sender} close() raised at {t:.1f} s (upto {upto}): {error}")

    def send_error(self, stream: str, sender: str, t: float, seq: int, error: str) -> None:
        with self.lock:
            self._sender(sender, stream, t).send_errors[seq] = error

    def got(self, receiver: ReceiverLife, t: float, items: list[list[object]]) -> None:
        with self.lock:
            receiver.taken += len(items)
            last = receiver.last_by_sender
            for name, seq in items:
                assert isinstance(name, str) and isinstance(seq, int)
                life = self.senders.get(name)
                if life is None:  # (a sender we have not heard from yet: stdio children)
                    life = self._sender(name, receiver.stream, t)
                if seq <= 0:
                    self.strays.append((receiver.stream, f"seq {seq} from {name}"))
                    continue
                life.grow(seq)
                count = life.counts[seq]
                if count == 0:
                    life.first_t[seq] = t
                    life.first_by[seq] = receiver.index
                    life.received += 1
                else:
                    self.dups.append((name, seq, life.first_t[seq], life.first_by[seq], t, receiver.index))
                if count < 255:
                    life.counts[seq] = count + 1
                if seq > life.max_received:
                    life.max_received = seq
                if seq > last.get(name, 0):
                    last[name] = seq

    def truncation(self, items: list[list[object]]) -> None:
        with self.lock:
            for name, seq in items:
                assert isinstance(name, str) and isinstance(seq, int)
                self.truncated.setdefault(name, set()).add(seq)

    def bad(self, stream: str, t: float, kind: str, text: str) -> None:
        with self.lock:
            for tag, garbage in self.garbage.items():
                if tag in text and garbage.stream == stream:
                    garbage.seen += 1
                    return
            self.bad_lines.append((t, stream, kind, text))

    def stray(self, stream: str, values: list[str]) -> None:
        with self.lock:
            self.strays.extend((stream, value) for value in values)

    def inject(self, tag: str, stream: str, t: float) -> None:
        with self.lock:
            self.garbage[tag] = Garbage(tag, stream, t)

    def uninject(self, tag: str) -> None:
        with self.lock:
            self.garbage.pop(tag, None)

    def call_book(self, name: str) -> CallBook:
        with self.lock:
            book = self.calls.get(name)
            if book is None:
                book = self.calls[name] = CallBook(name)
            return book

    # ------------------------------------------------------------------------------------
    # Judging

    def judge(self, now: float, final: bool) -> dict[str, StreamResult]:
        """Every stream's numbers; ``final`` once every report is in, else a provisional view
        that leaves alone what was sent in the last ``WAIT`` seconds."""
        with self.lock:
            results = {name: StreamResult(name) for name in self.promises}
            for life in self.senders.values():
                self._judge_sender(life, results[life.stream], now, final)
            for dup in self.dups:
                self._judge_dup(dup, results)
            return results

    WAIT = 20.0

    def _judge_sender(self, life: SenderLife, result: StreamResult, now: float, final: bool) -> None:
        promise = self.promises[life.stream]
        sent = life.sent
        result.sent += sent
        result.received += life.received
        result.deliveries += sum(life.counts)
        confirmed = life.confirmed(promise)
        horizon = sent if final else max(0, min(sent, self._sent_before(life, now - self.WAIT)))
        result.in_flight += sent - horizon
        life.grow(sent)
        counts = life.counts
        seq = counts.find(0, 1, horizon + 1)
        while seq != -1:
            reason = self._why_missing(life, seq, promise, confirmed)
            if reason is None:
                result.lost += 1
                if len(result.lost_samples) < SAMPLES:
                    lo, hi = life.sent_between(seq)
                    result.lost_samples.append(f"{life.name} seq {seq} (sent {lo:.1f}-{hi:.1f} s)")
            elif reason == UNCONFIRMED:
                result.unconfirmed += 1
            else:
                result.explained[reason] += 1
            seq = counts.find(0, seq + 1, horizon + 1)

    def _sent_before(self, life: SenderLife, t: float) -> int:
        index = bisect.bisect_right(life.progress_t, t)
        return life.progress_upto[index - 1] if index > 0 else 0

    def _why_missing(self, life: SenderLife, seq: int, promise: Promise, confirmed: int) -> str | None:
        if seq in self.truncated.get(life.name, ()):
            return TRUNCATED
        if seq > confirmed:
            return UNCONFIRMED
        if promise.lossy_break:
            lo, hi = life.sent_between(seq)
            for brk in self.breaks[life.stream]:
                if brk.kind == "restart-broker":
                    continue
                if (
                    seq > brk.receiver.last_by_sender.get(life.name, 0)
                    and lo <= brk.t + SLACK
                    and hi >= brk.t - promise.break_window
                ):
                    return IN_FLIGHT
        for _, upto, ok, _ in life.checkpoints:
            if not ok and seq <= upto:
                return REPORTED
        return None

    def _judge_dup(
        self, dup: tuple[str, int, float, int, float, int], results: dict[str, StreamResult]
    ) -> None:
        name, seq, t1, by1, t2, _ = dup
        life = self.senders[name]
        promise = self.promises[life.stream]
        result = results[life.stream]
        reason: str | None = None
        if seq in life.send_errors:
            reason = RESENT_APP
        elif promise.resend_on_break and any(
            t1 - SLACK <= brk.t <= t2 + SLACK for brk in self.breaks[life.stream]
        ):
            reason = RESENT_BREAK
        elif promise.replay_window and any(
            brk.kind == "kill-receiver"
            and brk.receiver.index == by1
            and brk.t - promise.replay_window <= t1 <= brk.t + SLACK
            for brk in self.breaks[life.stream]
        ):
            reason = REPLAYED
        if reason is None:
            result.dup_unexplained += 1
            if len(result.dup_samples) < SAMPLES:
                result.dup_samples.append(f"{name} seq {seq} (first at {t1:.2f} s, again at {t2:.2f} s)")
        else:
            result.dup_explained[reason] += 1

    def garbage_verdicts(self) -> tuple[int, int, int, list[str]]:
        """Injected, reported, explained-missing, and the unexplained problems."""
        with self.lock:
            problems = []
            explained = 0
            for garbage in self.garbage.values():
                if garbage.seen:
                    continue
                later = [
                    b
                    for b in self.breaks[garbage.stream]
                    if garbage.t - 30 <= b.t and b.kind != "restart-broker"
                ]
                truncated = any(
                    f.stream == garbage.stream and f.kind == "truncate" and f.t >= garbage.t
                    for f in self.faults
                )
                if later or truncated:
                    explained += 1
                else:
                    problems.append(
                        f"{garbage.stream}: malformed line {garbage.tag} (sent at {garbage.t:.1f} s) "
                        "was never reported"
                    )
            for t, stream, kind, text in self.bad_lines:
                if kind == "TruncatedLine" and any(
                    f.stream == stream and f.kind.startswith("kill") and t - 5 <= f.t <= t + SLACK
                    for f in self.faults
                ):
                    continue  # a killed sender may stop in the middle of a line it was writing
                problems.append(f"{stream}: a bad line we did not write, at {t:.1f} s: {kind}: {text}")
            seen = sum(1 for g in self.garbage.values() if g.seen)
            return len(self.garbage), seen, explained, problems
