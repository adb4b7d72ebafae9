"""Scale benchmark (not a test): readings through an MQTT broker into the store, and calls
through the broker, each beside the bare tool doing the same in the same run.

- End to end, readings/s: publisher processes (``bothways.connect("mqtt://...")``, QoS 1,
  ``send_many`` of 1,000) -> Mosquitto -> ``bothways listen`` process(es) -> the store, timed from
  the first publish to the last reading stored; with 1 listener (SQLite and PostgreSQL) and with
  3 listeners on one shared subscription (PostgreSQL). Beside: ``mosquitto_pub -l`` ->
  ``mosquitto_sub -C N`` moving the same payloads at the same QoS (the bare broker rate).
- PostgreSQL ingest: ``PostgresStore.add`` in batches of 5,000 beside a bare ``COPY`` of the same
  rows into a table of the same schema.
- Calls: sequential round trips of a Peer call through the broker (``async_rpc_connect`` ->
  ``async_rpc_listen``) beside a bare paho ping-pong (publish, an echo client answers).

    python bench/scale.py [--readings 30000] [--rounds 2] [--record bench/RESULTS.md]

Everything runs on 127.0.0.1 with a Mosquitto and a PostgreSQL started here (tests/broker.py,
tests/postgres.py) and stopped at the end. Best of the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
from common import machine, record  # noqa: E402

from bothways.peer import Peer  # noqa: E402
from bothways.telemetry.store import _PG_SCHEMA, PostgresStore, open_store  # noqa: E402
from bothways.transports.mqtt import async_rpc_connect, async_rpc_listen  # noqa: E402
from tests.broker import Broker, mosquitto_path  # noqa: E402
from tests.postgres import Postgres  # noqa: E402

LIMIT = 180.0  # seconds one run may take
PUBLISHER = """
import sys, time, bothways
url, sensor, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
with bothways.connect(url + "?timeout=60") as out:
    for start in range(0, count, 1000):
        out.send_many({"sensor": sensor, "seq": n, "t": 1.5, "celsius": 20.5}
                      for n in range(start, min(count, start + 1000)))
