"""The telemetry system through a broker, as real processes on 127.0.0.1: ``bothways sensor
--to mqtt://...`` publishers, Mosquitto (tests/broker.py), ``bothways listen mqtt://...``
subscribers and PostgreSQL (tests/postgres.py; one server for the module, a database per test).

- Three listeners on one shared subscription split the readings: each is stored once, and
  each listener stored some (their own counts add up to the total: none was handed twice).
- The broker stopped and started again mid-stream (its sessions persisted): every reading the
  sensors sent is stored, once (what the broker hands out again is skipped by (sensor, seq)).
- A listener with a persistent session, killed with SIGKILL and started again, gets and stores
  what was published while it was away.

Each test checks that no process it started is left behind.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..broker import Broker
from ..conftest import UNIT
from ..postgres import Postgres
from ..tutorial import Program, marked_env, wait_none_marked

BOTHWAYS = [sys.executable, "-m", "bothways.cli"]
WAIT = 30  # seconds (x UNIT) for anything that should take a few


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    pytest.importorskip("psycopg")
    # Not under pytest's own temporary folder: a pytest started meanwhile (another session) makes
    # /tmp/pytest-of-<user> private again, and the server, running as "postgres", loses its files.
    folder = Path(tempfile.mkdtemp(prefix="bothways-pg-"))
    try:
        with Postgres(folder) as server:
            yield server
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def db(postgres: Postgres) -> str:
    """A fresh database on the module's server, for one test: its URL."""
    import psycopg

    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    return postgres.url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with Broker(tmp_path / "broker") as started:
        yield started


class System:
    """The processes of one test, all carrying one mark (found afterwards if any is left)."""

    def __init__(self, broker: Broker, db: str) -> None:
        self.broker = broker
        self.db = db
        self.env, self.mark = marked_env()
        self.started: list[Program] = []

    def listener(self, query: str) -> Program:
        """``bothways listen`` on ``readings/#`` (with ``query``), once it has subscribed."""
        url = self.broker.url("readings/#") + f"?{query}"
        program = Program([*BOTHWAYS, "listen", url, "--db", self.db], env=self.env)
        self.started.append(program)
        said = program.wait_for(rf"^bothways listen: {re.escape(url)}: (.*)", WAIT).group(1)
        assert not said.startswith("cannot open"), said  # (listen() returns once subscribed)
        return program

    def sensor(self, name: str, count: int, rate: int, query: str = "") -> Program:
        """``bothways sensor`` publishing ``count`` readings to ``readings/<name>`` (with ``query``)."""
        to = self.broker.url(f"readings/{name}") + (f"?{query}" if query else "")
        flags = ["--id", name, "--rate", str(rate), "--count", str(count), "--wait", str(WAIT * UNIT)]
        program = Program([*BOTHWAYS, "sensor", "--to", to, *flags], env=self.env)
        self.started.append(program)
        return program

    def stored(self) -> dict[str, list[int]]:
        """Each sensor's seqs in the database, in order."""
        import psycopg

        found: dict[str, list[int]] = {}
        try:
            with psycopg.connect(self.db) as con:
                for sensor, seq in con.execute("SELECT sensor, seq FROM readings ORDER BY sensor, seq"):
                    found.setdefault(sensor, []).append(seq)
        except psycopg.errors.UndefinedTable:  # no listener has made it yet
            pass
        return found

    def wait_stored(self, total: int) -> dict[str, list[int]]:
        deadline = time.monotonic() + WAIT * UNIT
        while sum(map(len, (stored := self.stored()).values())) < total:
            if time.monotonic() > deadline:
                counts = {sensor: len(seqs) for sensor, seqs in stored.items()}
                pytest.fail(f"{total} readings were not all stored in {WAIT * UNIT:.0f} s: {counts}")
            time.sleep(0.1)
        return stored

    def close(self) -> None:
        for program in self.started:
            program.stop()
        assert wait_none_marked(self.mark) == []  # nothing left running


@pytest.fixture
def system(broker: Broker, db: str) -> Iterator[System]:
    started = System(broker, db)
    try:
        yield started
    finally:
        started.close()


