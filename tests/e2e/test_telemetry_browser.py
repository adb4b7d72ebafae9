"""The telemetry dashboard in a real browser (Debian's Chromium, driven by Playwright), against
``bothways.telemetry.web.serve`` run in a child process as ``bothways serve`` runs it.

Readings come from other processes: one POSTs them to the API, another stores them in the SQLite
file directly (as a listener does); both must reach the open page within 2 s. Then the server is
stopped and started again on the same port: the page says so, and recovers by itself.

A screenshot of the dashboard is saved in the test's tmp dir; with BOTHWAYS_SCREENSHOT=1 it is
also written to docs/dashboard.png (the README's picture).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, Page

from ..conftest import ROOT, UNIT
from ..tutorial import Program
from .conftest import open_page

WAIT_MS = 10_000 * UNIT  # the longest the test waits for anything on the page
LIVE_MS = 2_000 * UNIT  # a reading stored anywhere is on the page within this
SERVE = "import sys; from pathlib import Path; from bothways.telemetry.web import serve; " + (
    "serve(Path(sys.argv[1]), port=int(sys.argv[2]))"
)
# Another process storing readings in the same SQLite file, as a listener does.
STORE = "import json, sys; from bothways.telemetry import Store; " + (
    "s = Store(sys.argv[1]); s.add(json.loads(sys.argv[2])); s.close()"
)
# Another process POSTing readings to the API.
POST = "import json, sys, requests; " + (
    "r = requests.post(sys.argv[1], json=json.loads(sys.argv[2]), timeout=10); "
    "assert r.status_code == 200, r.text; print(r.json()['stored'])"
)
POINTS = "() => window.dashboard.points()"
STATE = "() => window.dashboard.state()"


class Server:
    """``serve(db, port=...)`` in a child process; ``restart()`` brings it back on the same port."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.port = 0
        self.program: Program | None = None
        self.url = ""
        self.start()

    def start(self) -> None:
        self.program = Program([sys.executable, "-c", SERVE, str(self.db), str(self.port)])
        self.url = self.program.wait_for(r"^(http://127\.0\.0\.1:(\d+)/)$", timeout=20).group(1)
        self.port = int(self.url.rsplit(":", 1)[1].strip("/"))

    def stop(self) -> None:
        if self.program is not None:
            self.program.stop()
            self.program = None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    server = Server(tmp_path / "readings.db")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with open_page(browser, WAIT_MS, viewport={"width": 1280, "height": 900}) as page:
        yield page


def readings(sensor: str, seqs: range, *, t0: float, base: float = 8.0) -> list[dict[str, Any]]:
    """Readings of ``sensor`` numbered ``seqs``, reading ``i`` taken at ``t0 + 2 i``."""
    wobble = random.Random(sensor)
    return [
        {
            "sensor": sensor,
            "seq": i,
            "t": t0 + 2 * i,
            "celsius": round(base + 3 * math.sin(i / 20) + wobble.uniform(-0.3, 0.3), 2),
        }
        for i in seqs
    ]


def run_python(code: str, *args: str) -> str:
    """Runs a Python one-liner in its own process, to its end; returns its output."""
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=30 * UNIT, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def post_from_another_process(url: str, batch: list[dict[str, Any]]) -> int:
    """POSTs ``batch`` from another process; returns how many were new."""
    return int(run_python(POST, url + "api/readings", json.dumps(batch)))


def store_from_another_process(db: Path, batch: list[dict[str, Any]]) -> None:
    run_python(STORE, str(db), json.dumps(batch))


def wait_for_points(page: Page, sensor: str, count: int, within_ms: float = WAIT_MS) -> float:
    """Waits until the chart of ``sensor`` holds ``count`` points; returns the seconds it took."""
    started = time.monotonic()
    page.wait_for_function(
        "([sensor, count]) => (window.dashboard.points()[sensor] ?? 0) >= count",
        arg=[sensor, count],
        timeout=within_ms,
    )
    return time.monotonic() - started


def table_count(page: Page, sensor: str) -> int:
    cell = page.locator(f'#sensors tr[data-sensor="{sensor}"] .count')
    return int(cell.text_content() or "0")


