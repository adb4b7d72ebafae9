"""Many clients at once, across the languages: nothing is lost without an error.

Thousands of clients connect together, each sends its messages {c, seq} and closes. The
promise checked: every client whose close() returned normally had every message delivered, in
order; a client that lost any got an error (from send or close). Never fewer messages with every
close resolving normally. 127.0.0.1 only; every run is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import bothways

from ..conftest import FIXTURES, ROOT, UNIT, require_tool

IDLE = 5.0  # seconds without a message after which a listener stops waiting


def check(seqs: dict[int, list[int]], report: dict[str, Any], clients: int, messages: int) -> None:
    """The promise: a client with a normal close has all its messages, in order."""
    errors = {int(c): why for c, why in report["errors"].items()}
    assert report["closed"] + len(errors) == clients, report
    silent = [c for c in range(clients) if c not in errors and seqs.get(c, []) != list(range(messages))]
    assert silent == [], f"{len(silent)} clients closed normally but lost messages: {silent[:10]}"
    for c, got in seqs.items():  # what did arrive, even from a client that got an error, is in order
        assert got == sorted(got) and len(got) == len(set(got)), (c, got[:20])


def node_clients(url: str, clients: int, messages: int) -> subprocess.Popen[str]:
    node = require_tool("node")
    argv = [node, str(FIXTURES / "many_clients.mjs"), url, str(clients), str(messages)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=ROOT)


def report_of(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = process.communicate(timeout=120 * UNIT)
    assert process.returncode == 0, out
    result: dict[str, Any] = json.loads(out)
    return result


def take_blocking(listener: Any, total: int) -> dict[int, list[int]]:
    """Messages from a blocking listener until ``total`` or IDLE s of silence (a reader thread)."""
    seqs: dict[int, list[int]] = {}
    count = [0]
    last = [time.monotonic()]

    def read() -> None:
        for message in listener:
            seqs.setdefault(message["c"], []).append(message["seq"])
            count[0] += 1
            last[0] = time.monotonic()

    threading.Thread(target=read, daemon=True).start()
    while count[0] < total and time.monotonic() - last[0] < IDLE * UNIT:
        time.sleep(0.05)
    return seqs


@pytest.mark.parametrize(("scheme", "clients"), [("tcp", 2000), ("ws", 1000)])
def test_node_clients_into_the_blocking_listener(scheme: str, clients: int) -> None:
    messages = 50
    path = "/feed" if scheme == "ws" else ""
    with bothways.listen(f"{scheme}://127.0.0.1:0{path}") as listener:
        process = node_clients(listener.url, clients, messages)
        seqs = take_blocking(listener, clients * messages)
        check(seqs, report_of(process), clients, messages)


@pytest.mark.parametrize(("scheme", "clients"), [("tcp", 2000), ("ws", 1000)])
def test_node_clients_into_the_asyncio_listener(scheme: str, clients: int) -> None:
    messages = 50
    path = "/feed" if scheme == "ws" else ""
    node = require_tool("node")

    async def main() -> None:
        async with await bothways.async_listen(f"{scheme}://127.0.0.1:0{path}") as listener:
            process = await asyncio.create_subprocess_exec(
                node,
                str(FIXTURES / "many_clients.mjs"),
                listener.url,
                str(clients),
                str(messages),
                stdout=subprocess.PIPE,
                cwd=ROOT,
            )
            seqs: dict[int, list[int]] = {}
            received = 0
            while received < clients * messages:
                try:
                    message = await asyncio.wait_for(listener.receive(), IDLE * UNIT)
                except asyncio.TimeoutError:
                    break
                seqs.setdefault(message["c"], []).append(message["seq"])
                received += 1
            out, _ = await asyncio.wait_for(process.communicate(), 120 * UNIT)
            assert process.returncode == 0
            check(seqs, json.loads(out), clients, messages)

    asyncio.run(main())


@pytest.mark.parametrize(("scheme", "clients"), [("tcp", 2000), ("ws", 1000)])
def test_python_clients_into_the_node_listener(scheme: str, clients: int) -> None:
    messages = 50
    node = require_tool("node")
    path = "/feed" if scheme == "ws" else ""
    listener = subprocess.Popen(
        [node, str(FIXTURES / "many_listener.mjs"), f"{scheme}://127.0.0.1:0{path}", str(clients * messages)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert listener.stdout is not None
        url = listener.stdout.readline().strip()
        assert url.startswith(f"{scheme}://127.0.0.1:"), url
        senders = subprocess.run(
            [sys.executable, str(FIXTURES / "many_clients.py"), url, str(clients), str(messages)],
            capture_output=True,
            text=True,
            timeout=120 * UNIT,
            check=True,
        )
        out, _ = listener.communicate(timeout=60 * UNIT)
    finally:
        listener.kill()
        listener.wait()
    result = json.loads(out.splitlines()[-1])
    seqs = {int(c): got for c, got in result["seqs"].items()}
    check(seqs, json.loads(senders.stdout), clients, messages)


def test_the_backlog_reaches_the_kernel() -> None:
    """``?backlog=`` is the listening socket's queue (``ss`` shows it as Send-Q), for each flavour."""
    ss = require_tool("ss")

    def queue(url: str) -> int:
        port = url.rsplit(":", 1)[1].split("/")[0]
        line = subprocess.run([ss, "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
        return int(line.split()[2])

    with bothways.listen("tcp://127.0.0.1:0?backlog=77") as listener:
        assert queue(listener.url) == 77
    with bothways.listen("tcp://127.0.0.1:0") as listener:
        somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
        assert queue(listener.url) == min(4096, somaxconn)
    with bothways.listen("ws://127.0.0.1:0/feed?backlog=33") as listener:
        assert queue(listener.url) == 33

    async def main() -> None:
        async with await bothways.async_listen("tcp://127.0.0.1:0?backlog=55") as listener:
            assert queue(listener.url) == 55
        async with await bothways.async_listen("ws://127.0.0.1:0/feed?backlog=44") as listener:
            assert queue(listener.url) == 44

    asyncio.run(main())


def restart_under_reconnecting_clients(program: list[str], clients: int, messages: int) -> None:
    """Runs ``program`` (many_clients.py or .mjs) with reconnecting clients, each sending
    ``messages`` messages 0.1 s apart into a blocking listener that is closed once a quarter has
    arrived and opened again on the same port half a second later; checks that every message
    reached one of the two at least once and that every client's close() returned normally."""
    first = bothways.listen("tcp://127.0.0.1:0")
    url = first.url
    argv = [*program, url + "?reconnect=1", str(clients), str(messages), "0.1"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    seen: set[tuple[int, int]] = set()
    received = [0]

    def read(listener: Any) -> None:
        for message in listener:
            seen.add((message["c"], message["seq"]))
            received[0] += 1

    try:
        reader = threading.Thread(target=read, args=(first,), daemon=True)
        reader.start()
        deadline = time.monotonic() + 60 * UNIT
        while received[0] < clients * messages // 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert received[0] >= clients * messages // 4, "the clients did not get going"
        first.close()
        reader.join(10 * UNIT)
        before = len(seen)
        time.sleep(0.5)
        second = bothways.listen(url)
        try:
            threading.Thread(target=read, args=(second,), daemon=True).start()
            report = report_of(process)
            deadline = time.monotonic() + IDLE * UNIT
            while len(seen) < clients * messages and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            second.close()
    finally:
        first.close()
        if process.poll() is None:
            process.kill()
            process.wait()
    assert before < clients * messages  # the restart did come in the middle
    assert report == {"closed": clients, "errors": {}}
    missing = {(c, s) for c in range(clients) for s in range(messages)} - seen
    assert not missing, f"{len(missing)} messages lost, e.g. {sorted(missing)[:5]}"
    assert received[0] >= clients * messages  # (some twice: sent again after the restart)


def test_a_server_restarted_under_1000_reconnecting_clients_loses_nothing() -> None:
    """1,000 reconnecting clients send 20 messages each, 0.1 s apart; the listener is closed in
    the middle and a new one opened on the same port half a second later. Every message reaches
    one of the two at least once (what the first one had not read is sent again), and every
    client's close() confirms it: nothing lost, nothing lost silently."""
    restart_under_reconnecting_clients([sys.executable, str(FIXTURES / "many_clients.py")], 1000, 20)


def test_a_server_restarted_under_1000_reconnecting_node_clients_loses_nothing() -> None:
    """The same with 1,000 Node clients (many_clients.mjs): tcp.js keeps and sends again what
    tcp.py does, and its close() wants the same confirmation."""
    node = require_tool("node")
    restart_under_reconnecting_clients([node, str(FIXTURES / "many_clients.mjs")], 1000, 20)
