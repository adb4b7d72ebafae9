"""file: channels in one process: the sans-I/O Tail, then real files, rotation and resuming.

js/test/file.test.js mirrors these; tests/cross/test_fifo_file_node.py holds the restart tests
(readers SIGKILLed and restarted while a writer rotates) and Node on the other end.
"""

from __future__ import annotations

import asyncio
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from bothways import DecodeError, TransportClosed, TransportError, decode, encode
from bothways.channels import async_connect, async_listen, connect, listen
from bothways.transports import file as file_module
from bothways.transports.base import raise_error
from bothways.transports.file import (
    HEAD,
    LOCATE,
    READ,
    TRUNCATED,
    WAIT,
    FileReader,
    FileWriter,
    Tail,
    fingerprint,
)

from ..conftest import UNIT


class Errors(list[DecodeError]):
    """An on_error policy that keeps what it is given (truthy even when empty)."""

    def __call__(self, error: DecodeError) -> None:
        self.append(error)

    def __bool__(self) -> bool:
        return True


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "log"


@pytest.fixture
def url(path: Path) -> str:
    return f"file:{path}"


WINDOW = 0.05  # save_every in the resume tests: short, so that a few saves happen


def lines(*values: Any) -> bytes:
    return b"".join(encode(v) for v in values)


def drain(reader: FileReader) -> list[Any]:
    """Every message there is now (the reader must have follow=False)."""
    return list(reader)


# ----------------------------------------------------------------------------------------------
# The core, without I/O


def test_fingerprint_is_fnv1a_32() -> None:
    assert fingerprint(b"") == "811c9dc5"
    assert fingerprint(b"a") == "e40c292c"
    assert fingerprint(b"foobar") == "bf9cf968"


def test_tail_delivers_complete_lines_with_their_positions() -> None:
    tail = Tail("/log")
    assert tail.start([("7", b"")]) == (0, 0)
    tail.open("7", 0, b"")
    assert tail.position == {"inode": "7", "head": fingerprint(b""), "offset": 0}
    assert tail.step("7", 30) == READ
    tail.feed(b'{"a":1}\n\n{"a":2}\n{"a":')  # a blank line, then a partial line
    assert tail.offset == 22
    assert tail.pop() == {"a": 1}
    assert tail.position == {"inode": "7", "head": fingerprint(b'{"a":1}\n'), "offset": 8}
    assert tail.pop() == {"a": 2}
    assert tail.position["offset"] == 17
    assert not tail.ready()  # the partial line waits for its newline
    tail.feed(b"3}\n")
    assert tail.pop_all() == [{"a": 3}]
    assert tail.position == {
        "inode": "7",
        "head": fingerprint(b'{"a":1}\n\n{"a":2}\n{"a":3}\n'),
        "offset": 25,
    }


def test_tail_head_covers_the_first_64_bytes_only() -> None:
    tail = Tail("/log")
    tail.open("9", 0, b"")
    data = lines(*({"n": i, "pad": "p" * 20} for i in range(10)))
    tail.feed(data)
    tail.pop_all()
    assert tail.position == {"inode": "9", "head": fingerprint(data[:HEAD]), "offset": len(data)}


def test_tail_steps() -> None:
    tail = Tail("/log")
    tail.open("7", 10, b"0123456789")
    assert tail.step("7", 10) == WAIT
    assert tail.step("7", 11) == READ
    assert tail.step("8", 11) == READ  # rotated, but the old file is read to its end first
    assert tail.step("8", 10) == LOCATE
    assert tail.step(None, 10) == LOCATE
    assert tail.step("7", 4) == TRUNCATED


def test_tail_truncation_starts_the_file_again() -> None:
    errors = Errors()
    tail = Tail("/log", on_error=errors)
    tail.open("7", 0, b"")
    tail.feed(b"1\n2\n{")
    assert tail.pop_all() == [1, 2]
    tail.truncated()
    assert tail.offset == 0
    tail.feed(b"3\n")
    assert tail.pop() == 3
    assert tail.position == {"inode": "7", "head": fingerprint(b"3\n"), "offset": 2}
    assert [(e.code, e.delivered) for e in errors] == [("TRUNCATED_LINE", False)]  # type: ignore[attr-defined]


