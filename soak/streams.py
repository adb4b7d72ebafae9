"""The streams the soak runs, and what each channel promises (the checker judges by this table).

Every promise here is read from the library's own documentation: README.md ("Nothing is lost
silently", the channel table), the transports' docstrings (src/bothways/transports/*.py) and
spec/PROTOCOL.md section 8. ``Promise.rules`` is printed in the report, so the reader can check the
checker against the documentation.
"""

from __future__ import annotations

from dataclasses import dataclass

# Fault kinds. Each is one action of faults.py; "cycle" (a sender's close and reopen, whose close
# is a checkpoint) is routine, scheduled apart and not counted as a fault.
KILL_SENDER = "kill-sender"
KILL_RECEIVER = "kill-receiver"
RESTART_RECEIVER = "restart-receiver"
SLOW = "slow-consumer"
GARBAGE = "malformed-line"
TRUNCATE = "truncate"
RESTART_BROKER = "restart-broker"
KILL_HOST = "kill-host-mid-call"
KILL_CALLER = "kill-caller"


@dataclass(frozen=True)
class Promise:
    """What a channel promises about one sender's messages, in the checker's terms."""

    durable_send: bool
    """A send that returned survives the sender's death: the bytes are in a pipe the reader
    still holds, in the file, or acknowledged by the broker. Else only a confirmed ``close()``
    (or what arrived after them, on an ordered channel) makes earlier messages due."""
    lossy_break: bool
    """Messages in flight when a receiver goes away may be lost (documented), as long as the
    receiver that went had not got them and they were sent before it went."""
    break_window: float
    """How long before a receiver's break such a message may have been sent (seconds)."""
    resend_on_break: bool
    """Duplicates are allowed across a break (tcp resends what the server may not have read;
    MQTT QoS 1 redelivers what was not acknowledged)."""
    replay_window: float
    """A receiver killed within this many seconds after taking a message may get it again
    (the file reader's ``state=``: saved at most every 0.2 s, plus the batch in hand)."""
    rules: str


STDIO = Promise(
    durable_send=True,
    lossy_break=True,
    break_window=30.0,
    resend_on_break=False,
    replay_window=0.0,
    rules=(
        "Pipe between parent and child. Every message the child reported as sent (its send "
        "returned, so the bytes are in the pipe) must reach the parent, even when the child is "
        "SIGKILLed: the parent reads to EOF before it sees the exit (ChildExited). Messages sent "
        "after the child's last progress report are unconfirmed. When the parent is killed, the "
        "child dies with it (PR_SET_PDEATHSIG) and what was in the pipe is gone: explained. No "
        "duplicates allowed."
    ),
)
TCP = Promise(
    durable_send=False,
    lossy_break=False,
    break_window=0.0,
    resend_on_break=True,
    replay_window=0.0,
    rules=(
        "Client with reconnect=1, listener restarted or killed under it. A close() that returned "
        "confirms the server read every earlier message (a checkpoint: all must arrive); a close() "
        "that raised TransportClosed reports a possible loss (counted as 'reported', not silent). "
        "A break makes the client send again what the server may not have read (the newest 1 MiB), "
        "so nothing may be missing below the highest seq that arrived, and duplicates across a "
        "break are explained. A SIGKILLed sender's messages after both its last checkpoint and the "
        "last one that arrived are unconfirmed."
    ),
)
WS = Promise(
    durable_send=False,
    lossy_break=True,
    break_window=10.0,
    resend_on_break=False,
    replay_window=0.0,
    rules=(
        "Client with reconnect=1. As tcp for close() (confirmed by the close handshake), but a "
        "reconnecting ws client resends nothing: 'messages in flight when the connection broke "
        "may be lost' (ws.py), so a gap is explained when the listener that went had not got "
        "those messages and they were sent within 10 s before it went. No duplicates allowed."
    ),
)
FIFO = Promise(
    durable_send=True,
    lossy_break=True,
    break_window=30.0,
    resend_on_break=False,
    replay_window=0.0,
    rules=(
        "Named pipe, no acknowledgement: what a killed reader had read ahead or left in the pipe "
        "is lost (the writer learns only at its next write, EPIPE -> TransportClosed; our writer "
        "then opens again and sends that message again). So a gap is explained when the reader "
        "that went had not got those messages and they were sent within 30 s before it went. A "
        "killed writer's sent messages are in the pipe: all must arrive. No duplicates allowed."
    ),
)
FILE = Promise(
    durable_send=True,
    lossy_break=False,
    break_window=0.0,
    resend_on_break=False,
    replay_window=1.0,
    rules=(
        "Writer with max_bytes= (rotation, keep=8), reader with ?state=. Every line written is "
        "in the file, so every message sent must arrive, across rotations and reader kills, at "
        "least once. Duplicates are explained only for messages the killed reader took within "
        "1 s before it was killed (documented: what it was handed in the 0.2 s save interval "
        "plus the batch in hand; the rest is slack for our own report). Truncation "
        "(copytruncate without copy) destroys the lines the reader had not read: the writer "
        "reports which seqs the file held before it truncated, and those are explained."
    ),
)
MQTT = Promise(
    durable_send=True,
    lossy_break=True,
    break_window=10.0,
    resend_on_break=True,
    replay_window=0.0,
    rules=(
        "QoS 1 through a mosquitto of the soak's own (persistence on; restarted with SIGTERM, "
        "which saves its state). send() returns once the broker acknowledged: every message "
        "sent must arrive, even when the publisher is SIGKILLed or the broker restarted. The "
        "subscriber has a client_id (persistent session), so what is published while it is away "
        "is kept for it; but the client acknowledges a message when it enters the channel's "
        "queue, not when the application takes it, so a SIGKILLed subscriber loses what it had "
        "queued (the README says so): explained like a break (sent within 10 s before). "
        "At-least-once: duplicates across a broker restart or a subscriber restart are explained."
    ),
)

