"""Python spawning node children that use bothways' JS stdio(): the other half of test_stdio.py."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from bothways import ChildExited, DecodeError, TransportClosed
from bothways.transports import spawn

from ..conftest import UNIT
from .test_stdio import (
    assert_child_dies_with_parent,
    no_leftovers,
    node_argv,
    py_argv,
    rss_mb,
    written_bytes,
)

__all__ = ["no_leftovers"]  # the autouse fixture: no process left after each test


def test_node_crash_raises_child_exited_with_the_stack() -> None:
    with spawn(node_argv("js_crash.mjs"), stderr="keep") as child:
        assert [child.receive(), child.receive()] == [{"step": 1}, {"step": 2}]
        with pytest.raises(ChildExited) as info:
            child.receive()
    err = info.value
    assert err.returncode == 1 and err.signal is None
    assert "RangeError: division by zero" in err.stderr_tail
    assert "at compute " in str(err)


@pytest.mark.parametrize("code", [0, 3])
def test_node_exit_codes(code: int) -> None:
    with spawn(node_argv("js_exit.mjs") + [str(code)]) as child:
        assert child.receive() == {"exiting": code}  # sent just before process.exit(): not lost
        if code == 0:
            with pytest.raises(TransportClosed):
                child.receive()
        else:
            with pytest.raises(ChildExited, match=f"exited with code {code}"):
                child.receive()


def test_node_stray_output_is_reported_in_order() -> None:
    errors: list[DecodeError] = []
    with spawn(node_argv("js_stray.mjs"), on_error=errors.append) as child:
        assert list(child) == [1, 2, 3]
    assert [e.line for e in errors] == [2, 4]


def test_a_million_small_messages_from_node_in_order() -> None:
    count = 1_000_000
    with spawn(node_argv("js_producer.mjs") + [str(count)]) as child:
        expected = 0
        for value in child:
            assert value == expected
            expected += 1
    assert expected == count


def test_close_escalates_for_a_node_child_that_ignores_sigterm() -> None:
    child = spawn(node_argv("js_stubborn.mjs"), grace=0.3 * UNIT)
    assert child.receive() == "ready"
    start = time.monotonic()
    child.close()
    assert time.monotonic() - start < 3 * UNIT
    assert child.returncode == -signal.SIGKILL


def test_node_parent_sigkilled_takes_its_python_child() -> None:
    assert_child_dies_with_parent(node_argv("js_parent.mjs") + py_argv("py_stubborn.py"))


def test_fast_node_producer_is_held_back_by_a_slow_python_consumer() -> None:
    with spawn(node_argv("js_forever.mjs"), stderr="keep", grace=0.3 * UNIT) as child:
        received = []
        slow_until = time.monotonic() + 3 * UNIT
        while time.monotonic() < slow_until:
            received.append(child.receive()["i"])
            time.sleep(0.001)
        ahead = written_bytes(child.pid) - len(received) * 70
        assert ahead < 2 * 1024 * 1024, ahead
        for _ in range(200_000):
            received.append(child.receive()["i"])
        assert received == list(range(len(received)))
        assert rss_mb(child.pid) < 200


def test_node_child_ends_when_python_closes_its_stdout() -> None:
    proc = subprocess.Popen(node_argv("js_forever.mjs"), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.read(1024)
        proc.stdout.close()  # its next write gets EPIPE: send() rejects, no crash
        assert proc.wait(10 * UNIT) == 0
        assert b"stopped: stdout closed" in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
        if proc.stderr:
            proc.stderr.close()
