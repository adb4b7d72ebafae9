"""The ``bothways`` command: ``main(argv=None) -> int``; an error's class sets the exit code.

- ``bothways check``: validate an NDJSON stream from stdin.
- ``bothways demo``: the tutorial's system (examples/tutorial), every part running at once.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from io import BufferedReader
from pathlib import Path
from types import FrameType
from typing import IO, cast

from . import __version__
from .transports.stdio import _spawn_options
from .wire import Decoder, Malformed, Messages, Truncated, encode_many

EXIT_BAD_INPUT = 65  # EX_DATAERR


def _check(args: argparse.Namespace) -> int:
    """Reads NDJSON from stdin; re-emits the good messages compactly, reports the bad lines."""
    decoder = Decoder(max_line=args.max_line)
    bad = 0
    out = sys.stdout.buffer
    stream = cast(BufferedReader, sys.stdin.buffer)
    while True:
        chunk = stream.read1(65536)
        events = decoder.feed(chunk) if chunk else decoder.feed_eof()
        for event in events:
            if isinstance(event, Messages):
                if not args.quiet:
                    out.write(encode_many(event.values, big_ints=True))
            elif isinstance(event, (Malformed, Truncated)):
                if not (isinstance(event, Truncated) and event.error.delivered):
                    bad += 1
                print(f"bothways: {event.error.code}: {event.error}", file=sys.stderr)
        if not chunk:
            break
    out.flush()
    return EXIT_BAD_INPUT if bad else 0


# --------------------------------------------------------------------------------------------
# bothways demo

# The tutorial's programs: the wheel carries them (setup.py), a checkout has them in examples/.
_HERE = Path(__file__).resolve().parent
TUTORIAL = next(
    (p for p in (_HERE / "examples" / "tutorial", _HERE.parents[1] / "examples" / "tutorial") if p.is_dir()),
    _HERE / "examples" / "tutorial",
)
DEFAULT_PORT = 5000
STARTUP = 15.0  # seconds for the Flask app to print its URL
GRACE = 3.0  # seconds between SIGTERM and SIGKILL when stopping
_URL = re.compile(r"open (http://\S+)")


class _Part:
    """One program of the demo, in its own process group, its output shown line by line."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], show: threading.Lock) -> None:
        self.name = name
        self.url: str | None = None
        self.url_seen = threading.Event()
        # its own process group (our Ctrl-C is for us; we stop its group ourselves), and killed
        # by Linux if the demo itself is killed: the same options as spawn()
        command, options = _spawn_options(argv, env, None)
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            **options,
        )
        self._show = show
        self.stopped_by_us = False
        self._reader = threading.Thread(target=self._read, name=f"demo-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stdout = cast(IO[bytes], self.process.stdout)
        for raw in iter(stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            match = _URL.search(line)
            if match and self.url is None:
                self.url = match.group(1)
                self.url_seen.set()
            _say(self._show, f"[{self.name}] {line}")
        stdout.close()
        self.url_seen.set()  # no URL will come: the process ended

    def ending(self) -> str:
        """How it ended, in words: ``flask (stopped)``, ``py->js (exited 1)``..."""
        code = self.process.returncode
        if self.stopped_by_us:  # it ran until we stopped it (-15 from Python, 143 from a shell)
            return f"{self.name} (stopped)"
        if code is not None and code < 0:
            return f"{self.name} (killed by {signal.Signals(-code).name})"
        return f"{self.name} (exited {code})"

    def stop(self) -> None:
        """SIGTERM to the process group (the program and what it spawned), then SIGKILL."""
        if self.process.poll() is None:
            self.stopped_by_us = True
            _kill_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(GRACE)
            except subprocess.TimeoutExpired:
                _kill_group(self.process.pid, signal.SIGKILL)
                self.process.wait()
        _kill_group(self.process.pid, signal.SIGKILL)  # a straggler the program left behind
        self._reader.join(GRACE)


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _say(lock: threading.Lock, text: str) -> None:
    with lock, contextlib.suppress(BrokenPipeError, ValueError):
        print(text, flush=True)


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the Flask server does
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C (SIGINT) and ``kill`` (SIGTERM) set ``stop``; the previous handlers come back after.

    Setting an event rather than raising KeyboardInterrupt means a second Ctrl-C cannot cut the
    clean-up short. SIGINT is set even when it was ignored (a shell starts background jobs so).
    """

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    try:
        previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _Demo:
    """The running demo: the parts it started (each stopped by ``close``) and a stop event."""

    def __init__(self, tutorial: Path, node: str, sensor_flags: list[str]) -> None:
        self.tutorial = tutorial
        self.node = node
        self.python = sys.executable
        self.sensor_flags = sensor_flags
        # The listeners spawn their sensors with the same interpreters as ours.
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "BOTHWAYS_PYTHON": self.python}
        self.env["BOTHWAYS_NODE"] = node
        self.stop = threading.Event()
        self.parts: list[_Part] = []
        self._show = threading.Lock()

    def say(self, text: str) -> None:
        _say(self._show, text)

    def start(self, name: str, program: str, *args: str) -> _Part:
        interpreter = self.node if program.endswith(".js") else self.python
        part = _Part(name, [interpreter, str(self.tutorial / program), *args], self.env, self._show)
        self.parts.append(part)
        return part

    def run(self, port: int, duration: float | None) -> int:
        """Starts the Flask app, then both pairs once it listens; returns at ``stop`` or ``duration``."""
        flask = self.start("flask", "app.py", "--port", str(port))
        give_up = time.monotonic() + STARTUP
        while not flask.url_seen.wait(0.1):
            if self.stop.is_set():
                return 0
            if time.monotonic() > give_up:
                break
        if flask.url is None:
            self.say("bothways demo: the Flask app did not start (see its output above)")
            return 1
        self.say(f"bothways demo: open {flask.url} in a browser. Ctrl-C stops everything.")
        self.say("  [py->js]: sensor.py -> temperature-listener.js")
        self.say("  [js->py]: sensor.js -> temperature-listener.py")
        self.start("py->js", "temperature-listener.js", *self.sensor_flags)
        self.start("js->py", "temperature-listener.py", *self.sensor_flags)
        deadline = None if duration is None else time.monotonic() + duration
        while not self.stop.wait(0.1):
            if deadline is not None and time.monotonic() >= deadline:
                break
            if all(part.process.poll() is not None for part in self.parts):
                self.say("bothways demo: every program has ended")
                return 1
        return 0

    def close(self) -> None:
        """Stops every part, last started first, and reports how each ended."""
        self.say("bothways demo: stopping")
        for part in reversed(self.parts):
            part.stop()
        self.say("bothways demo: stopped " + ", ".join(part.ending() for part in self.parts))


def _demo(args: argparse.Namespace) -> int:
    """Runs the Flask app and both sensor -> listener pairs until Ctrl-C or --duration."""
    tutorial: Path = args.examples
    if not (tutorial / "app.py").is_file():
        print(
            f"bothways demo: the tutorial's programs are not in {tutorial} (the wheel carries "
            "them: reinstall bothways, or pass --examples DIR).",
            file=sys.stderr,
        )
        return 2
    node = shutil.which("node")
    if node is None:
        print("bothways demo: node (Node.js >= 20) is not on PATH (make setup installs it)", file=sys.stderr)
        return 2
    if importlib.util.find_spec("flask") is None:
        print("bothways demo: Flask is not installed: pip install 'bothways[web]'", file=sys.stderr)
        return 2
    port = args.port if args.port is not None else DEFAULT_PORT if _port_free(DEFAULT_PORT) else 0
    demo = _Demo(tutorial, node, [] if args.interval is None else ["--interval", str(args.interval)])
    with _stop_on_signals(demo.stop):
        try:
            return demo.run(port, args.duration)
        finally:
            demo.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="bothways", description="JSON between Python and JavaScript, both ways."
    )
    parser.add_argument("--version", action="version", version=f"bothways {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "check",
        help="validate an NDJSON stream from stdin",
        description="Reads NDJSON from stdin and reports every bad line with its line, column and an "
        "excerpt (the same checks as bothways' Decoder); exits 65 (EX_DATAERR) when any line was bad.",
    )
    check.add_argument("--max-line", type=int, default=16 * 1024 * 1024, help="longest line, bytes")
    check.add_argument("-q", "--quiet", action="store_true", help="only report bad lines")
    check.set_defaults(run=_check)
    demo = commands.add_parser(
        "demo",
        help="run the tutorial's system: Flask app, sensors, listeners",
        description="Starts the tutorial's Flask app and both sensor -> listener pairs (Python -> "
        "Node.js and Node.js -> Python), prints the URL to open, and stops everything on Ctrl-C.",
    )
    demo.add_argument("--port", type=int, help=f"Flask's port (default: {DEFAULT_PORT}, or any if taken)")
    demo.add_argument("--interval", type=float, help="seconds between readings (default: random 0-5)")
    demo.add_argument("--duration", type=float, help="stop after this many seconds (default: at Ctrl-C)")
    demo.add_argument("--examples", type=Path, default=TUTORIAL, help="the tutorial's directory")
    demo.set_defaults(run=_demo)
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