def test_tail_locates_the_next_file() -> None:
    tail = Tail("/log")
    tail.open("5", 0, b"")
    assert tail.locate(["6", "5"], deleted=False) == 0  # log -> log.1: the new log comes next
    assert tail.locate(["9", "8", "7", "5"], deleted=False) == 2  # behind: log.2 comes next
    assert tail.locate([None, "5"], deleted=False) is None  # the new log is not there yet
    assert tail.locate(["9", "8", "7"], deleted=True) == 2  # rotated out: the oldest left
    assert tail.locate([None], deleted=True) is None
    # Not found, still linked: a scan racing a rotation, or renamed out of the scheme (dateext).
    assert tail.locate(["9", "8"], deleted=False) is None
    assert tail.locate(["9", "8"], deleted=False) is None
    assert tail.locate(["9", "8"], deleted=False) == 0


def test_tail_start_finds_a_position_among_the_rotated_files() -> None:
    head = b'{"seq":0}\n{"seq":1}\n'
    position = {"inode": "5", "head": fingerprint(head[:10]), "offset": 10}
    tail = Tail("/log", position=position)
    assert tail.position == position
    assert tail.start([("8", b"x"), ("7", b"y"), ("5", head)]) == (2, 10)
    tail.open("5", 10, head[:10])
    tail.feed(head[10:])
    assert tail.pop() == {"seq": 1}


def test_tail_start_refuses_a_reused_inode_and_falls_back_to_the_oldest_file() -> None:
    position = {"inode": "5", "head": fingerprint(b'{"old":1}\n'), "offset": 10}
    tail = Tail("/log", position=position)
    candidates: list[tuple[str, bytes] | None] = [("5", b'{"new":1}\n'), ("4", b"..."), ("3", b"...")]
    assert tail.start(candidates) is None  # maybe a rotation moving files: look again
    assert tail.start(candidates) is None
    assert tail.start(candidates) == (2, 0)
    assert tail.start_misses == 3


def test_tail_start_without_a_file_waits() -> None:
    tail = Tail("/log")
    assert tail.start([None]) is None
    assert tail.position is None
    assert tail.start([("1", b"")]) == (0, 0)


def test_tail_reports_a_partial_line_left_by_a_rotation() -> None:
    errors = Errors()
    tail = Tail("/log", on_error=errors)
    tail.open("5", 0, b"")
    tail.feed(b"1\n{cut")
    tail.open("6", 0, b"")
    tail.feed(b"2\n")
    assert tail.pop() == 1
    assert tail.position == {"inode": "5", "head": fingerprint(b"1\n"), "offset": 2}
    assert tail.pop_all() == [2]
    assert tail.position == {"inode": "6", "head": fingerprint(b"2\n"), "offset": 2}
    assert [(e.code, e.line) for e in errors] == [("TRUNCATED_LINE", 2)]
    tail.feed(b"{partial")
    tail.finish()
    assert errors[-1].code == "TRUNCATED_LINE" and "ends in the middle of a line" in str(errors[-1])


def test_tail_raises_policy_errors_in_their_turn() -> None:
    tail = Tail("/log", on_error=raise_error)
    tail.open("5", 0, b"")
    tail.feed(b"1\n{bad\n2\n")
    assert tail.pop() == 1
    with pytest.raises(DecodeError, match="line 2"):
        tail.pop_all()
    assert tail.pop_all() == [2]


