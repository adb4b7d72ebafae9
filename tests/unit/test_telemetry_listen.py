"""`bothways listen` (bothways.telemetry.listen): many sources at once into SQLite, invalid
readings counted and never stored, batches, a clean stop, and a kill -9 survived."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bothways
from bothways.telemetry import InvalidReading, Store, to_reading
from bothways.telemetry.listen import BATCH_ROWS, Console, Ingest, database, is_url, readings_of
from bothways.telemetry.store import open_store

from ..conftest import UNIT
from ..postgres import Postgres
from ..tutorial import Program
from ..vectors import load

PY = sys.executable
LISTEN = [PY, "-m", "bothways.cli", "listen"]


def rows(db: Path, sql: str = "SELECT sensor, seq FROM readings") -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as con:
        return con.execute(sql).fetchall()


def count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        return int(rows(db, "SELECT count(*) FROM readings")[0][0])
    except sqlite3.OperationalError:  # the listener is creating it
        return 0


def wait_until(predicate: Any, timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout * UNIT
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or predicate}")
        time.sleep(0.02)


def readings(sensor: str, first: int, n: int) -> list[dict[str, Any]]:
    now = time.time()
    return [{"sensor": sensor, "seq": first + i, "t": now, "celsius": (i % 200) / 10 - 5} for i in range(n)]


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# --------------------------------------------------------------------------------------------
# readings_of: the fast path agrees with to_reading


def _agree(value: Any) -> None:
    now, source = 1_800_000_000.5, "tcp://127.0.0.1:9"
    expected: Any
    try:
        expected = to_reading(json.loads(json.dumps(value)), source=source, now=now, seqs={})
    except InvalidReading as invalid:
        expected = invalid.reason
    refused: list[InvalidReading] = []
    got = readings_of([json.loads(json.dumps(value))], source, now, {}, refused.append)
    if isinstance(expected, str):
        assert got == [] and [r.reason for r in refused] == [expected]
    else:
        assert refused == [] and got == [expected]
        assert [type(got[0][k]) for k in ("sensor", "seq", "t", "celsius")] == [str, int, float, float]


@pytest.mark.parametrize("case", load("readings.json"), ids=lambda c: c["name"])
def test_readings_of_agrees_with_the_vectors(case: dict[str, Any]) -> None:
    seqs = dict(case["seqs"])
    refused: list[InvalidReading] = []
    got = readings_of([case["value"]], case["source"], case["now"], seqs, refused.append)
    if "invalid" in case:
        assert got == [] and [r.reason for r in refused] == [case["invalid"]]
    else:
        assert got == [case["reading"]] and refused == []
        assert seqs == case.get("seqs_after", case["seqs"])


_numbers = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "sensor": st.one_of(st.text(max_size=3), _numbers),
            "seq": st.one_of(_numbers, st.integers(-2, 2**54), st.text(max_size=2)),
            "t": st.one_of(_numbers, st.text(max_size=2)),
            "celsius": st.one_of(_numbers, st.text(max_size=2), st.lists(st.integers(), max_size=1)),
            "room": st.text(max_size=2),
        },
    )
)
def test_readings_of_agrees_with_to_reading_on_any_object(value: dict[str, Any]) -> None:
    _agree(value)


# --------------------------------------------------------------------------------------------
# Sources


def test_what_is_a_url_and_what_is_a_command() -> None:
    assert is_url("tcp://127.0.0.1:9000") and is_url("FILE:/x") and is_url("stdio:") and is_url("ws://h:1/")
    assert not is_url("python3 sensor.py") and not is_url("./sensor --to x") and not is_url("c:stuff")


def test_database_defaults_to_the_data_folder() -> None:
    assert database(None, None) == Path("bothways-data/readings.db")
    assert database(None, "d") == Path("d/readings.db")
    assert database("x.db", "d") == Path("x.db")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ('python3 -c "unbalanced', "quotation"),
        ("http://127.0.0.1:1/api/readings", "bothways serve"),
        ("tcp://127.0.0.1", "port"),
        ("file:/x?stat=1", "stat"),
    ],
)
def test_a_bad_source_stops_everything_before_it_starts(source: str, message: str, tmp_path: Path) -> None:
    program = Program([*LISTEN, "tcp://127.0.0.1:0", source, "--data", str(tmp_path)], cwd=tmp_path)
    try:
        assert program.wait(15) == 2
    finally:
        program.stop()
    assert message in "\n".join(program.stderr), program.stderr
    assert program.stdout == []  # nothing listened, nothing was created
    assert not (tmp_path / "readings.db").exists()


def test_a_source_that_cannot_open_is_reported_and_the_others_go_on(tmp_path: Path) -> None:
    with bothways.listen("tcp://127.0.0.1:0") as taken:
        program = Program([*LISTEN, taken.url, "tcp://127.0.0.1:0", "--db", str(tmp_path / "r.db")])
        try:
            url = program.wait_for(r"listening on (tcp://\S+)").group(1)
            with bothways.connect(url) as out:
                out.send_many(readings("ok", 1, 10))
            wait_until(lambda: count(tmp_path / "r.db") == 10)
            program.process.send_signal(signal.SIGTERM)
            assert program.wait(10) == 0
        finally:
            program.stop()
    assert any(taken.url in line and "cannot open" in line for line in program.stderr), program.stderr


def test_no_source_opened_exits_1(tmp_path: Path) -> None:
    with bothways.listen("tcp://127.0.0.1:0") as taken:
        program = Program([*LISTEN, taken.url, "--db", str(tmp_path / "r.db")])
        try:
            assert program.wait(15) == 1
        finally:
            program.stop()
    assert any("no source could be opened" in line for line in program.stderr)


def test_many_sources_at_once_with_invalid_readings_counted_not_stored(tmp_path: Path) -> None:
    """A spawned Python sensor (stdio), a tcp URL and a followed file, all at once; invalid
    readings and bad lines from each are reported and counted, never stored."""
    db = tmp_path / "r.db"
    drop = tmp_path / "drop.ndjson"
    drop.write_bytes(bothways.encode_many([*readings("file", 1, 300), {"sensor": "file"}, "warm"]))
    spawned = f"{PY} -m bothways.cli sensor --id spawned --interval 0 --count 200"
    program = Program([*LISTEN, spawned, "tcp://127.0.0.1:0", f"file:{drop}", "--db", str(db)], cwd=tmp_path)
    try:
        url = program.wait_for(r"listening on (tcp://\S+)").group(1)
        pid = int(program.wait_for(r"started \(pid (\d+)\)").group(1))
        with bothways.connect(url) as out:
            out.send_many(readings("tcp", 1, 500))
            out.send_many([[1, 2], {"sensor": "tcp", "seq": -1, "celsius": 3.0}, 21.5])
            out.send_bytes(b"{oops\n")
            out.send_many(readings("tcp", 1, 500))  # the same again: stored once
        with drop.open("ab") as more:  # the file is followed
            more.write(bothways.encode_many(readings("file", 301, 100)))
        # 200 + 500 + 400, and the tcp bare number 21.5
        wait_until(lambda: count(db) == 1101, what="every reading stored")
        program.wait_for(r"spawned.*: ended")
        program.process.send_signal(signal.SIGINT)
        assert program.wait(10) == 0
    finally:
        program.stop()
    assert not pid_alive(pid)  # the spawned sensor was reaped
    by_sensor = dict(rows(db, "SELECT sensor, count(DISTINCT seq) FROM readings GROUP BY sensor"))
    assert by_sensor == {"spawned": 200, "tcp": 500, "file": 400, "tcp://127.0.0.1:0": 1}
    final = program.stdout[-1]
    assert re.search(r"stopped: 1,601 stored \(1,101 new\), 4 invalid, 1 bad lines", final), final
    errors = "\n".join(program.stderr)
    assert (
        "invalid reading from tcp://127.0.0.1:0: a reading is an object or a number, not an array" in errors
    )
    assert 'invalid reading from tcp://127.0.0.1:0: "seq" must be an integer' in errors
    assert f'invalid reading from file:{drop}: missing "seq"' in errors
    assert "tcp://127.0.0.1:0: DECODE_ERROR: line " in errors


def test_sigterm_stops_the_sources_commits_and_reaps(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    spawned = f"{PY} -m bothways.cli sensor --id forever --interval 0.01"
    program = Program([*LISTEN, spawned, "ws://127.0.0.1:0/x", "--db", str(db)], cwd=tmp_path)
    try:
        pid = int(program.wait_for(r"started \(pid (\d+)\)").group(1))
        wait_until(lambda: count(db) >= 20)
        program.process.send_signal(signal.SIGTERM)
        assert program.wait(10) == 0
    finally:
        program.stop()
    assert not pid_alive(pid)
    stored = int(re.search(r"stopped: ([\d,]+) stored", program.stdout[-1]).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert stored == count(db) >= 20  # what the sensor sent as it stopped was stored too
    seqs = [seq for _, seq in rows(db)]
    assert seqs == list(range(min(seqs), min(seqs) + len(seqs)))  # nothing missing in between


def test_killed_mid_ingest_resumes_from_the_file_state(tmp_path: Path) -> None:
    """kill -9 while storing a big file, then again: nothing lost, nothing twice, the database
    whole; the second run reads on from the saved position (a batch again at most)."""
    n = 300_000
    drop, state, db = tmp_path / "in.ndjson", tmp_path / "in.state", tmp_path / "r.db"
    with drop.open("wb") as out:
        for start in range(0, n, 50_000):
            out.write(bothways.encode_many(readings("big", start, 50_000)))
    url = f"file:{drop}?state={state}&follow=0"
    first = Program([*LISTEN, url, "--db", str(db)], cwd=tmp_path)
    try:
        wait_until(lambda: count(db) > 60_000, what="the first readings")
        first.process.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.stop()
    at_kill = count(db)
    assert 60_000 < at_kill < n, "killed in the middle"
    assert state.exists()
    second = Program([*LISTEN, url, "--db", str(db)], cwd=tmp_path)
    try:
        assert second.wait(30) == 0  # follow=0: it ends at the end of the file
    finally:
        second.stop()
    assert count(db) == n
    assert rows(db, "SELECT count(DISTINCT seq), min(seq), max(seq) FROM readings")[0] == (n, 0, n - 1)
    assert rows(db, "PRAGMA integrity_check") == [("ok",)]
    stored, new = (
        int(x.replace(",", "")) for x in re.findall(r"([\d,]+) stored \(([\d,]+) new\)", second.stdout[-1])[0]
    )
    assert new == n - at_kill
    assert stored - new <= 20_000  # read again: what the kill cut (one 1 MiB read at most)
    assert json.loads(state.read_text())["offset"] == drop.stat().st_size


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    # Its own folder in /tmp, not under pytest's: another pytest session starting meanwhile
    # makes /tmp/pytest-of-<user> private again, and the server (another user) loses its way.
    folder = Path(tempfile.mkdtemp(prefix="bothways-pg-"))
    try:
        with Postgres(folder / "server") as server:
            yield server
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_readings_into_postgresql(postgres: Postgres, tmp_path: Path) -> None:
    """--db postgresql://...: the same listener into a PostgresStore (a server of the test's own)."""
    program = Program([*LISTEN, "tcp://127.0.0.1:0", "--db", postgres.url], cwd=tmp_path)
    try:
        url = program.wait_for(r"listening on (tcp://\S+)").group(1)
        with bothways.connect(url) as out:
            out.send_many(readings("pg", 1, 3000))
            out.send_many(readings("pg", 1, 3000))  # again: stored once
        with open_store(postgres.url) as store:
            wait_until(lambda: store.count() == 3000, what="3,000 readings in PostgreSQL")
        program.process.send_signal(signal.SIGTERM)
        assert program.wait(10) == 0
    finally:
        program.stop()
    assert program.stdout[0].startswith(
        "bothways listen: storing readings in postgresql://postgres@127.0.0.1:"
    )
    assert "stopped: 6,000 stored (3,000 new)" in program.stdout[-1]


