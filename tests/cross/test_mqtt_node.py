"""mqtt:// across the boundary, through one Mosquitto of the test's own (tests/broker.py): Python
publishes to a Node listener and Node to a Python listener, in order; a Python listener and a
Node listener on one shared subscription split a stream, each message once
(tests/fixtures/mqtt_node_peer.mjs runs the Node end in a real ``node`` process).
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import bothways

from ..broker import Broker
from ..conftest import FIXTURES, ROOT, UNIT, require_tool

WAIT = 20 * UNIT
COUNT = 2000


class NodeEnd:
    """A running mqtt_node_peer.mjs; ``next()`` is its next stdout line, parsed."""

    def __init__(self, *args: str) -> None:
        node = require_tool("node")
        self.process = subprocess.Popen(
            [node, str(FIXTURES / "mqtt_node_peer.mjs"), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def next(self, timeout: float = WAIT) -> Any:
        line = self.lines.get(timeout=timeout)
        assert line is not None, f"the node end exited with code {self.process.wait(WAIT)}"
        return json.loads(line)

    def messages(self, count: int, timeout: float = WAIT) -> list[Any]:
        """The next ``count`` messages it printed (failing on anything else, or on time)."""
        got: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            line = self.next(max(deadline - time.monotonic(), 0.001))
            assert "message" in line, line
            got.append(line["message"])
        return got

    def end_stdin(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()  # (the pid this test started)
        self.process.wait(WAIT)
        assert self.process.stdout is not None
        self.process.stdout.close()
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with Broker(tmp_path / "broker") as b:
        yield b


@pytest.fixture
def node_ends() -> Iterator[list[NodeEnd]]:
    started: list[NodeEnd] = []
    try:
        yield started
    finally:
        for end in started:
            end.stop()


def take(channel: Any, count: int, timeout: float = WAIT) -> list[Any]:
    """``count`` messages from a blocking channel, read in a thread so that a shortfall fails."""
    got: list[Any] = []

    def read() -> None:
        while len(got) < count:
            got.extend(channel.receive_many())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    return got


READINGS = [{"seq": n} for n in range(COUNT)]


@pytest.mark.parametrize("scheme", ["mqtt", "mqtt+ws"])
def test_python_publishes_to_a_node_listener(broker: Broker, node_ends: list[NodeEnd], scheme: str) -> None:
    node = NodeEnd("listen", broker.url("cross/#", scheme))
    node_ends.append(node)
    assert node.next()["ready"].startswith("bothways-listen-")
    with bothways.connect(broker.url("cross/python", scheme)) as out:
        for start in range(0, COUNT, 100):
            out.send_many(READINGS[start : start + 100])
    assert node.messages(COUNT) == READINGS
    node.end_stdin()
    assert node.next() == {"closed": True}
    assert node.process.wait(WAIT) == 0


@pytest.mark.parametrize("scheme", ["mqtt", "mqtt+ws"])
def test_node_publishes_to_a_python_listener(broker: Broker, node_ends: list[NodeEnd], scheme: str) -> None:
    with bothways.listen(broker.url("cross/#", scheme)) as inbox:
        node = NodeEnd("publish", broker.url("cross/node", scheme), str(COUNT))
        node_ends.append(node)
        assert node.next() == {"sent": COUNT}  # each batch acknowledged by the broker
        assert node.process.wait(WAIT) == 0
        assert take(inbox, COUNT) == READINGS


def test_a_python_and_a_node_listener_share_a_subscription(broker: Broker, node_ends: list[NodeEnd]) -> None:
    url = broker.url("jobs/#") + "?share=workers"
    total = 1000
    with bothways.listen(url) as python:
        node = NodeEnd("listen", url)
        node_ends.append(node)
        assert "ready" in node.next()
        with bothways.connect(broker.url("jobs/all")) as out:
            out.send_many({"job": n} for n in range(total))
        from_python: list[Any] = []
        from_node: list[Any] = []
        deadline = time.monotonic() + WAIT
        while len(from_python) + len(from_node) < total and time.monotonic() < deadline:
            from_python.extend(python._client.take(block=False))  # type: ignore[attr-defined]
            try:
                while True:
                    line = json.loads(node.lines.get(timeout=0.01) or "null")
                    assert line is not None and "message" in line, line
                    from_node.append(line["message"])
            except queue.Empty:
                pass
        time.sleep(0.2 * UNIT)  # nothing more may come: each message went to one of them
        from_python.extend(python._client.take(block=False))  # type: ignore[attr-defined]
    node.end_stdin()
    rest = []
    while (line := node.next()) != {"closed": True}:
        rest.append(line["message"])
    from_node += rest
    jobs = sorted(m["job"] for m in from_python + from_node)
    assert jobs == list(range(total))  # every message, each once
    assert from_python and from_node, (len(from_python), len(from_node))  # both had a share
    assert node.process.wait(WAIT) == 0
