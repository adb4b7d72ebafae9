"""The blocking stdio channel on a channel socket (one socketpair for both directions)."""

from __future__ import annotations

import os
import socket
import threading
import time

from bothways.transports.base import socket_wait
from bothways.transports.stdio import StdioChannel
from bothways.wire import encode


def voluntary_switches(tid: int) -> int:
    """How many times thread ``tid`` of this process has gone to sleep (Linux)."""
    with open(f"/proc/self/task/{tid}/status") as status:
        for line in status:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches in /proc")


def test_socket_wait_is_for_sockets_only() -> None:
    read_end, write_end = os.pipe()
    ours, theirs = socket.socketpair()
    try:
        assert socket_wait(read_end) is None
        assert socket_wait(ours.fileno()) is not None
    finally:
        for fd in (read_end, write_end):
            os.close(fd)
        ours.close()
        theirs.close()


def test_a_reader_on_a_channel_socket_sleeps_while_the_other_side_reads_our_messages() -> None:
    # Linux wakes a task blocked in read() on a Unix socket whenever the other end reads what
    # was written on that socket: a round trip would cost two context switches more. The
    # reader waits in poll() for input first, which that wake-up does not reach.
    ours, theirs = socket.socketpair()
    with ours, theirs:
        channel = StdioChannel(stdin_fd=ours.fileno(), stdout_fd=ours.fileno())
        got: list[object] = []
        tid: list[int] = []

        def read() -> None:
            tid.append(threading.get_native_id())
            got.append(channel.receive())

        reader = threading.Thread(target=read)
        reader.start()
        woken = []
        for n in range(20):
            time.sleep(0.02)  # the reader is asleep in receive() by now
            before = voluntary_switches(tid[0])
            channel.send({"n": n})  # written on its socket...
            assert theirs.recv(100) == encode({"n": n})  # ...read at the other end
            time.sleep(0.02)
            woken.append(voluntary_switches(tid[0]) - before)
        theirs.sendall(encode({"n": "last"}))
        reader.join(5)
        assert got == [{"n": "last"}]
        assert sum(woken) <= 2, f"the reader woke for nothing: {woken}"  # (20 without the wait)