def test_tail_reports_over_long_lines_without_keeping_them() -> None:
    errors = Errors()
    tail = Tail("/log", max_line=50, on_error=errors)
    tail.open("5", 0, b"")
    tail.feed(b'1\n"' + b"x" * 100)  # reported as soon as it passes the limit
    assert [(e.code, e.line) for e in errors] == [("FRAME_TOO_LARGE", 2)]
    tail.feed(b"x" * 100 + b'"\n2\n')
    assert tail.pop_all() == [1, 2]
    assert tail.position is not None and tail.position["offset"] == 207
    tail.feed(b'"' + b"y" * 100)
    tail.finish()  # the over-long partial line was reported already
    assert len(errors) == 2


def test_a_bad_position_is_refused() -> None:
    with pytest.raises(ValueError, match="position must be a value of reader.position"):
        Tail("/log", position={"inode": 5, "head": "x", "offset": 1})
    with pytest.raises(ValueError):
        Tail("/log", position={"inode": "5", "head": "x", "offset": -1})


# ----------------------------------------------------------------------------------------------
# Real files


def test_the_writer_creates_the_file_0600_and_appends(url: str, path: Path) -> None:
    path.write_bytes(lines("before"))
    os.chmod(path, 0o644)
    with connect(url) as writer:
        assert isinstance(writer, FileWriter)
        writer.send({"a": 1})
        writer.send_many([2, 3])
    assert path.read_bytes() == lines("before", {"a": 1}, 2, 3)
    other = path.with_name("new")
    with connect(f"file:{other}"):
        pass
    assert stat.S_IMODE(other.stat().st_mode) == 0o600


def test_ten_thousand_messages_in_order_while_written(url: str) -> None:
    values = [{"seq": i, "text": "ü" * (i % 5)} for i in range(10_000)]

    def write() -> None:
        with connect(url) as writer:
            for i in range(0, 10_000, 100):
                writer.send_many(values[i : i + 50])
                for value in values[i + 50 : i + 100]:
                    writer.send(value)

    thread = threading.Thread(target=write)
    thread.start()
    got = []
    offsets = []
    with listen(url, poll=0.01) as reader:
        for message in reader:
            got.append(message)
            offsets.append(reader.position["offset"])  # type: ignore[index]
            if len(got) == 10_000:
                break
    thread.join()
    assert got == values
    assert offsets == sorted(offsets) and len(set(offsets)) == 10_000


def test_a_ten_megabyte_message(url: str) -> None:
    big = {"blob": "b" * (10 * 1024 * 1024)}
    with connect(url) as writer:
        writer.send_many([1, big, 2])
    with listen(url, follow=False) as reader:
        assert drain(reader) == [1, big, 2]


def test_a_partial_line_waits_for_its_newline(url: str, path: Path) -> None:
    path.write_bytes(b'{"a": 1}\n{"a": ')
    got: list[Any] = []
    with listen(url, poll=0.01) as reader:
        thread = threading.Thread(target=lambda: [got.append(reader.receive()) for _ in range(2)])
        thread.start()
        time.sleep(0.2)
        assert got == [{"a": 1}]  # not the partial line
        with open(path, "ab") as file:
            file.write(b"2}\n")
        thread.join(5 * UNIT)
    assert got == [{"a": 1}, {"a": 2}]


def test_follow_false_ends_at_the_end_and_reports_a_partial_line(url: str, path: Path) -> None:
    path.write_bytes(b"1\n2\n[3")
    errors = Errors()
    with listen(url, follow=False, on_error=errors) as reader:
        assert drain(reader) == [1, 2]
        with pytest.raises(TransportClosed, match="end of file"):
            reader.receive()
        assert reader.position["offset"] == 4  # type: ignore[index]
    assert [(e.code, e.line, e.delivered) for e in errors] == [("TRUNCATED_LINE", 3, False)]  # type: ignore[attr-defined]


def test_follow_false_on_a_missing_file_ends(url: str) -> None:
    with listen(url, follow=False, poll=0.01) as reader:
        assert drain(reader) == []


def test_the_reader_waits_for_the_file_to_appear(url: str, path: Path) -> None:
    with listen(url, poll=0.01) as reader:
        threading.Timer(0.1, lambda: path.write_bytes(lines("late"))).start()
        assert reader.receive() == "late"


