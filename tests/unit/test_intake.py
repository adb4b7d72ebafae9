"""Intake: a protocol's bytes into an Inbox, for a reader that awaits (pull) or a target (push)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from bothways.errors import DecodeError
from bothways.transports.base import READ_SIZE, Inbox, Intake, IntakeProtocol, raise_error


class FakeTransport:
    """What an Intake asks of its transport: pausing and resuming."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def pause_reading(self) -> None:
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.calls.append("resume")

    def is_closing(self) -> bool:
        return False


def make(high_water: int = 1000, **inbox: Any) -> tuple[Intake, FakeTransport]:
    intake = Intake(Inbox(**inbox), high_water=high_water)
    transport = FakeTransport()
    intake.transport = transport  # type: ignore[assignment]
    return intake, transport


def test_pull_waits_for_a_whole_line_then_gives_every_value() -> None:
    async def main() -> None:
        intake, _ = make()
        waiting = asyncio.ensure_future(intake.wait())
        intake.feed(b'{"a": 1}\n{"b"')
        await asyncio.wait_for(waiting, 1)
        intake.feed(b": 2}\n3\n")
        assert intake.take() == {"a": 1}
        assert intake.take_all() == [{"b": 2}, 3]
        waiting = asyncio.ensure_future(intake.wait())
        await asyncio.sleep(0)
        assert not waiting.done()  # nothing there: it waits
        intake.feed_eof()
        await asyncio.wait_for(waiting, 1)
        assert intake.ended and not len(intake.inbox)

    asyncio.run(main())


def test_a_raised_policy_error_comes_after_the_values_before_it() -> None:
    intake, _ = make(on_error=raise_error)
    intake.feed(b"1\n2\n")
    intake.feed(b"{bad\n")
    intake.feed(b"3\n")
    assert intake.take_all() == [1, 2, 3]  # nothing received is lost...
    error = intake.take_error()
    assert isinstance(error, DecodeError) and error.line == 3  # ...and the error says where
    assert intake.take_error() is None  # once


def test_pull_pauses_the_transport_over_the_high_water_mark_and_resumes_when_drained() -> None:
    intake, transport = make(high_water=110)
    line = b'"' + b"x" * 48 + b'"\n'  # 51 bytes
    intake.feed(line)
    intake.feed(line)
    assert transport.calls == []
    intake.feed(line)
    assert transport.calls == ["pause"]
    intake.feed(line)  # what was in flight still comes in
    assert transport.calls == ["pause"]
    assert intake.take() == "x" * 48
    assert transport.calls == ["pause"]  # values still wait
    assert len(intake.take_all()) == 3
    assert transport.calls == ["pause", "resume"]


def test_push_delivers_what_waits_at_the_next_turn_then_each_batch_at_once() -> None:
    async def main() -> None:
        intake, transport = make(high_water=10)
        intake.feed(b"1\n2\n3\n4\n5\n6\n")  # over the mark: paused
        assert transport.calls == ["pause"]
        batches: list[list[Any]] = []
        ends: list[int] = []
        intake.deliver_to(batches.append, lambda: ends.append(len(batches)))
        assert transport.calls == ["pause", "resume"]  # push mode reads on
        assert batches == []
        await asyncio.sleep(0)
        assert batches == [[1, 2, 3, 4, 5, 6]]
        intake.feed(b"7\n8")
        assert batches == [[1, 2, 3, 4, 5, 6], [7]]  # from the callback itself
        intake.feed(b"\n" + b"9\n" * 100)
        assert batches[-1] == [8] + [9] * 100
        assert transport.calls == ["pause", "resume"]  # push mode never pauses
        intake.feed_eof()
        intake.feed_eof()
        assert ends == [3]  # once, after the last batch

    asyncio.run(main())


def test_push_ends_at_a_raised_policy_error_and_stops_reading() -> None:
    async def main() -> None:
        intake, transport = make(on_error=raise_error)
        batches: list[list[Any]] = []
        ends: list[BaseException | None] = []
        intake.deliver_to(batches.append, lambda: ends.append(intake.take_error()))
        intake.feed(b"1\n2\n{bad\n3\n")
        assert batches == [[1, 2]]
        assert len(ends) == 1 and isinstance(ends[0], DecodeError)
        assert transport.calls == ["pause"]
        intake.feed(b"4\n")
        assert batches == [[1, 2]] and len(ends) == 1  # nothing after the end

    asyncio.run(main())


def test_close_ends_without_reporting_a_cut_last_line() -> None:
    async def main() -> None:
        reported: list[DecodeError] = []
        intake, _ = make(on_error=reported.append)
        intake.feed(b'1\n{"half')
        waiting = asyncio.ensure_future(intake.wait())
        assert intake.take_all() == [1]
        intake.close()
        await asyncio.wait_for(waiting, 1)
        assert intake.ended and reported == []

    asyncio.run(main())


@pytest.mark.parametrize("split", [1, 7, 4096])
def test_any_chunking_gives_the_same_values(split: int) -> None:
    data = b"".join(b'{"i": %d, "s": "\xc3\xa9t\xc3\xa9"}\n' % i for i in range(500))
    intake, _ = make(high_water=1 << 30)
    for start in range(0, len(data), split):
        intake.feed(data[start : start + split])
    assert intake.take_all() == [{"i": i, "s": "été"} for i in range(500)]


def test_the_protocol_makes_its_transport_read_64_kib_at_a_time() -> None:
    # asyncio's 256 KiB reads are served by mmap in glibc: a page-faulting mmap/munmap per read.
    async def main() -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            transport, _ = await asyncio.get_running_loop().create_unix_connection(
                lambda: IntakeProtocol(Intake(Inbox())), sock=ours
            )
            try:
                assert getattr(transport, "max_size", None) == READ_SIZE == 64 * 1024
            finally:
                transport.close()

    asyncio.run(main())