PROMISES = {"stdio": STDIO, "tcp": TCP, "ws": WS, "fifo": FIFO, "file": FILE, "mqtt": MQTT}


@dataclass(frozen=True)
class StreamSpec:
    """One sender and one receiver over one channel; ``faults`` are the kinds injected in it."""

    name: str
    channel: str
    sender: str  # "python" or "node"
    receiver: str
    faults: tuple[str, ...]

    @property
    def promise(self) -> Promise:
        return PROMISES[self.channel]


# One side of most streams is never killed: its leaks are judged over the whole run, while the
# other side comes and goes under it (a listener seeing clients die, a client seeing servers go).
STREAMS = (
    StreamSpec("stdio-py2node", "stdio", "python", "node", (KILL_SENDER, GARBAGE, SLOW, KILL_RECEIVER)),
    StreamSpec("stdio-node2py", "stdio", "node", "python", (KILL_SENDER, GARBAGE, SLOW)),
    StreamSpec("tcp-py2node", "tcp", "python", "node", (KILL_RECEIVER, RESTART_RECEIVER, GARBAGE, SLOW)),
    StreamSpec("tcp-node2py", "tcp", "node", "python", (KILL_SENDER, GARBAGE, SLOW)),
    StreamSpec("ws-py2node", "ws", "python", "node", (KILL_SENDER, SLOW, GARBAGE)),
    StreamSpec("ws-node2py", "ws", "node", "python", (KILL_RECEIVER, RESTART_RECEIVER, SLOW)),
    StreamSpec("fifo-node2py", "fifo", "node", "python", (KILL_SENDER, KILL_RECEIVER, GARBAGE, SLOW)),
    StreamSpec(
        "file-py2node", "file", "python", "node", (KILL_SENDER, KILL_RECEIVER, TRUNCATE, GARBAGE, SLOW)
    ),
    StreamSpec("mqtt-py2node", "mqtt", "python", "node", (KILL_SENDER, SLOW, GARBAGE)),
    StreamSpec("mqtt-node2py", "mqtt", "node", "python", (KILL_RECEIVER, SLOW)),
)


@dataclass(frozen=True)
class CallSpec:
    """Calls from ``caller`` (a process of ours) into a module served by a child in the other
    language; ``faults`` as for streams."""

    name: str
    caller: str
    faults: tuple[str, ...]


CALLS = (
    CallSpec("calls-py2node", "python", (KILL_HOST,)),
    CallSpec("calls-node2py", "node", (KILL_HOST, KILL_CALLER)),
)

CALL_FAILURES = ("ChildExited", "TransportClosed")
"""What a call pending when its host dies fails with (node.py, python.js: 'a crashed child fails
every pending call with ChildExited'; a call made on a handle already closed: TransportClosed)."""
