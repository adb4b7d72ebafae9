"""fifo: and file: across the real boundary: Python on one end, a node process on the other.

The Node end is tests/fixtures/fifo_file_node.mjs (its Python twin, fifo_file_python.py, plays
a killed Python writer). The restart tests SIGKILL and restart a reader (Python, then Node) 50
times at seeded random moments while a writer appends and rotates: nothing lost, nothing twice.
A reader with ``state=`` (Python, then Node) SIGKILLed mid-file resumes from its state file
with nothing lost and what comes again within the documented window.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bothways import TransportClosed, TransportError, decode
from bothways.channels import connect, listen

from ..conftest import FIXTURES, ROOT, UNIT, require_tool

NODE_TOOL = FIXTURES / "fifo_file_node.mjs"
PY_TOOL = FIXTURES / "fifo_file_python.py"


class Process:
    """A child process started by a test, always killed and reaped afterwards (by its pid)."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def finish(self, timeout: float = 20) -> list[Any]:
        """Waits for a clean exit; returns its stdout lines as JSON values."""
        out, err = self.proc.communicate(timeout=timeout * UNIT)
        assert self.proc.returncode == 0, err.decode(errors="replace")
        return [decode(line) for line in out.splitlines()]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        process.kill()


def node(processes: list[Process], command: str, url: str, **options: Any) -> Process:
    process = Process([require_tool("node"), str(NODE_TOOL), command, url, json.dumps(options)])
    processes.append(process)
    return process


def python(processes: list[Process], command: str, url: str, **options: Any) -> Process:
    process = Process([sys.executable, str(PY_TOOL), command, url, json.dumps(options)])
    processes.append(process)
    return process


def messages(lines: list[Any]) -> list[Any]:
    return [line["m"] for line in lines if "m" in line]


def errors(lines: list[Any]) -> list[tuple[str, int, Any]]:
    return [(line["e"], line["line"], line["delivered"]) for line in lines if "e" in line]


class Errors(list[Any]):
    def __call__(self, error: Any) -> None:
        self.append((error.code, error.line, getattr(error, "delivered", None)))

    def __bool__(self) -> bool:
        return True