def stop_listener(program: Program) -> tuple[int, int]:
    """Ctrl-C; returns what it says it stored: (readings, of which new)."""
    program.process.send_signal(signal.SIGINT)
    assert program.wait(WAIT) == 0, program.stderr[-10:]
    match = re.search(r"^bothways listen: stopped: ([\d,]+) stored \(([\d,]+) new\)", program.stdout[-1])
    assert match, program.stdout[-5:]
    return int(match.group(1).replace(",", "")), int(match.group(2).replace(",", ""))


def each_once(stored: dict[str, list[int]], counts: dict[str, int]) -> None:
    """Every sensor's readings are there, each once: ``count`` consecutive seqs."""
    assert {sensor: len(seqs) for sensor, seqs in stored.items()} == counts
    for seqs in stored.values():
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def test_three_listeners_on_a_shared_subscription_split_the_readings(system: System) -> None:
    listeners = [system.listener("share=ingest") for _ in range(3)]
    sensors = [system.sensor(f"s{n}", 10_000, 20_000) for n in range(3)]
    for sensor in sensors:
        assert sensor.wait(WAIT) == 0, sensor.stderr[-5:]  # each reading acknowledged by the broker
    stored = system.wait_stored(30_000)
    each_once(stored, {"s0": 10_000, "s1": 10_000, "s2": 10_000})
    shares = [stop_listener(listener) for listener in listeners]
    assert sum(handed for handed, _ in shares) == 30_000  # none was handed to two listeners
    assert all(new > 0 for _, new in shares), shares  # each stored some
    assert sum(new for _, new in shares) == 30_000


@pytest.mark.parametrize(
    ("timeout", "down", "resent"),
    [
        pytest.param("", 1.0, False, id="sends-wait-for-the-broker"),  # (away < the 10 s timeout)
        pytest.param("timeout=2", 3.0, True, id="the-sensors-send-again"),  # (their sends time out)
    ],
)
def test_a_broker_restart_mid_stream_loses_nothing_and_stores_nothing_twice(
    system: System, broker: Broker, timeout: str, down: float, resent: bool
) -> None:
    # a persistent session: what the broker holds for the listener outlives the restart. (Not a
    # shared subscription: Mosquitto 2.0 does not restore those from its persistence file, so
    # what is published after the restart and before the listeners subscribe again goes nowhere.)
    listener = system.listener("client_id=ingest-r")
    sensors = [system.sensor(f"r{n}", 6_000, 3_000, timeout) for n in range(2)]  # 2 s of readings each
    system.wait_stored(1_000)
    assert all(sensor.process.poll() is None for sensor in sensors)  # mid-stream
    broker.stop()
    time.sleep(down * UNIT)
    broker.start()
    for sensor in sensors:
        assert sensor.wait(WAIT) == 0, sensor.stderr[-5:]  # every reading acknowledged, in the end
    said = [line for sensor in sensors for line in sensor.stderr]
    assert any("will go again" in line for line in said) == resent, said  # (sent lately: again)
    stored = system.wait_stored(12_000)
    each_once(stored, {"r0": 6_000, "r1": 6_000})
    assert stop_listener(listener)[1] == 12_000
    assert system.stored() == stored  # and nothing came after


def test_a_killed_listener_with_a_session_gets_what_was_published_while_it_was_away(
    system: System,
) -> None:
    query = "client_id=ingest-kept"
    first = system.listener(query)
    before = system.sensor("k0", 2_000, 20_000)
    assert before.wait(WAIT) == 0, before.stderr[-5:]
    system.wait_stored(2_000)
    os.kill(first.process.pid, signal.SIGKILL)  # (the pid this test started)
    assert first.wait(WAIT) == -signal.SIGKILL
    away = system.sensor("k1", 3_000, 20_000)  # published while no listener runs
    assert away.wait(WAIT) == 0, away.stderr[-5:]
    assert set(system.stored()) == {"k0"}
    again = system.listener(query)
    stored = system.wait_stored(5_000)
    each_once(stored, {"k0": 2_000, "k1": 3_000})
    assert stop_listener(again)[1] == 3_000
