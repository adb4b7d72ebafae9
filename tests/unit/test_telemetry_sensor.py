"""`bothways sensor` (bothways.telemetry.sensor): the output, the flags, the Outbox, and readings
kept while the channel is down and sent again once it is back (tcp, ws, file, http)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import bothways
from bothways.telemetry.sensor import Outbox, Sensor

from ..conftest import ROOT, UNIT
from ..tutorial import Program

PY = sys.executable
SENSOR = [PY, "-m", "bothways.cli", "sensor"]


def run_sensor(*flags: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SENSOR, *flags], capture_output=True, text=True, timeout=timeout * UNIT, cwd=ROOT, check=False
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def check_readings(lines: list[str], sensor: str) -> list[dict[str, Any]]:
    readings = [json.loads(line) for line in lines]
    now = time.time()
    for reading in readings:
        assert list(reading) == ["sensor", "seq", "t", "celsius"], reading
        assert reading["sensor"] == sensor
        assert type(reading["seq"]) is int and type(reading["t"]) is float
        assert now - 60 < reading["t"] <= now + 1
        assert -5 <= reading["celsius"] <= 15 and round(reading["celsius"], 2) == reading["celsius"]
    seqs = [r["seq"] for r in readings]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "seq goes up by one"
    return readings


# --------------------------------------------------------------------------------------------
# Output and flags


def test_writes_one_full_reading_per_line_on_stdout() -> None:
    started = time.time()
    done = run_sensor("--id", "kitchen", "--interval", "0.01", "--count", "5")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert len(lines) == 5
    readings = check_readings(lines, "kitchen")
    # seq starts at the start time in microseconds: a restarted sensor goes on above it
    assert started * 1e6 <= readings[0]["seq"] <= time.time() * 1e6


def test_the_default_id_names_the_host_and_the_process() -> None:
    done = run_sensor("--interval", "0", "--count", "1")
    reading = json.loads(done.stdout)
    assert reading["sensor"].startswith(f"py-{socket.gethostname()}-")
    assert reading["sensor"].rsplit("-", 1)[1].isdigit()


def test_a_restarted_sensor_numbers_its_readings_above_the_old_ones() -> None:
    first = [
        json.loads(x)["seq"]
        for x in run_sensor("--id", "a", "--interval", "0", "--count", "50").stdout.split()
    ]
    second = [
        json.loads(x)["seq"]
        for x in run_sensor("--id", "a", "--interval", "0", "--count", "3").stdout.split()
    ]
    assert len(first) == 50 and min(second) > max(first)


def test_bare_with_a_seed_writes_the_tutorials_numbers() -> None:
    """--bare is the tutorial's sensor: same numbers for the same seed, with and without
    --interval (the random pauses come from the same generator)."""
    for flags in (["--interval", "0", "--count", "8", "--seed", "4"], ["--count", "2", "--seed", "15"]):
        ours = run_sensor("--bare", *flags, timeout=30)
        theirs = subprocess.run(
            [PY, str(ROOT / "examples" / "tutorial" / "sensor.py"), *flags],
            capture_output=True,
            text=True,
            timeout=30 * UNIT,
            check=True,
        )
        assert ours.returncode == 0, ours.stderr
        assert ours.stdout == theirs.stdout
        assert len(ours.stdout.split()) == int(flags[flags.index("--count") + 1])


def test_the_same_seed_gives_the_same_temperatures() -> None:
    a = [
        json.loads(x)["celsius"]
        for x in run_sensor("--interval", "0", "--count", "20", "--seed", "7").stdout.split()
    ]
    b = [
        json.loads(x)["celsius"]
        for x in run_sensor("--interval", "0", "--count", "20", "--seed", "7").stdout.split()
    ]
    c = [
        json.loads(x)["celsius"]
        for x in run_sensor("--interval", "0", "--count", "20", "--seed", "8").stdout.split()
    ]
    assert a == b != c


def test_interval_spaces_the_readings() -> None:
    program = Program([*SENSOR, "--id", "s", "--interval", "0.2", "--count", "4"], cwd=ROOT)
    try:
        program.wait_for(r'"seq"')
        first = time.monotonic()
        assert program.wait(10) == 0
        took = time.monotonic() - first
    finally:
        program.stop()
    assert len(program.stdout) == 4
    assert 0.5 <= took <= 0.6 + 2 * UNIT  # three pauses of 0.2 s after the first reading


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--to", "nowhere:x"], "unknown scheme"),
        (["--interval", "-1"], "interval"),
        (["--rate", "0"], "rate"),
        (["--buffer", "0"], "--buffer"),
    ],
)
def test_bad_flags_exit_2_with_a_message(flags: list[str], message: str) -> None:
    done = run_sensor(*flags, "--count", "1")
    assert done.returncode == 2
    assert message in done.stderr.lower(), done.stderr
    assert done.stdout == ""


def test_help_describes_every_flag() -> None:
    done = run_sensor("--help")
    assert done.returncode == 0
    for flag in ("--id", "--interval", "--rate", "--count", "--seed", "--to", "--bare", "--buffer", "--wait"):
        assert flag in done.stdout


def test_a_closed_stdout_ends_the_sensor_quietly() -> None:
    sensor = subprocess.Popen([*SENSOR, "--rate", "1000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert sensor.stdout is not None and sensor.stderr is not None
    sensor.stdout.readline()
    sensor.stdout.close()
    try:
        assert sensor.wait(10 * UNIT) == 0
    finally:
        sensor.kill()
        sensor.wait()
    assert sensor.stderr.read() == b""
    sensor.stderr.close()


def test_sigterm_stops_it_with_exit_0() -> None:
    program = Program([*SENSOR, "--interval", "0.05"], cwd=ROOT)
    try:
        program.wait_for(r'"seq"')
        program.process.send_signal(signal.SIGTERM)
        assert program.wait(10) == 0
    finally:
        program.stop()
    check_readings(program.stdout, program.stdout and json.loads(program.stdout[0])["sensor"])


# --------------------------------------------------------------------------------------------
# Rate, and channels


@pytest.mark.parametrize("scheme", ["tcp", "file"])
def test_rate_sustains_ten_thousand_a_second(scheme: str, tmp_path: Path) -> None:
    count, rate = 20_000, 10_000
    received: list[Any] = []
    if scheme == "file":
        url = f"file:{tmp_path / 'out.ndjson'}"
        listener = None
    else:
        listener = bothways.listen("tcp://127.0.0.1:0")
        url = listener.url

        def read() -> None:
            assert listener is not None
            for value in listener:
                received.append(value)
                if len(received) >= count:
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
    try:
        started = time.monotonic()
        done = run_sensor("--id", "fast", "--rate", str(rate), "--count", str(count), "--to", url, timeout=60)
        took = time.monotonic() - started
        assert done.returncode == 0, done.stderr
        if listener is not None:
            reader.join(10 * UNIT)
        else:
            received = [json.loads(line) for line in (tmp_path / "out.ndjson").read_text().splitlines()]
    finally:
        if listener is not None:
            listener.close()
    assert len(received) == count
    assert len({r["seq"] for r in received}) == count
    # paced at the rate (3 s): not faster, and not much slower (starting Python, slack)
    assert count / rate - 0.1 <= took <= (count / rate + 3) * UNIT, took


def test_readings_go_to_a_fifo(tmp_path: Path) -> None:
    path = tmp_path / "fifo"
    with bothways.listen(f"fifo:{path}") as reader:
        sensor = subprocess.Popen(
            [*SENSOR, "--id", "f", "--interval", "0", "--count", "20", "--to", f"fifo:{path}"]
        )
        values = []
        for value in reader:
            values.append(value)
            if len(values) == 20:
                break
        assert sensor.wait(10 * UNIT) == 0
    check_readings([json.dumps(v) for v in values], "f")


# --------------------------------------------------------------------------------------------
# The Outbox (sans-I/O)


def test_outbox_drops_the_oldest_when_full_and_counts_the_unsent() -> None:
    box = Outbox(capacity=5, window=10)
    assert box.add(range(3)) == 0
    assert box.take(2) == [0, 1]
    box.sent(2, now=0.0, confirmed=False)
    assert (box.pending, box.unconfirmed) == (1, 2)
    # 4 more: 7 > 5, the two oldest go; both were sent already: not a loss
    assert box.add(range(3, 7)) == 0
    assert box.take(10) == [2, 3, 4, 5, 6]
    assert box.add([7, 8]) == 2  # now unsent ones go: 2 and 3
    assert box.dropped == 2
    assert box.take(10) == [4, 5, 6, 7, 8]


def test_outbox_sends_again_what_a_lost_connection_may_have_lost() -> None:
    box = Outbox(capacity=100, window=10)
    box.add(range(6))
    box.sent(4, now=100.0, confirmed=False)
    box.expire(now=105.0)
    assert box.take(10) == [4, 5]
    assert box.lost() == 4
    assert box.take(10) == [0, 1, 2, 3, 4, 5]
    box.sent(6, now=200.0, confirmed=False)
    box.expire(now=210.5)  # older than the window: forgotten
    assert len(box) == 0 and box.lost() == 0


def test_outbox_confirmed_sends_are_dropped_at_once() -> None:
    box = Outbox(capacity=100, window=10)
    box.add(range(5))
    box.sent(3, now=0.0, confirmed=True)
    assert len(box) == 2 and box.lost() == 0 and box.take(5) == [3, 4]
    box.sent(2, now=0.0, confirmed=False)
    box.confirm()  # a confirmed close
    assert len(box) == 0


def test_bare_numbers_are_not_sent_twice() -> None:
    sensor = Sensor("tcp://127.0.0.1:1", bare=True, interval=1.0)
    assert sensor.outbox.window == 0.0  # numbered on arrival: a copy would be stored twice
    assert Sensor("tcp://127.0.0.1:1", interval=7.0).outbox.window == 21.0  # three intervals


# --------------------------------------------------------------------------------------------
# Keeping readings while the channel is down


def test_readings_wait_for_a_listener_that_comes_later() -> None:
    url = f"tcp://127.0.0.1:{free_port()}"
    sensor = Program([*SENSOR, "--id", "late", "--interval", "0.01", "--count", "100", "--to", url], cwd=ROOT)
    try:
        time.sleep(0.6)  # 60 readings made, none sent: nobody listens yet
        with bothways.listen(url) as listener:
            values = []
            for value in listener:
                values.append(value)
                if len(values) >= 100:
                    break
            assert sensor.wait(15) == 0
    finally:
        sensor.stop()
    check_readings([json.dumps(v) for v in sorted(values, key=lambda v: v["seq"])], "late")
    assert any("cannot reach" in line for line in sensor.stderr), sensor.stderr
    assert any("again" in line for line in sensor.stderr), sensor.stderr


def test_a_full_buffer_drops_the_oldest_and_says_how_many() -> None:
    url = f"tcp://127.0.0.1:{free_port()}"  # nobody listens, ever
    done = run_sensor(
        "--id", "x", "--rate", "20000", "--count", "3000", "--buffer", "1000", "--wait", "0.3", "--to", url
    )
    assert done.returncode == 1  # could not deliver what it held at the end
    assert "buffer full (1000 readings)" in done.stderr, done.stderr
    assert "dropped 2000 readings in all" in done.stderr, done.stderr
    assert "1000 readings could not be delivered" in done.stderr, done.stderr


def _listen(db: Path, url: str) -> Program:
    listener = Program([PY, "-m", "bothways.cli", "listen", url, "--db", str(db)], cwd=ROOT)
    listener.wait_for("listening on")
    return listener


def _stored(db: Path, sensor: str) -> list[int]:
    import sqlite3

    with sqlite3.connect(db) as con:
        return [
            row[0] for row in con.execute("SELECT seq FROM readings WHERE sensor = ? ORDER BY seq", (sensor,))
        ]


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_a_listener_stopped_and_restarted_gets_every_reading(how: signal.Signals, tmp_path: Path) -> None:
    """tcp: the listener goes (cleanly, or by kill -9) while the sensor sends, and comes back on
    the same port: every seq arrives at least once, and is stored once."""
    db = tmp_path / "r.db"
    url = f"tcp://127.0.0.1:{free_port()}"
    count = 300
    listener = _listen(db, url)
    sensor = Program(
        [*SENSOR, "--id", "t", "--interval", "0.005", "--count", str(count), "--to", url], cwd=ROOT
    )
    try:
        deadline = time.monotonic() + 10 * UNIT
        while len(_stored(db, "t")) < 30 and time.monotonic() < deadline:
            time.sleep(0.02)
        listener.process.send_signal(how)
        listener.wait(10)
        first = len(_stored(db, "t"))
        assert 30 <= first < count, "stopped in the middle"
        time.sleep(0.5)  # the sensor goes on making readings meanwhile
        listener = _listen(db, url)
        assert sensor.wait(20) == 0, sensor.stderr
        time.sleep(0.2)
    finally:
        sensor.stop()
        listener.stop()
    seqs = _stored(db, "t")
    assert len(seqs) == count and seqs == list(range(seqs[0], seqs[0] + count)), (len(seqs), first)
    assert any(line.startswith("bothways sensor t: lost tcp://") for line in sensor.stderr), sensor.stderr


def test_ws_listener_stopped_and_restarted(tmp_path: Path) -> None:
    url = f"ws://127.0.0.1:{free_port()}/r"
    received: dict[int, int] = {}

    def collect(listener: Any, until: float) -> None:
        while time.monotonic() < until:
            try:
                for value in listener.receive_many():
                    received[value["seq"]] = received.get(value["seq"], 0) + 1
            except bothways.TransportClosed:
                return

    sensor = None
    try:
        first = bothways.listen(url)
        sensor = Program(
            [*SENSOR, "--id", "w", "--interval", "0.01", "--count", "150", "--to", url], cwd=ROOT
        )
        reader = threading.Thread(target=collect, args=(first, time.monotonic() + 0.6 * UNIT), daemon=True)
        reader.start()
        time.sleep(0.6 * UNIT)
        first.close()
        reader.join(5)
        time.sleep(0.3)
        with bothways.listen(url) as second:
            reader = threading.Thread(
                target=collect, args=(second, time.monotonic() + 10 * UNIT), daemon=True
            )
            reader.start()
            assert sensor.wait(20) == 0, sensor.stderr
            time.sleep(0.2)
    finally:
        if sensor is not None:
            sensor.stop()
    reader.join(5)
    assert len(received) == 150, sorted(received)[:5]
    seqs = sorted(received)
    assert seqs == list(range(seqs[0], seqs[0] + 150))


class _Collector(BaseHTTPRequestHandler):
    """POST /api/readings: the first ``fail`` requests get 503, the rest 200 (bodies kept)."""

    bodies: list[bytes]
    fail: int
    status: int
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:
            failing = self.fail > 0
            if failing:
                type(self).fail -= 1
            else:
                self.bodies.append(body)
        assert self.headers["Content-Type"] == "application/x-ndjson"
        status = self.status if failing else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_collector() -> Iterator[tuple[str, type[_Collector]]]:
    handler = type("Handler", (_Collector,), {"bodies": [], "fail": 0, "status": 503})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/api/readings", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_http_batches_are_posted_and_sent_again_after_a_5xx(
    http_collector: tuple[str, type[_Collector]],
) -> None:
    url, handler = http_collector
    handler.fail = 3
    done = run_sensor("--id", "h", "--rate", "2000", "--count", "2500", "--to", url)
    assert done.returncode == 0, done.stderr
    readings = [json.loads(line) for body in handler.bodies for line in body.splitlines()]
    assert len(readings) == 2500
    assert len(handler.bodies) >= 3  # batches, at most 1,000 readings each
    assert max(len(body.splitlines()) for body in handler.bodies) <= 1000
    check_readings([json.dumps(r) for r in readings], "h")
    assert "HTTP 503" in done.stderr


def test_http_4xx_is_final(http_collector: tuple[str, type[_Collector]]) -> None:
    url, handler = http_collector
    handler.fail, handler.status = 1_000, 404
    done = run_sensor("--interval", "0", "--count", "10", "--to", url)
    assert done.returncode == 1
    assert "HTTP 404" in done.stderr and "stopping" in done.stderr


@pytest.mark.parametrize("scheme", ["tcp", "ws"])
def test_a_listener_that_refuses_us_is_final(scheme: str) -> None:
    url = f"{scheme}://127.0.0.1:0" + ("/x" if scheme == "ws" else "")
    with bothways.listen(url, token="secret") as listener:
        threading.Thread(target=lambda: list(listener), daemon=True).start()
        done = run_sensor("--interval", "0.01", "--count", "500", "--to", listener.url)
    assert done.returncode == 1
    assert "refused" in done.stderr and "stopping" in done.stderr, done.stderr


def test_file_writes_are_delivered_at_once(tmp_path: Path) -> None:
    path = tmp_path / "out.ndjson"
    done = run_sensor("--id", "f", "--interval", "0", "--count", "40", "--to", f"file:{path}")
    assert done.returncode == 0 and done.stderr == ""
    check_readings(path.read_text().splitlines(), "f")