def test_bad_lines_are_reported_and_the_neighbours_kept(url: str, path: Path) -> None:
    path.write_bytes(b'{"a": 1}\n{oops\n"' + b"z" * 500 + b'"\n{"a": 2}\n')
    errors = Errors()
    with listen(url, follow=False, max_line=100, on_error=errors) as reader:
        assert drain(reader) == [{"a": 1}, {"a": 2}]
    assert [(e.code, e.line) for e in errors] == [("DECODE_ERROR", 2), ("FRAME_TOO_LARGE", 3)]


def test_rotation_by_the_writer_keeps_the_newest_files(url: str, path: Path) -> None:
    with connect(url, max_bytes=100, keep=3) as writer:
        for i in range(50):
            writer.send({"seq": i})  # 11-12 bytes a line: 8 or 9 lines a file
    names = sorted(p.name for p in path.parent.iterdir())
    assert names == ["log", "log.1", "log.2", "log.3"]
    assert all(p.stat().st_size <= 100 for p in path.parent.iterdir())
    kept = b"".join((path.parent / n).read_bytes() for n in ["log.3", "log.2", "log.1", "log"])
    seqs = [m["seq"] for m in map(__import__("json").loads, kept.splitlines())]
    assert seqs == list(range(seqs[0], 50))


def test_the_reader_follows_rotations(url: str) -> None:
    following = threading.Event()  # the reader has the first message: it is on the file

    def write() -> None:
        with connect(url, max_bytes=2000, keep=100) as writer:
            for i in range(3000):
                writer.send({"seq": i})
                if i == 0:  # (a reader that starts after a rotation begins at the newest file)
                    assert following.wait(10)
                if i % 200 == 0:
                    time.sleep(0.01)

    thread = threading.Thread(target=write)
    thread.start()
    got = []
    with listen(url, poll=0.01) as reader:
        for message in reader:
            got.append(message["seq"])
            following.set()
            if message["seq"] == 2999:
                break
    thread.join()
    assert got == list(range(3000))


def test_close_from_another_thread_amid_rotations_ends_the_reader_cleanly(url: str) -> None:
    """The reader switches files all the time (a tiny max_bytes); close() comes from another
    thread at random moments: the reading thread ends with TransportClosed, never an OSError
    about a descriptor closed under it or (worse) reused."""
    for attempt in range(20):
        outcome = close_amid_rotations(url, after=0.005 + 0.003 * (attempt % 7))
        assert outcome == [None] or isinstance(outcome[0], TransportClosed), (attempt, outcome)


def close_amid_rotations(url: str, after: float) -> list[BaseException | None]:
    """Reads ``url`` in a thread while a writer rotates it, closes the reader from here after
    ``after`` seconds; returns what ended the reading thread (None: the iteration ended)."""
    stop = threading.Event()

    def write() -> None:
        with connect(url, max_bytes=300, keep=3) as writer:
            i = 0
            while not stop.is_set():
                writer.send({"seq": i})
                i += 1

    outcome: list[BaseException | None] = []
    reader = listen(url, poll=0.001)

    def read() -> None:
        try:
            for _ in reader:
                pass
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - what ended it is the point
            outcome.append(exc)

    threads = [threading.Thread(target=write), threading.Thread(target=read)]
    for thread in threads:
        thread.start()
    time.sleep(after)
    reader.close()
    threads[1].join(10 * UNIT)
    stop.set()
    threads[0].join(10 * UNIT)
    assert not any(thread.is_alive() for thread in threads)
    return outcome


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _append(path: Path, *values: Any) -> None:
    with open(path, "ab") as file:
        file.write(lines(*values))


def _switching(path: Path) -> None:
    """``path`` holds message 1 and is rotated to ``path.1``; the new ``path`` holds message 2."""
    os.rename(path, f"{path}.1")
    path.write_bytes(lines(2))