def test_readings_from_other_processes_arrive_live(server: Server, page: Page, tmp_path: Path) -> None:
    t0 = time.time() - 290  # readings every 2 s from then: 120 of them end 50 s ago
    # Stored before the page opens: the page loads the last 5 minutes from the API.
    post_from_another_process(server.url, readings("greenhouse", range(120), t0=t0, base=19))
    store_from_another_process(server.db, readings("cellar", range(120), t0=t0, base=11))
    store_from_another_process(server.db, readings("old", range(5), t0=t0 - 3600))  # outside the range
    page.goto(server.url)
    page.wait_for_function(f"{STATE} === 'connected'")
    assert page.text_content("#state") == "connected"
    wait_for_points(page, "greenhouse", 120)
    wait_for_points(page, "cellar", 120)
    assert "old" not in page.evaluate(POINTS)  # an hour ago: not in the last 5 minutes
    assert page.locator("figure[data-sensor]").count() == 2
    assert page.locator("figure[data-sensor] canvas").count() == 2  # drawn by uPlot

    # POSTed by one process, stored by another: both on the page within 2 s.
    assert post_from_another_process(server.url, readings("greenhouse", range(120, 125), t0=t0, base=19)) == 5
    took = wait_for_points(page, "greenhouse", 125, LIVE_MS)
    store_from_another_process(server.db, readings("cellar", range(120, 130), t0=t0, base=11))
    took = max(took, wait_for_points(page, "cellar", 130, LIVE_MS))
    store_from_another_process(server.db, readings("attic", range(30), t0=t0 + 180, base=4))  # a new sensor
    took = max(took, wait_for_points(page, "attic", 30, LIVE_MS))
    assert took < 2 * UNIT
    points = page.evaluate(POINTS)
    assert points == {"greenhouse": 125, "cellar": 130, "attic": 30}, points

    # A resend changes nothing (kept once per sensor and seq), more readings grow the chart.
    assert post_from_another_process(server.url, readings("attic", range(25, 45), t0=t0 + 180, base=4)) == 15
    wait_for_points(page, "attic", 45, LIVE_MS)
    time.sleep(0.5)
    assert page.evaluate(POINTS)["attic"] == 45

    # The table (from /api/sensors) counts every stored reading, the old ones too.
    page.wait_for_function(
        "() => document.querySelector('#sensors tr[data-sensor=\"attic\"] .count')?.textContent === '45'"
    )
    assert [table_count(page, s) for s in ("attic", "cellar", "greenhouse", "old")] == [45, 130, 125, 5]
    assert page.locator("#sensors tbody tr").count() == 4

    # The range selector queries the API again: the last 24 hours include the old sensor.
    page.select_option("#range", "86400")
    wait_for_points(page, "old", 5)
    page.select_option("#range", "300")
    page.wait_for_function("() => window.dashboard.points().old === 0")
    assert page.locator('figure[data-sensor="old"]').is_hidden()  # silent in this range

    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("BOTHWAYS_SCREENSHOT") == "1":
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copy(shot, ROOT / "docs" / "dashboard.png")


def test_the_page_shows_a_lost_server_and_recovers_when_it_returns(server: Server, page: Page) -> None:
    t0 = time.time() - 40
    store_from_another_process(server.db, readings("porch", range(10), t0=t0))
    page.goto(server.url)
    page.wait_for_function(f"{STATE} === 'connected'")
    wait_for_points(page, "porch", 10)

    server.stop()
    page.wait_for_function(f"{STATE} === 'reconnecting'", timeout=LIVE_MS)
    assert page.text_content("#state") == "reconnecting…"
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url, timeout=5 * UNIT)
    # Stored while the server is away (a listener goes on): loaded when the page is back.
    store_from_another_process(server.db, readings("porch", range(10, 15), t0=t0))
    time.sleep(1)
    assert page.evaluate(STATE) == "reconnecting"  # it keeps trying

    server.start()  # the same port: the page finds it by itself (the feed has a new port)
    page.wait_for_function(f"{STATE} === 'connected'")
    wait_for_points(page, "porch", 15)
    post_from_another_process(server.url, readings("porch", range(15, 20), t0=t0))
    assert wait_for_points(page, "porch", 20, LIVE_MS) < 2 * UNIT  # live again
