"""Library problems the soak ran into, printed in every report until they are fixed (then delete
the entry). Each one says where it is, how to see it, and what the soak does about it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    title: str
    where: str
    reproduce: str
    soak: str


FINDINGS = (
    Finding(
        title="A reconnecting tcp client holds about 4 KiB of memory per kept message",
        where=(
            "src/bothways/transports/tcp.py: _Kept.add keeps each write's bytes object as it is; "
            "orjson 3.13 (wire.py encode, the orjson path) returns bytes objects that each hold a "
            "~4 KiB allocation (tracemalloc: 4,097 bytes per 60-byte message; json.dumps: 103), so "
            "the RESEND window of 1 MiB of small messages holds ~70 MB, not 1 MiB. Bounded, but "
            "every reconnect=1 client that sends small messages one at a time pays it."
        ),
        reproduce=(
            "connect('tcp://...?reconnect=1') to a listener and send 30,000 small messages: RSS goes "
            "from 28 MB to 89 MB (without reconnect: stays at 28 MB); tracemalloc's top line is "
            "wire.py:128 with 17,772 blocks of 4,089 bytes."
        ),
        soak=(
            "seen as the tcp-py2node sender's RSS saw-tooth in soak.png; not counted as a leak "
            "while it stays within the leak tolerance (it is bounded by RESEND)."
        ),
    ),
    Finding(
        title="An MQTT listener with a client_id acknowledges messages before they are taken",
        where=(
            "src/bothways/transports/mqtt.py _Client (paho's default acknowledges a QoS 1 message "
            "when on_message returns, i.e. when it enters the channel's queue; mqtt.js does the "
            "same): a persistent-session subscriber that dies loses what it had queued, although "
            "the README says a listener with a client_id 'gets what was published while it was "
            "away'. Not a documented promise either way: a decision to make (manual acks when "
            "taken would make it at-least-once)."
        ),
        reproduce="SIGKILL a slow mqtt listener with a client_id while its queue holds messages.",
        soak=(
            "counted as 'in flight when its receiver went' (explained), like a fifo reader's "
            "read-ahead; the report shows how many."
        ),
    ),
)
