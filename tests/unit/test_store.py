"""bothways.telemetry.store: idempotent batches, paging, filters, summaries, a second process;
every test on both stores, SQLite and a PostgreSQL server of the test's own (tests/postgres.py)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from bothways.telemetry import Store
from bothways.telemetry.store import PostgresStore, open_store

from ..postgres import Postgres


def reading(sensor: str, seq: int, t: float, celsius: float, **extra: object) -> dict[str, object]:
    return {"sensor": sensor, "seq": seq, "t": t, "celsius": celsius, **extra}


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with Postgres(tmp_path_factory.mktemp("postgres")) as server:
        yield server


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        with Store(tmp_path / "data" / "readings.db") as s:
            yield s
        return
    server: Postgres = request.getfixturevalue("postgres")
    with open_store(server.url) as s:
        assert isinstance(s, PostgresStore)
        yield s
        s._db.execute("DROP TABLE readings")  # the next test starts empty
        s._db.commit()


def test_add_is_idempotent_on_sensor_and_seq(store: Any) -> None:
    batch = [reading("a", i, 100.0 + i, 20.0 + i) for i in range(5)]
    assert store.add(batch) == 5
    assert store.add(batch) == 0
    changed = [reading("a", 0, 999.0, -5.0), reading("b", 0, 1.0, 1.0)]
    assert store.add(changed) == 1  # ("a", 0) kept as first stored
    page = store.query(sensor="a")
    assert page.readings[0] == reading("a", 0, 100.0, 20.0)
    assert store.count() == 6


def test_extra_fields_round_trip_in_order(store: Any) -> None:
    store.add([reading("a", 1, 1.0, 2.0, unit="C", tags=["x", {"y": None}])])
    (got,) = store.query().readings
    assert got == reading("a", 1, 1.0, 2.0, unit="C", tags=["x", {"y": None}])
    assert list(got) == ["sensor", "seq", "t", "celsius", "unit", "tags"]


def test_paging_and_filters(store: Any) -> None:
    store.add([reading("ab"[i % 2], i, float(i), float(i)) for i in range(25)])
    seen, cursor, pages = [], None, 0
    while True:
        page = store.query(after=cursor, limit=10)
        seen += [r["seq"] for r in page.readings]
        pages += 1
        if page.next is None:
            break
        cursor = page.next
    assert seen == list(range(25)) and pages == 3
    assert [r["seq"] for r in store.query(sensor="b", since=5, until=11).readings] == [5, 7, 9]
    assert store.query(after=25).readings == [] and store.query(after=25).last == 25
    assert store.query().last == 25
    with pytest.raises(ValueError, match="limit must be from 1 to 10000"):
        store.query(limit=0)


def test_sensors_summary(store: Any) -> None:
    store.add([reading("a", 1, 10.0, 1.0), reading("a", 2, 30.0, 5.0), reading("a", 3, 20.0, 3.0)])
    store.add([reading("b", 1, 5.0, -2.0)])
    assert store.sensors() == [
        {"sensor": "a", "count": 3, "last": 5.0, "min": 1.0, "max": 5.0, "mean": 3.0, "last_seen": 30.0},
        {"sensor": "b", "count": 1, "last": -2.0, "min": -2.0, "max": -2.0, "mean": -2.0, "last_seen": 5.0},
    ]


def test_threads_share_a_store(store: Any) -> None:
    def fill(name: str) -> None:
        for i in range(50):
            store.add([reading(name, i * 10 + k, float(i), 0.0) for k in range(10)])

    threads = [threading.Thread(target=fill, args=(n,)) for n in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.count() == 2000


def test_a_second_process_reads_what_was_stored(store: Any) -> None:
    store.add([reading("a", 1, 1.0, 1.5)])
    if isinstance(store, Store):
        (mode,) = sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()
        assert mode == "wal"
    code = (
        "import sys; from bothways.telemetry.store import open_store; "
        "s = open_store(sys.argv[1]); print(s.query().readings); s.add([{'sensor': 'z', 'seq': 1, 't': 2.0, "
        "'celsius': 3.0}])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(store.path)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[{'sensor': 'a', 'seq': 1, 't': 1.0, 'celsius': 1.5}]"
    assert [r["sensor"] for r in store.query().readings] == ["a", "z"]
