"""Child processes across the real boundary: Python spawning node and python children."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from bothways import ChildExited, DecodeError, TransportClosed, decode
from bothways.transports import Child, async_spawn, spawn, supervise
from bothways.transports.stdio import TAIL_LINES

from ..conftest import FIXTURES, ROOT, UNIT, require_tool

PY = sys.executable


def node_argv(script: str) -> list[str]:
    return [require_tool("node"), str(FIXTURES / script)]


def py_argv(script: str, *args: str) -> list[str]:
    return [PY, str(FIXTURES / script), *args]


def written_bytes(pid: int) -> int:
    """What a process has written so far (wchar in /proc/<pid>/io)."""
    fields = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return int(fields["wchar"])


def rss_mb(pid: int, field: str = "VmHWM") -> float:
    """Peak (VmHWM) or current (VmRSS) resident set size of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def our_children() -> list[int]:
    me = str(os.getpid())
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            if f"\nPPid:\t{me}\n" in status:
                found.append(int(entry.name))
    return found


@pytest.fixture(autouse=True)
def no_leftovers() -> Any:
    before = set(our_children())
    yield
    deadline = time.monotonic() + 5 * UNIT
    while (left := set(our_children()) - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"processes left behind (zombies or running): {left}"


@pytest.mark.parametrize("argv", [node_argv("js_echo.mjs"), py_argv("py_echo.py")], ids=["node", "python"])
def test_echo_in_order(argv: list[str]) -> None:
    values = [{"i": i, "text": "é€𝄞\u2028" * (i % 5)} for i in range(5000)]
    with spawn(argv) as child:
        # Write from a thread while we read: with both pipes full, a single thread would deadlock.
        writer = threading.Thread(target=send_all, args=(child, values))
        writer.start()
        assert list(child) == values
        writer.join()
    assert child.returncode == 0


def send_all(child: Child, values: list[Any]) -> None:
    for value in values:
        child.send(value)
    child.close_stdin()


@pytest.mark.parametrize("script", ["js_echo.mjs", "py_echo.py"], ids=["node", "python"])
def test_one_50_mb_line(script: str) -> None:
    big = {"blob": "x€" * (25 * 1024 * 1024 // 2)}  # 50 MB of UTF-8 in one line
    limit = str(64 * 1024 * 1024)
    argv = node_argv(script) + [limit] if script.endswith(".mjs") else py_argv(script, limit)
    with spawn(argv, max_line=64 * 1024 * 1024) as child:
        writer = threading.Thread(target=send_all, args=(child, [big]))
        writer.start()  # the child echoes while we still write: read at the same time
        assert child.receive() == big
        writer.join()
        with pytest.raises(StopIteration):
            next(iter(child))


def test_a_million_small_messages_in_order() -> None:
    count = 1_000_000
    with spawn(py_argv("py_producer.py", str(count))) as child:
        expected = 0
        for value in child:
            assert value == expected
            expected += 1
    assert expected == count


def test_many_large_non_ascii_lines() -> None:
    count, size = 100_000, 40 * 1024  # 100,000 lines of 80 KB of two-byte UTF-8 (8 GB)
    with spawn(py_argv("py_producer.py", str(count), str(size))) as child:
        seen = 0
        for value in child:
            assert value["i"] == seen and len(value["pad"]) == size
            seen += 1
    assert seen == count


def test_stray_output_is_reported_not_fatal() -> None:
    errors: list[DecodeError] = []
    with spawn(py_argv("py_stray.py"), on_error=errors.append) as child:
        assert list(child) == [1, 2, 3]
    assert [(e.line, e.code) for e in errors] == [(2, "DECODE_ERROR"), (4, "DECODE_ERROR")]
    assert "debug: this is not JSON" in errors[0].excerpt


def test_crash_raises_child_exited_with_traceback() -> None:
    lines: list[str] = []
    with spawn(py_argv("py_crash.py"), stderr=lines.append) as child:
        got = [child.receive(), child.receive()]
        with pytest.raises(ChildExited) as info:
            child.receive()
    assert got == [{"step": 1}, {"step": 2}]
    err = info.value
    assert err.returncode == 1 and err.signal is None
    assert "ZeroDivisionError: division by zero" in err.stderr_tail
    assert "in compute" in str(err)
    assert any("Traceback" in line for line in lines)


@pytest.mark.parametrize("code", [0, 3])
def test_exit_codes(code: int) -> None:
    with spawn(py_argv("py_exit.py", str(code))) as child:
        assert child.receive() == {"exiting": code}
        if code == 0:
            with pytest.raises(TransportClosed):
                child.receive()
        else:
            with pytest.raises(ChildExited, match=f"exited with code {code}") as info:
                child.receive()
            assert info.value.returncode == code


def test_killed_by_signal() -> None:
    with spawn(node_argv("js_sleeper.mjs")) as child:
        child.receive()
        os.kill(child.pid, signal.SIGKILL)
        with pytest.raises(ChildExited, match="killed by SIGKILL") as info:
            child.receive()
        assert info.value.signal == "SIGKILL"


NOISE = TAIL_LINES + 10  # stderr lines the noisy sleeper writes: more than the tail keeps


def assert_killed_with_the_stderr_tail(error: ChildExited) -> None:
    """A SIGKILLed py_noisy_sleeper.py: the signal, and the last TAIL_LINES of its stderr."""
    tail = "\n".join(f"noise {n}" for n in range(NOISE - TAIL_LINES, NOISE))
    assert (error.returncode, error.signal) == (-signal.SIGKILL, "SIGKILL")
    assert error.stderr_tail == tail
    name = f"{Path(PY).name} py_noisy_sleeper.py"
    assert str(error) == f"{name} was killed by SIGKILL\n--- stderr tail ---\n{tail}"


def test_killed_by_signal_keeps_the_stderr_tail() -> None:
    with spawn(py_argv("py_noisy_sleeper.py", str(NOISE)), stderr="keep") as child:
        assert child.receive() == "ready"  # its stderr lines were written before
        os.kill(child.pid, signal.SIGKILL)
        with pytest.raises(ChildExited) as info:
            child.receive()
    assert_killed_with_the_stderr_tail(info.value)


def test_asyncio_killed_by_signal_keeps_the_stderr_tail() -> None:
    async def main() -> ChildExited:
        async with await async_spawn(py_argv("py_noisy_sleeper.py", str(NOISE)), stderr="keep") as child:
            assert await child.receive() == "ready"
            os.kill(child.pid, signal.SIGKILL)
            with pytest.raises(ChildExited) as info:
                await child.receive()
        return info.value

    assert_killed_with_the_stderr_tail(asyncio.run(main()))


def test_close_escalates_for_a_child_that_ignores_sigterm() -> None:
    child = spawn(py_argv("py_stubborn.py"), grace=0.3 * UNIT)
    assert child.receive() == "ready"
    start = time.monotonic()
    child.close()
    assert time.monotonic() - start < 3 * UNIT
    assert child.returncode == -signal.SIGKILL
    child.close()  # twice is fine


def assert_child_dies_with_parent(argv: list[str], env: dict[str, str] | None = None) -> None:
    """Starts a parent that spawns a child and prints both pids, SIGKILLs the parent, and checks
    that the child is gone within 2 s."""
    parent = subprocess.Popen(argv, stdout=subprocess.PIPE, env=env)
    try:
        assert parent.stdout is not None
        pids = decode(parent.stdout.readline())
        assert alive(pids["child"])
        parent.kill()  # SIGKILL: no chance to clean up
        parent.wait()
        deadline = time.monotonic() + 2 * UNIT
        while alive(pids["child"]) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not alive(pids["child"]), f"the child outlived its SIGKILLed parent {argv}"
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout:
            parent.stdout.close()


@pytest.mark.parametrize("where", ["main thread", "thread that ended"])
def test_child_dies_with_its_parent(where: str) -> None:
    """Killed with the parent process, and only then: Linux sends the parent-death signal when
    the thread that started the child ends, so spawn() starts children from a thread that lives
    as long as the process."""
    assert_child_dies_with_parent(
        [PY, str(FIXTURES / "py_parent.py"), str(FIXTURES / "js_sleeper.mjs")]
        + (["--from-thread"] if where != "main thread" else []),
        env={**os.environ, "PATH": os.path.dirname(require_tool("node")) + os.pathsep + os.environ["PATH"]},
    )


def test_fast_producer_slow_consumer_is_held_back() -> None:
    our_rss_before = rss_mb(os.getpid(), "VmRSS")
    with spawn(py_argv("py_forever.py"), stderr="keep") as child:
        received = []
        slow_until = time.monotonic() + 3 * UNIT
        while time.monotonic() < slow_until:
            received.append(child.receive()["i"])
            time.sleep(0.001)
        written = written_bytes(child.pid)
        # What it wrote beyond what we read fits in the pipe plus one batch plus our read buffer.
        consumed = len(received) * 70
        assert written - consumed < 2 * 1024 * 1024, (written, consumed)
        for _ in range(200_000):  # speed up: everything arrives, in order
            received.append(child.receive()["i"])
        assert received == list(range(len(received)))
        assert rss_mb(child.pid) < 200  # the producer's peak
        assert rss_mb(os.getpid(), "VmRSS") - our_rss_before < 50  # the consumer did not hoard
        child.close()


def test_asyncio_fast_producer_slow_consumer_is_held_back() -> None:
    async def main() -> None:
        async with await async_spawn(py_argv("py_forever.py"), stderr="keep") as child:
            received = []
            slow_until = time.monotonic() + 3 * UNIT
            while time.monotonic() < slow_until:
                received.append((await child.receive())["i"])
                await asyncio.sleep(0.001)
            written = written_bytes(child.pid)
            # beyond what we took: the pipe, one batch, and what our Intake holds before it pauses
            assert written - len(received) * 70 < 2 * 1024 * 1024, (written, len(received))
            while len(received) < 200_000:  # speed up: everything arrives, in order
                received.extend(v["i"] for v in await child.receive_many())
            assert received == list(range(len(received)))

    asyncio.run(main())


def test_asyncio_echo_and_crash() -> None:
    async def main() -> None:
        async with await async_spawn(node_argv("js_echo.mjs")) as child:
            for i in range(1000):
                await child.send({"i": i})
            child.close_stdin()
            got = [v async for v in child]
        assert got == [{"i": i} for i in range(1000)]
        async with await async_spawn(py_argv("py_crash.py"), stderr="keep") as crash:
            assert await crash.receive() == {"step": 1}
            assert await crash.receive() == {"step": 2}
            with pytest.raises(ChildExited) as info:
                await crash.receive()
            assert "ZeroDivisionError" in info.value.stderr_tail

    asyncio.run(main())


def test_supervise_restarts_with_backoff_then_gives_up() -> None:
    restarts: list[tuple[int, float, int | None]] = []
    with supervise(
        py_argv("py_crash.py"),
        stderr="keep",
        max_restarts=2,
        backoff=0.05,
        on_restart=lambda err, attempt, delay: restarts.append((attempt, delay, err.returncode)),
    ) as child:
        got = []
        with pytest.raises(ChildExited, match="exited with code 1"):
            for message in child:
                got.append(message)
    assert got == [{"step": 1}, {"step": 2}] * 3
    assert restarts == [(1, 0.05, 1), (2, 0.1, 1)]


def test_supervise_ends_cleanly_after_a_recovered_crash(tmp_path: Path) -> None:
    with supervise(py_argv("py_flaky.py", str(tmp_path / "marker")), stderr="keep", backoff=0.01) as child:
        assert list(child) == [{"run": 1}, {"run": 2}]
        assert child.restarts == 1


@pytest.mark.parametrize(
    "argv",
    [node_argv("stdio_noisy_echo.mjs"), py_argv("stdio_noisy_echo.py")],
    ids=["node", "python"],
)
def test_channel_fd_keeps_the_child_output_out_of_the_messages(argv: list[str]) -> None:
    """With channel_fd=True the messages travel on a socket of their own: the child's stdout
    (console.log, print, raw writes to fd 1) is shown line by line, never mixed with them."""
    lines: list[str] = []
    values = [{"i": i, "text": "é€𝄞"} for i in range(3000)]
    with spawn(argv, channel_fd=True, stderr=lines.append) as child:
        assert child.receive() == {"inherited": None}  # stdio() took the variable out of its env
        writer = threading.Thread(target=send_all, args=(child, values))
        writer.start()  # close_stdin() at the end half-closes the socket: the echoes still come
        assert list(child) == values
        writer.join()
    assert child.returncode == 0
    assert {"raw 0", "raw 2999"} <= set(lines)
    assert "log 2999" in lines or "print 2999" in lines


def test_channel_fd_asyncio_and_crash() -> None:
    async def main() -> None:
        lines: list[str] = []
        async with await async_spawn(
            py_argv("stdio_noisy_echo.py"), channel_fd=True, stderr=lines.append
        ) as child:
            assert await child.receive() == {"inherited": None}
            await child.send_many([{"i": i} for i in range(1000)])
            child.close_stdin()
            got = [v async for v in child]
        assert got == [{"i": i} for i in range(1000)]
        assert {"print 0", "raw 999"} <= set(lines)
        async with await async_spawn(py_argv("py_crash.py"), channel_fd=True, stderr="keep") as crash:
            assert await crash.receive_many() in ([{"step": 1}, {"step": 2}], [{"step": 1}])
            with pytest.raises(ChildExited) as info:
                while True:
                    await crash.receive()
            assert "ZeroDivisionError" in info.value.stderr_tail

    asyncio.run(main())


def test_a_channel_is_not_passed_on_to_a_child_that_did_not_ask_for_one() -> None:
    env = {**os.environ, "BOTHWAYS_CHANNEL_FD": "0"}  # as if inherited from our own parent
    show = "import json, os; print(json.dumps(os.environ.get('BOTHWAYS_CHANNEL_FD')))"
    with spawn([PY, "-c", show], env=env) as child:
        assert child.receive() is None


def test_child_dies_with_its_parent_without_setpriv() -> None:
    assert_child_dies_with_parent(
        [PY, str(FIXTURES / "stdio_parent_prctl.py"), str(FIXTURES / "js_sleeper.mjs")],
        env={**os.environ, "PATH": os.path.dirname(require_tool("node")) + os.pathsep + os.environ["PATH"]},
    )


def test_the_child_leads_its_own_process_group_and_bad_programs_raise_as_in_javascript(
    tmp_path: Path,
) -> None:
    with spawn(py_argv("py_stubborn.py")) as child:
        assert child.receive() == "ready"
        assert os.getpgid(child.pid) == child.pid
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\n")
    cases = [
        (
            (["bothways-no-such-program-here"], None),
            "bothways-no-such-program-here: could not start "
            "bothways-no-such-program-here: no such file or directory (ENOENT)",
        ),
        (
            ([str(tmp_path / "nope")], None),
            f"nope: could not start {tmp_path / 'nope'}: no such file or directory (ENOENT)",
        ),
        (
            ([PY, "-c", "pass"], tmp_path / "no-such-dir"),
            f"{Path(PY).name}: could not start {PY} in "
            f"{tmp_path / 'no-such-dir'}: no such file or directory (ENOENT)",
        ),
        (([str(script)], None), f"not-executable: could not start {script}: permission denied (EACCES)"),
    ]
    node = require_tool("node")
    for (argv, cwd), message in cases:
        with pytest.raises(ChildExited) as info:
            spawn(argv, cwd=cwd)
        assert str(info.value) == message
        assert info.value.returncode is None and isinstance(info.value.__cause__, OSError)
        # the JavaScript spawn says the same, word for word
        code = (
            "import { spawn } from './js/src/transports/stdio.js';"
            f"const cwd = {json.dumps(str(cwd) if cwd else None)} ?? undefined;"
            f"const c = spawn({json.dumps(argv)}, {{ cwd }});"
            "try { await c.receive(); } catch (e) { console.log(e.constructor.name + ': ' + e.message); }"
        )
        out = subprocess.run(
            [node, "--input-type=module", "-e", code], cwd=ROOT, capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == f"ChildExited: {message}"


def test_a_channel_fd_that_is_not_a_socket_is_ignored_with_a_warning() -> None:
    code = "from bothways.transports import stdio; stdio().send({'ok': 1})"
    for value in ("99", "0", "three"):  # not open; /dev/null; not a number
        proc = subprocess.run(
            [PY, "-c", code],
            stdin=subprocess.DEVNULL,
            env={**os.environ, "BOTHWAYS_CHANNEL_FD": value},
            capture_output=True,
            timeout=30 * UNIT,
            check=True,
        )
        assert proc.stdout == b'{"ok":1}\n'  # stdin and stdout, as without the variable
        assert b"BOTHWAYS_CHANNEL_FD=" + value.encode() + b" is not a channel" in proc.stderr
