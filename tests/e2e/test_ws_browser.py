"""ws:// from a real browser: a page served by the tutorial's Flask app imports
/bothways/browser.js and talks to a Python listener (Debian's Chromium, driven by Playwright).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, Page
from werkzeug.serving import make_server

from bothways import channels
from bothways.errors import DecodeError, TransportClosed

from ..conftest import UNIT
from ..tutorial import load_app_module
from ..unit.test_ws import FRAME_ERRORS, FRAME_VALUES, FRAMES, frame_recorder
from .conftest import open_page

WAIT = 10 * UNIT
TOKEN = "tok/en+with&odd=chars"


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    """The tutorial's Flask app (create_app) on a free port of 127.0.0.1, in a thread."""
    server = make_server("127.0.0.1", 0, load_app_module().create_app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        thread.join(WAIT)
        server.server_close()


@pytest.fixture
def page(browser: Browser, site: str) -> Iterator[Page]:
    with open_page(browser, WAIT * 1000, f"{site}/test") as page:
        yield page


def echo(listener: Any, count: int, received: list[Any]) -> threading.Thread:
    """Answers each of the next ``count`` messages with {"echo": message}, in a thread."""

    def serve() -> None:
        for message in listener:
            received.append(message)
            listener.send({"echo": message})
            if len(received) == count:
                return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


ROUND_TRIP = """async ({ url, token, count }) => {
  const bothways = await import("/bothways/browser.js");
  const channel = await bothways.connect(url, { token });
  for (let i = 0; i < count; i++) await channel.send({ seq: i, from: "the browser", text: "é€😀" });
  const answers = [];
  for (let i = 0; i < count; i++) answers.push(await channel.receive());
  await channel.close();
  let after = null;
  try { await channel.receive(); } catch (error) { after = error.code; }
  return { answers, after, wire: typeof bothways.encode, errors: typeof bothways.DecodeError };
}"""


def test_the_module_route_serves_js_src_only(site: str) -> None:
    answer = requests.get(f"{site}/bothways/browser.js", timeout=WAIT)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/javascript")
    assert "export async function connect" in answer.text
    assert requests.get(f"{site}/bothways/transports/base.js", timeout=WAIT).status_code == 200
    for bad in ("../package.json", "..%2F..%2Fpyproject.toml", "%2E%2E/package.json", "nothing.js", "wire"):
        assert requests.get(f"{site}/bothways/{bad}", timeout=WAIT).status_code == 404, bad


def test_a_page_talks_to_a_python_listener(page: Page) -> None:
    count = 200
    received: list[Any] = []
    with channels.listen("ws://127.0.0.1:0/feed", token=TOKEN) as listener:
        serving = echo(listener, count, received)
        result = page.evaluate(ROUND_TRIP, {"url": listener.url, "token": TOKEN, "count": count})
        serving.join(WAIT)
    sent = [{"seq": i, "from": "the browser", "text": "é€😀"} for i in range(count)]
    assert received == sent  # the listener got every message, in order
    assert result["answers"] == [{"echo": m} for m in sent]  # and the page every answer
    assert result["after"] == "TRANSPORT_CLOSED"
    assert result["wire"] == "function" and result["errors"] == "function"  # one import is enough


CONNECT_FAILS = """async ({ url, options }) => {
  const { connect, ConnectError } = await import("/bothways/browser.js");
  try {
    await connect(url, options);
    return "connected";
  } catch (error) {
    return { isConnectError: error instanceof ConnectError, code: error.code, message: error.message };
  }
}"""


def test_a_wrong_token_or_a_refused_origin_fails_to_connect(page: Page, site: str) -> None:
    with channels.listen("ws://127.0.0.1:0/feed", token=TOKEN) as listener:
        got = page.evaluate(CONNECT_FAILS, {"url": listener.url, "options": {"token": "wrong"}})
        assert got["isConnectError"] and got["code"] == "CONNECT_ERROR"
        assert got["message"].startswith(listener.url + ": refused or unreachable")
        got = page.evaluate(CONNECT_FAILS, {"url": listener.url, "options": {}})
        assert got["isConnectError"]
        with channels.connect(listener.url, token=TOKEN) as client:  # nothing reached the listener
            client.send("first")
            assert listener.receive() == "first"
    with channels.listen("ws://127.0.0.1:0/feed", origins=["http://app.example"]) as listener:
        got = page.evaluate(CONNECT_FAILS, {"url": listener.url, "options": {}})
        assert got["isConnectError"], got
    with channels.listen("ws://127.0.0.1:0/feed", origins=[site]) as listener:
        assert page.evaluate(CONNECT_FAILS, {"url": listener.url, "options": {}}) == "connected"


BAD_INPUT = """async ({ url }) => {
  const { connect } = await import("/bothways/browser.js");
  const errors = [];
  const channel = await connect(url, { maxLine: 100, onError: (e) => errors.push([e.code, e.line]) });
  await channel.send("ready");
  const got = [];
  let end = null;
  try {
    for (;;) got.push(await channel.receive());
  } catch (error) {
    end = error.message;
  }
  return { got, errors, end };
}"""


def test_the_page_reports_an_over_size_message_and_closes_the_connection(page: Page) -> None:
    errors: list[DecodeError] = []
    with channels.listen("ws://127.0.0.1:0/feed", on_error=errors.append) as listener:
        done = threading.Event()

        def serve() -> None:
            with listener.accept() as channel:
                assert channel.receive() == "ready"
                channel.send({"n": 1})
                channel.send("x" * 500)  # over the page's maxLine
                channel.send({"n": 3})  # never read: the page closed the connection
                with pytest.raises(TransportClosed, match="4009"):
                    channel.receive()
            done.set()

        serving = threading.Thread(target=serve, daemon=True)
        serving.start()
        result = page.evaluate(BAD_INPUT, {"url": listener.url})
        serving.join(WAIT)
        assert done.is_set()
    assert result["got"] == [{"n": 1}]
    assert result["errors"] == [["FRAME_TOO_LARGE", 2]]
    assert "code 4009: message too big" in result["end"]


# Several messages per frame: the page's sendMany, and frames of NDJSON lines from Python.

MANY_BOTH_WAYS = """async ({ url, count }) => {
  const bothways = await import("/bothways/browser.js");
  const channel = await bothways.connect(url);
  await channel.send("ready");
  const got = [];
  for (let i = 0; i < count; i++) got.push(await channel.receive());
  await channel.sendMany(got.map((m) => ({ back: m.seq, text: m.text })));
  await channel.sendMany([]);
  await channel.send("done");
  await channel.close();
  return got;
}"""


def test_a_page_takes_a_send_many_frame_and_answers_with_send_many(page: Page) -> None:
    count = 1000
    values = [{"seq": i, "text": "é€😀"} for i in range(count)]
    answers: list[Any] = []
    with channels.listen("ws://127.0.0.1:0/feed") as listener:

        def serve() -> None:
            with listener.accept() as channel:
                assert channel.receive() == "ready"
                channel.send_many(values)  # one frame of 1,000 lines
                while len(answers) < count + 1:
                    answers.extend(channel.receive_many())

        serving = threading.Thread(target=serve, daemon=True)
        serving.start()
        got = page.evaluate(MANY_BOTH_WAYS, {"url": listener.url, "count": count})
        serving.join(WAIT)
        assert not serving.is_alive()
    assert got == values
    assert answers == [{"back": i, "text": "é€😀"} for i in range(count)] + ["done"]


SPLIT = """async ({ url }) => {
  const { connect } = await import("/bothways/browser.js");
  const errors = [];
  const onError = (e) => errors.push([e.code, e.line, e.column, e.excerpt]);
  const channel = await connect(url, { onError });
  const got = [];
  for (let i = 0; i < 7; i++) got.push(await channel.receive());
  await channel.sendMany([{ a: 1 }, { b: "é" }, 3]);
  await channel.close();
  return { got, errors };
}"""


def test_the_page_splits_frames_of_lines_and_its_send_many_is_one_frame(page: Page) -> None:
    # The frames of tests/unit/test_ws.py: good, bad and blank lines, CRLF, a JSON text on two
    # lines, from a bare websockets server, which records what the page sends.
    with frame_recorder(send=tuple(FRAMES)) as (url, frames, ended):
        result = page.evaluate(SPLIT, {"url": url})
        assert ended.wait(WAIT)
    assert result["got"] == FRAME_VALUES
    assert [(line, column, excerpt) for _, line, column, excerpt in result["errors"]] == FRAME_ERRORS
    assert {code for code, *_ in result["errors"]} == {"DECODE_ERROR"}
    assert frames == ['{"a":1}\n{"b":"é"}\n3\n']
