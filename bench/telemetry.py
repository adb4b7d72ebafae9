"""Telemetry benchmark (not a test): the listener's ingest, the web API under load, and the
dashboard's latency in a browser, each beside a bare reference measured in the same run.

1. Listener ingest, readings/s stored: a real ``bothways listen SOURCE --db <tmp>/readings.db``
   process, timed from the first byte sent to the last reading committed (the bench polls the
   database's ``max(id)``: ids run 1..N in a fresh file). Sources: ``tcp://127.0.0.1:0`` fed by one
   client process (bench/telemetry/send.py: ``send_many`` in batches of 1,000; the clock starts
   when it is told to go), and ``file:PATH?state=PATH.state`` (the listener's own file handling:
   its position saved after each commit), the clock starting when the whole file is renamed into
   place. Beside: ``Store.add`` in this process and a bare ``sqlite3`` ``executemany`` of the same
   rows (prepared tuples) into the same schema (``store.SCHEMA``), both in batches of 5,000, one
   transaction each, WAL and ``synchronous=NORMAL`` as the Store sets them.
2. The API under load: ``bothways.telemetry.web.serve`` (waitress, 8 threads) beside the same app
   on Flask's development server (``serve(debug=True)``: werkzeug, threaded), each in a child
   process on 127.0.0.1 with a fresh database, driven by wrk (32 connections, one wrk thread,
   bench/telemetry/wrk.lua) for a bounded count of answers or time, whichever ends first:
   ``GET /api/sensors`` (10 sensors x 1,000 readings stored), ``POST /api/readings`` of one new
   reading, and of 1,000 new readings as NDJSON. Requests/s, latency p50/p99 (wrk's), errors
   (socket errors, timeouts and non-200 answers; must be 0); the batches' readings/s are
   checked against the database's count afterwards.
3. Browser end to end: ``bothways sensor --interval 0.005 --to tcp://...`` -> ``bothways listen``
   -> SQLite -> ``serve`` (its live feed) -> the dashboard in Debian's Chromium (Playwright,
   headless). Per reading: from its ``t`` (taken by the sensor just before sending) to the first
   animation frame whose chart holds it (bench/telemetry/probe.js, installed before the page's
   scripts: it wraps WebSocket to stamp arrivals and reads ``window.dashboard.points()`` every
   frame); the page's clock is aligned with this process's by a few round trips. Beside: a bare
   ``websockets`` server sending each reading as it is taken to a blank page that draws it on a
   canvas in the next animation frame (bench/telemetry/bare.html), at the same interval.

    python bench/telemetry.py [--rounds 3] [--quick] [--record bench/RESULTS.md]

Best of the rounds (interleaved; the browser: the round with the lowest p99). Every child is
started here and stopped by its pid. ``--quick``: one round of smaller runs (about a minute).
Needs wrk (Debian's ``wrk``) and chromium.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from common import machine, record  # noqa: E402

from bothways.telemetry.store import SCHEMA, Store  # noqa: E402
from bothways.wire import encode_many  # noqa: E402

TOOLS = HERE / "telemetry"
SENDER = TOOLS / "send.py"
WRK_SCRIPT = TOOLS / "wrk.lua"
PROBE = TOOLS / "probe.js"
BARE_PAGE = TOOLS / "bare.html"
PY = sys.executable
LIMIT = 60.0  # seconds any one measurement may take
BATCH = 5_000  # rows per transaction for the in-process references (the listener's BATCH_ROWS)
CONNECTIONS = 32
WRK_THREADS = 1  # one event loop drives 32 connections; the rest of the CPU is the server's
SERVE = (
    "import sys; from pathlib import Path; from bothways.telemetry.web import serve; "
    "serve(Path(sys.argv[1]), port=0, debug=sys.argv[2] == 'dev')"
)
INSERT = "INSERT INTO readings (sensor, seq, t, celsius, extra) VALUES (?, ?, ?, ?, ?)"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"]


@dataclass
class Sizes:
    ingest: int  # readings per ingest run
    api_seconds: float  # the time bound of one wrk run
    api_counts: dict[str, int]  # the count bound of one wrk run, per kind (answers)
    browser: int  # readings timed per browser run
    interval: float = 0.005  # seconds between the sensor's readings


ANSWERS = {"sensors": 100_000, "one": 100_000, "batch": 2_000}  # at most, per wrk run
FULL = Sizes(200_000, 5.0, ANSWERS, 1_000)
QUICK = Sizes(50_000, 2.0, ANSWERS, 1_000)


class Failed(RuntimeError):
    """One measurement went wrong (reported, counted as failed, the others go on)."""


# --------------------------------------------------------------------------------------------
# Children


class Child:
    """A process started here, its stdout and stderr in a file; stopped by its pid."""

    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name = name
        self.log = log
        with log.open("wb") as out:
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)

    def wait_for(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """The first match of ``pattern`` in the output so far or to come."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.log.read_text(errors="replace"), re.MULTILINE)
            if match:
                return match
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise Failed(f"{self.name}: no {pattern!r} (exit {self.process.poll()}): {tail}")
            time.sleep(0.01)

    def stop(self, sig: signal.Signals = signal.SIGTERM, grace: float = 15.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def readings(count: int) -> list[dict[str, Any]]:
    return [{"sensor": "bench", "seq": n, "t": 1.7e9 + n, "celsius": 20.0 + n % 7} for n in range(count)]


def newest(db: sqlite3.Connection) -> int:
    try:
        (n,) = db.execute("SELECT max(id) FROM readings").fetchone()
    except sqlite3.OperationalError:  # no table yet
        return 0
    return int(n or 0)


def wait_stored(path: Path, count: int, started: float) -> float:
    """Seconds from ``started`` (perf_counter) until ``count`` rows are committed in ``path``."""
    deadline = time.monotonic() + LIMIT
    db = sqlite3.connect(path, timeout=30)
    try:
        while (n := newest(db)) < count:
            if time.monotonic() > deadline:
                raise Failed(f"{n:,} of {count:,} stored in {LIMIT:.0f} s")
            time.sleep(0.002)
        return time.perf_counter() - started
    finally:
        db.close()


# --------------------------------------------------------------------------------------------
# 1. Listener ingest


def listener(source: str, db: Path, log: Path) -> Child:
    return Child("bothways listen", [PY, "-m", "bothways.cli", "listen", source, "--db", str(db)], log)


def ingest_tcp(folder: Path, count: int) -> float:
    db = folder / "tcp.db"
    child = listener("tcp://127.0.0.1:0", db, folder / "listen-tcp.log")
    try:
        url = child.wait_for(r"listening on (tcp://127\.0\.0\.1:\d+)").group(1)
        sender = subprocess.Popen(
            [PY, str(SENDER), url, str(count)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        try:
            assert sender.stdin is not None and sender.stdout is not None
            if sender.stdout.readline().strip() != "ready":
                raise Failed("the tcp client did not connect")
            started = time.perf_counter()
            sender.stdin.write("go\n")
            sender.stdin.flush()
            took = wait_stored(db, count, started)
            if sender.wait(LIMIT) != 0:
                raise Failed(f"the tcp client failed ({sender.returncode})")
        finally:
            if sender.poll() is None:
                sender.kill()
                sender.wait()
    finally:
        child.stop(signal.SIGINT)
    return count / took


def ingest_file(folder: Path, count: int) -> float:
    db, live, staged = folder / "file.db", folder / "readings.ndjson", folder / "staged.ndjson"
    staged.write_bytes(encode_many(readings(count)))
    child = listener(f"file:{live}?state={folder / 'readings.state'}", db, folder / "listen-file.log")
    try:
        child.wait_for(r"following .* from the start")
        started = time.perf_counter()
        os.rename(staged, live)  # every byte there at once
        took = wait_stored(db, count, started)
    finally:
        child.stop(signal.SIGINT)
    return count / took


def fresh_db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(SCHEMA)
    return db


def ingest_store(folder: Path, count: int) -> float:
    rows = readings(count)
    with Store(folder / "store.db") as store:
        started = time.perf_counter()
        for start in range(0, count, BATCH):
            store.add(rows[start : start + BATCH])
        took = time.perf_counter() - started
    return count / took


def ingest_bare(folder: Path, count: int) -> float:
    rows = [(r["sensor"], r["seq"], r["t"], r["celsius"], None) for r in readings(count)]
    db = fresh_db(folder / "bare.db")
    try:
        started = time.perf_counter()
        for start in range(0, count, BATCH):
            db.execute("BEGIN IMMEDIATE")
            db.executemany(INSERT, rows[start : start + BATCH])
            db.execute("COMMIT")
        took = time.perf_counter() - started
    finally:
        db.close()
    return count / took


INGEST: dict[str, Callable[[Path, int], float]] = {
    "`bothways listen tcp://` (1 client, `send_many` of 1,000)": ingest_tcp,
    "`bothways listen file:...?state=` (whole file renamed in)": ingest_file,
    "`Store.add` in process (batches of 5,000)": ingest_store,
    "bare `sqlite3` `executemany` (batches of 5,000)": ingest_bare,
}
BARE_INGEST = "bare `sqlite3` `executemany` (batches of 5,000)"


# --------------------------------------------------------------------------------------------
# 2. The API under load


@dataclass
class Load:
    rate: float = 0.0  # answers/s
    p50: float = 0.0  # ms
    p99: float = 0.0  # ms
    errors: int = 0
    answers: int = 0
    stored: int = 0  # rows in the database afterwards (POSTs)


API_KINDS = {
    "sensors": "`GET /api/sensors`",
    "one": "`POST /api/readings`, 1 reading",
    "batch": "`POST /api/readings`, 1,000 as NDJSON",
}
SERVERS = {"waitress": "`serve` (waitress)", "dev": "`serve(debug=True)` (Flask dev server)"}


def seed_sensors(db: Path) -> None:
    with Store(db) as store:
        store.add(
            {"sensor": f"room{s}", "seq": n, "t": 1.7e9 + 60 * n, "celsius": 15.0 + (n * s) % 11}
            for s in range(10)
            for n in range(1_000)
        )


def wrk(url: str, kind: str, count: int, seconds: float) -> dict[str, Any]:
    """Runs wrk with bench/telemetry/wrk.lua; its JSON line."""
    argv = [
        "wrk", "-t", str(WRK_THREADS), "-c", str(CONNECTIONS), "-d", f"{seconds:g}s", "--timeout", "10s",
        "-s", str(WRK_SCRIPT), url, "--", kind, str(count), str(WRK_THREADS),
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        stopped = 0
        for line in proc.stdout:
            lines.append(line)
            if line.strip() == "stopped":
                stopped += 1
                if stopped == WRK_THREADS and proc.poll() is None:
                    proc.send_signal(signal.SIGINT)  # every thread has its count: end the run now

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        proc.wait(seconds + LIMIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise Failed(f"wrk did not end: {kind}") from None
    reader.join(10)
    assert proc.stderr is not None
    err = proc.stderr.read()
    result = next((line for line in reversed(lines) if line.startswith("{")), None)
    if result is None:
        raise Failed(f"wrk gave no result ({proc.returncode}): {err.strip()[-500:]}")
    parsed: dict[str, Any] = json.loads(result)
    return parsed


def api_run(folder: Path, server: str, kind: str, sizes: Sizes) -> Load:
    tag = f"{server}-{kind}-{time.monotonic_ns()}"
    db = folder / f"{tag}.db"
    if kind == "sensors":
        seed_sensors(db)
    child = Child(f"serve ({server})", [PY, "-c", SERVE, str(db), server], folder / f"{tag}.log")
    try:
        url = child.wait_for(r"^(http://127\.0\.0\.1:\d+/)$").group(1)
        path = "api/sensors" if kind == "sensors" else "api/readings"
        out = wrk(url + path, kind, sizes.api_counts[kind], sizes.api_seconds)
    finally:
        child.stop(signal.SIGTERM)
    errors = out["connect"] + out["read"] + out["write"] + out["timeout"] + (out["answers"] - out["ok"])
    load = Load(
        rate=out["ok"] / out["seconds"] if out["seconds"] else 0.0,
        p50=out["p50_us"] / 1000,
        p99=out["p99_us"] / 1000,
        errors=errors,
        answers=out["answers"],
    )
    if kind != "sensors":
        db_ = sqlite3.connect(db)
        try:
            load.stored = newest(db_)
        finally:
            db_.close()
        per = 1_000 if kind == "batch" else 1
        if load.stored < out["ok"] * per:
            raise Failed(f"{server} {kind}: {load.stored:,} stored for {out['ok']:,} answers of {per}")
    return load


# --------------------------------------------------------------------------------------------
# 3. Browser end to end


@dataclass
class Latency:
    total: list[float] = field(default_factory=list)  # ms, t -> drawn, per reading
    arrive: list[float] = field(default_factory=list)  # ms, t -> arrived at the page
    draw: list[float] = field(default_factory=list)  # ms, arrived -> drawn

    def p(self, which: str, q: int) -> float:
        values = sorted(getattr(self, which))
        return values[min(len(values), max(1, math.ceil(q / 100 * len(values)))) - 1] if values else 0.0


def clock_offset(page: Any) -> float:
    """The page's clock minus ours, in ms: the sample with the shortest round trip of 7."""
    samples = []
    for _ in range(7):
        before = time.time() * 1000
        theirs = page.evaluate("() => window.probe.clock()")
        after = time.time() * 1000
        samples.append((after - before, theirs - (before + after) / 2))
    return float(min(samples)[1])


def latencies(page: Any, count: int, offset: float) -> Latency:
    page.wait_for_function(f"() => window.probe.drawn() >= {count}", timeout=LIMIT * 1000)
    got = page.evaluate("() => window.probe.result()")
    pairs, drawn = got["readings"], got["drawn"]
    if len(pairs) != count:
        raise Failed(f"{len(pairs)} readings arrived for {count} sent")
    result = Latency()
    for (t, arrived), shown in zip(pairs, drawn[:count], strict=True):
        result.total.append(shown - offset - t)
        result.arrive.append(arrived - offset - t)
        result.draw.append(shown - arrived)
    return result


def browser_dashboard(browser: Any, folder: Path, sizes: Sizes, number: int) -> Latency:
    db = folder / f"live{number}.db"
    sensor = f"bench-{number}"
    listen = listener("tcp://127.0.0.1:0", db, folder / f"live-listen{number}.log")
    server: Child | None = None
    context = None
    try:
        tcp = listen.wait_for(r"listening on (tcp://127\.0\.0\.1:\d+)").group(1)
        server = Child("serve", [PY, "-c", SERVE, str(db), "waitress"], folder / f"live-serve{number}.log")
        url = server.wait_for(r"^(http://127\.0\.0\.1:\d+/)$").group(1)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.add_init_script(path=str(PROBE))
        page = context.new_page()
        page.goto(url)
        page.wait_for_function("() => window.dashboard?.state() === 'connected'", timeout=20_000)
        if not page.evaluate("() => window.probe.charting()"):
            raise Failed("the dashboard has no uPlot here (cd js && npm ci): nothing is drawn")
        time.sleep(0.5)  # the first load of the range is done
        offset = clock_offset(page)
        page.evaluate(f"() => window.probe.watch({sensor!r})")
        argv = [PY, "-m", "bothways.cli", "sensor", "--id", sensor, "--interval", f"{sizes.interval:g}"]
        argv += ["--count", str(sizes.browser), "--to", tcp]
        sensing = Child("bothways sensor", argv, folder / f"sensor{number}.log")
        try:
            if sensing.process.wait(LIMIT) != 0:
                raise Failed(f"the sensor failed: {sensing.log.read_text()[-500:]}")
        finally:
            sensing.stop()
        return latencies(page, sizes.browser, offset)
    finally:
        if context is not None:
            context.close()
        if server is not None:
            server.stop(signal.SIGTERM)
        listen.stop(signal.SIGINT)


def browser_bare(browser: Any, sizes: Sizes) -> Latency:
    from websockets.sync.server import ServerConnection, serve

    connected: list[ServerConnection] = []
    done = threading.Event()

    def handler(conn: ServerConnection) -> None:
        connected.append(conn)
        done.wait(LIMIT)

    with serve(handler, "127.0.0.1", 0) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.socket.getsockname()[1]
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        try:
            page = context.new_page()
            page.set_content(BARE_PAGE.read_text())
            page.evaluate(f"() => window.probe.start('ws://127.0.0.1:{port}/')")
            offset = clock_offset(page)
            deadline = time.monotonic() + 5
            while not connected and time.monotonic() < deadline:
                time.sleep(0.01)
            if not connected:
                raise Failed("the bare page did not connect")
            conn, due = connected[0], time.monotonic()
            for seq in range(sizes.browser):
                conn.send(json.dumps({"seq": seq, "t": time.time()}))
                due += sizes.interval
                time.sleep(max(0.0, due - time.monotonic()))
            return latencies(page, sizes.browser, offset)
        finally:
            done.set()
            context.close()
            server.shutdown()


# --------------------------------------------------------------------------------------------
# Tables


def ratio(value: float, reference: float) -> str:
    return f"{value / reference:.2f}x" if reference else "-"


def ingest_table(rates: dict[str, float], count: int) -> str:
    bare = rates.get(BARE_INGEST, 0.0)
    rows = [
        f"| path ({count:,} readings, SQLite) | readings/s | vs bare `executemany` |",
        "| --- | ---: | ---: |",
    ]
    for name in INGEST:
        rate = rates.get(name, 0.0)
        rows.append(f"| {name} | {rate:,.0f} | {ratio(rate, bare)} |" if rate else f"| {name} | failed | - |")
    worst = min(rates.get(name, 0.0) for name in list(INGEST)[:2])
    met = worst >= 100_000 and bare and worst / bare >= 0.6
    verdict = "met" if met else "NOT met"
    rows.append(f"\nTarget (the listener, both sources): >= 0.60x of bare and >= 100,000/s: {verdict}.")
    return "\n".join(rows)


def api_table(best: dict[tuple[str, str], Load]) -> str:
    rows = [
        f"| request ({CONNECTIONS} connections) | server | requests/s | readings/s | p50 ms | p99 ms "
        "| errors | vs dev server |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kind, label in API_KINDS.items():
        dev = best.get(("dev", kind), Load())
        for server, name in SERVERS.items():
            load = best.get((server, kind))
            if load is None:
                rows.append(f"| {label} | {name} | failed | | | | | |")
                continue
            stored = {"sensors": "", "one": f"{load.rate:,.0f}", "batch": f"{load.rate * 1000:,.0f}"}[kind]
            rows.append(
                f"| {label} | {name} | {load.rate:,.0f} | {stored} | {load.p50:,.1f} | {load.p99:,.1f} | "
                f"{load.errors} | {ratio(load.rate, dev.rate)} |"
            )
    batch = best.get(("waitress", "batch"), Load()).rate * 1000
    errors = sum(load.errors for load in best.values())
    rows.append(
        f"\nTarget (batched POST into the store, waitress): >= 100,000 readings/s: "
        f"{'met' if batch >= 100_000 else 'NOT met'}; errors in all runs: {errors}."
    )
    return "\n".join(rows)


def browser_table(dashboard: Latency | None, bare: Latency | None, count: int, interval: float) -> str:
    rows = [
        f"| {count:,} readings, one every {interval * 1000:g} ms | p50 ms | p99 ms | vs bare (p50 / p99) "
        "| taken -> arrived p50 / p99 | arrived -> drawn p50 / p99 |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, got in (
        ("`bothways sensor` -> tcp -> `bothways listen` -> SQLite -> `serve` feed -> dashboard", dashboard),
        ("bare: `websockets` server -> blank page, canvas dot in the next frame", bare),
    ):
        if got is None:
            rows.append(f"| {name} | failed | | | | |")
            continue
        p50, p99 = got.p("total", 50), got.p("total", 99)
        versus = f"{ratio(p50, bare.p('total', 50))} / {ratio(p99, bare.p('total', 99))}" if bare else "-"
        rows.append(
            f"| {name} | {p50:,.1f} | {p99:,.1f} | {versus} | {got.p('arrive', 50):,.1f} / "
            f"{got.p('arrive', 99):,.1f} | {got.p('draw', 50):,.1f} / {got.p('draw', 99):,.1f} |"
        )
    return "\n".join(rows)


# --------------------------------------------------------------------------------------------


def attempt(name: str, run: Callable[..., Any], *args: Any) -> Any:
    """``run(*args)``, or None when it failed (said on stderr)."""
    try:
        return run(*args)
    except (Failed, OSError, subprocess.SubprocessError, sqlite3.Error) as exc:
        print(f"{name}: failed: {exc}", file=sys.stderr)
        return None


@dataclass
class Results:
    rates: dict[str, float] = field(default_factory=dict)  # ingest: the best readings/s
    loads: dict[tuple[str, str], Load] = field(default_factory=dict)  # API: the best run
    live: list[Latency] = field(default_factory=list)  # browser: one per round
    bare: list[Latency] = field(default_factory=list)

    def round(self, browser: Any, folder: Path, sizes: Sizes, number: int) -> None:
        """One round of every measurement, progress on stderr."""
        for name, way in INGEST.items():
            rate = attempt(name, way, folder, sizes.ingest)
            if rate:
                self.rates[name] = max(self.rates.get(name, 0.0), rate)
                print(f"{name}: {rate:,.0f} readings/s", file=sys.stderr)
        for kind in API_KINDS:
            for server in SERVERS:
                load = attempt(f"{server} {kind}", api_run, folder, server, kind, sizes)
                if load is None:
                    continue
                say = f"{server} {kind}: {load.rate:,.0f}/s, p99 {load.p99:.1f} ms, {load.errors} errors"
                print(say, file=sys.stderr)
                old = self.loads.get((server, kind))
                if old is None or load.rate > old.rate:
                    self.loads[(server, kind)] = load
        for name, got, kept in (
            ("dashboard", attempt("dashboard", browser_dashboard, browser, folder, sizes, number), self.live),
            ("bare page", attempt("bare page", browser_bare, browser, sizes), self.bare),
        ):
            if got is not None:
                kept.append(got)
                say = f"{name}: p50 {got.p('total', 50):.1f} ms, p99 {got.p('total', 99):.1f} ms"
                print(say, file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, help="default 3 (1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="one round of smaller runs (about a minute)")
    parser.add_argument("--record", type=Path, help="rewrite the telemetry section of this Markdown file")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    rounds = args.rounds or (1 if args.quick else 3)
    for tool in ("wrk", "chromium"):
        if shutil.which(tool) is None:
            print(f"bench/telemetry.py needs {tool} (apt-get install {tool})", file=sys.stderr)
            return 2
    from playwright.sync_api import sync_playwright

    began = time.monotonic()
    results = Results()
    with tempfile.TemporaryDirectory(prefix="bothways-bench-") as tmp, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS, headless=True
        )
        try:
            for number in range(rounds):
                folder = Path(tmp) / f"round{number}"
                folder.mkdir()
                results.round(browser, folder, sizes, number)
                shutil.rmtree(folder, ignore_errors=True)
        finally:
            browser.close()
    took = time.monotonic() - began
    lowest = min(results.live, key=lambda got: got.p("total", 99), default=None)
    bare_lowest = min(results.bare, key=lambda got: got.p("total", 99), default=None)
    tables = [
        ingest_table(results.rates, sizes.ingest),
        api_table(results.loads),
        browser_table(lowest, bare_lowest, sizes.browser, sizes.interval),
    ]
    print("\n\n".join(tables))
    print(f"\n({took:.0f} s)", file=sys.stderr)
    if args.record:
        when = datetime.date.today().isoformat()
        chromium = subprocess.run(["chromium", "--version"], capture_output=True, text=True).stdout.strip()
        wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split(" [")[0]
        record(
            args.record,
            f"## Telemetry ({when})\n\nMachine: {machine()}; {wrk_version}, {chromium}. "
            f"`bench/telemetry.py`{' --quick' if args.quick else ''}: best of {rounds} interleaved "
            f"rounds, everything on 127.0.0.1.\n\n"
            f"**Listener ingest**: a real `bothways listen` process, from the first byte sent to the "
            f"last reading committed (the database polled), beside `Store.add` and a bare "
            f"`executemany` of the same rows into the same schema (WAL, `synchronous=NORMAL`), in "
            f"the same run.\n\n{tables[0]}\n\n"
            f"**The API under load**: wrk, {CONNECTIONS} connections, at most "
            f"{sizes.api_seconds:g} s per run; every reading POSTed is new and is checked in the "
            f"database afterwards; a fresh database per run (`GET /api/sensors` over 10 sensors x "
            f"1,000 readings).\n\n{tables[1]}\n\n"
            f"**Browser end to end**: from a reading's `t` (taken by `bothways sensor`) to the "
            f"first animation frame whose chart holds it, in headless Chromium (the round with the "
            f"lowest p99). Most of it is by design: the listener commits within 50 ms, the feed "
            f"polls the store every 100 ms, the dashboard redraws its charts every 250 ms.\n\n{tables[2]}",
            section="telemetry",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
