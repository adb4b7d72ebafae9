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


FINDINGS: tuple[Finding, ...] = ()
# Fixed so far: spawn() from a short-lived thread (children died with the thread), a
# reconnecting tcp client's resend window (~130 MB for 1 MiB of small writes), MQTT channels'
# descriptors left to the collector. The MQTT listener's acknowledgement on arrival is
# documented in the README (what a crashed listener had queued is not sent again).