def test_a_fifo_source(tmp_path: Path) -> None:
    db, path = tmp_path / "r.db", tmp_path / "pipe"
    program = Program([*LISTEN, f"fifo:{path}", "--db", str(db)], cwd=tmp_path)
    try:
        program.wait_for("reading the FIFO")
        for first in (1, 51):  # two writers, one after the other (the reader reopens)
            with bothways.connect(f"fifo:{path}") as out:
                out.send_many(readings("fifo", first, 50))
        wait_until(lambda: count(db) == 100)
        program.process.send_signal(signal.SIGTERM)
        assert program.wait(10) == 0
    finally:
        program.stop()


# --------------------------------------------------------------------------------------------
# In the process: batches, the status line


def test_big_batches_one_transaction_each(tmp_path: Path) -> None:
    drop = tmp_path / "in.ndjson"
    drop.write_bytes(bothways.encode_many(readings("b", 0, 40_000)))
    out = io.StringIO()
    with Store(tmp_path / "r.db") as store:
        ingest = Ingest([f"file:{drop}?follow=0"], store, console=Console(out, out, tty=False))
        assert ingest.open() == 1
        assert ingest.run() == 0
        assert store.count() == 40_000
    assert 40_000 // BATCH_ROWS <= ingest.commits <= 40_000 // BATCH_ROWS + 4
    assert "every source ended: 40,000 stored (40,000 new)" in out.getvalue()


