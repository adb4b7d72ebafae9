"""The ``bothways`` command: ``main(argv=None) -> int``; an error's class sets the exit code.

- ``bothways check``: validate an NDJSON stream from stdin.
- ``bothways sensor``: a temperature sensor sending readings to any channel (telemetry.sensor).
- ``bothways listen SOURCE...``: readings from any number of sources into SQLite (telemetry.listen).
- ``bothways serve``: the web app, its API and live dashboard over that database (telemetry.web).
- ``bothways demo``: the telemetry system, every part running at once: the web app, a listener,
  two Python and two Node.js sensors over four channels (stdio, ws, tcp, file); with ``--mqtt
  URL``, the sensors publish to ``URL/readings/<sensor>`` on a broker instead and the listener
  subscribes to ``URL/readings/#`` (the sensor the listener spawns still writes to its pipe).
- ``bothways demo tutorial``: the tutorial's system (examples/tutorial), every part at once.
- ``bothways types python MODULE`` / ``bothways types node PATH``: TypeScript declarations of a
  Python module as ``python.import`` serves it, or a ``.pyi`` stub of a JavaScript module as
  ``node.require`` serves it (bothways.types).

The telemetry web app (Flask) is imported by ``serve`` only: the other commands run without
the web extra.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import re
import shlex
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
from urllib.parse import quote

from . import __version__
from .telemetry import listen as telemetry_listen
from .telemetry import sensor as telemetry_sensor
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
        self._lines: list[str] = []
        self._ended = False
        self._changed = threading.Condition()
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
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()
            _say(self._show, f"[{self.name}] {line}")
        stdout.close()
        with self._changed:
            self._ended = True
            self._changed.notify_all()
        self.url_seen.set()  # no URL will come: the process ended

    def wait_for(self, pattern: str, timeout: float, stop: threading.Event) -> str | None:
        """The first group of the first output line matching ``pattern`` (already shown or to
        come); None when the program ends, ``stop`` is set or ``timeout`` passes first."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for line in self._lines[seen:]:
                    match = regex.search(line)
                    if match:
                        return match.group(1)
                seen = len(self._lines)
                left = deadline - time.monotonic()
                if self._ended or stop.is_set() or left <= 0:
                    return None
                self._changed.wait(min(left, 0.1))

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

    def __init__(self, tutorial: Path | None, node: str, sensor_flags: list[str]) -> None:
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
        """Starts one of the tutorial's programs."""
        assert self.tutorial is not None
        interpreter = self.node if program.endswith(".js") else self.python
        return self.launch(name, [interpreter, str(self.tutorial / program), *args])

    def launch(self, name: str, argv: list[str]) -> _Part:
        """Starts a program (a list: no shell) as a part of the demo."""
        part = _Part(name, argv, self.env, self._show)
        self.parts.append(part)
        return part

    def wait(self, duration: float | None) -> int:
        """Returns 0 at ``stop`` or after ``duration``; 1 when every part has ended by itself."""
        deadline = None if duration is None else time.monotonic() + duration
        while not self.stop.wait(0.1):
            if deadline is not None and time.monotonic() >= deadline:
                break
            if all(part.process.poll() is not None for part in self.parts):
                self.say("bothways demo: every program has ended")
                return 1
        return 0

    def run_telemetry(
        self,
        port: int,
        data: Path,
        sensor_js: Path,
        duration: float | None,
        mqtt: str | None = None,
        node_mqtt: bool = False,
    ) -> int:
        """The telemetry system: the web app, a listener, two Python and two Node.js sensors
        over four channels; returns at ``stop`` or ``duration``. With ``mqtt`` (a broker's URL),
        a Python sensor and (``node_mqtt``: Node.js finds mqtt.js) a Node.js one publish there
        instead, under ``readings/``, and the listener subscribes to ``readings/#``."""
        bothways = [self.python, "-m", "bothways.cli"]
        db = data / "readings.db"
        web = self.launch("web", [*bothways, "serve", "--db", str(db), "--port", str(port)])
        url = web.wait_for(r"^(https?://\S+)", STARTUP, self.stop)
        if url is None:
            if not self.stop.is_set():
                self.say("bothways demo: the web app did not start (see its output above)")
            return 0 if self.stop.is_set() else 1
        flags = self.sensor_flags
        drop = data / "js-file.ndjson"
        spawned = shlex.join([*bothways, "sensor", "--id", "py-stdio", *flags])
        file_url = f"file:{quote(str(drop), safe='/')}"
        state = quote(str(data / "js-file.state"), safe="/")
        # The Node.js sensors use tcp and a file: Node's built-ins only, so they run from the wheel
        # too (its copy of js/ has no node_modules, so no `ws` package, nor mqtt.js).
        node_direct = mqtt is None or not node_mqtt
        sources = [spawned]
        sources += ["tcp://127.0.0.1:0"] if node_direct else []
        sources += ["ws://127.0.0.1:0/sensors"] if mqtt is None else []
        sources += [f"{file_url}?state={state}"] if node_direct else []
        sources += [_under(mqtt, "readings/#")] if mqtt is not None else []
        listener = self.launch("listen", [*bothways, "listen", "--db", str(db), *sources])
        heard: dict[str, str] = {}  # what the listener says of each URL: where it listens, or why not
        for source in sources[1:]:
            said = listener.wait_for(rf"^bothways listen: {re.escape(source)}: (.*)", STARTUP, self.stop)
            if said is None or said.startswith("cannot open"):
                if not self.stop.is_set():
                    self.say("bothways demo: the listener did not start (see its output above)")
                return 0 if self.stop.is_set() else 1
            heard[source] = said.removeprefix("listening on ")
        sensors: list[tuple[str, list[str], str]] = []  # (name, argv, what it does)

        def sensor(name: str, python: bool, to: str, note: str = "") -> None:
            program = [*bothways, "sensor"] if python else [self.node, str(sensor_js)]
            what = f"{'Python' if python else 'Node.js'} sensor -> {to}{note}"
            sensors.append((name, [*program, "--id", name, "--to", to, *flags], what))

        if mqtt is None:
            sensor("py-ws", True, heard["ws://127.0.0.1:0/sensors"])
        else:
            sensor("py-mqtt", True, _under(mqtt, "readings/py-mqtt"))
        if mqtt is not None and node_mqtt:
            sensor("js-mqtt", False, _under(mqtt, "readings/js-mqtt"))
        else:
            sensor("js-tcp", False, heard["tcp://127.0.0.1:0"])
            sensor("js-file", False, file_url, " (the listener follows the file)")
        for name, argv, _ in sensors:
            self.launch(name, argv)
        self.say(f"bothways demo: open {url} in a browser (the live dashboard). Ctrl-C stops everything.")
        self.say(f"  readings are stored in {db}")
        self.say("  py-stdio: Python sensor -> stdio (spawned by the listener)")
        for name, _, what in sensors:
            self.say(f"  {name + ':':<9} {what}")
        if mqtt is not None:
            self.say(f"  the listener subscribes to {sources[-1]}")
        if mqtt is not None and not node_mqtt:
            self.say(
                f"  (the Node.js sensors stay on tcp and a file: Node.js finds no mqtt.js for {sensor_js}, "
                "as from an installed wheel; `npm install mqtt` there to have them publish too)"
            )
        return self.wait(duration)

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
        return self.wait(duration)

    def close(self) -> None:
        """Stops every part, last started first, and reports how each ended."""
        self.say("bothways demo: stopping")
        for part in reversed(self.parts):
            part.stop()
        self.say("bothways demo: stopped " + ", ".join(part.ending() for part in self.parts))


