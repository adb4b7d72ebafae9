"""mqtt+ws:// from a real browser (Debian's Chromium, driven by Playwright): a page imports
/bothways/browser.js, which loads mqtt.js's browser build on first use, and talks to a Mosquitto
of the test's own (tests/broker.py) through its WebSocket listener, with Python at the other end.

The page is served by a small static server of the test's own (the standard library's
http.server on 127.0.0.1, port 0): js/src at /bothways/ and js/node_modules/mqtt/dist/mqtt.esm.js
at /vendor/mqtt/mqtt.esm.js (browser.js's MQTT_MODULE), as the Flask app would serve them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

import bothways

from ..broker import Broker, free_port
from ..conftest import ROOT, UNIT
from .conftest import open_page

WAIT = 10 * UNIT
JS_SRC = ROOT / "js" / "src"
MQTT_ESM = ROOT / "js" / "node_modules" / "mqtt" / "dist" / "mqtt.esm.js"
PAGE = b"<!doctype html><meta charset=utf-8><title>mqtt</title><p>bothways mqtt test page</p>\n"


class _Files(SimpleHTTPRequestHandler):
    """``/`` the page, ``/bothways/<module>.js`` js/src, ``/vendor/mqtt/mqtt.esm.js`` and
    ``/lib/mqtt.js`` mqtt.js's browser build; nothing else."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = self.path.split("?", 1)[0]
        if path == "/":
            self._send(PAGE, "text/html; charset=utf-8")
            return
        file: Path | None = None
        if path in ("/vendor/mqtt/mqtt.esm.js", "/lib/mqtt.js"):
            file = MQTT_ESM
        elif path.startswith("/bothways/") and path.endswith(".js"):
            candidate = (JS_SRC / path.removeprefix("/bothways/")).resolve()
            if candidate.is_relative_to(JS_SRC) and candidate.is_file():
                file = candidate
        if file is None:
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        self._send(file.read_bytes(), "text/javascript; charset=utf-8")

    def _send(self, body: bytes, kind: str) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    if not MQTT_ESM.is_file():
        pytest.skip("mqtt.js is not installed (cd js && npm ci)")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join(WAIT)
        server.server_close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with Broker(tmp_path / "broker") as b:
        yield b


@pytest.fixture
def page(browser: Browser, site: str) -> Iterator[Page]:
    with open_page(browser, WAIT * 1000, site + "/") as page:
        yield page


# Runs in the page: `count` messages from window.inbox, within `ms` (else what came, and why).
TAKE = """async ([count, ms]) => {
  const got = [];
  const late = new Promise((resolve) => setTimeout(() => resolve("late"), ms));
  while (got.length < count) {
    const batch = await Promise.race([window.inbox.receiveMany(), late]);
    if (batch === "late") break;
    got.push(...batch);
  }
  return got;
}"""


def take(channel: Any, count: int) -> list[Any]:
    got: list[Any] = []

    def read() -> None:
        while len(got) < count:
            got.extend(channel.receive_many())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(WAIT)
    return got


def test_the_page_receives_what_python_publishes(page: Page, broker: Broker) -> None:
    client_id = page.evaluate(
        """async (url) => {
          const { listen } = await import("/bothways/browser.js");
          window.inbox = await listen(url);  // resolves once subscribed
          return window.inbox.clientId;
        }""",
        broker.url("sensors/#", "mqtt+ws"),
    )
    assert client_id.startswith("bothways-listen-")
    readings = [{"sensor": "kitchen", "seq": n, "celsius": 20 + n / 10} for n in range(300)]
    with bothways.connect(broker.url("sensors/kitchen")) as out:
        out.send(readings[0])
        out.send_many(readings[1:])
    assert page.evaluate(TAKE, [300, WAIT * 1000]) == readings
    page.evaluate("() => window.inbox.close()")
    after = page.evaluate("() => window.inbox.receive().then(() => 'more', (e) => e.name)")
    assert after == "TransportClosed"


def test_python_receives_what_the_page_publishes(page: Page, broker: Broker) -> None:
    with bothways.listen(broker.url("from/page")) as inbox:
        sent = page.evaluate(
            """async (url) => {
              const { connect } = await import("/bothways/browser.js");
              const out = await connect(url, { library: "/lib/mqtt.js" });
              await out.send({ hello: "from the page" });
              await out.sendMany(Array.from({ length: 299 }, (_, seq) => ({ seq })));
              const errors = [];
              try { await out.receive(); } catch (error) { errors.push(error.message); }
              await out.close();
              return { clientId: out.clientId, errors };
            }""",
            broker.url("from/page", "mqtt+ws") + "?qos=2",
        )
        assert sent["clientId"].startswith("bothways-connect-")
        url = broker.url("from/page", "mqtt+ws") + "?qos=2"
        assert sent["errors"] == [f"{url}: the publishing end only sends (listen() to subscribe)"]
        assert take(inbox, 300) == [{"hello": "from the page"}, *({"seq": n} for n in range(299))]


def test_bad_payloads_reach_the_pages_on_error(page: Page, broker: Broker) -> None:
    page.evaluate(
        """async (url) => {
          const { listen } = await import("/bothways/browser.js");
          window.errors = [];
          window.inbox = await listen(url, { onError: (e) => window.errors.push([e.line, e.code]) });
        }""",
        broker.url("raw", "mqtt+ws"),
    )
    import paho.mqtt.publish as publish

    for payload in (b"1", b"{oops", b"3"):
        publish.single("raw", payload, qos=1, hostname="127.0.0.1", port=broker.port)
    assert page.evaluate(TAKE, [2, WAIT * 1000]) == [1, 3]
    assert page.evaluate("() => window.errors") == [[2, "DECODE_ERROR"]]
    page.evaluate("() => window.inbox.close()")


def test_the_page_is_told_what_went_wrong(page: Page, broker: Broker) -> None:
    port = free_port()
    outcome = page.evaluate(
        """async ([unreachable, tcp]) => {
          const bw = await import("/bothways/browser.js");
          const name = (promise) => promise.then(() => "opened", (e) => `${e.name}: ${e.message}`);
          return [
            await name(bw.listen(unreachable)),
            await name(bw.listen(tcp)),
            await name(bw.connect(unreachable, { library: "/nowhere.js" })),
          ];
        }""",
        [f"mqtt+ws://127.0.0.1:{port}/t", "tcp://127.0.0.1:1"],
    )
    assert outcome[0].startswith(
        f"ConnectError: mqtt+ws://127.0.0.1:{port}/t: cannot reach the broker at 127.0.0.1:{port}: "
    )
    assert outcome[1] == (
        "TransportError: tcp://127.0.0.1:1: the browser module listens on mqtt+ws:// and mqtt+wss:// URLs "
        "only (a page cannot serve connections)"
    )
    assert outcome[2].startswith(
        "TransportError: mqtt:// needs mqtt.js (npm install mqtt): cannot import "
        f"{page.url.rstrip('/')}/nowhere.js: "
    )
