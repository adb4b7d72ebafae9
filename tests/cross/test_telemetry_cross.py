"""The telemetry app across the two languages: the Node.js sensor (js/bin/sensor.mjs) into the
Python listener over tcp and ws, and `bothways demo` storing readings from both, then stopping
with no process left; `bothways demo --mqtt` does the same through a broker of the test's own
(tests/broker.py)."""

from __future__ import annotations

import re
import shutil
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from ..broker import Broker
from ..conftest import ROOT, UNIT, require_tool
from ..tutorial import Program, marked_env, wait_none_marked

PY = sys.executable
BOTHWAYS = [PY, "-m", "bothways.cli"]
JS_SENSOR = ROOT / "js" / "bin" / "sensor.mjs"


def node_sensor() -> list[str]:
    node = require_tool("node")
    if not JS_SENSOR.is_file():
        pytest.fail(f"the Node.js sensor {JS_SENSOR} is missing (npm bin bothways-sensor)")
    return [node, str(JS_SENSOR)]


def by_sensor(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    if not db.exists():
        return {}
    try:
        with sqlite3.connect(db) as con:
            found: dict[str, list[tuple[Any, ...]]] = {}
            for row in con.execute("SELECT sensor, seq, t, celsius FROM readings ORDER BY sensor, seq"):
                found.setdefault(row[0], []).append(row)
            return found
    except sqlite3.OperationalError:  # being created
        return {}


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout * UNIT
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_node_sensors_into_the_python_listener_over_tcp_and_ws(tmp_path: Path) -> None:
    sensor = node_sensor()
    db = tmp_path / "r.db"
    env, mark = marked_env()
    listener = Program(
        [*BOTHWAYS, "listen", "tcp://127.0.0.1:0", "ws://127.0.0.1:0/in", "--db", str(db)], env=env
    )
    sensors: list[Program] = []
    try:
        tcp = listener.wait_for(r"listening on (tcp://\S+)").group(1)
        ws = listener.wait_for(r"listening on (ws://\S+)").group(1)
        started = time.time()
        for name, url in (("js-tcp", tcp), ("js-ws", ws)):
            flags = ["--id", name, "--interval", "0.005", "--count", "200", "--seed", "5", "--to", url]
            sensors.append(Program([*sensor, *flags], env=env))
        for program in sensors:
            assert program.wait(20) == 0, program.stderr
        wait_until(
            lambda: all(len(by_sensor(db).get(s, [])) == 200 for s in ("js-tcp", "js-ws")), 10, "200 each"
        )
        listener.process.send_signal(signal.SIGINT)
        assert listener.wait(10) == 0
    finally:
        for program in (*sensors, listener):
            program.stop()
    stored = by_sensor(db)
    assert set(stored) == {"js-tcp", "js-ws"}
    for name in ("js-tcp", "js-ws"):
        seqs = [row[1] for row in stored[name]]
        assert seqs == list(range(seqs[0], seqs[0] + 200))  # every one, once, numbered in order
        assert started * 1e6 - 1e6 <= seqs[0] <= time.time() * 1e6  # numbered from the start time
        assert all(started - 1 <= row[2] <= time.time() and -5 <= row[3] <= 15 for row in stored[name])
    # the same seed, the same temperatures, whatever the channel
    assert [row[3] for row in stored["js-tcp"]] == [row[3] for row in stored["js-ws"]]
    assert listener.stderr == []  # no invalid reading, no bad line
    assert wait_none_marked(mark) == []


def test_the_demo_stores_readings_from_both_languages_and_stops_everything(tmp_path: Path) -> None:
    node_sensor()
    env, mark = marked_env()
    data = tmp_path / "data"
    argv = [*BOTHWAYS, "demo", "--port", "0", "--interval", "0.1", "--data", str(data)]
    demo = Program(argv, env=env, cwd=tmp_path)
    try:
        url = demo.wait_for(r"bothways demo: open (http://127\.0\.0\.1:\d+/)", 30).group(1)
        sensors = {"py-stdio", "py-ws", "js-tcp", "js-file"}  # stdio, ws, tcp, file
        wait_until(
            lambda: all(len(by_sensor(data / "readings.db").get(s, [])) >= 5 for s in sensors), 20, "all four"
        )
        assert requests.get(url, timeout=5 * UNIT).status_code == 200  # the dashboard
        pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", "\n".join(demo.stdout))]
        demo.process.send_signal(signal.SIGINT)  # Ctrl-C
        assert demo.wait(20) == 0
    finally:
        demo.stop()
    assert demo.stdout[-1] == (
        "bothways demo: stopped web (stopped), listen (stopped), py-ws (stopped), js-tcp (stopped), "
        "js-file (stopped)"
    ), demo.stdout[-10:]
    assert pids and not any(Path(f"/proc/{pid}").exists() for pid in pids)  # the spawned sensor
    assert wait_none_marked(mark) == []  # nothing left: no child, no grandchild
    stored = by_sensor(data / "readings.db")
    for name in ("py-stdio", "py-ws", "js-tcp", "js-file"):
        seqs = [row[1] for row in stored[name]]
        assert len(seqs) >= 5 and seqs == list(range(seqs[0], seqs[0] + len(seqs))), name


def test_the_demo_at_its_duration(tmp_path: Path) -> None:
    node_sensor()
    env, mark = marked_env()
    demo = Program(
        [*BOTHWAYS, "demo", "--port", "0", "--interval", "0.2", "--duration", "3"], env=env, cwd=tmp_path
    )
    try:
        assert demo.wait(30) == 0, demo.stdout[-10:]
    finally:
        demo.stop()
    assert demo.stdout[-1].startswith("bothways demo: stopped web (stopped), listen (stopped)")
    assert wait_none_marked(mark) == []
    stored = by_sensor(tmp_path / "bothways-data" / "readings.db")  # the default data folder
    assert {"py-stdio", "py-ws", "js-tcp", "js-file"} <= set(stored)


def test_the_demo_through_a_broker_stores_readings_from_both_languages(tmp_path: Path) -> None:
    node_sensor()
    if not (ROOT / "js" / "node_modules" / "mqtt").is_dir():
        pytest.fail("mqtt.js is not installed: npm ci in js/")
    env, mark = marked_env()
    data = tmp_path / "data"
    with Broker(tmp_path / "broker") as broker:
        argv = [*BOTHWAYS, "demo", "--port", "0", "--interval", "0.1", "--data", str(data)]
        demo = Program([*argv, "--mqtt", broker.url("demo")], env=env, cwd=tmp_path)
        try:
            demo.wait_for(r"bothways demo: open (http://127\.0\.0\.1:\d+/)", 30)
            topic = re.escape(broker.url("demo/readings"))
            demo.wait_for(rf"^  js-mqtt:  Node\.js sensor -> {topic}/js-mqtt$")
            demo.wait_for(rf"^  the listener subscribes to {topic}/#$")
            sensors = {"py-stdio", "py-mqtt", "js-mqtt"}  # (the listener's child still on stdio)
            wait_until(
                lambda: all(len(by_sensor(data / "readings.db").get(s, [])) >= 5 for s in sensors),
                20,
                "all three",
            )
            pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", "\n".join(demo.stdout))]
            demo.process.send_signal(signal.SIGINT)  # Ctrl-C
            assert demo.wait(20) == 0
        finally:
            demo.stop()
    assert demo.stdout[-1] == (
        "bothways demo: stopped web (stopped), listen (stopped), py-mqtt (stopped), js-mqtt (stopped)"
    ), demo.stdout[-10:]
    assert pids and not any(Path(f"/proc/{pid}").exists() for pid in pids)  # the spawned sensor
    assert wait_none_marked(mark) == []  # nothing left: no child, no grandchild
    stored = by_sensor(data / "readings.db")
    assert set(stored) == sensors
    for name in sensors:
        seqs = [row[1] for row in stored[name]]
        assert len(seqs) >= 5 and seqs == list(range(seqs[0], seqs[0] + len(seqs))), name


def test_the_demo_through_a_broker_keeps_node_off_it_without_mqtt_js(tmp_path: Path) -> None:
    """The wheel's copy of js/ has no node_modules: its Node.js sensors stay on tcp and a file."""
    node_sensor()
    wheel_js = tmp_path / "js"  # as setup.py lays it out
    shutil.copytree(ROOT / "js" / "src", wheel_js / "src")
    (wheel_js / "bin").mkdir()
    shutil.copy(JS_SENSOR, wheel_js / "bin" / "sensor.mjs")
    (wheel_js / "package.json").write_text('{"type": "module"}\n')
    env, mark = marked_env(BOTHWAYS_JS_SENSOR=str(wheel_js / "bin" / "sensor.mjs"))
    with Broker(tmp_path / "broker") as broker:
        argv = [*BOTHWAYS, "demo", "--port", "0", "--interval", "0.2", "--duration", "3"]
        demo = Program([*argv, "--mqtt", broker.url("demo")], env=env, cwd=tmp_path)
        try:
            assert demo.wait(30) == 0, demo.stdout[-10:]
        finally:
            demo.stop()
    assert any(line.startswith("  (the Node.js sensors stay on tcp and a file") for line in demo.stdout)
    assert demo.stdout[-1] == (
        "bothways demo: stopped web (stopped), listen (stopped), py-mqtt (stopped), js-tcp (stopped), "
        "js-file (stopped)"
    ), demo.stdout[-10:]
    assert wait_none_marked(mark) == []
    stored = by_sensor(tmp_path / "bothways-data" / "readings.db")
    assert set(stored) == {"py-stdio", "py-mqtt", "js-tcp", "js-file"}