def _demo(args: argparse.Namespace) -> int:
    """``bothways demo``: the telemetry system, or (``demo tutorial``) the tutorial's."""
    which = args.which or ("tutorial" if args.examples is not None else "telemetry")
    if which == "tutorial":
        if args.mqtt is not None:
            print("bothways demo: --mqtt is for the telemetry demo, not the tutorial's", file=sys.stderr)
            return 2
        return _tutorial_demo(args)
    return _telemetry_demo(args)


_JS = (_HERE / "js", _HERE.parents[1] / "js")  # the wheel's copy (setup.py), a checkout's js/


def js_sensor() -> Path | None:
    """The Node.js sensor (js/bin/sensor.mjs): $BOTHWAYS_JS_SENSOR, else the wheel's copy, else
    the checkout's; None when there is none."""
    override = os.environ.get("BOTHWAYS_JS_SENSOR")
    if override:
        return Path(override)
    return next((p for p in (js / "bin" / "sensor.mjs" for js in _JS) if p.is_file()), None)


def _under(broker: str, topic: str) -> str:
    """The mqtt URL of ``topic`` under the one given to ``--mqtt`` (``mqtt://host:port``, maybe
    with a topic prefix and options): ``mqtt://host:port/prefix/topic?options``."""
    where, mark, query = broker.partition("?")
    return f"{where.rstrip('/')}/{topic}{mark}{query}"


