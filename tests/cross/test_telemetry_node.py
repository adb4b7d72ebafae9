"""The Node.js telemetry programs (js/bin/sensor.mjs, js/bin/listen.mjs) with Python: a Node
sensor into Python tcp and ws listeners (every reading checked with Python's ``to_reading``, and
resent across a restart of the Python listener), and the tutorial's Python sensor spawned by the
Node listener. Real processes, 127.0.0.1, free ports."""

from __future__ import annotations

import json
import queue
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from bothways import listen
from bothways.errors import BothwaysError
from bothways.telemetry import to_reading

from ..conftest import ROOT, UNIT, require_tool

pytestmark = pytest.mark.timeout(60 * UNIT)

SENSOR = ROOT / "js" / "bin" / "sensor.mjs"
LISTEN = ROOT / "js" / "bin" / "listen.mjs"
WAIT = 20 * UNIT


class Collector:
    """Everything a Python listener receives, read in a thread until the listener closes."""

    def __init__(self, listener: Any) -> None:
        self.listener = listener
        self.values: queue.Queue[Any] = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while True:
                for value in self.listener.receive_many():
                    self.values.put(value)
        except (BothwaysError, OSError):
            pass  # closed

    def take(self, count: int, timeout: float = WAIT) -> list[Any]:
        """At least ``count`` more values (all that are there once ``count`` have come)."""
        got: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"{len(got)} of {count} values within {timeout} s"
            got.append(self._get(left, f"{len(got)} of {count} values within {timeout} s"))
        while not self.values.empty():
            got.append(self.values.get_nowait())
        return got

    def take_seqs(self, seqs: set[int], count: int, timeout: float = WAIT) -> list[Any]:
        """Values until ``seqs`` and theirs together hold ``count`` different seqs."""
        got: list[Any] = []
        seen = set(seqs)
        deadline = time.monotonic() + timeout
        while len(seen) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"{len(seen)} of {count} seqs within {timeout} s"
            value = self._get(left, f"{len(seen)} of {count} seqs within {timeout} s")
            got.append(value)
            seen.add(value["seq"])
        return got

    def _get(self, timeout: float, failure: str) -> Any:
        try:
            return self.values.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(failure)

    def close(self) -> None:
        self.listener.close()
        self.thread.join(WAIT)


@contextmanager
def node(script: Any, *args: str) -> Iterator[subprocess.Popen[str]]:
    """A Node program, killed and reaped at the end whatever happens."""
    proc = subprocess.Popen(
        [require_tool("node"), str(script), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=WAIT)


def checked(values: list[Any], sensor: str) -> set[int]:
    """The seqs of ``values``, each a reading of ``sensor`` by Python's own definition."""
    seqs: set[int] = set()
    for value in values:
        reading = to_reading(value, source="test", now=0.0, seqs={})
        assert reading == value  # a whole reading, already in the canonical form
        assert reading["sensor"] == sensor and -5 <= reading["celsius"] <= 15
        assert abs(reading["t"] - time.time()) < 120
        seqs.add(reading["seq"])
    return seqs


def assert_every(seqs: set[int], count: int) -> None:
    first = min(seqs)
    missing = sorted(set(range(first, first + count)) - seqs)
    assert not missing, f"{len(missing)} of {count} seqs missing, from {missing[:5]}"
    assert len(seqs) == count


def test_node_sensor_into_a_python_tcp_listener() -> None:
    collector = Collector(listen("tcp://127.0.0.1:0"))
    try:
        with node(
            SENSOR, "--to", collector.listener.url, "--rate", "2000", "--count", "1000", "--id", "js-tcp"
        ) as proc:
            assert proc.wait(WAIT) == 0, proc.stderr.read() if proc.stderr else ""
        values = collector.take(1000)
    finally:
        collector.close()
    seqs = checked(values, "js-tcp")
    assert_every(seqs, 1000)
    assert abs(min(seqs) / 1e6 - time.time()) < 120  # seq starts at the start time in microseconds


def test_node_sensor_into_a_python_ws_listener() -> None:
    collector = Collector(listen("ws://127.0.0.1:0/readings"))
    try:
        with node(
            SENSOR, "--to", collector.listener.url, "--interval", "0", "--count", "50", "--id", "js-ws"
        ) as proc:
            assert proc.wait(WAIT) == 0, proc.stderr.read() if proc.stderr else ""
        values = collector.take(50)
    finally:
        collector.close()
    assert_every(checked(values, "js-ws"), 50)


def test_node_sensor_resends_across_a_python_listener_restart() -> None:
    """The Python listener stops reading, then closes (losing what it held) and comes back on the
    same port: the Node sensor reconnects and every seq arrives at least once."""
    first = listen("tcp://127.0.0.1:0")
    url = first.url
    count = 3000
    got: list[Any] = []
    with node(SENSOR, "--to", url, "--rate", "1500", "--count", str(count), "--id", "js-restart") as proc:
        while len(got) < 500:
            got.extend(first.receive_many())
        time.sleep(0.2)  # not read: what comes now is lost with the listener
        first.close()
        time.sleep(0.3)
        collector = Collector(listen(url))
        try:
            assert proc.wait(WAIT) == 0
            assert proc.stderr is not None
            log = proc.stderr.read()
            got.extend(collector.take_seqs({v["seq"] for v in got}, count))
        finally:
            collector.close()
    assert_every(checked(got, "js-restart"), count)
    assert "sent lately will go again" in log and "again after" in log, log


def test_node_listener_runs_the_tutorials_python_sensor() -> None:
    command = f"{sys.executable} examples/tutorial/sensor.py --count 5 --interval 0 --seed 3"
    with node(LISTEN, command) as proc:
        out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0, err
    rng = random.Random(3)
    expected = [round(rng.uniform(-5, 15), 2) for _ in range(5)]
    readings = [to_reading(json.loads(line), source="test", now=0.0, seqs={}) for line in out.splitlines()]
    assert [r["celsius"] for r in readings] == expected  # the bare numbers, as readings
    assert {r["sensor"] for r in readings} == {command}  # named after their source
    seqs = [r["seq"] for r in readings]
    assert seqs == sorted(set(seqs))  # numbered on arrival, increasing
    assert f"{command}: ended" in err
    assert "every source ended: 5 readings, 0 invalid, 0 bad lines" in err
