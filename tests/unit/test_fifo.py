"""fifo: channels in one process: the sans-I/O sessions, then real FIFOs with writer threads.

js/test/fifo.test.js mirrors these; tests/cross/test_fifo_file_node.py puts Node on the other end.
"""

from __future__ import annotations

import asyncio
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bothways import ConnectError, DecodeError, TransportClosed, TransportError, encode
from bothways.channels import async_connect, async_listen, connect, listen
from bothways.transports.base import raise_error
from bothways.transports.fifo import PIPE_BUF, FifoReader, FifoSessions, FifoWriter, pieces

from ..conftest import UNIT


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"fifo:{tmp_path}/pipe"


class Errors(list[DecodeError]):
    """An on_error policy that keeps what it is given (truthy even when empty: ``on_error or ...``)."""

    def __call__(self, error: DecodeError) -> None:
        self.append(error)

    def __bool__(self) -> bool:
        return True


def in_thread(target: Any, *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def send_all(url: str, values: list[Any], *, batch: bool = False) -> None:
    with connect(url, timeout=10 * UNIT) as writer:
        if batch:
            writer.send_many(values)
        else:
            for value in values:
                writer.send(value)


# ----------------------------------------------------------------------------------------------
# The core, without I/O


def test_pieces_cut_between_lines_and_keep_every_byte() -> None:
    lines = [encode({"i": i, "pad": "x" * (i * 37 % 900)}) for i in range(200)]
    data = b"".join(lines)
    cut = list(pieces(data))
    assert b"".join(cut) == data
    assert all(len(p) <= PIPE_BUF and bytes(p).endswith(b"\n") for p in cut)
    assert all(bytes(p).count(b"\n") == len(bytes(p).splitlines()) for p in cut)
    long = b"[" + b"1," * 5000 + b"1]\n"
    assert [bytes(p) for p in pieces(b'{"a":1}\n' + long + b'{"b":2}\n')] == [
        b'{"a":1}\n',
        long,
        b'{"b":2}\n',
    ]
    assert [bytes(p) for p in pieces(b"x" * 5000)] == [b"x" * 5000]
    assert list(pieces(b"")) == []


def test_sessions_end_each_writer_stream_on_its_own() -> None:
    errors = Errors()
    sessions = FifoSessions(on_error=errors)
    sessions.feed(b'{"a": 1}\n{"a": 2}\n{"a":')  # the first writer dies mid-line
    assert sessions.writer_left() is True
    sessions.reopened()
    sessions.feed(b'{"b": 1}\n')  # not glued to '{"a":'
    assert sessions.ready()
    assert sessions.pop_all() == [{"a": 1}, {"a": 2}]
    assert sessions.ready() and sessions.pop() == {"b": 1}
    assert not sessions.ready()
    assert [(e.code, e.line, getattr(e, "delivered", None)) for e in errors] == [("TRUNCATED_LINE", 3, False)]
    sessions.feed(b'{"oops"}\n')  # line numbers count from the second writer's start
    assert errors[-1].line == 2


def test_sessions_without_reopen_end_with_the_first_writer() -> None:
    sessions = FifoSessions(reopen=False)
    sessions.feed(b"1\n2\n")
    assert sessions.writer_left() is False
    assert sessions.ended and sessions.pop_all() == [1, 2] and not sessions.ready()


def test_sessions_count_the_bytes_since_the_opening() -> None:
    sessions = FifoSessions()
    assert sessions.received == 0
    sessions.feed(b"12\n")
    assert sessions.received == 3
    sessions.writer_left()
    sessions.reopened()
    assert sessions.received == 0


# ----------------------------------------------------------------------------------------------
# Real FIFOs


def test_listen_creates_the_fifo_0600_and_removes_it(url: str, tmp_path: Path) -> None:
    path = tmp_path / "pipe"
    with listen(url) as reader:
        assert isinstance(reader, FifoReader)
        info = path.stat()
        assert stat.S_ISFIFO(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
        assert reader.url == url
    assert not path.exists()


def test_an_existing_fifo_is_used_and_left_in_place(url: str, tmp_path: Path) -> None:
    path = tmp_path / "pipe"
    os.mkfifo(path, 0o644)
    with listen(url, reopen=False) as reader:
        in_thread(send_all, url, [1, 2])
        assert list(reader) == [1, 2]
    assert stat.S_ISFIFO(path.stat().st_mode) and stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_path_that_is_not_a_fifo_is_a_clear_error(url: str, tmp_path: Path) -> None:
    path = tmp_path / "pipe"
    path.write_text("data\n")
    with pytest.raises(TransportError) as info:
        listen(url)
    assert str(info.value) == f"{url}: {path} exists and is not a FIFO (it is a regular file)"
    with pytest.raises(ConnectError, match="exists and is not a FIFO .it is a regular file."):
        connect(url, timeout=1)
    assert path.read_text() == "data\n"  # untouched
    os.unlink(path)
    os.mkdir(path)
    with pytest.raises(TransportError, match="is not a FIFO .it is a directory."):
        listen(url)


def test_connect_without_a_reader_gives_up_naming_the_path(url: str, tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(ConnectError) as info:
        connect(url, timeout=0.3)
    assert time.monotonic() - started < 3 * UNIT
    assert str(info.value) == f"{url}: no FIFO at {tmp_path}/pipe within 0.3 s (is the reader running?)"
    assert info.value.url == url
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ConnectError, match=r"no reader opened the FIFO .*/pipe within 0.2 s"):
        connect(url, timeout=0.2)


def test_connect_waits_for_the_reader(url: str) -> None:
    got: list[Any] = []

    def read_later() -> None:
        time.sleep(0.3)
        with listen(url, reopen=False) as reader:
            got.extend(reader)

    thread = in_thread(read_later)
    with connect(url, timeout=10 * UNIT) as writer:
        writer.send({"hello": "fifo"})
    thread.join(10 * UNIT)
    assert got == [{"hello": "fifo"}]


def test_ten_thousand_messages_in_order(url: str) -> None:
    values = [{"seq": i, "text": "é" * (i % 7)} for i in range(10_000)]
    with listen(url, reopen=False) as reader:
        in_thread(send_all, url, values)
        assert list(reader) == values


def test_ten_thousand_messages_in_batches(url: str) -> None:
    values = [{"seq": i} for i in range(10_000)]
    with listen(url, reopen=False) as reader:
        in_thread(lambda: send_all(url, values, batch=True))
        got = []
        while True:
            try:
                got.extend(reader.receive_many())
            except TransportClosed:
                break
        assert got == values


def test_a_ten_megabyte_message(url: str) -> None:
    big = {"blob": "z" * (10 * 1024 * 1024), "after": True}
    with listen(url, reopen=False) as reader:
        in_thread(send_all, url, [1, big, 2])
        assert list(reader) == [1, big, 2]


def test_the_writer_closing_ends_a_reader_without_reopen(url: str) -> None:
    with listen(url, reopen=False) as reader:
        in_thread(send_all, url, ["only"])
        assert reader.receive() == "only"
        with pytest.raises(TransportClosed, match="the writer closed the FIFO"):
            reader.receive()


def test_the_reader_closing_gives_the_writer_transport_closed(url: str) -> None:
    reader = listen(url)
    writer = connect(url, timeout=10 * UNIT)
    try:
        writer.send(1)
        assert reader.receive() == 1
        reader.close()
        with pytest.raises(TransportClosed, match="the reader closed the FIFO"):
            for _ in range(100_000):  # the first sends may still fit in the pipe
                writer.send("x" * 100)
    finally:
        writer.close()
        reader.close()


def raw_write(path: Path, data: bytes) -> None:
    """A writer without bothways: open (waits for the reader), write, close (as if killed)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def wait_for(condition: Any, timeout: float = 10 * UNIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_messages_keep_flowing_across_writers(url: str, tmp_path: Path) -> None:
    """Each writer dies mid-line; the reader reports it, reopens, and goes on with the next."""
    errors = Errors()
    got: list[Any] = []
    with listen(url, on_error=errors) as reader:
        thread = in_thread(lambda: got.extend(reader.receive() for _ in range(300)))
        for n in range(3):
            lines = b"".join(encode({"writer": n, "i": i}) for i in range(100))
            if n < 2:
                raw_write(tmp_path / "pipe", lines + b'{"writer": %d, "cut' % n)
                wait_for(lambda n=n: len(errors) == n + 1)  # its end was seen: the next may come
            else:
                raw_write(tmp_path / "pipe", lines)
        thread.join(10 * UNIT)
    assert got == [{"writer": n, "i": i} for n in range(3) for i in range(100)]
    assert [(e.code, e.line, getattr(e, "delivered", None)) for e in errors] == [
        ("TRUNCATED_LINE", 101, False)
    ] * 2


def test_a_killed_writer_leaves_its_messages_and_a_truncated_report(url: str, tmp_path: Path) -> None:
    errors = Errors()
    with listen(url, on_error=errors) as reader:
        raw_write(tmp_path / "pipe", b'{"a": 1}\n{"a": 2}\n{"a": 3, "cut')
        assert [reader.receive(), reader.receive()] == [{"a": 1}, {"a": 2}]
        third = in_thread(lambda: errors.append(reader.receive()))
        wait_for(lambda: len(errors) == 1)
        send_all(url, [{"b": 1}])  # the next writer's first line is not glued to the cut one
        third.join(10 * UNIT)
    assert [(e.code, e.line, getattr(e, "delivered", None)) for e in errors[:1]] == [
        ("TRUNCATED_LINE", 3, False)
    ]
    assert errors[1:] == [{"b": 1}]


def test_bad_lines_are_reported_and_the_neighbours_kept(url: str, tmp_path: Path) -> None:
    errors = Errors()
    with listen(url, reopen=False, on_error=errors, max_line=100) as reader:
        raw_write(tmp_path / "pipe", b'{"a": 1}\n{oops\n"' + b"y" * 500 + b'"\n{"a": 2}\n')
        assert list(reader) == [{"a": 1}, {"a": 2}]
    assert [(e.code, e.line) for e in errors] == [("DECODE_ERROR", 2), ("FRAME_TOO_LARGE", 3)]


def test_raise_error_raises_in_its_turn_and_loses_nothing(url: str, tmp_path: Path) -> None:
    with listen(url, on_error=raise_error, reopen=False) as reader:
        raw_write(tmp_path / "pipe", b"1\n2\n{oops\n3\n")
        assert reader.receive() == 1
        assert reader.receive_many() == [2]
        with pytest.raises(DecodeError, match="line 3"):
            reader.receive_many()
        assert list(reader) == [3]


def test_sessions_raise_policy_errors_in_their_turn() -> None:
    sessions = FifoSessions(on_error=raise_error)
    sessions.feed(b"1\n{bad\n2\n3\n[\n")
    assert sessions.ready() and sessions.pop() == 1
    with pytest.raises(DecodeError, match="line 2"):
        sessions.pop()
    assert sessions.pop_all() == [2, 3]
    with pytest.raises(DecodeError, match="line 5"):
        sessions.pop_all()
    assert not sessions.ready()


def test_concurrent_writers_never_mix_lines_up_to_pipe_buf(url: str) -> None:
    pad = "w" * 3000  # about 3 KB a line: several lines never fit in one PIPE_BUF write

    def writer(n: int) -> None:
        with connect(url, timeout=10 * UNIT) as out:
            for i in range(0, 300, 10):
                out.send_many({"w": n, "i": j, "pad": pad} for j in range(i, i + 10))

    errors = Errors()
    with listen(url, on_error=errors) as reader:
        threads = [in_thread(writer, n) for n in range(4)]
        got = [reader.receive() for _ in range(1200)]
        for thread in threads:
            thread.join(10 * UNIT)
    assert errors == []
    for n in range(4):
        assert [m["i"] for m in got if m["w"] == n] == list(range(300))


def test_a_writer_blocks_while_the_reader_does_not_read(url: str) -> None:
    done = threading.Event()

    def flood() -> None:
        send_all(url, [{"i": i, "pad": "p" * 10_000} for i in range(100)])  # 1 MB, the pipe holds 64 KB
        done.set()

    with listen(url, reopen=False) as reader:
        in_thread(flood)
        assert not done.wait(0.5)  # held back
        assert len(list(reader)) == 100
        assert done.wait(5 * UNIT)


def test_one_direction_only(url: str) -> None:
    with listen(url) as reader, connect(url, timeout=10 * UNIT) as writer:
        assert isinstance(writer, FifoWriter)
        with pytest.raises(TransportError, match=f"^{url}: the reader end only receives$"):
            reader.send(1)
        with pytest.raises(TransportError, match="the reader end only receives"):
            reader.send_many([1])
        with pytest.raises(TransportError, match=f"^{url}: the writer end only sends$"):
            writer.receive()
        with pytest.raises(TransportError, match="no connections to accept"):
            reader.accept()


def test_close_twice_and_use_after_close(url: str) -> None:
    reader = listen(url)
    writer = connect(url, timeout=10 * UNIT)
    writer.close()
    writer.close()
    with pytest.raises(TransportClosed, match="this writer is closed"):
        writer.send(1)
    reader.close()
    reader.close()
    with pytest.raises(TransportClosed):
        reader.receive()


def test_unknown_options_are_type_errors(url: str) -> None:
    with pytest.raises(TypeError):
        listen(url, poll=1)
    with pytest.raises(TypeError):
        connect(url, reopen=False)
    with pytest.raises(ValueError, match="timeout must be > 0"):
        connect(url, timeout=0)


# ----------------------------------------------------------------------------------------------
# asyncio


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20 * UNIT))


def test_async_round_trip_across_writers(url: str) -> None:
    async def main() -> list[Any]:
        reader = await async_listen(url)
        got: list[Any] = []
        async with reader:
            for n in range(2):
                async with await async_connect(url) as writer:
                    await writer.send_many({"w": n, "i": i} for i in range(1000))
                    await writer.send({"w": n, "last": True})
            async for message in reader:
                got.append(message)
                if message.get("last") and message["w"] == 1:
                    break
        return got

    expected = []
    for n in range(2):
        expected += [{"w": n, "i": i} for i in range(1000)] + [{"w": n, "last": True}]
    assert run(main()) == expected


def test_async_backpressure_and_a_big_message(url: str) -> None:
    big = {"blob": "q" * (3 * 1024 * 1024)}

    async def main() -> None:
        async with await async_listen(url, reopen=False) as reader, await async_connect(url) as writer:
            send = asyncio.ensure_future(writer.send(big))
            await asyncio.sleep(0.2)
            assert not send.done()  # 3 MB do not fit: the send waits for the reader
            assert await reader.receive() == big
            await send

    run(main())


def test_async_close_wakes_a_waiting_receive_and_stops_a_waiting_send(url: str) -> None:
    async def main() -> None:
        reader = await async_listen(url)
        waiting = asyncio.ensure_future(reader.receive())
        await asyncio.sleep(0.05)
        await reader.close()
        with pytest.raises(TransportClosed):
            await waiting

        reader = await async_listen(url)
        writer = await async_connect(url)
        sending = asyncio.ensure_future(writer.send("x" * 1_000_000))
        await asyncio.sleep(0.05)
        await writer.close()
        with pytest.raises(TransportClosed, match="this writer is closed"):
            await sending
        await reader.close()

    run(main())


def test_async_reader_gone_gives_transport_closed(url: str) -> None:
    async def main() -> None:
        reader = await async_listen(url)
        async with await async_connect(url) as writer:
            await writer.send(1)
            assert await reader.receive() == 1
            await reader.close()
            with pytest.raises(TransportClosed, match="the reader closed the FIFO"):
                for _ in range(100_000):
                    await writer.send("y" * 100)
            with pytest.raises(TransportError, match="the writer end only sends"):
                await writer.receive()

    run(main())


def test_async_connect_times_out(url: str) -> None:
    async def main() -> None:
        with pytest.raises(ConnectError, match="no FIFO at"):
            await async_connect(url, timeout=0.2)

    run(main())


@pytest.fixture(autouse=True)
def _no_thread_left_behind() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    for thread in set(threading.enumerate()) - before:
        thread.join(10 * UNIT)