def _mqtt_problem(broker: str) -> str | None:
    """Why ``--mqtt`` cannot be used, or None."""
    from .errors import UrlError
    from .urls import MQTT, parse

    if not broker.lower().startswith(tuple(f"{scheme}://" for scheme in MQTT)):
        return f"--mqtt wants a broker's URL (mqtt://host:port, mqtts:, mqtt+ws:, mqtt+wss:), not {broker}"
    try:
        address = parse(_under(broker, "readings/#"))
    except UrlError as exc:
        return f"--mqtt: {exc}"
    if "client_id" in address.params:
        return "--mqtt: no client_id: the listener and each sensor are clients of their own"
    if importlib.util.find_spec("paho") is None:
        return "--mqtt needs paho-mqtt: pip install 'bothways[mqtt]'"
    return None


def _node_finds_mqtt(sensor_js: Path) -> bool:
    """Whether Node.js finds mqtt.js from the sensor's folder: a ``node_modules/mqtt`` there or
    in a folder above it, as Node resolves ``import("mqtt")`` (a checkout after ``npm install``
    has it; an installed wheel's copy of js/ has none)."""
    folders = sensor_js.resolve().parents
    return any((folder / "node_modules" / "mqtt" / "package.json").is_file() for folder in folders)


def _telemetry_demo(args: argparse.Namespace) -> int:
    """Runs the web app, the listener and the sensors until Ctrl-C or --duration."""
    problem = None if args.mqtt is None else _mqtt_problem(args.mqtt)
    if problem is not None:
        print(f"bothways demo: {problem}", file=sys.stderr)
        return 2
    node = shutil.which("node")
    if node is None:
        print("bothways demo: node (Node.js >= 20) is not on PATH (make setup installs it)", file=sys.stderr)
        return 2
    sensor_js = js_sensor()
    if sensor_js is None or not sensor_js.is_file():
        looked = ", ".join(str(js / "bin" / "sensor.mjs") for js in _JS)
        print(
            f"bothways demo: the Node.js sensor is missing (looked in: {looked}); reinstall "
            "bothways, or set BOTHWAYS_JS_SENSOR",
            file=sys.stderr,
        )
        return 2
    if importlib.util.find_spec("flask") is None:
        print("bothways demo: Flask is not installed: pip install 'bothways[web]'", file=sys.stderr)
        return 2
    data = Path(telemetry_listen.database(None, args.data)).parent.resolve()
    data.mkdir(parents=True, exist_ok=True)
    port = args.port if args.port is not None else DEFAULT_PORT if _port_free(DEFAULT_PORT) else 0
    demo = _Demo(None, node, [] if args.interval is None else ["--interval", str(args.interval)])
    with _stop_on_signals(demo.stop):
        try:
            node_mqtt = args.mqtt is not None and _node_finds_mqtt(sensor_js)
            return demo.run_telemetry(port, data, sensor_js, args.duration, args.mqtt, node_mqtt)
        finally:
            demo.close()


def _tutorial_demo(args: argparse.Namespace) -> int:
    """Runs the Flask app and both sensor -> listener pairs until Ctrl-C or --duration."""
    tutorial: Path = args.examples if args.examples is not None else TUTORIAL
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


# --------------------------------------------------------------------------------------------
# bothways sensor | listen | serve


def _sensor(args: argparse.Namespace) -> int:
    stop = threading.Event()
    with _stop_on_signals(stop):
        return telemetry_sensor.run(args, stop)


def _listen(args: argparse.Namespace) -> int:
    stop = threading.Event()
    with _stop_on_signals(stop):
        return telemetry_listen.run(args, stop)