"""


def payload(sensor: str, n: int) -> str:
    return f'{{"sensor":"{sensor}","seq":{n},"t":1.5,"celsius":20.5}}'


def bare_broker(broker: Broker, count: int, publishers: int) -> float:
    """readings/s from mosquitto_pub -l to mosquitto_sub -C: the broker with nothing of ours."""
    topic = f"bare/{time.monotonic_ns()}"
    sub = subprocess.Popen(
        [mosquitto_path("mosquitto_sub"), "-p", str(broker.port), "-q", "1", "-t", topic, "-C", str(count)],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(0.3)  # subscribed
    with tempfile.TemporaryDirectory() as folder:
        files = []
        for p in range(publishers):
            path = Path(folder) / f"p{p}"
            path.write_text("".join(payload(f"s{p}", n) + "\n" for n in range(count // publishers)))
            files.append(path)
        started = time.perf_counter()
        pubs = [
            subprocess.Popen(
                [mosquitto_path("mosquitto_pub"), "-p", str(broker.port), "-q", "1", "-t", topic, "-l"],
                stdin=path.open("rb"),
            )
            for path in files
        ]
        sub.wait(LIMIT)
        elapsed = time.perf_counter() - started
        for pub in pubs:
            pub.wait(LIMIT)
    return count / elapsed


def end_to_end(broker: Broker, db: str, count: int, listeners: int, publishers: int) -> float:
    """readings/s from bothways publishers through ``bothways listen`` process(es) into ``db``."""
    topic = f"readings/{time.monotonic_ns()}"
    share = "?share=ingest" if listeners > 1 else ""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bothways.cli", "listen", broker.url(topic + "/#") + share, "--db", db],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(listeners)
    ]
    store = open_store(db)
    try:
        before = store.count()
        time.sleep(1.5)  # the listeners have subscribed
        started = time.perf_counter()
        pubs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    PUBLISHER,
                    broker.url(f"{topic}/p{p}"),
                    f"{topic}-p{p}",
                    str(count // publishers),
                ]
            )
            for p in range(publishers)
        ]
        deadline = time.monotonic() + LIMIT
        while store.count() - before < count and time.monotonic() < deadline:
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        stored = store.count() - before
        for pub in pubs:
            pub.wait(LIMIT)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            proc.wait(30)
        store.close()
    if stored != count:
        raise RuntimeError(f"stored {stored} of {count}")
    return count / elapsed


def pg_ingest(url: str, count: int) -> tuple[float, float]:
    """(PostgresStore.add readings/s, bare COPY rows/s) for the same rows."""
    stamp = time.monotonic_ns()
    rows = [{"sensor": f"pg{stamp}", "seq": n, "t": 1.5, "celsius": 20.5} for n in range(count)]
    with PostgresStore(url) as store:
        started = time.perf_counter()
        for start in range(0, count, 5000):
            store.add(rows[start : start + 5000])
        ours = count / (time.perf_counter() - started)
    import psycopg

    with psycopg.connect(url) as db:
        db.execute(_PG_SCHEMA.replace("readings", "bare"))  # the same table, indexes and key
        db.commit()
        started = time.perf_counter()
        for start in range(0, count, 5000):
            with (
                db.cursor() as cursor,
                cursor.copy("COPY bare (sensor, seq, t, celsius, extra) FROM STDIN") as copy,
            ):
                for r in rows[start : start + 5000]:
                    copy.write_row((r["sensor"], r["seq"], r["t"], r["celsius"], None))
            db.commit()
        bare = count / (time.perf_counter() - started)
    return ours, bare


def call_round_trips(broker: Broker, count: int) -> tuple[float, float]:
    """(median µs of a Peer call through the broker, median µs of a bare paho ping-pong)."""

    async def peer_calls() -> list[float]:
        server = Peer(await async_rpc_listen(broker.url("bench/svc")))
        server.expose(lambda x: x, name="echo")
        await server.start()
        times = []
        async with Peer(await async_rpc_connect(broker.url("bench/svc"))) as caller:
            await caller.call("echo", 0)
            for n in range(count):
                started = time.perf_counter()
                await caller.call("echo", n)
                times.append(time.perf_counter() - started)
        await server.close()
        return times

    ours = asyncio.run(peer_calls())

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    answered = threading.Event()
    echo = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    pinger = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    echo.on_message = lambda c, u, m: c.publish("bench/pong", m.payload, qos=1)
    pinger.on_message = lambda c, u, m: answered.set()
    for client, topic in ((echo, "bench/ping"), (pinger, "bench/pong")):
        client.connect("127.0.0.1", broker.port)
        client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as ours does
        client.subscribe(topic, qos=1)
        client.loop_start()
    time.sleep(0.5)
    bare = []
    for n in range(count):
        answered.clear()
        started = time.perf_counter()
        pinger.publish("bench/ping", str(n), qos=1)
        if not answered.wait(10):
            raise RuntimeError("no pong")
        bare.append(time.perf_counter() - started)
    for client in (echo, pinger):
        client.loop_stop()
        client.disconnect()
    return statistics.median(ours) * 1e6, statistics.median(bare) * 1e6


def best(rounds: int, run: Callable[[], Any]) -> Any:
    results = []
    for _ in range(rounds):
        try:
            results.append(run())
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"failed: {exc}", file=sys.stderr)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readings", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--record", type=Path)
    args = parser.parse_args()
    n = args.readings
    with tempfile.TemporaryDirectory() as folder, Broker(Path(folder) / "broker") as broker:
        with Postgres(Path(folder) / "pg") as pg:
            sqlite = str(Path(folder) / "readings.db")
            rates: dict[str, float] = {}
            for _ in range(args.rounds):
                for name, run in (
                    ("bare 2 mosquitto_pub -> mosquitto_sub", lambda: bare_broker(broker, n, 2)),
                    ("2 publishers -> 1 listener -> SQLite", lambda: end_to_end(broker, sqlite, n, 1, 2)),
                    ("2 publishers -> 1 listener -> PostgreSQL", lambda: end_to_end(broker, pg.url, n, 1, 2)),
                    (
                        "2 publishers -> 3 listeners (shared) -> PostgreSQL",
                        lambda: end_to_end(broker, pg.url, n, 3, 2),
                    ),
                ):
                    for value in best(1, run):
                        rates[name] = max(rates.get(name, 0.0), value)
                    print(f"{name}: {rates.get(name, 0):,.0f} readings/s", file=sys.stderr)
            ingest = max(best(args.rounds, lambda: pg_ingest(pg.url, 100_000)), default=(0.0, 1.0))
            calls = min(best(args.rounds, lambda: call_round_trips(broker, args.calls)), default=(0.0, 1.0))
    bare = rates.get("bare 2 mosquitto_pub -> mosquitto_sub", 0.0) or 1.0
    one = rates.get("2 publishers -> 1 listener -> PostgreSQL", 0.0) or 1.0
    rows = ["| path | readings/s | vs bare broker |", "| --- | ---: | ---: |"]
    for name, rate in rates.items():
        rows.append(f"| {name} | {rate:,.0f} | {rate / bare:.2f}x |")
    three = rates.get("2 publishers -> 3 listeners (shared) -> PostgreSQL", 0.0)
    rows.append(f"| 3 listeners vs 1 (PostgreSQL) | | {three / one:.2f}x |")
    rows += [
        "",
        "| PostgreSQL ingest | rows/s | ratio |",
        "| --- | ---: | ---: |",
        f"| `PostgresStore.add` (batches of 5,000) | {ingest[0]:,.0f} | {ingest[0] / ingest[1]:.2f}x |",
        f"| bare `COPY` of the same rows | {ingest[1]:,.0f} | 1.00x |",
        "",
        "| call round trip through the broker | median µs | ratio |",
        "| --- | ---: | ---: |",
        f"| Peer call (`async_rpc_connect` -> `async_rpc_listen`) | {calls[0]:,.0f} "
        f"| {calls[0] / calls[1]:.2f}x |",
        f"| bare paho ping-pong (QoS 1) | {calls[1]:,.0f} | 1.00x |",
    ]
    table = "\n".join(rows)
    print(table)
    if args.record:
        when = datetime.date.today().isoformat()
        record(
            args.record,
            f"## Through a broker ({when})\n\nMachine: {machine()}; Mosquitto {broker_version()}, "
            f"PostgreSQL {pg_version()}. `bench/scale.py`: {n:,} readings per run, QoS 1, best of "
            f"{args.rounds} rounds; calls: median of {args.calls} sequential round trips. Every run "
            f"must store every reading exactly once.\n\n{table}",
            section="scale",
        )
    return 0


def broker_version() -> str:
    out = subprocess.run([mosquitto_path(), "-h"], capture_output=True, text=True).stdout
    return out.split("\n")[0].replace("mosquitto version ", "").strip()


def pg_version() -> str:
    from tests.postgres import _bin

    return subprocess.run([_bin("postgres"), "--version"], capture_output=True, text=True).stdout.split()[-1]


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