def test_on_a_terminal_one_status_line_is_redrawn(tmp_path: Path) -> None:
    slow = f'{PY} -c "import time\nfor i in range(12): print(i, flush=True); time.sleep(0.1)"'
    out, err = io.StringIO(), io.StringIO()
    with Store(tmp_path / "r.db") as store:
        ingest = Ingest([slow], store, console=Console(out, err, tty=True))
        ingest.open()
        assert ingest.run() == 0
        assert store.count() == 12
    text = out.getvalue()
    assert text.count("\r") >= 2 and "\x1b[K" in text
    assert re.search(r"\r[\d,]+ stored \([\d,]+ new\), 0 invalid, 0 bad lines · [\d,]+/s · ", text), text
    assert text.endswith(f"every source ended: 12 stored (12 new), 0 invalid, 0 bad lines in {store.path}\n")


class _FlakyStore(Store):
    """A store whose first ``fails`` transactions fail, as a full disk would."""

    fails = 2

    def add(self, readings: Any) -> int:
        if self.fails:
            self.fails -= 1
            raise sqlite3.OperationalError("database or disk is full")
        return super().add(readings)


def test_a_failing_database_is_tried_again_and_nothing_is_lost(tmp_path: Path) -> None:
    drop = tmp_path / "in.ndjson"
    drop.write_bytes(bothways.encode_many(readings("d", 0, 12_000)))
    out = io.StringIO()
    with _FlakyStore(tmp_path / "r.db") as store:
        ingest = Ingest([f"file:{drop}?follow=0"], store, console=Console(out, out, tty=False))
        ingest.open()
        assert ingest.run() == 0
        assert store.count() == 12_000 and store.fails == 0
    assert out.getvalue().count("database or disk is full") == 1  # said once, not at each try


def test_stop_from_another_thread(tmp_path: Path) -> None:
    out = io.StringIO()
    stop = threading.Event()
    with Store(tmp_path / "r.db") as store:
        ingest = Ingest(
            ["tcp://127.0.0.1:0", "ws://127.0.0.1:0/"], store, console=Console(out, out, tty=False)
        )
        ingest.open()
        channel = ingest.sources[0].channel
        assert channel is not None
        url = channel.url
        runner = threading.Thread(target=lambda: ingest.run(stop))
        runner.start()
        with bothways.connect(url) as client:
            client.send_many(readings("t", 5, 7))
        wait_until(lambda: ingest.stored == 7)
        started = time.monotonic()
        stop.set()
        runner.join(10)
        assert not runner.is_alive() and time.monotonic() - started < 3
    assert out.getvalue().rstrip().endswith(f"in {store.path}")
    assert os.path.exists(store.path)