@pytest.fixture(params=["fifo", "file"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"{request.param}:{tmp_path}/channel"


def reader_options(url: str) -> dict[str, Any]:
    """Options that make a reader end when the writer is done: the FIFO's end, the file's end."""
    return {"reopen": False} if url.startswith("fifo:") else {"follow": False}


SEQS = [{"seq": i} for i in range(10_000)]
BIG = 10 * 1024 * 1024


# ----------------------------------------------------------------------------------------------
# Python writes, Node reads


def test_python_writer_node_reader_in_order_with_a_big_message(url: str, processes: list[Process]) -> None:
    if url.startswith("file:"):
        with connect(url) as writer:
            writer.send_many(SEQS[:5000])
            for value in SEQS[5000:]:
                writer.send(value)
            writer.send({"big": "x" * BIG})
        reader = node(processes, "read", url, follow=False)
    else:
        reader = node(processes, "read", url, reopen=False)
        with connect(url, timeout=10 * UNIT) as writer:
            writer.send_many(SEQS[:5000])
            for value in SEQS[5000:]:
                writer.send(value)
            writer.send({"big": "x" * BIG})
    lines = reader.finish()
    assert messages(lines) == [*SEQS, {"big": "x" * BIG}]
    assert lines[-1] == {"end": "closed"}


def test_node_writer_python_reader_in_order_with_a_big_message(url: str, processes: list[Process]) -> None:
    if url.startswith("file:"):
        node(processes, "write", url, count=5000, batch=100).finish()
        node(processes, "write", url, start=5000, count=5000, big=BIG).finish()
        with listen(url, follow=False) as reader:
            got = list(reader)
    else:
        with listen(url, reopen=False) as reader:
            writer = node(processes, "write", url, count=10_000, big=BIG, batch=0)
            got = list(reader)
        writer.finish()
    assert got == [*SEQS, {"big": "x" * BIG}]


def test_python_reader_closing_stops_a_node_writer(tmp_path: Path, processes: list[Process]) -> None:
    url = f"fifo:{tmp_path}/channel"
    with listen(url) as reader:
        writer = node(processes, "write", url, forever=True)
        assert [reader.receive() for _ in range(10)] == [{"seq": i} for i in range(10)]
    assert writer.finish() == [{"closed": "TRANSPORT_CLOSED"}]


def test_node_reader_closing_stops_a_python_writer(tmp_path: Path, processes: list[Process]) -> None:
    url = f"fifo:{tmp_path}/channel"
    reader = node(processes, "read", url, count=10)
    with connect(url, timeout=10 * UNIT) as writer, pytest.raises(TransportClosed, match="the reader closed"):
        for i in range(10_000_000):
            writer.send({"seq": i})
    lines = reader.finish()
    assert messages(lines) == [{"seq": i} for i in range(10)] and lines[-1] == {"end": "count"}


def test_a_killed_node_writer_leaves_its_messages(url: str, processes: list[Process]) -> None:
    errors_seen = Errors()
    partial = '{"seq": 100, "cut'
    if url.startswith("file:"):
        node(processes, "write", url, count=100, raw=partial, kill=True).proc.wait(20 * UNIT)
        with listen(url, follow=False, on_error=errors_seen) as reader:
            got = list(reader)  # the partial line is not delivered...
    else:
        with listen(url, reopen=False, on_error=errors_seen) as reader:
            writer = node(processes, "write", url, count=100, raw=partial, kill=True)
            got = list(reader)
        assert writer.proc.wait(20 * UNIT) == -signal.SIGKILL
    assert got == [{"seq": i} for i in range(100)]
    assert errors_seen == [("TRUNCATED_LINE", 101, False)]  # ...it is reported at the end


def test_a_killed_python_writer_leaves_its_messages(url: str, processes: list[Process]) -> None:
    partial = '{"seq": 100, "cut'
    if url.startswith("file:"):
        python(processes, "write", url, count=100, raw=partial, kill=True).proc.wait(20 * UNIT)
        reader = node(processes, "read", url, follow=False)
    else:
        reader = node(processes, "read", url, reopen=False)
        python(processes, "write", url, count=100, raw=partial, kill=True).proc.wait(20 * UNIT)
    lines = reader.finish()
    assert messages(lines) == [{"seq": i} for i in range(100)]
    assert errors(lines) == [("TRUNCATED_LINE", 101, False)]


BAD = '{"a": 1}\n{oops\n"' + "z" * 500 + '"\n{"a": 2}\n'


def test_bad_lines_from_node_are_reported_in_python(url: str, processes: list[Process]) -> None:
    errors_seen = Errors()
    if url.startswith("file:"):
        node(processes, "write", url, raw=BAD).finish()
        with listen(url, follow=False, max_line=100, on_error=errors_seen) as reader:
            got = list(reader)
    else:
        with listen(url, reopen=False, max_line=100, on_error=errors_seen) as reader:
            writer = node(processes, "write", url, raw=BAD)
            got = list(reader)
        writer.finish()
    assert got == [{"a": 1}, {"a": 2}]
    assert errors_seen == [("DECODE_ERROR", 2, None), ("FRAME_TOO_LARGE", 3, None)]


def test_bad_lines_from_python_are_reported_in_node(url: str, processes: list[Process]) -> None:
    options = {**reader_options(url), "maxLine": 100}
    if url.startswith("file:"):
        python(processes, "write", url, raw=BAD).finish()
        reader = node(processes, "read", url, **options)
    else:
        reader = node(processes, "read", url, **options)
        python(processes, "write", url, raw=BAD).finish()
    lines = reader.finish()
    assert messages(lines) == [{"a": 1}, {"a": 2}]
    assert errors(lines) == [("DECODE_ERROR", 2, None), ("FRAME_TOO_LARGE", 3, None)]


def test_not_a_fifo_is_the_same_clear_error_in_both(tmp_path: Path, processes: list[Process]) -> None:
    path = tmp_path / "channel"
    path.write_text("a regular file\n")
    url = f"fifo:{path}"
    with pytest.raises(TransportError) as info:
        listen(url)
    process = node(processes, "read", url)
    _, err = process.proc.communicate(timeout=20 * UNIT)
    assert process.proc.returncode != 0
    assert str(info.value) == f"{url}: {path} exists and is not a FIFO (it is a regular file)"
    assert f"TransportError: {info.value}" in err.decode()


def test_fifo_reopen_across_python_writers_to_node(tmp_path: Path, processes: list[Process]) -> None:
    url = f"fifo:{tmp_path}/channel"
    reader = node(processes, "read", url, count=300)
    for n in range(3):
        with connect(url, timeout=10 * UNIT) as writer:
            writer.send_many({"seq": n * 100 + i} for i in range(100))
        time.sleep(0.05)  # usually the reader sees each writer's end and reopens in between
    assert messages(reader.finish()) == [{"seq": i} for i in range(300)]


def test_fifo_reopen_across_node_writers_to_python(tmp_path: Path, processes: list[Process]) -> None:
    url = f"fifo:{tmp_path}/channel"
    errors_seen = Errors()
    got: list[Any] = []
    with listen(url, on_error=errors_seen) as reader:
        thread = threading.Thread(target=lambda: got.extend(itertools.islice(reader, 300)))
        thread.start()
        for n in range(3):  # the first two writer processes die mid-line after 100 messages
            cut = {"raw": '{"cut', "kill": True} if n < 2 else {}
            node(processes, "write", url, start=n * 100, count=100, **cut).proc.wait(20 * UNIT)
            deadline = time.monotonic() + 10 * UNIT
            while n < 2 and len(errors_seen) < n + 1:  # its end was seen: the next one may come
                assert time.monotonic() < deadline
                time.sleep(0.01)
        thread.join(20 * UNIT)
    assert got == [{"seq": i} for i in range(300)]
    assert errors_seen == [("TRUNCATED_LINE", 101, False)] * 2


def test_a_position_from_python_resumes_a_node_reader(tmp_path: Path, processes: list[Process]) -> None:
    url = f"file:{tmp_path}/channel"
    state = tmp_path / "state"
    with connect(url, max_bytes=200, keep=50) as writer:
        writer.send_many({"seq": i} for i in range(20))
        with listen(url, state=state, follow=False) as reader:
            for message in reader:
                if message["seq"] == 9:
                    break
        writer.send_many({"seq": i} for i in range(20, 60))  # rotations
    lines = node(processes, "read", url, state=str(state), follow=False, positions=True).finish()
    first = messages(lines)[0]["seq"]
    assert [m["seq"] for m in messages(lines)] == list(range(first, 60))
    assert 5 <= first <= 10  # after the last message Python took (at most it once more)
    with listen(url, position=lines[-2]["p"], follow=False) as reader:
        assert list(reader) == []  # Node's position is Python's too


# A reader with state= that saves at most every WINDOW seconds, printing one line per message:
# the time it asked for it and the time it had it (its own clock), for the test to check.
WINDOW = 0.05
STATE_READER_PY = """
import sys, time
from bothways import encode
from bothways.channels import listen
with listen(sys.argv[1], state=sys.argv[2], save_every=float(sys.argv[3]), poll=0.01) as reader:
    while True:
        asked = time.monotonic()
        message = reader.receive()
        sys.stdout.buffer.write(encode({"m": message, "asked": asked, "handed": time.monotonic()}))
        sys.stdout.buffer.flush()
        time.sleep(0.002)
"""
STATE_READER_NODE = """
import { setTimeout as sleep } from "node:timers/promises";
import { listen } from "CHANNELS_JS";
const [url, state, every] = process.argv.slice(1);
const reader = await listen(url, { state, saveEvery: Number(every) * 1000, poll: 10 });
for (;;) {
  const asked = performance.now() / 1000;
  const m = await reader.receive();
  process.stdout.write(JSON.stringify({ m, asked, handed: performance.now() / 1000 }) + "\\n");
  await sleep(2);
}
""".replace("CHANNELS_JS", (ROOT / "js" / "src" / "channels.js").as_uri())


@pytest.mark.parametrize("language", ["python", "node"])
def test_a_reader_killed_mid_file_resumes_from_its_state_within_the_window(
    tmp_path: Path, processes: list[Process], language: str
) -> None:
    url = f"file:{tmp_path}/log"
    state = tmp_path / "state"
    with connect(url) as writer:
        writer.send_many({"seq": i} for i in range(2000))
    if language == "python":
        argv = [sys.executable, "-c", STATE_READER_PY]
    else:
        argv = [require_tool("node"), "--input-type=module", "-e", STATE_READER_NODE]
    process = Process([*argv, url, str(state), str(WINDOW)])
    processes.append(process)
    assert process.proc.stdout is not None
    records = []
    while len(records) < 300:  # some 0.6 s of reading: several windows
        line = process.proc.stdout.readline()
        assert line, process.proc.communicate()[1].decode(errors="replace")
        records.append(decode(line))
    process.proc.send_signal(signal.SIGKILL)
    out, _ = process.proc.communicate(timeout=10 * UNIT)
    records += [decode(line) for line in out.split(b"\n")[:-1]]  # the last piece: "" or cut
    with listen(url, state=state, follow=False) as reader:  # Node's state is Python's too
        rest = [m["seq"] for m in reader]
    last = records[-1]["m"]["seq"]
    handed = {r["m"]["seq"]: r["handed"] for r in records}
    first = rest[0]
    assert rest == list(range(first, 2000))  # in order, nothing lost
    # Something was saved, and nothing after the last message printed (the next one may have
    # been handed out and not printed, which makes the last one taken).
    assert 0 < first <= last + 1
    # What comes again was handed out in the WINDOW before the last request, or is in hand.
    asked = records[-1]["asked"]
    assert all(handed[i] >= asked - WINDOW for i in range(first, last))


# ----------------------------------------------------------------------------------------------
# The restart test: exactly once across 50 SIGKILLs, while the writer rotates


COUNT = 15_000


def restart_test(tmp_path: Path, reader_argv: list[str], restarts: int, delay: str, seed: int) -> None:
    url = f"file:{tmp_path}/log"
    out = tmp_path / "received"
    rng = random.Random(seed)
    argv = [*reader_argv, url, str(out), str(COUNT - 1), delay]
    writer = subprocess.Popen(
        [sys.executable, str(FIXTURES / "file_rotating_writer.py"), url, str(COUNT), "12000", "12"], cwd=ROOT
    )
    progress = []
    try:
        for _ in range(restarts):
            reader = subprocess.Popen(argv, cwd=ROOT)
            try:
                time.sleep(rng.uniform(0.1, 0.4))
            finally:
                reader.kill()
                reader.wait()
            progress.append(out.read_bytes().count(b"\n") if out.exists() else 0)
        assert writer.wait(30 * UNIT) == 0
        final = subprocess.Popen(argv, cwd=ROOT)
        try:
            assert final.wait(30 * UNIT) == 0
        finally:
            final.kill()
            final.wait()
    finally:
        writer.kill()
        writer.wait()
    records = [decode(line) for line in out.read_bytes().splitlines()]
    seqs = [record["m"]["seq"] for record in records]
    assert seqs == list(range(COUNT))  # every message once, in order: no loss, no duplicate
    assert len({r["p"]["inode"] for r in records}) >= 10  # it read across many rotated files
    assert len(set(progress)) >= restarts // 4  # many runs recorded something before the kill
    assert len(list(tmp_path.glob("log.*"))) >= 10


def test_restart_a_python_reader_50_times_exactly_once(tmp_path: Path) -> None:
    reader = [sys.executable, str(FIXTURES / "file_resume_reader.py")]
    restart_test(tmp_path, reader, restarts=50, delay="0.0005", seed=1)


def test_restart_a_node_reader_50_times_exactly_once(tmp_path: Path) -> None:
    reader = [require_tool("node"), str(FIXTURES / "file_resume_reader.mjs")]
    restart_test(tmp_path, reader, restarts=50, delay="0.0003", seed=2)


@pytest.fixture(autouse=True)
def _no_child_left_behind() -> Iterator[None]:
    yield
    me = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            if f"\nPPid:\t{me}\n" in status and "\nState:\tZ" not in status:
                name = status.split("\n", 1)[0]
                pytest.fail(f"a child process was left behind: {entry.name} {name}")