def test_close_from_another_thread_inside_a_rotation_switch(
    url: str, path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deterministic: the reading thread is held inside the switch (the next file located, not
    yet opened) while another thread closes the reader; once let go, it opens nothing, reads
    nothing, hands out nothing more, ends with TransportClosed, and no descriptor is left."""
    path.write_bytes(lines(1))
    inside, go = threading.Event(), threading.Event()
    locate = Tail.locate

    def held(self: Tail, inodes: list[str | None], deleted: bool) -> int | None:
        index = locate(self, inodes, deleted)
        if index is not None and not inside.is_set():
            inside.set()
            assert go.wait(10 * UNIT)
        return index

    monkeypatch.setattr(Tail, "locate", held)
    state = tmp_path / "state"
    before = _open_fds()
    reader = listen(url, poll=0.005, state=str(state))
    got: list[Any] = []
    ended: list[BaseException] = []

    def read() -> None:
        try:
            for message in reader:
                got.append(message)
        except BaseException as exc:  # noqa: BLE001 - what ends it is the point
            ended.append(exc)
        else:
            ended.append(TransportClosed("the iteration ended"))

    reading = threading.Thread(target=read)
    reading.start()
    deadline = time.monotonic() + 10 * UNIT
    while not got and time.monotonic() < deadline:
        time.sleep(0.005)
    assert got == [1]
    _switching(path)
    assert inside.wait(10 * UNIT)
    closing = threading.Thread(target=reader.close)
    closing.start()
    while not reader._core.follower.closed and time.monotonic() < deadline:  # close() has begun
        time.sleep(0.001)
    go.set()
    closing.join(10 * UNIT)
    reading.join(10 * UNIT)
    assert not closing.is_alive() and not reading.is_alive()
    assert got == [1]  # message 2 was neither read nor handed out after close()
    assert len(ended) == 1 and isinstance(ended[0], TransportClosed), ended
    assert _open_fds() <= before  # the old file closed, the new one never opened
    assert decode(state.read_bytes())["offset"] == len(lines(1))  # exactly what was handed out
    with pytest.raises(TransportClosed):
        reader.receive()


def test_a_failure_inside_the_switch_leaks_no_descriptor(
    url: str, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new file is open when the check after it fails: it is closed again, not leaked."""
    path.write_bytes(lines(1))
    before = _open_fds()
    opened = Tail.open

    def failing(self: Tail, ino: str, offset: int, head: bytes) -> None:
        if self.opened:  # the switch to the next file, not the first open
            raise OSError(5, "Input/output error")
        opened(self, ino, offset, head)

    with listen(url, poll=0.005) as reader:
        assert reader.receive() == 1
        monkeypatch.setattr(Tail, "open", failing)
        _switching(path)
        with pytest.raises(TransportError, match="Input/output error"):
            reader.receive()
    assert _open_fds() <= before


def test_a_blocking_reader_closed_amid_a_long_pause_ends_at_once(url: str, path: Path) -> None:
    path.write_bytes(lines(1))
    reader = listen(url, poll=60.0)
    assert reader.receive() == 1
    ended: list[BaseException] = []
    waiting = threading.Thread(
        target=lambda: ended.append(pytest.raises(TransportClosed, reader.receive).value)
    )
    waiting.start()
    time.sleep(0.05)  # (it pauses for 60 s between polls)
    started = time.monotonic()
    reader.close()
    waiting.join(10 * UNIT)
    assert not waiting.is_alive() and time.monotonic() - started < 5 * UNIT
    assert isinstance(ended[0], TransportClosed)


def test_async_close_requested_inside_a_rotation_switch(
    url: str, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """asyncio: the switch does not yield, so a close() asked for inside it (by another task)
    runs once the reader gives the loop a turn: the iteration then ends cleanly, nothing more
    is read, and no descriptor is left."""
    path.write_bytes(lines(1))
    locate = Tail.locate
    requested: list[asyncio.Task[None]] = []

    async def main() -> list[Any]:
        reader = await async_listen(url, poll=0.005)

        def held(self: Tail, inodes: list[str | None], deleted: bool) -> int | None:
            index = locate(self, inodes, deleted)
            if index is not None and not requested:
                requested.append(asyncio.ensure_future(reader.close()))
            return index

        monkeypatch.setattr(Tail, "locate", held)
        got: list[Any] = []
        async for message in reader:
            got.append(message)
            if message == 1:
                _switching(path)
            elif message == 2:  # read in the step of the switch, before close() could run
                await requested[0]
                _append(path, 3)  # after close(): never read
        await requested[0]
        with pytest.raises(TransportClosed):
            await reader.receive()
        return got

    before = _open_fds()
    assert run(main()) in ([1], [1, 2])
    assert requested and _open_fds() <= before


def test_rotation_by_rename_finishes_the_old_file_first(url: str, path: Path) -> None:
    path.write_bytes(lines(1, 2))
    with listen(url, poll=0.01) as reader:
        assert reader.receive() == 1
        with open(path, "ab") as file:
            file.write(lines(3))  # written before the rotation: must not be lost
        os.rename(path, f"{path}.1")
        path.write_bytes(lines(4))
        assert [reader.receive() for _ in range(3)] == [2, 3, 4]


def test_a_file_renamed_out_of_the_scheme_gives_way_to_the_path(url: str, path: Path) -> None:
    path.write_bytes(lines(1))
    with listen(url, poll=0.01) as reader:
        assert reader.receive() == 1
        os.rename(path, f"{path}-20240101")  # logrotate's dateext
        path.write_bytes(lines(2))
        assert reader.receive() == 2


def test_copytruncate_starts_again_from_the_top(url: str, path: Path) -> None:
    path.write_bytes(lines(*range(100)))
    with listen(url, poll=0.01) as reader:
        assert [reader.receive() for _ in range(100)] == list(range(100))
        os.truncate(path, 0)
        with open(path, "ab") as file:
            file.write(lines("after"))
        assert reader.receive() == "after"


def test_a_deleted_file_gives_way_to_the_new_one(url: str, path: Path) -> None:
    path.write_bytes(lines(1))
    with listen(url, poll=0.01) as reader:
        assert reader.receive() == 1
        path.unlink()
        path.write_bytes(lines(2))
        assert reader.receive() == 2


def test_state_resumes_after_the_last_message_taken(url: str, path: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    path.write_bytes(lines(*range(10)))
    with listen(url, state=state, follow=False) as reader:
        assert [reader.receive() for _ in range(3)] == [0, 1, 2]
    assert not (tmp_path / "state.tmp").exists()
    crashing = listen(url, state=state, follow=False, save_every=0)  # 0: at every request
    for message in crashing:
        if message == 6:
            break
    # A crash now (no close): the position saved is that of 5, taken when 6 was asked for.
    crashing._core.follower.close()  # type: ignore[attr-defined]
    with listen(f"{url}?state={state}", follow=False) as reader:
        assert drain(reader) == [6, 7, 8, 9]  # at most the last message comes again


def saved(state: Path) -> Any:
    """The position in a state file, or None when there is none yet."""
    return decode(state.read_bytes()) if state.exists() else None


def test_close_saves_the_exact_position(url: str, path: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    path.write_bytes(lines(*range(10)))
    with listen(url, state=state, follow=False, save_every=3600) as reader:
        assert [reader.receive() for _ in range(3)] == [0, 1, 2]
        assert saved(state) is None  # not due yet, and never caught up
        at_close = reader.position
    assert saved(state) == at_close  # the last message handed out is taken as done on close
    with listen(url, state=state, follow=False, save_every=3600) as reader:
        assert reader.receive_many() == list(range(3, 10))
    with listen(url, state=state, follow=False) as reader:
        assert drain(reader) == []


def test_state_saves_are_few(url: str, path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saves: list[Any] = []
    save = file_module._save_state

    def spy(state: str, position: Any, url: str) -> None:
        saves.append(position)
        save(state, position, url)

    monkeypatch.setattr(file_module, "_save_state", spy)
    path.write_bytes(lines(*range(10_000)))
    state = tmp_path / "state"
    started = time.monotonic()
    with listen(url, state=state, follow=False) as reader:  # save_every: 0.2 s
        assert sum(1 for _ in reader) == 10_000
    elapsed = time.monotonic() - started
    assert len(saves) <= elapsed / 0.2 + 2  # the interval's, the end's; close has nothing new
    assert saves[-1] == saved(state) == reader.position
    saves.clear()
    state.unlink()
    with listen(url, state=state, follow=False, save_every=0) as reader:  # the spy sees them all
        assert [reader.receive() for _ in range(1_000)] == list(range(1_000))
    assert len(saves) == 1_000  # 999 when asked for more, then the last one on close


@pytest.mark.parametrize("how", ["receive", "iteration"])
def test_a_reader_abandoned_mid_file_resumes_within_the_window(
    url: str, path: Path, tmp_path: Path, how: str
) -> None:
    state = tmp_path / "state"
    path.write_bytes(lines(*range(400)))
    reader = listen(url, state=state, follow=False, save_every=WINDOW)
    handed: dict[int, float] = {}
    get = reader.receive if how == "receive" else iter(reader).__next__
    while True:
        asked = time.monotonic()
        message = get()
        handed[message] = time.monotonic()
        if message == 299:
            break
        time.sleep(0.002)  # work: the stream takes several windows
    reader._core.follower.close()  # type: ignore[attr-defined]  # a crash: no close(), no save
    with listen(url, state=state, follow=False) as again:
        rest = drain(again)
    check_window(rest, handed, asked, last=299, total=400)


def check_window(rest: list[int], handed: dict[int, float], asked: float, *, last: int, total: int) -> None:
    """Nothing lost, and what comes again was handed out in the WINDOW before the last request
    (``asked``), or is the message in hand (``last``)."""
    first = rest[0]
    assert rest == list(range(first, total))  # in order, nothing lost
    assert 0 < first <= last  # something was saved, and never the message in hand
    assert all(handed[i] >= asked - WINDOW for i in range(first, last))


def test_state_file_must_hold_a_position(url: str, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_text("[1, 2]")
    with pytest.raises(TransportError, match="holds no position"):
        listen(url, state=state)


def test_position_resumes_exactly_after_a_message_across_rotations(url: str, path: Path) -> None:
    with connect(url, max_bytes=60, keep=50) as writer:
        for i in range(10):
            writer.send({"seq": i})
        with listen(url, follow=False) as reader:
            messages = drain(reader)
            position = reader.position
        for i in range(10, 40):  # several rotations: the position's file moves down the names
            writer.send({"seq": i})
    assert messages[-1]["seq"] < 10
    with listen(url, position=position, follow=False) as reader:
        assert [m["seq"] for m in drain(reader)] == list(range(messages[-1]["seq"] + 1, 40))


def test_position_of_a_file_rotated_out_gives_the_oldest_file(url: str, path: Path) -> None:
    with connect(url, max_bytes=30, keep=2) as writer:
        writer.send({"seq": 0})
        with listen(url, follow=False) as reader:
            drain(reader)
            position = reader.position
        for i in range(1, 20):
            writer.send({"seq": i})
    with listen(url, position=position, follow=False, poll=0.01) as reader:
        got = [m["seq"] for m in drain(reader)]
    assert got == list(range(got[0], 20)) and got[0] > 1


def test_one_direction_only(url: str) -> None:
    with connect(url) as writer, listen(url) as reader:
        with pytest.raises(TransportError, match=f"^{url}: the reader end only receives$"):
            reader.send(1)
        with pytest.raises(TransportError, match=f"^{url}: the writer end only sends$"):
            writer.receive()
        with pytest.raises(TransportError, match="no connections to accept"):
            reader.accept()


def test_close_twice_and_use_after_close(url: str) -> None:
    writer = connect(url)
    writer.close()
    writer.close()
    with pytest.raises(TransportClosed):
        writer.send(1)
    reader = listen(url)
    reader.close()
    reader.close()
    with pytest.raises(TransportClosed):
        reader.receive()


def test_options(url: str) -> None:
    with pytest.raises(TypeError):
        listen(url, max_bytes=10)
    with pytest.raises(TypeError):
        connect(url, follow=False)
    with pytest.raises(ValueError, match="poll must be > 0"):
        listen(url, poll=0)
    with pytest.raises(ValueError, match="max_bytes must be >= 1"):
        connect(url, max_bytes=0)
    with connect(f"{url}?state=/x&poll=0.5"):  # the reader's URL options are fine for a writer
        pass


def test_unwritable_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TransportError, match="cannot open .* for appending"):
        connect(f"file:{tmp_path}/missing-dir/log")


# ----------------------------------------------------------------------------------------------
# asyncio


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20 * UNIT))


def test_async_round_trip_with_rotation_and_positions(url: str) -> None:
    async def main() -> tuple[list[Any], Any]:
        async with await async_connect(url, max_bytes=500, keep=100) as writer:
            got: list[Any] = []
            async with await async_listen(url, poll=0.01) as reader:
                await writer.send({"seq": 0})
                got.append((await reader.receive())["seq"])  # the reader starts at the top of log
                await writer.send_many({"seq": j} for j in range(1, 10))
                for i in range(10, 1000, 10):
                    await writer.send_many({"seq": j} for j in range(i, i + 10))
                async for message in reader:
                    got.append(message["seq"])
                    if message["seq"] == 499:
                        position = reader.position
                    if message["seq"] == 999:
                        break
        async with await async_listen(url, position=position, follow=False) as reader:
            rest = [m["seq"] async for m in reader]
        return got, rest

    got, rest = run(main())
    assert got == list(range(1000))
    assert rest == list(range(500, 1000))


def test_async_close_wakes_a_waiting_receive(url: str) -> None:
    async def main() -> None:
        reader = await async_listen(url, poll=0.01)
        waiting = asyncio.ensure_future(reader.receive())
        await asyncio.sleep(0.05)
        await reader.close()
        with pytest.raises(TransportClosed):
            await waiting
        with pytest.raises(TransportError, match="only receives"):
            await reader.send(1)

    run(main())


def test_async_close_saves_the_exact_position(url: str, path: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    path.write_bytes(lines(*range(10)))

    async def main() -> None:
        async with await async_listen(url, state=state, follow=False, save_every=3600) as reader:
            assert [await reader.receive() for _ in range(3)] == [0, 1, 2]
            assert saved(state) is None
            at_close = reader.position
        assert saved(state) == at_close
        async with await async_listen(url, state=state, follow=False) as reader:
            assert [m async for m in reader] == list(range(3, 10))

    run(main())


@pytest.mark.parametrize("how", ["receive", "iteration"])
def test_async_reader_abandoned_mid_file_resumes_within_the_window(
    url: str, path: Path, tmp_path: Path, how: str
) -> None:
    state = tmp_path / "state"
    path.write_bytes(lines(*range(400)))

    async def main() -> tuple[dict[int, float], float]:
        reader = await async_listen(url, state=state, follow=False, save_every=WINDOW)
        handed: dict[int, float] = {}
        get = reader.receive if how == "receive" else reader.__aiter__().__anext__
        while True:
            asked = time.monotonic()
            message = await get()
            handed[message] = time.monotonic()
            if message == 299:
                break
            await asyncio.sleep(0.002)
        reader._core.follower.close()  # type: ignore[attr-defined]  # a crash: no close(), no save
        return handed, asked

    handed, asked = run(main())
    with listen(url, state=state, follow=False) as again:
        rest = drain(again)
    check_window(rest, handed, asked, last=299, total=400)
