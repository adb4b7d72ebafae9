"""The soak's Python agent: one role per process, driven over its stdio by the orchestrator.

Roles (the first argument): ``sender`` and ``receiver`` (any channel URL), ``stdio-parent`` (a
receiver that spawns its sender as a child and reads the child's stdout), ``stdio-child`` (that
sender), ``caller`` (calls a Node module through ``bothways.node.require``).

Commands come in on stdin as messages (``{"cmd": ...}``) and events go out on stdout, through
bothways' own ``stdio()`` channel. js/soak agent.mjs plays the same roles with the same words.
Every event a receiver reports is written before it asks its channel for more: a channel that
saves its position on the next request (the file reader's ``state=``) then never holds back a
message we took but did not report.
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bothways
from bothways import node
from bothways.errors import BothwaysError, ChildExited, RemoteError, TransportClosed
from bothways.transports import spawn, stdio
from bothways.urls import parse

REPORT_EVERY = 0.1  # seconds between "sent" reports
HERE = Path(__file__).resolve().parent


class Control:
    """Our channel to the orchestrator: commands in (on a thread of their own), events out."""

    def __init__(self) -> None:
        self.channel = stdio()
        self.lock = threading.Lock()
        self.commands: queue.Queue[dict[str, Any]] = queue.Queue()
        self.handlers: dict[str, Callable[[dict[str, Any]], None]] = {}
        threading.Thread(target=self._read, name="control", daemon=True).start()

    def report(self, ev: str, **fields: Any) -> None:
        with self.lock:
            self.channel.send({"ev": ev, **fields})

    def _read(self) -> None:
        try:
            for command in self.channel:
                handler = self.handlers.get(command.get("cmd", ""))
                if handler is not None:
                    handler(command)  # (commands that must not wait for the main loop)
                else:
                    self.commands.put(command)
        except BothwaysError:
            pass
        self.commands.put({"cmd": "stop"})  # the orchestrator went away (or closed our stdin)

    def pending(self) -> list[dict[str, Any]]:
        taken = []
        while True:
            try:
                taken.append(self.commands.get_nowait())
            except queue.Empty:
                return taken


class Pacer:
    """A fixed rate: never faster, and no burst to catch up after a long block."""

    def __init__(self, rate: float) -> None:
        self.period = 1.0 / rate
        self.next = time.monotonic()

    def wait(self) -> None:
        self.next += self.period
        delay = self.next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -0.5:
            self.next = time.monotonic()


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:400]


# --------------------------------------------------------------------------------------------
# Senders


def open_writer(url: str, ctl: Control) -> Any:
    """connect(url), retried until it works: a fifo without a reader, a tcp server not up yet."""
    delay = 0.05
    while True:
        try:
            return bothways.connect(url)
        except BothwaysError as error:
            ctl.report("connect_retry", error=describe(error))
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def close_checkpoint(channel: Any, ctl: Control, inc: str, upto: int) -> None:
    """close(): for tcp and ws it confirms that the server read everything, else it raises."""
    ctl.report("sent", i=inc, upto=upto)
    try:
        channel.close()
    except BothwaysError as error:
        ctl.report("checkpoint", i=inc, upto=upto, ok=False, error=describe(error))
    else:
        ctl.report("checkpoint", i=inc, upto=upto, ok=True)


def truncate(url: str, ctl: Control) -> None:
    """copytruncate without the copy: what the file held and the reader had not read is gone,
    so the seqs it held are reported first (the checker counts them as explained)."""
    path = parse(url).path
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return
    items = []
    for line in data.splitlines():
        try:
            value = bothways.decode(line)
        except BothwaysError:
            continue
        if isinstance(value, dict) and "i" in value and "n" in value:
            items.append([value["i"], value["n"]])
    ctl.report("truncating", items=items)
    os.truncate(path, 0)
    ctl.report("truncated", count=len(items))


def run_sender(ctl: Control, args: argparse.Namespace) -> None:
    inc, pad = args.inc, "x" * args.pad
    channel = open_writer(args.url, ctl)
    ctl.report("ready", pid=os.getpid())
    pacer, seq, last_report = Pacer(args.rate), 0, 0.0
    while True:
        for command in ctl.pending():
            name = command["cmd"]
            if name == "stop":
                close_checkpoint(channel, ctl, inc, seq)
                return
            if name == "cycle":
                close_checkpoint(channel, ctl, inc, seq)
                channel = open_writer(args.url, ctl)
            elif name == "truncate":
                truncate(args.url, ctl)
        seq += 1
        message = {"i": inc, "n": seq, "p": pad}
        while True:
            try:
                channel.send(message)
                break
            except (TransportClosed, BothwaysError) as error:
                # The channel refused it (fifo: the reader went, EPIPE): this seq was not sent;
                # a new channel sends it, as an application would.
                ctl.report("send_error", i=inc, n=seq, error=describe(error))
                try:
                    channel.close()
                except BothwaysError:
                    pass
                channel = open_writer(args.url, ctl)
        now = time.monotonic()
        if now - last_report >= REPORT_EVERY:
            ctl.report("sent", i=inc, upto=seq)
            last_report = now
        pacer.wait()


def run_stdio_child(ctl_unused: None, args: argparse.Namespace) -> None:
    """The sender of a stdio stream: our stdout is the channel; progress goes to stderr, which
    the parent reads separately (so that a report never waits behind the data)."""
    channel = stdio()
    commands: queue.Queue[dict[str, Any]] = queue.Queue()

    def read() -> None:
        try:
            for command in channel:
                commands.put(command)
        except BothwaysError:
            pass
        commands.put({"cmd": "stop"})

    threading.Thread(target=read, daemon=True).start()
    pacer, seq, last_report, pad = Pacer(args.rate), 0, 0.0, "x" * args.pad
    while True:
        try:
            command = commands.get_nowait()
        except queue.Empty:
            command = None
        if command is not None and command["cmd"] == "stop":
            break
        if command is not None and command["cmd"] == "garbage":
            os.write(1, b'{"soak-garbage": ' + command["tag"].encode() + b"}\n")
        seq += 1
        channel.send({"i": args.inc, "n": seq, "p": pad})
        now = time.monotonic()
        if now - last_report >= REPORT_EVERY:
            sys.stderr.write(f"SOAK-SENT {seq}\n")
            sys.stderr.flush()
            last_report = now
        pacer.wait()
    sys.stderr.write(f"SOAK-SENT {seq}\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------------------------
# Receivers


class Intake:
    """What a receiver does with each batch and each bad line, shared by both receiver roles."""

    def __init__(self, ctl: Control) -> None:
        self.ctl = ctl
        self.pause = 0.0
        ctl.handlers["pause"] = self._pause

    def _pause(self, command: dict[str, Any]) -> None:
        self.pause = command["ms"] / 1000

    def on_error(self, error: BaseException) -> None:
        self.ctl.report(
            "bad",
            kind=type(error).__name__,
            text=str(error)[:300],
            excerpt=str(getattr(error, "excerpt", "")),
        )

    def take(self, values: list[Any]) -> None:
        items, strays = [], []
        for value in values:
            if isinstance(value, dict) and isinstance(value.get("i"), str) and type(value.get("n")) is int:
                items.append([value["i"], value["n"]])
            else:
                strays.append(repr(value)[:200])
        if items:
            self.ctl.report("got", items=items)
        if strays:
            self.ctl.report("stray", values=strays)
        if self.pause:
            pause, self.pause = self.pause, 0.0
            time.sleep(pause)  # a slow consumer: the channel's backpressure holds its senders


WAKE = {"soak": "stop"}  # a message we write to our own fifo or file to wake our reader


def wake(url: str) -> None:
    """The blocking fifo and file readers wait in poll() or sleep, and a close() from another
    thread does not wake them (fifo.py says so): write them a message they will return."""
    address = parse(url)
    line = bothways.encode(WAKE)
    if address.scheme == "fifo":
        try:
            fd = os.open(address.path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    else:
        with open(address.path, "ab") as file:
            file.write(line)


def run_receiver(ctl: Control, args: argparse.Namespace) -> None:
    intake = Intake(ctl)
    listener = bothways.listen(args.url, on_error=intake.on_error)
    stopping = threading.Event()
    scheme = parse(args.url).scheme

    def stop(command: dict[str, Any]) -> None:
        stopping.set()
        if scheme in ("fifo", "file"):
            wake(args.url)
        else:
            listener.close()

    ctl.handlers["stop"] = stop
    ctl.report("ready", pid=os.getpid())
    while True:
        try:
            values = listener.receive_many()
        except BothwaysError as error:
            if stopping.is_set():
                return
            ctl.report("error", error=describe(error))
            raise
        intake.take([value for value in values if value != WAKE])
        if stopping.is_set() and scheme in ("fifo", "file"):
            listener.close()  # (from the thread that reads, as fifo.py asks)
            return


def run_stdio_parent(ctl: Control, args: argparse.Namespace) -> None:
    intake = Intake(ctl)
    state: dict[str, Any] = {"child": None, "stopping": False}
    argv = [
        shutil.which("node") or "node",
        str(HERE / "agent.mjs"),
        "stdio-child",
        "--rate",
        str(args.rate),
        "--pad",
        str(args.pad),
    ]

    def stop(command: dict[str, Any]) -> None:
        state["stopping"] = True
        child = state["child"]
        if child is not None:
            child.close_stdin()  # the child stops, we read what it sent to its end

    def garbage(command: dict[str, Any]) -> None:
        child = state["child"]
        if child is not None:
            try:
                child.send({"cmd": "garbage", "tag": command["tag"]})
            except BothwaysError:
                pass

    ctl.handlers["stop"] = stop
    ctl.handlers["garbage"] = garbage
    ctl.report("ready", pid=os.getpid())
    number = 0
    while not state["stopping"]:
        number += 1
        inc = f"{args.inc}.c{number}"

        def progress(line: str, inc: str = inc) -> None:
            if line.startswith("SOAK-SENT "):
                ctl.report("sent", i=inc, upto=int(line.split()[1]))
            else:
                sys.stderr.write(f"[child {inc}] {line}\n")

        child = spawn([*argv, "--inc", inc], stderr=progress, on_error=intake.on_error, name=f"child {inc}")
        state["child"] = child
        ctl.report("child", i=inc, pid=child.pid)
        why = "ended"
        try:
            while True:
                intake.take(child.receive_many())
        except ChildExited as error:
            why = describe(error)
        except TransportClosed:
            why = "ended"
        child.close()
        ctl.report("child_exit", i=inc, why=why)


# --------------------------------------------------------------------------------------------
# Calls: Python -> Node


def run_caller(ctl: Control, args: argparse.Namespace) -> None:
    lock = threading.Lock()  # held while the host is restarted
    counting = threading.Lock()
    stats = {"made": 0, "ok": 0, "failed": 0, "wrong": 0, "pending": 0}
    host: dict[str, Any] = {"module": None, "generation": 0}
    stopping = threading.Event()
    path = HERE / "calls.mjs"

    def start() -> None:
        module = node.require(path)
        host["module"], host["generation"] = module, host["generation"] + 1
        ctl.report("host", pid=module.pid())

    def restart(generation: int) -> None:
        with lock:
            if host["generation"] != generation or stopping.is_set():
                return
            old = host["module"]
            try:
                old.close()
            except BothwaysError:
                pass
            while not stopping.is_set():
                try:
                    start()
                    return
                except BothwaysError as error:
                    ctl.report("call_fail", type=type(error).__name__, error=describe(error), phase="start")
                    time.sleep(0.2)

    def count(key: str, by: int = 1) -> None:
        with counting:
            stats[key] += by

    def loop(slow: bool, rate: float) -> None:
        pacer, k = Pacer(rate), 0
        while not stopping.is_set():
            generation, module = host["generation"], host["module"]
            k += 1
            count("made")
            count("pending")
            try:
                result = module.sleep(args.slow_ms, k) if slow else module.echo(k)
            except (ChildExited, TransportClosed) as error:
                count("failed")
                ctl.report("call_fail", type=type(error).__name__, error=describe(error), phase="call")
                restart(generation)
            except (RemoteError, BothwaysError) as error:
                count("failed")
                ctl.report("call_fail", type=type(error).__name__, error=describe(error), phase="other")
                restart(generation)
            else:
                count("ok" if result == k else "wrong")
            finally:
                count("pending", -1)
            pacer.wait()

    start()
    ctl.handlers["stop"] = lambda command: stopping.set()
    ctl.report("ready", pid=os.getpid())
    threads = [threading.Thread(target=loop, args=(True, 1000 / args.slow_ms), daemon=True)]
    threads += [
        threading.Thread(target=loop, args=(False, args.rate / args.threads), daemon=True)
        for _ in range(args.threads)
    ]
    for thread in threads:
        thread.start()
    while not stopping.wait(0.5):
        ctl.report("calls", **stats, lib_pending=library_pending(host["module"]))
    for thread in threads:
        thread.join(10)
    ctl.report("calls", **stats, lib_pending=library_pending(host["module"]))
    host["module"].close()


def library_pending(module: Any) -> int:
    """The calls the library itself holds as pending (its endpoint's table), -1 if unseen."""
    try:
        return len(module._caller.endpoint.pending)
    except AttributeError:
        return -1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["sender", "receiver", "stdio-parent", "stdio-child", "caller"])
    parser.add_argument("--url", default="")
    parser.add_argument("--inc", default="")
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--pad", type=int, default=32)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--slow-ms", type=int, default=200)
    args = parser.parse_args()
    if args.role == "stdio-child":
        run_stdio_child(None, args)
        return
    ctl = Control()
    try:
        {
            "sender": run_sender,
            "receiver": run_receiver,
            "stdio-parent": run_stdio_parent,
            "caller": run_caller,
        }[args.role](ctl, args)
    except BaseException as error:
        ctl.report("error", error=describe(error))
        raise
    ctl.report("bye")


if __name__ == "__main__":
    main()