def _serve(args: argparse.Namespace) -> int:
    try:
        from .telemetry import web
    except ImportError as exc:
        print(
            f"bothways serve: the web app is not available ({exc}); it needs Flask and waitress: "
            "pip install 'bothways[web]'",
            file=sys.stderr,
        )
        return 2
    try:
        web.serve(
            telemetry_listen.database(args.db, args.data), host=args.host, port=args.port, debug=args.debug
        )
    except OSError as exc:
        print(f"bothways serve: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


def _types(args: argparse.Namespace) -> int:
    from . import types  # (imports the host: only this command needs it)

    return types.run(args.language, args.target)


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
    sensor = commands.add_parser(
        "sensor",
        help="a temperature sensor: readings to stdout or any channel",
        description="Writes a temperature reading (uniform in -5..15 °C) every 0-5 s, one JSON line "
        'each ({"sensor", "seq", "t", "celsius"}), to stdout or to --to URL; keeps readings while '
        "the channel is down and sends them when it is back.",
    )
    telemetry_sensor.add_arguments(sensor)
    sensor.set_defaults(run=_sensor)
    listen = commands.add_parser(
        "listen",
        help="collect readings from any number of sources into SQLite",
        description="Listens on channel URLs and runs commands, all at once; validates every message "
        "as a reading and stores the readings in SQLite, batched; shows a live status line. Stops "
        "cleanly on Ctrl-C or SIGTERM.",
    )
    telemetry_listen.add_arguments(listen)
    listen.set_defaults(run=_listen)
    serve = commands.add_parser(
        "serve",
        help="serve the readings: JSON API and live dashboard",
        description="Serves the readings database over HTTP: the JSON API, the live feed and the "
        "dashboard (bothways.telemetry.web; needs the web extra: pip install 'bothways[web]').",
    )
    serve.add_argument("--db", type=Path, metavar="PATH", help="the SQLite file (default: DIR/readings.db)")
    serve.add_argument("--data", type=Path, metavar="DIR", help="the data folder (default: ./bothways-data)")
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"the port (default: {DEFAULT_PORT})")
    serve.add_argument("--debug", action="store_true", help="Flask's development server, with tracebacks")
    serve.set_defaults(run=_serve)
    demo = commands.add_parser(
        "demo",
        help="run the telemetry system (or: demo tutorial)",
        description="Starts the telemetry system - the web app, a listener, two Python and two Node.js "
        "sensors over stdio, ws, tcp and a file - prints the dashboard's URL, and stops everything on "
        "Ctrl-C. `bothways demo tutorial` runs the tutorial's Flask app and its two sensor -> listener "
        "pairs instead.",
    )
    demo.add_argument(
        "which",
        nargs="?",
        choices=("telemetry", "tutorial"),
        help="which system (default: telemetry; tutorial when --examples is given)",
    )
    demo.add_argument(
        "--port", type=int, help=f"the web app's port (default: {DEFAULT_PORT}, or any if taken)"
    )
    demo.add_argument(
        "--interval", type=float, metavar="S", help="seconds between readings (default: random 0-5)"
    )
    demo.add_argument(
        "--duration", type=float, metavar="S", help="stop after this many seconds (default: at Ctrl-C)"
    )
    demo.add_argument(
        "--data", type=Path, metavar="DIR", help="telemetry: the data folder (default: ./bothways-data)"
    )
    demo.add_argument(
        "--mqtt",
        metavar="URL",
        help="telemetry: go through this MQTT broker (mqtt://host:port[/prefix]): the sensors publish "
        "to URL/readings/<sensor> and the listener subscribes to URL/readings/#",
    )
    demo.add_argument(
        "--examples",
        type=Path,
        metavar="DIR",
        help="tutorial: the tutorial's directory (default: the one installed)",
    )
    demo.set_defaults(run=_demo)
    types = commands.add_parser(
        "types",
        help="print types of a served module, for the other side's editor",
        description="`types python MODULE` prints TypeScript declarations of what Node's "
        "python.import(MODULE) gives, from the module's signatures, annotations and docstrings "
        "(`bothways types python m > m.d.ts`); `types node PATH` prints a .pyi stub of what "
        "Python's node.require(PATH) gives, from the module's JSDoc (runs js/bin/stub.mjs).",
    )
    types.add_argument("language", choices=("python", "node"), help="the language of the module")
    types.add_argument("target", metavar="MODULE|PATH", help="a module name (python) or a file path (node)")
    types.set_defaults(run=_types)
    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
