"""The tutorial's page in a real browser: Debian's Chromium, driven by Playwright (which never
downloads a browser of its own here), against examples/tutorial/app.py run as a user runs it.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterator

import pytest
import requests
from playwright.sync_api import Browser, Page

from ..conftest import UNIT
from ..tutorial import TUTORIAL, Program
from .conftest import open_page

FETCH_TIMEOUT_MS = int(1500 * UNIT)  # the page's own fetch timeout (?timeout=)
WAIT_MS = 10_000 * UNIT  # the longest the test waits for anything on the page
IDS = ("get-text", "get-json", "post")


@pytest.fixture
def server() -> Iterator[tuple[Program, str]]:
    """app.py on a free port of 127.0.0.1, as the README runs it; ended by the test."""
    app = Program([sys.executable, str(TUTORIAL / "app.py"), "--port", "0"])
    try:
        url = app.wait_for(r"open (http://127\.0\.0\.1:\d+)/test").group(1)
        yield app, url
    finally:
        app.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with open_page(browser, WAIT_MS) as page:
        yield page


def wait_for_run(page: Page, run: int) -> dict[str, tuple[str, str]]:
    """Waits until the page has finished its ``run``-th round of fetches; (state, text) by id."""
    page.wait_for_selector(f'#status[data-run="{run}"]', timeout=WAIT_MS)
    return {
        id_: (page.get_attribute(f"#{id_}", "data-state") or "", page.text_content(f"#{id_}") or "")
        for id_ in IDS
    }


def test_page_shows_the_three_fetches(server: tuple[Program, str], page: Page) -> None:
    app, url = server
    page.goto(f"{url}/test?timeout={FETCH_TIMEOUT_MS}")
    shown = wait_for_run(page, 1)
    assert {state for state, _ in shown.values()} == {"ok"}, shown
    assert json.loads(shown["get-text"][1]) == {"greeting": "Hello from Flask!"}  # the raw text
    assert json.loads(shown["get-json"][1]) == {"greeting": "Hello from Flask!"}  # parsed, re-shown
    assert shown["post"][1] == "OK"
    assert "3 of 3" in (page.text_content("#status") or "")

    # The server recorded the POSTed JSON, and printed it as the tutorial does.
    received = requests.get(f"{url}/hello/received", timeout=5 * UNIT).json()
    assert received == [{"greeting": "Hello from the browser!"}]
    app.wait_for(r"^\{'greeting': 'Hello from the browser!'\}$")

    page.click("#run")  # the button fetches again
    assert {state for state, _ in wait_for_run(page, 2).values()} == {"ok"}
    assert len(requests.get(f"{url}/hello/received", timeout=5 * UNIT).json()) == 2


def test_stopped_server_shows_an_error_instead_of_hanging(server: tuple[Program, str], page: Page) -> None:
    app, url = server
    page.goto(f"{url}/test?timeout={FETCH_TIMEOUT_MS}")
    assert {state for state, _ in wait_for_run(page, 1).values()} == {"ok"}

    # A server that accepts connections but never answers (frozen): the page's timeout fires.
    app.process.send_signal(signal.SIGSTOP)
    try:
        page.click("#run")
        shown = wait_for_run(page, 2)
    finally:
        app.process.send_signal(signal.SIGCONT)
    for state, text in shown.values():
        assert state == "error"
        assert f"no answer from the server within {FETCH_TIMEOUT_MS} ms" in text
    assert "0 of 3" in (page.text_content("#status") or "")

    # A server that is gone: the connection is refused, and the page says so.
    app.stop()
    page.click("#run")
    shown = wait_for_run(page, 3)
    for state, text in shown.values():
        assert state == "error"
        assert "cannot reach the server" in text
